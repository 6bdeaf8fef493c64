"""The quoted-printable pieces digests are spliced from (RFC 5322 2.1.1 and RFC 5321 4.5.2).

Every piece must decode to its text, keep lines within 76 characters with room on the last
for the soft break that joins it to the next piece, and never start a line with a dot, so
that the message needs no dot-stuffing. Links take a shorter path than prose; both are held
to the same rules here.
"""

from __future__ import annotations

import quopri
import random

import pytest

from newsletter.mail.message import _qp

LITERAL = "".join(chr(code) for code in range(33, 127) if chr(code) != "=")
PROSE = LITERAL + "= \t\r\n.éü—✓"


def _check(text: str) -> None:
    encoded = _qp(text)
    lines = encoded.split(b"\r\n")
    assert b"\n" not in encoded.replace(b"\r\n", b""), encoded
    assert all(len(line) <= 76 for line in lines), encoded
    assert len(lines[-1]) <= 75, encoded
    assert not any(line.startswith(b".") for line in lines), encoded
    expected = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")
    assert quopri.decodestring(encoded).decode("utf-8") == expected


@pytest.mark.parametrize("alphabet", [LITERAL, PROSE], ids=["link-like", "prose"])
def test_pieces_decode_to_their_text_within_the_line_rules(alphabet: str) -> None:
    rng = random.Random(20261124)
    for _ in range(3000):
        size = rng.choice([0, 1, 2, 74, 75, 76, 77, 150, 151, 152, 400])
        text = "".join(rng.choice(alphabet) for _ in range(size))
        if rng.random() < 0.25:
            text = "." + text
        _check(text)


def test_a_long_signed_link_is_split_with_soft_breaks_only() -> None:
    link = "https://news.example/unsubscribe/" + "eyJzIjoiYWJj" * 12 + ".awYGjQ.jRGPniWz-_"
    encoded = _qp(link)
    assert encoded.count(b"=\r\n") == len(link) // 75
    assert encoded.replace(b"=\r\n", b"") == link.encode("ascii")

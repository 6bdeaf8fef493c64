"""Fanout: one stream of messages, fed in chunks, over several SMTP connections at once."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from newsletter.errors import MailError, NotHandedOver, OutcomeUnknown
from newsletter.mail.fanout import Fanout
from newsletter.mail.message import OutgoingMessage, build, mailbox
from newsletter.mail.smtp import SMTPBackend
from tests.support.smtp_server import DROP, SMTPTestServer

BackendFactory = Callable[..., SMTPBackend]


@pytest.fixture(autouse=True)
def _app_context(mail_app: Flask) -> Iterator[None]:
    with mail_app.app_context():
        yield


@pytest.fixture
def fanout_of(
    mail_app: Flask, smtp_server: SMTPTestServer, backend_for: BackendFactory
) -> Callable[..., Fanout[int]]:
    """``fanout_of(count, offer, hear, **settings)``: that many connections to the test
    server; messages are built in the sending threads, inside the app's context, as the
    delivery loop does."""

    def make(
        count: int,
        offer: Callable[[int], object],
        hear: Callable[[int, MailError | None], object],
        **settings: Any,
    ) -> Fanout[int]:
        backends = [backend_for(smtp_server, **settings) for _ in range(count)]
        return Fanout(backends, offer, hear, mail_app.app_context)

    return make


def send(fanout: Fanout[int], *chunks: Iterator[tuple[int, OutgoingMessage]]) -> None:
    """Feed each chunk once the last is taken, as the delivery loop does, then finish."""
    try:
        for chunk in chunks:
            fanout.wait_taken()
            fanout.feed(chunk)
        fanout.finish()
    finally:
        fanout.close()


def message(n: int) -> OutgoingMessage:
    to = f"reader{n:03d}@example.org"
    return build(to=mailbox(to), subject="Today", text=f"For {to}\n", html="<p>Today</p>")


class Record:
    """What the caller of ``Fanout.send`` saw, checked for overlap as it happens."""

    def __init__(self) -> None:
        self.offered: list[int] = []
        self.heard: list[tuple[int, MailError | None]] = []
        self.inside = 0
        self.overlapped = False
        self.threads: set[int] = set()

    def _enter(self) -> None:
        self.inside += 1
        self.overlapped |= self.inside > 1
        time.sleep(0.001)  # long enough for a second thread to walk in, were it allowed

    def offer(self, key: int) -> None:
        self._enter()
        self.offered.append(key)
        self.inside -= 1

    def hear(self, key: int, outcome: MailError | None) -> None:
        self._enter()
        # Only a message handed back unsent (NotHandedOver) may be heard without its offer.
        assert key in self.offered or isinstance(outcome, NotHandedOver), "heard before offered"
        self.heard.append((key, outcome))
        self.threads.add(threading.get_ident())
        self.inside -= 1

    def items(self, count: int, first: int = 0) -> Iterator[tuple[int, OutgoingMessage]]:
        for n in range(first, first + count):
            self._enter()
            self.inside -= 1
            yield n, message(n)


def received(server: SMTPTestServer) -> Counter[str]:
    return Counter(rcpt for m in server.messages for rcpt in m.rcpt_tos)


def test_chunks_go_out_once_each_over_every_connection(
    smtp_server: SMTPTestServer, fanout_of: Callable[..., Fanout[int]]
) -> None:
    record = Record()
    fanout = fanout_of(4, record.offer, record.hear)
    send(fanout, record.items(25), record.items(0, 25), record.items(15, 25))
    assert received(smtp_server) == Counter(f"reader{n:03d}@example.org" for n in range(40))
    assert sorted(key for key, _ in record.heard) == list(range(40))
    assert all(outcome is None for _, outcome in record.heard)
    assert sorted(record.offered) == list(range(40))
    # The connections stay open from one chunk to the next.
    assert smtp_server.connections == 4
    # Each message was taken, offered and heard one at a time, whichever connection it used.
    assert not record.overlapped
    assert len(record.threads) > 1


def test_feeding_returns_at_once_and_the_connections_wait_for_the_next_chunk(
    smtp_server: SMTPTestServer, fanout_of: Callable[..., Fanout[int]]
) -> None:
    record = Record()
    fanout = fanout_of(3, record.offer, record.hear)
    try:
        fanout.feed(record.items(9))
        fanout.wait_taken()
        time.sleep(0.2)  # the connections finish the chunk and wait, connected
        with fanout.lock:
            assert fanout.idle()
        assert len(record.heard) == 9
        fanout.feed(record.items(9, 9))
        fanout.finish()
        with fanout.lock:
            assert fanout.idle()
    finally:
        fanout.close()
    assert len(smtp_server.messages) == 18
    assert smtp_server.connections <= 3


def test_one_backend_sends_each_chunk_in_the_callers_thread_in_order(
    smtp_server: SMTPTestServer, fanout_of: Callable[..., Fanout[int]]
) -> None:
    record = Record()
    fanout = fanout_of(1, record.offer, record.hear)
    try:
        fanout.feed(record.items(6))
        assert [key for key, _ in record.heard] == list(range(6))  # done when feed returns
        fanout.feed(record.items(2, 6))
        fanout.finish()
    finally:
        fanout.close()
    assert [key for key, _ in record.heard] == list(range(8))
    assert record.threads == {threading.get_ident()}
    assert smtp_server.connections == 1


def test_an_outcome_that_ends_the_stream_stops_every_connection(
    smtp_server: SMTPTestServer, fanout_of: Callable[..., Fanout[int]]
) -> None:
    # The delivery loop ends its generator when a connection is lost without a reply: no
    # connection takes a message after that, but what they had taken still gets its outcome.
    smtp_server.fail("data", DROP, recipients={"reader005@example.org"}, times=1)
    record = Record()
    stopped = threading.Event()

    def items() -> Iterator[tuple[int, OutgoingMessage]]:
        for n in range(60):
            if stopped.is_set():
                return
            yield n, message(n)

    def hear(key: int, outcome: MailError | None) -> None:
        record.hear(key, outcome)
        if isinstance(outcome, OutcomeUnknown):
            stopped.set()

    send(fanout_of(3, record.offer, hear, SMTP_TIMEOUT=5.0), items())
    outcomes = dict(record.heard)
    assert len(outcomes) == len(record.heard), "a message had two outcomes"
    assert isinstance(outcomes[5], OutcomeUnknown)
    # Every message offered was heard; only one handed back unsent may lack its offer.
    assert set(record.offered) <= outcomes.keys()
    assert {k for k, e in outcomes.items() if not isinstance(e, NotHandedOver)} <= set(
        record.offered
    )
    assert len(outcomes) < 60
    # What arrived is exactly what was heard as accepted, once each.
    accepted = {f"reader{k:03d}@example.org" for k, e in outcomes.items() if e is None}
    assert received(smtp_server) == Counter(accepted)


def test_an_error_in_the_callers_code_stops_the_stream_and_is_raised(
    smtp_server: SMTPTestServer, fanout_of: Callable[..., Fanout[int]]
) -> None:
    record = Record()

    def hear(key: int, outcome: MailError | None) -> None:
        record.hear(key, outcome)
        if len(record.heard) == 4:
            raise RuntimeError("the ledger went away")

    taken: list[int] = []

    def items(first: int) -> Iterator[tuple[int, OutgoingMessage]]:
        for n in range(first, first + 50):
            taken.append(n)
            yield n, message(n)

    with pytest.raises(RuntimeError, match="ledger went away"):
        send(fanout_of(3, record.offer, hear), items(0), items(50))
    # Each connection stops after the messages it had already taken: nothing more is taken,
    # and nothing arrives that was not offered first.
    assert len(taken) <= 4 + 3 * 3
    assert len(smtp_server.messages) <= len(record.offered)
    assert len({m.rcpt_tos[0] for m in smtp_server.messages}) == len(smtp_server.messages)


def test_an_error_while_taking_a_message_is_raised_after_the_others_finish(
    smtp_server: SMTPTestServer, fanout_of: Callable[..., Fanout[int]]
) -> None:
    record = Record()

    def items() -> Iterator[tuple[int, OutgoingMessage]]:
        for n in range(5):
            yield n, message(n)
        raise ValueError("a template could not render")

    with pytest.raises(ValueError, match="could not render"):
        send(fanout_of(2, record.offer, record.hear), items(), record.items(5, 5))
    assert sorted(key for key, _ in record.heard) == list(range(5))
    assert len(smtp_server.messages) == 5


def test_closing_early_sends_nothing_more_than_was_taken(
    smtp_server: SMTPTestServer, fanout_of: Callable[..., Fanout[int]]
) -> None:
    # The batch's own error (the database went away): it closes the fanout with chunks
    # still queued; those are never sent, and no connection is left writing afterwards.
    record = Record()
    fanout = fanout_of(2, record.offer, record.hear)
    fanout.feed(record.items(3))
    fanout.feed(record.items(500, 3))
    fanout.close()
    assert len(smtp_server.messages) == len(record.offered) < 503
    assert sorted(key for key, _ in record.heard) == sorted(record.offered)


def test_no_backend_is_refused() -> None:
    with pytest.raises(ValueError):
        Fanout([], lambda key: None, lambda key, outcome: None)


def test_each_thread_runs_inside_the_given_context(
    smtp_server: SMTPTestServer, backend_for: BackendFactory
) -> None:
    entered: list[int] = []

    class Context:
        def __enter__(self) -> None:
            entered.append(threading.get_ident())

        def __exit__(self, *exc: Any) -> None:
            return None

    record = Record()
    backends = [backend_for(smtp_server) for _ in range(2)]
    built = [(n, message(n)) for n in range(8)]  # no app context in the threads here
    send(Fanout(backends, record.offer, record.hear, Context), iter(built))
    assert len(entered) == 2
    assert threading.get_ident() not in entered
    assert len(smtp_server.messages) == 8

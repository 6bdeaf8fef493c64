"""SMTPBackend.send_many against a real SMTP server on loopback (tests/support/smtp_server.py).

With PIPELINING (RFC 2920) a message's content travels in the same write as the next
message's envelope, so the reply to one final dot and the replies to the next MAIL, RCPT
and DATA come back together, and a failure is easy to pin on the wrong message. These
tests therefore check what the relay actually received (each accepted message exactly
once, byte for byte, in order; a failed one never), how many connections it took, and
that every message taken got exactly one outcome, the right one, in order.

Every test runs with and without PIPELINING where both can happen: without it the backend
falls back to one command per round trip and must give the same outcomes.
"""

from __future__ import annotations

import itertools
import smtplib
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask import Flask

from newsletter.errors import (
    MailError,
    MessageNotSendable,
    NotHandedOver,
    OutcomeUnknown,
    RecipientRejected,
    TransientMailError,
)
from newsletter.mail import smtp as smtp_module
from newsletter.mail.message import OutgoingMessage, build, mailbox
from newsletter.mail.smtp import SMTPBackend
from tests.support.smtp_server import DROP, HANG, SMTPTestServer

ServerFactory = Callable[..., SMTPTestServer]
BackendFactory = Callable[..., SMTPBackend]
Outcome = tuple[int, MailError | None]

SENDER = "newsletter@ledger.example"
# Long enough for a slow machine, short enough that a send stuck on a silent server fails
# the test in seconds rather than holding up the suite.
BOUND = 30.0


@pytest.fixture(autouse=True)
def _app_context(mail_app: Flask) -> Iterator[None]:
    with mail_app.app_context():
        yield


@pytest.fixture(params=[True, False], ids=["pipelined", "one-command-a-trip"])
def pipelining(request: pytest.FixtureRequest) -> bool:
    """Whether the server offers PIPELINING; the backend must give the same outcomes."""
    flag: bool = request.param
    return flag


@pytest.fixture
def smtp_server(smtp_server_factory: ServerFactory, pipelining: bool) -> SMTPTestServer:
    """A plain server, with or without PIPELINING, for one test."""
    return smtp_server_factory(pipelining=pipelining)


# ---- messages


def reader(n: int) -> str:
    return f"reader{n:02d}@example.org"


def message(to: str) -> OutgoingMessage:
    """A message as the app builds it (quoted-printable: no line starts with a dot)."""
    text = f"Today's articles for {to}\n\nhttps://news.example.test/articles/1\n"
    return build(to=mailbox(to), subject="Today's news", text=text, html="<p>Today</p>")


def dotted_message(to: str) -> OutgoingMessage:
    """A message whose lines start with dots, one of them a lone dot.

    Unstuffed, the lone dot would end the message early and the rest would be read as
    commands, so this only arrives intact if the content is dot-stuffed (RFC 5321 4.5.2).
    """
    data = (
        f"From: <{SENDER}>\r\nTo: <{to}>\r\nSubject: dots\r\n\r\n"
        ".A line that starts with a dot\r\n.\r\n..two dots\r\nlast line\r\n"
    ).encode()
    return OutgoingMessage(SENDER, to, data, f"<dots.{to}>")


def leading_dot_message(to: str) -> OutgoingMessage:
    """A message whose only dot at the start of a line is its very first byte.

    No line break comes before that dot, so a sender looking for dots only after line
    breaks would send it unstuffed and the server would strip it.
    """
    data = f".X-Leading-Dot: yes\r\nTo: <{to}>\r\nSubject: one dot\r\n\r\nbody\r\n".encode()
    return OutgoingMessage(SENDER, to, data, f"<leading-dot.{to}>")


def batch(count: int) -> list[OutgoingMessage]:
    return [message(reader(n)) for n in range(count)]


# ---- running send_many the way the delivery loop does


@dataclass
class Run:
    """What one send_many run took from its input and what it yielded."""

    taken: list[int] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)

    def feed(
        self, messages: Sequence[OutgoingMessage], then: Exception | None = None
    ) -> Iterator[tuple[int, OutgoingMessage]]:
        """The input, noting each message as it is taken; ``then`` is raised after the last."""
        for index, outgoing in enumerate(messages):
            self.taken.append(index)
            yield index, outgoing
        if then is not None:
            raise then

    def errors(self) -> dict[int, MailError]:
        return {index: error for index, error in self.outcomes if error is not None}

    def accepted(self) -> list[int]:
        return [index for index, error in self.outcomes if error is None]


def no_reply(error: MailError | None) -> bool:
    """The delivery loop's signal to stop a batch: no reply at all (dropped, timed out)."""
    if isinstance(error, OutcomeUnknown):
        return True
    return (
        isinstance(error, TransientMailError)
        and not isinstance(error, NotHandedOver)
        and error.code is None
    )


def bounded(work: Callable[[], None], seconds: float = BOUND) -> None:
    """Run ``work`` in another thread so a client stuck on a silent server fails the test."""
    failure: list[BaseException] = []

    def attempt() -> None:
        try:
            work()
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout=seconds)
    assert not thread.is_alive(), f"still waiting on the SMTP server after {seconds:g}s"
    if failure:
        raise failure[0]


def send_within_bound(backend: SMTPBackend, outgoing: OutgoingMessage) -> MailError | None:
    """``backend.send``, bounded; the MailError it raised, if any."""
    failure: list[MailError] = []

    def send() -> None:
        try:
            backend.send(outgoing)
        except MailError as exc:
            failure.append(exc)

    bounded(send)
    return failure[0] if failure else None


def deliver(
    backend: SMTPBackend,
    messages: Sequence[OutgoingMessage],
    *,
    stop_on_no_reply: bool = False,
) -> Run:
    """Feed ``messages`` to send_many lazily, as ``delivery.send_batch`` does.

    With ``stop_on_no_reply`` the input ends once an outcome says the server gave no reply,
    like the delivery loop, which hands the rest back to the queue.
    """
    run = Run()
    stopped = False

    def items() -> Iterator[tuple[int, OutgoingMessage]]:
        for index, outgoing in enumerate(messages):
            if stopped:
                return
            run.taken.append(index)
            yield index, outgoing

    def consume() -> None:
        nonlocal stopped
        for index, error in backend.send_many(items()):
            run.outcomes.append((index, error))
            stopped = stopped or (stop_on_no_reply and no_reply(error))

    bounded(consume)
    # The contract every caller relies on: one outcome per message taken, in order.
    assert [index for index, _ in run.outcomes] == run.taken
    return run


def assert_received(server: SMTPTestServer, expected: Sequence[OutgoingMessage]) -> None:
    """The server accepted exactly these messages, in this order, each once and intact."""
    received = [(m.rcpt_tos, m.data) for m in server.messages]
    assert received == [([m.recipient], m.data) for m in expected]


def mails(server: SMTPTestServer) -> int:
    """How many MAIL commands the server saw: a message refused before sending has none."""
    return server.verbs().count("MAIL")


# ---- the normal case


def test_a_run_of_messages_arrives_intact_in_order_on_one_connection(
    smtp_server: SMTPTestServer, backend_for: BackendFactory
) -> None:
    makers = [message, dotted_message, message, leading_dot_message]
    sent = [makers[n % 4](reader(n)) for n in range(20)]

    run = deliver(backend_for(smtp_server), sent)

    assert run.outcomes == [(n, None) for n in range(20)]
    assert_received(smtp_server, sent)
    assert smtp_server.connections == 1
    assert mails(smtp_server) == 20
    assert "RSET" not in smtp_server.verbs()


# ---- refusals of one message


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ("550 5.7.1 Message refused", RecipientRejected),
        ("452 4.3.1 Insufficient system storage", TransientMailError),
    ],
)
def test_a_refusal_of_the_content_fails_only_that_message(
    smtp_server: SMTPTestServer,
    backend_for: BackendFactory,
    pipelining: bool,
    reply: str,
    error: type[MailError],
) -> None:
    # The reply to the middle message's final dot arrives together with the replies to
    # the next envelope, which was pipelined behind it.
    sent = batch(5)
    smtp_server.fail("data", reply, recipients={reader(2)})

    run = deliver(backend_for(smtp_server), sent)

    [(index, failure)] = run.errors().items()
    assert index == 2 and type(failure) is error and failure.code == int(reply[:3])
    assert reply[4:] in str(failure)
    assert run.accepted() == [0, 1, 3, 4]
    assert_received(smtp_server, [sent[n] for n in (0, 1, 3, 4)])
    assert smtp_server.connections == 1
    if pipelining:
        # The reply to the dot ended the transaction: nothing to reset.
        assert "RSET" not in smtp_server.verbs()


def test_greylisting_at_rcpt_fails_that_message_once(
    smtp_server: SMTPTestServer, backend_for: BackendFactory
) -> None:
    sent = batch(5)
    smtp_server.fail(
        "rcpt", "451 4.7.1 Greylisted, try again later", recipients={reader(2)}, times=1
    )
    backend = backend_for(smtp_server)

    run = deliver(backend, sent)
    [(index, failure)] = run.errors().items()
    # Counted as an attempt: the server did answer, unlike a message that never went out.
    assert index == 2 and type(failure) is TransientMailError and failure.code == 451
    assert_received(smtp_server, [sent[n] for n in (0, 1, 3, 4)])

    retry = deliver(backend, [sent[2]])
    assert retry.outcomes == [(0, None)]
    assert_received(smtp_server, [sent[n] for n in (0, 1, 3, 4, 2)])
    assert smtp_server.connections == 1


@pytest.mark.parametrize(
    ("stage", "reply", "error"),
    [
        ("rcpt", "550 5.1.1 No such user here", RecipientRejected),
        ("rcpt", "451 4.7.1 Greylisted, try again later", TransientMailError),
        # A refused sender is about us, not the reader: never a RecipientRejected.
        ("mail", "550 5.7.1 Sender not allowed", TransientMailError),
        ("mail", "452 4.3.1 Too many messages, slow down", TransientMailError),
    ],
)
def test_an_envelope_refused_behind_an_accepted_message(
    smtp_server: SMTPTestServer,
    backend_for: BackendFactory,
    stage: str,
    reply: str,
    error: type[MailError],
) -> None:
    # With PIPELINING message 1's verdict and message 2's refused envelope come back in
    # one read: message 1 must still count as accepted and message 3 carry on.
    sent = batch(5)
    smtp_server.fail(stage, reply, after=2, times=1)  # type: ignore[arg-type]

    run = deliver(backend_for(smtp_server), sent)

    [(index, failure)] = run.errors().items()
    assert index == 2 and type(failure) is error and failure.code == int(reply[:3])
    assert run.accepted() == [0, 1, 3, 4]
    assert_received(smtp_server, [sent[n] for n in (0, 1, 3, 4)])
    assert smtp_server.connections == 1


@pytest.mark.parametrize("stage", ["mail", "rcpt"])
def test_a_421_to_an_envelope_moves_the_rest_to_a_new_connection(
    smtp_server: SMTPTestServer, backend_for: BackendFactory, stage: str
) -> None:
    # The server says it is closing the channel: the connection cannot carry the rest.
    sent = batch(5)
    smtp_server.fail(stage, "421 4.7.0 Closing the channel", after=2, times=1)  # type: ignore[arg-type]

    run = deliver(backend_for(smtp_server), sent)

    [(index, failure)] = run.errors().items()
    assert index == 2 and type(failure) is TransientMailError and failure.code == 421
    assert_received(smtp_server, [sent[n] for n in (0, 1, 3, 4)])
    assert [m.connection for m in smtp_server.messages] == [1, 1, 2, 2]


def test_a_421_to_the_content_delivers_the_next_message_on_a_new_connection(
    smtp_server: SMTPTestServer, backend_for: BackendFactory
) -> None:
    # With PIPELINING the next envelope already went out on the closing connection (and
    # may even have got its 354 there): it must be begun again, and delivered once.
    sent = batch(5)
    smtp_server.fail("data", "421 4.7.0 Shutting down", recipients={reader(2)})

    run = deliver(backend_for(smtp_server), sent)

    [(index, failure)] = run.errors().items()
    assert index == 2 and type(failure) is TransientMailError and failure.code == 421
    assert run.accepted() == [0, 1, 3, 4]
    assert_received(smtp_server, [sent[n] for n in (0, 1, 3, 4)])
    assert [m.connection for m in smtp_server.messages] == [1, 1, 2, 2]
    assert smtp_server.connections == 2


# ---- connections lost and servers gone silent


@pytest.mark.parametrize("position", [0, 2, 4])
def test_a_connection_dropped_after_the_content_stops_the_batch(
    smtp_server: SMTPTestServer,
    backend_for: BackendFactory,
    pipelining: bool,
    position: int,
) -> None:
    # The server closes the connection once the content started arriving. The client had
    # written the whole message, final dot included, and no reply came: whether it was
    # kept is unknown (RFC 1047), so it is reported as such, not as worth a retry. Behind it,
    # with PIPELINING, the next message's envelope had gone out and the one after was
    # taken while the server read; their content never left, so they go back to the
    # queue uncounted, and the delivery loop takes nothing more.
    sent = batch(5)
    smtp_server.fail("data", DROP, recipients={reader(position)})

    run = deliver(backend_for(smtp_server), sent, stop_on_no_reply=True)

    errors = run.errors()
    assert isinstance(errors[position], OutcomeUnknown), errors[position]
    assert "RFC 1047" in str(errors[position])
    assert run.accepted() == list(range(position))
    behind = list(range(position + 1, min(position + 3, 5))) if pipelining else []
    assert run.taken == list(range(position + 1)) + behind
    assert all(isinstance(errors[n], NotHandedOver) for n in behind)
    assert_received(smtp_server, sent[:position])
    assert smtp_server.connections == 1


def test_after_a_drop_the_next_message_taken_reconnects(
    smtp_server: SMTPTestServer, backend_for: BackendFactory, pipelining: bool
) -> None:
    sent = batch(6)
    smtp_server.fail("data", DROP, recipients={reader(2)})

    run = deliver(backend_for(smtp_server), sent)

    errors = run.errors()
    assert isinstance(errors[2], OutcomeUnknown), errors[2]
    if pipelining:
        # Message 3 was pipelined behind the lost one and message 4 taken while the server
        # read it: reported, not sent, not retried here.
        assert set(errors) == {2, 3, 4}
        assert isinstance(errors[3], NotHandedOver) and isinstance(errors[4], NotHandedOver)
        after = [5]
    else:
        assert set(errors) == {2}
        after = [3, 4, 5]
    assert run.accepted() == [0, 1, *after]
    assert_received(smtp_server, [sent[n] for n in (0, 1, *after)])
    assert [m.connection for m in smtp_server.messages] == [1, 1] + [2] * len(after)


def test_a_silent_server_times_out_and_stops_the_batch(
    smtp_server: SMTPTestServer, backend_for: BackendFactory, pipelining: bool
) -> None:
    # The server never answers the middle message's DATA, so its content never leaves.
    # With PIPELINING the message after it was taken while the server read message 1, and
    # goes back to the queue uncounted.
    sent = batch(5)
    smtp_server.fail("data", HANG, recipients={reader(2)})
    backend = backend_for(smtp_server, SMTP_TIMEOUT=1.0)

    run = deliver(backend, sent, stop_on_no_reply=True)

    assert run.taken == ([0, 1, 2, 3] if pipelining else [0, 1, 2])
    assert run.accepted() == [0, 1]
    assert no_reply(run.errors()[2])
    if pipelining:
        assert isinstance(run.errors()[3], NotHandedOver)
    assert_received(smtp_server, sent[:2])

    smtp_server.clear_faults()
    retry = deliver(backend, sent[2:])
    assert retry.outcomes == [(0, None), (1, None), (2, None)]
    assert_received(smtp_server, sent)
    assert [m.connection for m in smtp_server.messages] == [1, 1, 2, 2, 2]


# ---- international addresses


@pytest.mark.parametrize(
    "international",
    [{0}, {2}, {4}, {2, 3}],
    ids=["first", "middle", "last", "two-in-a-row"],
)
def test_an_address_needing_smtputf8_fails_alone_where_it_is_not_offered(
    smtp_server_factory: ServerFactory,
    backend_for: BackendFactory,
    pipelining: bool,
    international: set[int],
) -> None:
    server = smtp_server_factory(smtputf8=False, pipelining=pipelining)
    sent = [
        message(f"jürgen{n}@example.org" if n in international else reader(n)) for n in range(5)
    ]
    ascii_only = [n for n in range(5) if n not in international]

    run = deliver(backend_for(server), sent)

    errors = run.errors()
    assert set(errors) == international
    assert all(type(errors[n]) is MessageNotSendable for n in international)
    # The message open before it is still finished, and nothing of it was sent.
    assert run.accepted() == ascii_only
    assert_received(server, [sent[n] for n in ascii_only])
    assert mails(server) == len(ascii_only)
    assert server.connections == 1


def test_only_the_message_that_needs_it_is_sent_with_smtputf8(
    smtp_server: SMTPTestServer, backend_for: BackendFactory
) -> None:
    sent = [message(reader(0)), message("jürgen@example.org"), message(reader(2))]

    run = deliver(backend_for(smtp_server), sent)

    assert run.accepted() == [0, 1, 2]
    assert_received(smtp_server, sent)
    assert [m.smtputf8 for m in smtp_server.messages] == [False, True, False]


# ---- stopping early


class ConsumerStopped(Exception):
    """Raised inside a consumer's loop, as a failure filing an outcome would be."""


@pytest.mark.parametrize(
    ("how", "outcomes_taken"),
    [("close", 1), ("close", 3), ("raise", 2)],
    ids=["closed-after-1", "closed-after-3", "loop-raised-after-2"],
)
def test_stopping_the_generator_early_abandons_the_open_transaction(
    smtp_server: SMTPTestServer,
    backend_for: BackendFactory,
    pipelining: bool,
    how: str,
    outcomes_taken: int,
) -> None:
    # With PIPELINING, by the time the consumer holds a message's outcome the next message
    # has been taken and its DATA answered with 354, and the one after that taken too. A
    # consumer that stops there, by closing the generator or by an exception in its loop
    # (which releases, and so closes, the generator), must leave that transaction neither
    # delivered nor open on the connection, where the next command would be read as
    # message content.
    sent = batch(6)
    backend = backend_for(smtp_server, SMTP_TIMEOUT=2.0)
    run = Run()

    def close_after_some() -> None:
        outcomes = backend.send_many(run.feed(sent))
        assert isinstance(outcomes, Generator)  # what lets a consumer close it
        for _ in range(outcomes_taken):
            run.outcomes.append(next(outcomes))
        outcomes.close()

    def raise_after_some() -> None:
        try:
            for outcome in backend.send_many(run.feed(sent)):
                run.outcomes.append(outcome)
                if len(run.outcomes) == outcomes_taken:
                    raise ConsumerStopped
        except ConsumerStopped:
            pass  # the loop is unwound here: the generator has been released

    bounded(close_after_some if how == "close" else raise_after_some)

    assert run.outcomes == [(n, None) for n in range(outcomes_taken)]
    assert run.taken == list(range(outcomes_taken + (2 if pipelining else 0)))
    assert_received(smtp_server, sent[:outcomes_taken])

    # Left open, the connection would take the next commands as that message's content
    # and the next send would wait for replies that never come.
    later = message("later@example.org")
    assert send_within_bound(backend, later) is None
    assert_received(smtp_server, [*sent[:outcomes_taken], later])
    # Without PIPELINING nothing was open, so the connection could be kept.
    assert smtp_server.messages[-1].connection == (2 if pipelining else 1)


def test_a_failure_taking_the_next_message_abandons_the_open_transaction(
    smtp_server: SMTPTestServer, backend_for: BackendFactory, pipelining: bool
) -> None:
    # Composing a message can fail (a template error, the database gone): the exception
    # reaches the caller, and a message whose outcome was never yielded is not delivered.
    sent = batch(3)
    backend = backend_for(smtp_server, SMTP_TIMEOUT=2.0)
    run = Run()

    def consume() -> None:
        failing = run.feed(sent, then=RuntimeError("composing the next message failed"))
        for outcome in backend.send_many(failing):
            run.outcomes.append(outcome)

    with pytest.raises(RuntimeError, match="composing"):
        bounded(consume)

    assert run.taken == [0, 1, 2]
    # With PIPELINING the failure happened while taking ahead: it surfaces after message 1's
    # outcome, with message 2's DATA open, and message 2 is abandoned.
    assert run.outcomes == [(n, None) for n in range(2 if pipelining else 3)]
    assert_received(smtp_server, [sent[index] for index in run.accepted()])
    later = message("later@example.org")
    assert send_within_bound(backend, later) is None
    assert smtp_server.messages[-1].data == later.data


# ---- round trips


@dataclass
class Wire:
    """What the client wrote and read, in order: ("write", bytes) or ("reply", code)."""

    log: list[tuple[str, Any]] = field(default_factory=list)

    def round_trips(self) -> int:
        """Times the client waited for a reply after writing (the greeting is not one)."""
        return sum(
            1
            for before, now in zip(self.log, self.log[1:], strict=False)
            if before[0] == "write" and now[0] == "reply"
        )

    def writes(self) -> list[bytes]:
        return [value for kind, value in self.log if kind == "write"]


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> Wire:
    """Records every write and every reply read by smtplib, the backend's own too."""
    recorded = Wire()
    send, getreply = smtplib.SMTP.send, smtplib.SMTP.getreply

    def recording_send(self: smtplib.SMTP, data: bytes | str) -> None:
        recorded.log.append(("write", data if isinstance(data, bytes) else data.encode()))
        send(self, data)

    def recording_getreply(self: smtplib.SMTP) -> tuple[int, bytes]:
        reply = getreply(self)
        recorded.log.append(("reply", reply[0]))
        return reply

    counting = smtp_module._send_counting  # the backend's own write, which counts bytes

    def recording_counting(connection: smtplib.SMTP, data: bytes) -> None:
        recorded.log.append(("write", data))
        counting(connection, data)

    monkeypatch.setattr(smtplib.SMTP, "send", recording_send)
    monkeypatch.setattr(smtplib.SMTP, "getreply", recording_getreply)
    monkeypatch.setattr(smtp_module, "_send_counting", recording_counting)
    return recorded


def test_pipelining_costs_one_round_trip_per_message(
    smtp_server: SMTPTestServer, backend_for: BackendFactory, pipelining: bool, wire: Wire
) -> None:
    sent = batch(20)

    run = deliver(backend_for(smtp_server), sent)

    assert run.accepted() == list(range(20))
    assert_received(smtp_server, sent)
    if pipelining:
        # EHLO, the first envelope, then one write per message carrying its content and
        # the next envelope, and the last content alone: len(sent) + 2.
        assert wire.round_trips() <= len(sent) + 3, wire.round_trips()
        for outgoing, following in itertools.pairwise(sent):
            [write] = [w for w in wire.writes() if outgoing.data in w]
            assert write.endswith(f"RCPT TO:<{following.recipient}>\r\nDATA\r\n".encode())
    else:
        # The control: MAIL, RCPT, DATA and the content each wait for their reply.
        assert wire.round_trips() >= 4 * len(sent)

    # Whatever the grouping, a message's content follows the 354 to its own DATA.
    for outgoing in sent:
        [at] = [
            i
            for i, (kind, value) in enumerate(wire.log)
            if kind == "write" and outgoing.data in value
        ]
        assert wire.log[at - 1] == ("reply", 354), outgoing.recipient

"""Fanout: one stream of messages over several SMTP connections at once, each message once."""

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
    """``fanout_of(count, **settings)``: that many connections to the test server; messages
    are built in the sending threads, inside the app's context as the delivery loop does."""

    def make(count: int, **settings: Any) -> Fanout[int]:
        backends = [backend_for(smtp_server, **settings) for _ in range(count)]
        return Fanout(backends, mail_app.app_context)

    return make


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

    def items(self, count: int) -> Iterator[tuple[int, OutgoingMessage]]:
        for n in range(count):
            self._enter()
            self.inside -= 1
            yield n, message(n)


def received(server: SMTPTestServer) -> Counter[str]:
    return Counter(rcpt for m in server.messages for rcpt in m.rcpt_tos)


def test_one_stream_goes_out_once_over_each_connection(
    smtp_server: SMTPTestServer, fanout_of: Callable[..., Fanout[int]]
) -> None:
    fanout = fanout_of(4)
    record = Record()
    try:
        fanout.send(record.items(40), record.offer, record.hear)
        fanout.send(record.items(0), record.offer, record.hear)  # nothing: nothing happens
    finally:
        fanout.close()
    assert received(smtp_server) == Counter(f"reader{n:03d}@example.org" for n in range(40))
    assert sorted(key for key, _ in record.heard) == list(range(40))
    assert all(outcome is None for _, outcome in record.heard)
    assert sorted(record.offered) == list(range(40))
    assert smtp_server.connections == 4
    # Each message was taken, offered and heard one at a time, whichever connection it used.
    assert not record.overlapped
    assert len(record.threads) > 1


def test_connections_stay_open_from_one_send_to_the_next(
    smtp_server: SMTPTestServer, fanout_of: Callable[..., Fanout[int]]
) -> None:
    fanout = fanout_of(3)
    record = Record()
    try:
        for _ in range(3):
            fanout.send(record.items(9), record.offer, record.hear)
    finally:
        fanout.close()
    assert len(smtp_server.messages) == 27
    assert smtp_server.connections == 3


def test_one_backend_sends_in_the_callers_thread_in_order(
    smtp_server: SMTPTestServer, fanout_of: Callable[..., Fanout[int]]
) -> None:
    fanout = fanout_of(1)
    record = Record()
    try:
        fanout.send(record.items(6), record.offer, record.hear)
    finally:
        fanout.close()
    assert [key for key, _ in record.heard] == list(range(6))
    assert record.threads == {threading.get_ident()}


def test_an_outcome_that_ends_the_stream_stops_every_connection(
    smtp_server: SMTPTestServer, fanout_of: Callable[..., Fanout[int]]
) -> None:
    # The delivery loop ends its generator when a connection is lost without a reply: no
    # connection takes a message after that, but what they had taken still gets its outcome.
    smtp_server.fail("data", DROP, recipients={"reader005@example.org"}, times=1)
    fanout = fanout_of(3, SMTP_TIMEOUT=5.0)
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

    try:
        fanout.send(items(), record.offer, hear)
    finally:
        fanout.close()
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
    fanout = fanout_of(3)
    record = Record()

    def hear(key: int, outcome: MailError | None) -> None:
        record.hear(key, outcome)
        if len(record.heard) == 4:
            raise RuntimeError("the ledger went away")

    taken: list[int] = []

    def items() -> Iterator[tuple[int, OutgoingMessage]]:
        for n in range(100):
            taken.append(n)
            yield n, message(n)

    try:
        with pytest.raises(RuntimeError, match="ledger went away"):
            fanout.send(items(), record.offer, hear)
    finally:
        fanout.close()
    # Each connection stops after the messages it had already taken: nothing more is taken,
    # and nothing arrives that was not offered first.
    assert len(taken) <= 4 + 3 * 3
    assert len(smtp_server.messages) <= len(record.offered)
    assert len(set(m.rcpt_tos[0] for m in smtp_server.messages)) == len(smtp_server.messages)


def test_an_error_while_taking_a_message_is_raised_after_the_others_finish(
    smtp_server: SMTPTestServer, fanout_of: Callable[..., Fanout[int]]
) -> None:
    fanout = fanout_of(2)
    record = Record()

    def items() -> Iterator[tuple[int, OutgoingMessage]]:
        for n in range(5):
            yield n, message(n)
        raise ValueError("a template could not render")

    try:
        with pytest.raises(ValueError, match="could not render"):
            fanout.send(items(), record.offer, record.hear)
    finally:
        fanout.close()
    assert sorted(key for key, _ in record.heard) == list(range(5))
    assert len(smtp_server.messages) == 5


def test_no_backend_is_refused() -> None:
    with pytest.raises(ValueError):
        Fanout([])


def test_each_thread_runs_inside_the_given_context(
    smtp_server: SMTPTestServer, backend_for: BackendFactory
) -> None:
    entered: list[int] = []

    class Context:
        def __enter__(self) -> None:
            entered.append(threading.get_ident())

        def __exit__(self, *exc: Any) -> None:
            return None

    fanout = Fanout([backend_for(smtp_server) for _ in range(2)], Context)
    record = Record()
    built = [(n, message(n)) for n in range(8)]  # no app context in the threads here
    try:
        fanout.send(iter(built), record.offer, record.hear)
    finally:
        fanout.close()
    assert len(entered) == 2
    assert threading.get_ident() not in entered

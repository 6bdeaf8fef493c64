"""Several connections sending one stream of messages at once.

A connection spends most of a message waiting for the server's reply: one round trip a
message even with pipelining, so 5 ms to a relay caps it near 200 messages a second. With
several connections in flight, each takes the next message as soon as it is free, and the
waits overlap (``bench/digest.py --smtp-latency 5`` measures it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, nullcontext
from typing import Generic

from newsletter.errors import MailError
from newsletter.mail.backends import Key, MailBackend
from newsletter.mail.message import OutgoingMessage


class Fanout(Generic[Key]):
    """``send_many`` over each of ``backends`` at once, drawing from one stream of messages.

    With one backend it is that backend's ``send_many`` in the caller's thread. With more,
    each runs in a thread of its own (kept for the ``Fanout``'s life), and ``context`` (an
    app context, for instance) is entered around each thread's part of a ``send``.
    """

    def __init__(
        self,
        backends: Sequence[MailBackend],
        context: Callable[[], AbstractContextManager[object]] = nullcontext,
    ) -> None:
        if not backends:
            raise ValueError("no backend to send with")
        self.backends = list(backends)
        self.context = context
        self._pool = (
            ThreadPoolExecutor(len(self.backends), thread_name_prefix="smtp")
            if len(self.backends) > 1
            else None
        )

    def send(
        self,
        items: Iterable[tuple[Key, OutgoingMessage]],
        offered: Callable[[Key], object],
        heard: Callable[[Key, MailError | None], object],
    ) -> None:
        """Send every message of ``items``; returns once each has had its outcome.

        ``offered(key)`` and ``heard(key, outcome)`` are what ``send_many`` promises (before
        any part of the message may reach the server; once its outcome is known), called one
        at a time whatever the thread, and ``heard`` before that connection takes its next
        message, so it may end ``items`` (the caller's generator) for all of them. Taking
        from ``items`` is serialized too: a generator there is never run by two threads.

        If ``heard`` or ``items`` raises, no connection takes another message; those taken
        ahead are still sent and heard (as ``send_many`` does when its items end), then the
        first exception is raised here.
        """
        if self._pool is None:
            for key, outcome in self.backends[0].send_many(items, offered):
                heard(key, outcome)
            return
        lock = threading.Lock()
        source = iter(items)
        failed: list[BaseException] = []

        def shared() -> Iterator[tuple[Key, OutgoingMessage]]:
            while True:
                with lock:
                    if failed:
                        return
                    try:
                        item = next(source)
                    except StopIteration:
                        return
                    except BaseException as exc:
                        failed.append(exc)
                        return
                yield item

        def tell(key: Key) -> None:
            with lock:
                offered(key)

        def run(backend: MailBackend) -> None:
            with self.context():
                try:
                    for key, outcome in backend.send_many(shared(), tell):
                        with lock:
                            heard(key, outcome)
                except BaseException as exc:
                    with lock:
                        failed.append(exc)

        futures = [self._pool.submit(run, backend) for backend in self.backends]
        wait(futures)
        for future in futures:
            future.result()  # nothing escapes ``run``; an error here is this module's own
        if failed:
            raise failed[0]

    def close(self) -> None:
        """Close every backend (each hangs up its connection) and end the threads."""
        try:
            for backend in self.backends:
                backend.close()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)

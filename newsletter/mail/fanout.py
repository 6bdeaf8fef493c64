"""Several connections sending one stream of messages at once, fed while they send.

A connection spends most of a message waiting for the server's reply: one round trip a
message even with pipelining, so 5 ms to a relay caps it near 200 messages a second. With
several connections in flight, each takes the next message as soon as it is free, and the
waits overlap; and since the caller feeds the stream a chunk at a time while they send, the
connections do not stop while it writes down the last chunk and claims the next
(``bench/digest.py --smtp-latency 5`` and ``--set SMTP_CONNECTIONS=...`` measure both).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, nullcontext
from typing import Generic

from newsletter.errors import MailError
from newsletter.mail.backends import Key, MailBackend
from newsletter.mail.message import OutgoingMessage

Items = Iterator[tuple[Key, OutgoingMessage]]


class Fanout(Generic[Key]):
    """``send_many`` over each of ``backends`` at once, drawing from the chunks ``feed`` gives.

    ``offered(key)`` and ``heard(key, outcome)`` are what ``send_many`` promises (before any
    part of a message may reach the server; once its outcome is known). They, and taking
    from the chunks (the caller's generators, which may end early), run one at a time under
    ``lock`` whatever the thread, and ``heard`` before that connection takes its next
    message: an outcome that makes the caller's generator stop is seen by every connection.

    With one backend, ``feed`` sends its chunk to the end in the caller's thread, as that
    backend's ``send_many`` does. With more, each backend sends in a thread of its own
    (inside ``context``, an app context for instance) and ``feed`` returns at once.

    If ``heard`` or a chunk raises, or the caller calls ``close``, no connection takes
    another message; those taken ahead are still sent and heard, as ``send_many`` does when
    its items end. The first error is raised by the caller's next ``feed``, ``wait_taken``
    or ``finish``.
    """

    def __init__(
        self,
        backends: Sequence[MailBackend],
        offered: Callable[[Key], object],
        heard: Callable[[Key, MailError | None], object],
        context: Callable[[], AbstractContextManager[object]] = nullcontext,
    ) -> None:
        if not backends:
            raise ValueError("no backend to send with")
        self.backends = list(backends)
        self.offered = offered
        self.heard = heard
        self.context = context
        self.lock = threading.Lock()
        self._changed = threading.Condition(self.lock)
        self._chunks: deque[Items[Key]] = deque()
        self._ended = False  # nothing more will be fed
        self._halted = False  # take nothing more, even what was fed
        self._failed: list[BaseException] = []
        self._outstanding = 0  # taken and not yet heard
        self._pool: ThreadPoolExecutor | None = None
        self._running: list[Future[None]] = []

    @property
    def threaded(self) -> bool:
        return len(self.backends) > 1

    def feed(self, items: Items[Key]) -> None:
        """More messages: after those fed before, taken as the connections are free."""
        if not self.threaded:
            for key, outcome in self.backends[0].send_many(items, self.offered):
                self.heard(key, outcome)
            return
        self._raise_failure()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(len(self.backends), thread_name_prefix="smtp")
            self._running = [self._pool.submit(self._run, backend) for backend in self.backends]
        with self._changed:
            self._chunks.append(items)
            self._changed.notify_all()

    def wait_taken(self, leave: int = 0) -> None:
        """Return once the messages fed so far have been taken by the connections, all but
        the last ``leave`` chunks (fed ahead, so the connections never run dry)."""
        with self._changed:
            while len(self._chunks) > leave and not self._failed and not self._halted:
                self._changed.wait()
        self._raise_failure()

    def idle(self) -> bool:
        """Whether every message fed so far has been heard (call it holding ``lock``)."""
        return not self._chunks and not self._outstanding

    def finish(self) -> None:
        """Feeding is over: return once every message has been heard."""
        self._stop_feeding()
        self._raise_failure()

    def close(self) -> None:
        """Stop (the connections send what they had taken), hang up and end the threads."""
        try:
            with self._changed:
                self._halted = True
            self._stop_feeding()
        finally:
            try:
                for backend in self.backends:
                    backend.close()
            finally:
                if self._pool is not None:
                    self._pool.shutdown(wait=True)

    # -- in the connections' threads

    def _run(self, backend: MailBackend) -> None:
        with self.context():
            try:
                # A connection that runs dry finishes what it holds (so nothing it sent
                # waits unheard) and waits, connected, for the next chunk.
                while self._more():
                    for key, outcome in backend.send_many(self._stream(), self._offer):
                        with self._changed:
                            self._outstanding -= 1
                            self._changed.notify_all()
                            try:
                                self.heard(key, outcome)
                            except BaseException as exc:
                                # Marked before the lock goes: no connection takes more.
                                self._failed.append(exc)
                                raise
            except BaseException as exc:
                self._fail(exc)

    def _more(self) -> bool:
        """Wait for a chunk to send; False once feeding is over (or failed, or halted)."""
        with self._changed:
            while not self._chunks and not self._ended and not self._stopped():
                self._changed.wait()
            return bool(self._chunks) and not self._stopped()

    def _stopped(self) -> bool:
        return bool(self._failed) or self._halted

    def _stream(self) -> Items[Key]:
        while True:
            item = self._take()
            if item is None:
                return
            yield item

    def _take(self) -> tuple[Key, OutgoingMessage] | None:
        """The next message of the oldest chunk; None when there is none now."""
        with self._changed:
            while self._chunks and not self._stopped():
                try:
                    item = next(self._chunks[0])
                except StopIteration:
                    self._chunks.popleft()
                    self._changed.notify_all()
                    continue
                except BaseException as exc:
                    self._failed.append(exc)
                    self._changed.notify_all()
                    return None
                self._outstanding += 1
                return item
            return None

    def _offer(self, key: Key) -> None:
        with self.lock:
            self.offered(key)

    # -- shared

    def _fail(self, exc: BaseException) -> None:
        with self._changed:
            if exc not in self._failed:
                self._failed.append(exc)
            self._changed.notify_all()

    def _stop_feeding(self) -> None:
        with self._changed:
            self._ended = True
            self._changed.notify_all()
        if self._running:
            wait(self._running)

    def _raise_failure(self) -> None:
        with self.lock:
            failed = self._failed[0] if self._failed else None
        if failed is not None:
            raise failed

#!/usr/bin/env python
"""A TCP relay to an SMTP server that holds each of the server's replies for a while.

    python bench/smtp_delay.py --listen 127.0.0.1:2526 --to 127.0.0.1:2525 --delay-ms 5

A real relay is not on loopback: each reply takes a network round trip. ``bench/digest.py
--smtp-latency MS`` puts this relay between the senders and smtp-sink, so the app and the
bare loops wait that long for every reply (greeting, envelope, final dot) while what they
send goes through at once, as over a link whose round trip is the delay. Whatever the server
writes in one go (pipelined replies) arrives together, after the delay.

It shares the cores with everything it measures, so it is one process around one ``epoll``
loop rather than asyncio: asyncio's per-event machinery cost 137 µs of CPU a message here
(3,070 msg/s through it against 7,080 straight to the sink, ``/tmp`` trial of
``bench/digest.py``'s pipelined loop, 2 connections); this loop costs a fraction of that.
``bench/digest.py`` records the relay's CPU time in every result, and its bare loops go
through the relay too, so its ceiling is measured in the same run.

Prints ``ready`` once listening; stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import select
import signal
import socket
import sys
import time

READ = 262144


class _Side:
    """One socket of a relayed connection, with what is still to be written to it."""

    __slots__ = ("closed", "closing", "eof", "fd", "out", "peer", "sock", "watched")

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.fd = sock.fileno()
        self.peer: _Side | None = None
        self.out = bytearray()
        self.eof = False  # it will send nothing more
        self.closing = False  # its peer has closed: close once ``out`` is written
        self.closed = False
        self.watched = -1  # the epoll mask it is registered with; -1: not registered


class Relay:
    def __init__(self, listen: tuple[str, int], target: tuple[str, int], delay: float) -> None:
        self.target = target
        self.delay = delay
        self.server = socket.create_server(listen, backlog=1024)
        self.server.setblocking(False)
        self.poll = select.epoll()
        self.poll.register(self.server.fileno(), select.EPOLLIN)
        self.sides: dict[int, _Side] = {}
        self.upstream: set[int] = set()  # the sides facing the SMTP server
        # Replies waiting for their moment: (due, side to write them to, bytes). The delay is
        # the same for all, so arrival order is due order and one queue serves every side.
        self.held: collections.deque[tuple[float, _Side, bytes]] = collections.deque()

    def run(self) -> None:
        ready = [self.poll.fileno()]
        while True:
            if self.held:
                # epoll's timeout is whole milliseconds, rounded up: wait on the epoll
                # descriptor with select's microseconds instead, then collect its events.
                left = max(0.0, self.held[0][0] - time.monotonic())
                events = self.poll.poll(0) if select.select(ready, [], [], left)[0] else []
            else:
                events = self.poll.poll()
            for fd, mask in events:
                if fd == self.server.fileno():
                    self._accept()
                    continue
                side = self.sides.get(fd)
                if side is None:
                    continue
                if mask & select.EPOLLOUT:
                    self._flush(side)
                if mask & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                    self._read(side)
            if self.held:
                now = time.monotonic()
                while self.held and self.held[0][0] <= now:
                    _, side, data = self.held.popleft()
                    self._write(side, data)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except BlockingIOError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            down, up = _Side(client), _Side(upstream)
            down.peer, up.peer = up, down
            for side in (down, up):
                self.sides[side.fd] = side
                self._watch(side)
            self.upstream.add(up.fd)

    def _watch(self, side: _Side) -> None:
        """Wait for what ``side`` can do next: read unless it ended, write if output waits."""
        mask = (0 if side.eof else select.EPOLLIN) | (select.EPOLLOUT if side.out else 0)
        if mask == side.watched or side.closed:
            return
        if side.watched < 0:
            self.poll.register(side.fd, mask)
        elif mask:
            self.poll.modify(side.fd, mask)
        else:
            self.poll.unregister(side.fd)  # a reset socket would report HUP forever
            mask = -1
        side.watched = mask

    def _read(self, side: _Side) -> None:
        if side.eof:
            return
        try:
            data = side.sock.recv(READ)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        peer = side.peer
        assert peer is not None
        if not data:
            side.eof = True
            self._watch(side)
            if side.fd in self.upstream and self.delay:
                # The client hears of the close after the replies still held.
                self.held.append((time.monotonic() + self.delay, peer, b""))
            else:
                self._write(peer, b"")
            return
        if side.fd in self.upstream and self.delay:
            self.held.append((time.monotonic() + self.delay, peer, data))
        else:
            self._write(peer, data)

    def _write(self, side: _Side, data: bytes) -> None:
        """Send ``data`` to ``side`` now, the rest when it can take it; b"": its peer ended."""
        if side.closed:
            return
        if not data:
            side.closing = True  # once what is still due to it has gone, both sides close
            if not side.out:
                self._close_both(side)
            return
        if side.out:
            side.out += data
            return
        try:
            sent = side.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._close_both(side)
            return
        if sent < len(data):
            side.out += data[sent:]
            self._watch(side)

    def _flush(self, side: _Side) -> None:
        try:
            sent = side.sock.send(side.out)
        except BlockingIOError:
            return
        except OSError:
            self._close_both(side)
            return
        del side.out[:sent]
        if not side.out and side.closing:
            self._close_both(side)
            return
        self._watch(side)

    def _close_both(self, side: _Side) -> None:
        self._close(side)
        if side.peer is not None:
            self._close(side.peer)

    def _close(self, side: _Side) -> None:
        if side.closed:
            return
        side.closed = True
        if side.watched >= 0:
            self.poll.unregister(side.fd)
        self.sides.pop(side.fd, None)
        self.upstream.discard(side.fd)
        side.sock.close()


class _Stop(Exception):
    """SIGTERM or SIGINT: epoll's wait is not retried after the handler raises."""


def _stop(signum: int, frame: object) -> None:
    raise _Stop


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--listen", type=_address, required=True, metavar="HOST:PORT")
    parser.add_argument("--to", type=_address, required=True, metavar="HOST:PORT")
    parser.add_argument("--delay-ms", type=float, default=5.0)
    args = parser.parse_args(argv)
    relay = Relay(args.listen, args.to, args.delay_ms / 1000)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print("ready", flush=True)
    with contextlib.suppress(_Stop):
        relay.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

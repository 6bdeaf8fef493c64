"""A messages-per-second limit per backend, shared by every worker through Redis."""

from __future__ import annotations

import time
from typing import Any

from flask import current_app


class Throttle:
    """Fixed one-second windows; tokens are taken from the shared counter in blocks.

    Taking a block at a time keeps the cost to one Redis round trip per block rather than
    per message, at the price of a window being shared in block-sized pieces.
    """

    def __init__(self, rate: float, redis: Any | None = None, key: str = "") -> None:
        self.rate = int(rate)
        self.redis = redis
        self.key = key
        self.block = max(1, self.rate // 20)
        self._allowance = 0
        self._local: dict[int, int] = {}

    @classmethod
    def for_app(cls) -> Throttle:
        """The app's throttle, made once per process: its window and Redis client outlive a task."""
        found: Throttle | None = current_app.extensions.get("newsletter.throttle")
        if found is None:
            found = current_app.extensions["newsletter.throttle"] = cls._from_config()
        return found

    @classmethod
    def _from_config(cls) -> Throttle:
        config = current_app.config
        rate = float(config["SEND_RATE"] or 0)
        if rate <= 0:
            return cls(0)
        broker = str(config["BROKER_URL"] or "")
        if broker.startswith(("redis://", "rediss://")):
            import redis

            client = redis.Redis.from_url(broker)
            return cls(rate, client, f"newsletter:send-rate:{config['MAIL_BACKEND']}")
        return cls(rate)

    def _take(self, second: int) -> int:
        """Claim a block in this second's window; returns how many of it may be used."""
        if self.redis is not None:
            key = f"{self.key}:{second}"
            pipe = self.redis.pipeline()
            pipe.incrby(key, self.block)
            pipe.expire(key, 5)
            used = int(pipe.execute()[0])
        else:
            self._local = {second: self._local.get(second, 0) + self.block}
            used = self._local[second]
        return max(0, min(self.block, self.rate - (used - self.block)))

    def wait(self) -> None:
        """Return when one more message may be sent."""
        if self.rate <= 0:
            return
        while self._allowance <= 0:
            now = time.time()
            granted = self._take(int(now))
            if granted:
                self._allowance = granted
                break
            time.sleep(max(0.0, int(now) + 1 - now))
        self._allowance -= 1

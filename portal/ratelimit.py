"""The REST API's per-key rate limit: one Redis round trip a request.

It runs on ``limits``, the library flask-limiter is built on, but without flask-limiter's per-request
generality (resolving decorated, blueprint and default limits, request filters, parsing the limit each time),
which cost the API's hot path more than the Redis call itself (tests/benchmarks/bench_access_token.py). The
portal's other limits (sign-in, widget) stay flask-limiter decorators. When Redis cannot be reached the requests
are counted in this process's memory meanwhile, as flask-limiter's fallback does: an outage of Redis must not
take the API down, nor lift its limits.
"""

from __future__ import annotations

import logging
import math
import time

from limits import parse
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import FixedWindowRateLimiter
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


class RateLimit:
    def __init__(self, limit: str, storage_uri: str, namespace: str) -> None:
        self.item = parse(limit)  # raises ValueError on a malformed setting, at start-up
        self.namespace = namespace
        self._shared = FixedWindowRateLimiter(storage_from_string(storage_uri))
        self._local = FixedWindowRateLimiter(MemoryStorage())
        self._shared_down = False

    def retry_after(self, identifier: str) -> int | None:
        """Count one request of ``identifier``: None when it is within the limit, else the whole seconds until
        the current window ends (for Retry-After)."""
        strategy = self._shared
        try:
            allowed = strategy.hit(self.item, self.namespace, identifier)
            self._shared_down = False
        except (RedisError, OSError) as exc:
            if not self._shared_down:
                log.warning("rate limit storage unreachable (%s): counting in memory", exc.__class__.__name__)
                self._shared_down = True
            strategy = self._local
            allowed = strategy.hit(self.item, self.namespace, identifier)
        if allowed:
            return None
        try:
            reset_at = strategy.get_window_stats(self.item, self.namespace, identifier).reset_time
        except (RedisError, OSError):
            return int(self.item.get_expiry())
        return max(1, min(int(self.item.get_expiry()), math.ceil(reset_at - time.time())))

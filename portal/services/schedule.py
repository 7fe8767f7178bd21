"""When to refresh next: platform-aware windows, a daily keep-alive, jitter against storms.

- Rotating or standard short-lived tokens: shortly before expiry (a tenth of the lifetime left,
  at least 5 and at most 60 minutes), so a sweep every few minutes is always in time.
- Tokens refreshed by exchange (Instagram Login, Threads: 60-day tokens that may be extended once a
  day old): daily, far ahead of expiry.
- Anything refreshable is touched at least once a day (keep-alive: some refresh tokens die unused).
- Failures retry with exponential backoff and jitter, honouring Retry-After.
Times are spread by a random jitter so that tokens issued together do not all come due together.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

KEEP_ALIVE = timedelta(days=1)
MIN_MARGIN = timedelta(minutes=5)
MAX_MARGIN = timedelta(minutes=60)
BACKOFF_BASE = timedelta(minutes=1)
BACKOFF_MAX = timedelta(hours=6)


def next_refresh(refreshable: bool, refresh_style: str, expires_at: datetime | None, now: datetime,
                 lifetime: timedelta | None = None) -> datetime | None:
    """When the sweep should next refresh a connection whose tokens were just written."""
    if not refreshable:
        return None
    due = now + KEEP_ALIVE
    if expires_at is not None and refresh_style != "exchange":
        life = lifetime or max(expires_at - now, timedelta(0))
        margin = min(max(life / 10, MIN_MARGIN), MAX_MARGIN)
        due = min(due, expires_at - margin)
    spread = min(due - now, timedelta(hours=1)) * 0.1
    return max(now, due - spread * random.random())  # noqa: S311 - jitter, not a secret


def retry_at(failures: int, now: datetime, retry_after: float | None = None) -> datetime:
    """Exponential backoff with full jitter; a platform's Retry-After is a floor."""
    ceiling = min(BACKOFF_BASE * (2 ** min(failures, 12)), BACKOFF_MAX)
    delay = ceiling * random.uniform(0.5, 1.0)  # noqa: S311
    if retry_after is not None:
        delay = max(delay, timedelta(seconds=retry_after))
    return now + delay

"""Named locks with owner tokens: Redis across processes, a local table within one process.

A lock is released only by its owner (compare-and-delete), and expires by itself after
``ttl`` seconds so a killed holder cannot block a connection forever.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from redis import Redis
from redis.exceptions import RedisError

from portal.errors import ServiceUnavailable

_EXTEND = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class LockFactory(Protocol):
    def hold(self, name: str, ttl: float, wait: float) -> Iterator[bool]: ...


class RedisLocks:
    def __init__(self, redis: Redis, prefix: str = "easyconnect:lock:") -> None:
        self.redis = redis
        self.prefix = prefix
        self._release = redis.register_script(_RELEASE)
        self._extend = redis.register_script(_EXTEND)
        self._held: dict[str, tuple[str, float, float]] = {}
        self._held_guard = threading.Lock()
        self._keeper: threading.Thread | None = None

    @contextmanager
    def hold(self, name: str, ttl: float, wait: float = 0.0) -> Iterator[bool]:
        """Yield True when this caller owns the lock, False when it stayed taken for ``wait`` seconds."""
        key, owner = self.prefix + name, secrets.token_hex(16)
        deadline = time.monotonic() + wait
        try:
            while not (acquired := bool(self.redis.set(key, owner, nx=True, px=int(ttl * 1000)))):
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.05)
        except RedisError as exc:
            # Never refresh unlocked: without Redis a rotating token could be spent twice.
            raise ServiceUnavailable("the lock service is unavailable") from exc
        if acquired:
            # Keep the lock while its holder works (a slow platform must not let a second refresher in),
            # but only while this process lives: a killed holder's lock still expires after ttl.
            self._watch(key, owner, ttl)
        try:
            yield acquired
        finally:
            if acquired:
                self._unwatch(key)
                try:
                    self._release(keys=[key], args=[owner])
                except RedisError:
                    pass  # the lock expires by itself after ttl

    def _watch(self, key: str, owner: str, ttl: float) -> None:
        """One keeper thread per process renews every held lock a third of the way through its ttl."""
        with self._held_guard:
            self._held[key] = (owner, ttl, time.monotonic())
            if self._keeper is None or not self._keeper.is_alive():
                self._keeper = threading.Thread(target=self._keep_all, daemon=True)
                self._keeper.start()

    def _unwatch(self, key: str) -> None:
        with self._held_guard:
            self._held.pop(key, None)

    def _keep_all(self) -> None:
        while True:
            time.sleep(0.5)
            now = time.monotonic()
            with self._held_guard:
                if not self._held:
                    self._keeper = None
                    return
                due = [(key, owner, ttl) for key, (owner, ttl, renewed) in self._held.items()
                       if now - renewed >= ttl / 3]
                for key, owner, ttl in due:
                    self._held[key] = (owner, ttl, now)
            for key, owner, ttl in due:
                try:
                    if not self._extend(keys=[key], args=[owner, int(ttl * 1000)]):
                        self._unwatch(key)  # no longer ours
                except RedisError:
                    self._unwatch(key)


class LocalLocks:
    """Process-local locks for the embedded default (one process, no Redis)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    @contextmanager
    def hold(self, name: str, ttl: float, wait: float = 0.0) -> Iterator[bool]:
        with self._guard:
            lock = self._locks.setdefault(name, threading.Lock())
        acquired = lock.acquire(timeout=wait) if wait > 0 else lock.acquire(blocking=False)
        try:
            yield acquired
        finally:
            if acquired:
                lock.release()

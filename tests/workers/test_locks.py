"""Redis locks: owner-only release, kept alive while held, expiring when the holder dies."""

from __future__ import annotations

import time

from portal.locks import RedisLocks


def test_lock_is_exclusive_and_released_only_by_its_owner(redis_client):
    locks = RedisLocks(redis_client)
    with locks.hold("x", ttl=5) as first:
        assert first
        with locks.hold("x", ttl=5, wait=0.2) as second:
            assert not second
    with locks.hold("x", ttl=5) as again:
        assert again


def test_lock_outlives_its_ttl_while_the_holder_works(redis_client):
    locks = RedisLocks(redis_client)
    with locks.hold("slow", ttl=0.6) as owned:
        assert owned
        time.sleep(1.5)  # longer than the ttl: the keeper extends it
        with locks.hold("slow", ttl=0.6, wait=0) as intruder:
            assert not intruder
    assert redis_client.get("easyconnect:lock:slow") is None


def test_abandoned_lock_expires(redis_client):
    redis_client.set("easyconnect:lock:dead", "someone-killed", px=300)
    locks = RedisLocks(redis_client)
    with locks.hold("dead", ttl=5, wait=2) as owned:
        assert owned

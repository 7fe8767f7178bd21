"""Background jobs: RQ on Redis when configured, inline after commit otherwise.

Jobs are named by dotted string ("workers.jobs.refresh_connection") and never imported
here at module level, so the web side does not depend on the workers package. Job
arguments are primitive ids only: never a token.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError
from sqlalchemy import event
from sqlalchemy.orm import Session

from portal.runtime import Runtime

log = logging.getLogger(__name__)
DEFAULT_QUEUE = "easyconnect"
MARKER_PREFIX = "easyconnect:queued:"
JOB_PREFIX = "workers.jobs."


def _job(name: str) -> Callable[..., Any]:
    if not name.startswith(JOB_PREFIX):
        raise ValueError(f"not a job: {name}")
    module, _, func = name.rpartition(".")
    return getattr(importlib.import_module(module), func)  # type: ignore[no-any-return]


def job_id(name: str, *ids: str) -> str:
    return "-".join([name.removeprefix(JOB_PREFIX), *ids])  # RQ allows letters, digits, _ and -


def enqueue(runtime: Runtime, name: str, *ids: str, retries: int = 3) -> str | None:
    """Run a job now (inline) or put it on RQ with a deterministic id (duplicates are dropped)."""
    if runtime.redis is None:
        _job(name)(*ids, runtime=runtime)
        return None
    identifier = job_id(name, *ids)
    queue = Queue(DEFAULT_QUEUE, connection=runtime.redis)
    try:
        queue.enqueue_call(name, args=ids, job_id=identifier, unique=True, result_ttl=0, failure_ttl=3600,
                           retry=Retry(max=retries, interval=[10, 60, 300][:retries]) if retries else None)
    except DuplicateJobError:
        log.debug("job %s already queued", identifier)
    except RedisError:
        # The database stays the source of truth: the next sweep finds this work again.
        log.warning("could not enqueue %s: Redis unavailable", identifier)
        return None
    return identifier


def enqueue_batch(runtime: Runtime, name: str, ids: list[str], kind: str = "refresh", platform: str = "") -> None:
    """One job for many ids of one platform (inline without Redis). Its id derives from what it carries."""
    if runtime.redis is None:
        _job(name)(platform, *ids, runtime=runtime)
        return
    digest = hashlib.sha256("\n".join([platform, *ids]).encode()).hexdigest()[:24]
    try:
        Queue(DEFAULT_QUEUE, connection=runtime.redis).enqueue_call(
            name, args=(platform, *ids), job_id=job_id(name, digest), result_ttl=0, failure_ttl=3600, timeout=900)
    except RedisError:
        log.warning("could not enqueue %s: Redis unavailable", name)
        release_markers(runtime, kind, ids)


def claim_markers(runtime: Runtime, kind: str, ids: list[str], ttl: int = 900) -> list[str]:
    """The ids not already queued (marked in Redis for ``ttl`` seconds); all of them without Redis."""
    if runtime.redis is None:
        return list(ids)
    try:
        with runtime.redis.pipeline(transaction=False) as pipe:
            for item in ids:
                pipe.set(f"{MARKER_PREFIX}{kind}:{item}", "1", nx=True, ex=ttl)
            results = pipe.execute()
    except RedisError:
        return []  # without Redis nothing can be deduplicated: leave the work to the next sweep
    return [item for item, fresh in zip(ids, results, strict=True) if fresh]


def take_platform_slot(runtime: Runtime, platform: str, per_second: int) -> bool:
    """A fixed one-second window per platform across every worker, so one sweep cannot flood one
    platform. Without Redis there is one process and no sweep, so there is nothing to share."""
    if runtime.redis is None:
        return True
    key = f"easyconnect:rate:{platform}:{int(time.time())}"
    try:
        with runtime.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, 2)
            count, _ = pipe.execute()
    except RedisError:
        return True  # the refresh itself fails closed on the lock if Redis is really gone
    return int(count) <= per_second


def release_marker(runtime: Runtime, kind: str, item: str) -> None:
    release_markers(runtime, kind, [item])


def release_markers(runtime: Runtime, kind: str, ids: list[str]) -> None:
    if runtime.redis is None or not ids:
        return
    try:
        runtime.redis.delete(*[f"{MARKER_PREFIX}{kind}:{item}" for item in ids])
    except RedisError:
        pass  # markers expire by themselves


def enqueue_after_commit(db: Session, runtime: Runtime, name: str, *ids: str) -> None:
    """Enqueue once the current transaction commits (never for a rolled-back change)."""

    @event.listens_for(db, "after_commit", once=True)
    def _run(_session: Session) -> None:
        enqueue(runtime, name, *ids)


SEALED_PREFIX = "easyconnect:sealed:"


def enqueue_sealed(runtime: Runtime, name: str, seal_id: str, sealed: str, ttl: int = 86400) -> bool:
    """Enqueue a job whose input is a sealed (encrypted) payload: the ciphertext waits in Redis under
    ``seal_id`` for ``ttl`` seconds and the job gets only the id. False without Redis or when Redis
    fails: the caller then does the work itself, so a stashed payload whose job could not be queued
    is deleted at once (no job would ever take it; it would only wait out its ttl)."""
    if runtime.redis is None:
        return False
    try:
        runtime.redis.set(SEALED_PREFIX + seal_id, sealed, ex=ttl)
    except RedisError:
        log.warning("could not stash sealed payload for %s: Redis unavailable", name)
        return False
    if enqueue(runtime, name, seal_id) is not None:
        return True
    try:
        drop_sealed(runtime, seal_id)
    except RedisError:  # Redis just failed us: the ttl bounds how long the ciphertext stays
        log.warning("could not drop sealed payload %s of an unqueued job; it expires in %ss", seal_id, ttl)
    return False


def take_sealed(runtime: Runtime, seal_id: str) -> str | None:
    """The sealed payload of ``seal_id`` (None when already used or expired)."""
    if runtime.redis is None:
        return None
    value = runtime.redis.get(SEALED_PREFIX + seal_id)
    return value.decode() if isinstance(value, bytes) else value


def drop_sealed(runtime: Runtime, seal_id: str) -> None:
    if runtime.redis is not None:
        runtime.redis.delete(SEALED_PREFIX + seal_id)

"""Jobs: tiny, idempotent, given primitive ids. Each opens its own session, calls one service.

``runtime`` is passed when a job runs inline in the web process; RQ workers use the process
runtime. Refreshes run in batches with a thread pool inside the job (one RQ job per connection
cannot reach a million connections on two cores), while each connection keeps its own lock,
compare-and-swap and sweep marker, so nothing is refreshed twice.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from portal import queue
from portal.errors import PlatformError, PortalError, RefreshBusy
from portal.runtime import Runtime
from portal.services import connections, sweeps, tokens
from workers import runtime as worker_runtime

log = logging.getLogger(__name__)
T = TypeVar("T")
BATCH_SIZE = 100
REFRESH_THREADS = 16
MAX_PER_SWEEP = 200_000
WEBHOOK_BATCH_SIZE = 100
WEBHOOK_BATCHES = 5  # per 30-second run; what is left waits for the next run


def _runtime(runtime: Runtime | None) -> Runtime:
    return runtime if runtime is not None else worker_runtime.current()


def refresh_connection(connection_id: str, runtime: Runtime | None = None) -> str:
    """Refresh one connection if it is due."""
    return _refresh(connection_id, _runtime(runtime), force=False)


def refresh_connection_now(connection_id: str, runtime: Runtime | None = None) -> str:
    """Refresh one connection whatever its expiry ("Refresh now")."""
    return _refresh(connection_id, _runtime(runtime), force=True)


def _refresh(connection_id: str, runtime: Runtime, force: bool) -> str:
    db = runtime.session_factory()
    try:
        result = tokens.refresh_connection(db, runtime.deps, connection_id, force=force)
    except RefreshBusy:
        return "busy"  # the lock holder is doing the work
    except PlatformError as exc:
        log.info("refresh of %s failed: %s", connection_id, exc.kind)
        if exc.permanent:
            return f"failed:{exc.kind}"  # the row holds the outcome and the next try time
        raise  # temporary: RQ's Retry tries again later
    finally:
        db.close()
    return str(result)


def refresh_batch(platform: str, *connection_ids: str, runtime: Runtime | None = None) -> dict[str, int]:
    """Refresh the due connections of one platform, REFRESH_THREADS at a time, within the platform's
    rate (shared by every worker through Redis).

    The batch is read in one query; then each thread keeps one database connection for the whole batch
    and takes the next connection as soon as it is free, so the pool stays full until the last few.
    Each connection still gets its own lock, re-read, compare-and-swap and commit."""
    rt = _runtime(runtime)
    ids = list(connection_ids)
    try:
        with _pinned_session(rt) as db:
            plans, skipped = tokens.plan_refreshes(db, rt.deps, ids)
        outcomes: list[str] = [str(outcome) for outcome in skipped.values()]

        def one(db: Session, plan: tokens.RefreshPlan) -> str:
            if not _wait_for_platform_slot(rt, platform):
                return "deferred"  # the platform stayed saturated: the next sweep finds it due again
            try:
                return str(tokens.refresh_planned(db, rt.deps, plan))
            except RefreshBusy:
                return "busy"  # the lock holder is doing the work
            except PlatformError as exc:
                log.info("refresh of %s failed: %s", plan.connection_id, exc.kind)
                return f"failed:{exc.kind}"  # the row holds the outcome and the next try time
            except PortalError as exc:
                return f"failed:{exc.code}"

        outcomes += _fed_pool(rt, plans, one)
    finally:
        queue.release_markers(rt, "refresh", ids)
    return dict(Counter(outcomes))


def _wait_for_platform_slot(rt: Runtime, platform: str, max_wait: float = 3.0) -> bool:
    """A slot in the platform's per-second budget, waiting for the next second rather than giving up."""
    deadline = time.monotonic() + max_wait
    while not queue.take_platform_slot(rt, platform, rt.settings.platform_refreshes_per_second):
        if time.monotonic() >= deadline:
            return False
        time.sleep(1.0 - time.time() % 1.0 + random.uniform(0, 0.05))  # noqa: S311 - jitter
    return True


@contextmanager
def _pinned_session(rt: Runtime) -> Iterator[Session]:
    """A session that keeps one database connection however often it commits (no pool round trip and
    liveness ping per commit)."""
    connection = rt.engine.connect()
    db = rt.session_factory(bind=connection)
    try:
        yield db
    finally:
        db.close()
        connection.close()


def _fed_pool(rt: Runtime, items: list[T], work: Callable[[Session, T], str]) -> list[str]:
    """Run ``work`` over ``items`` on REFRESH_THREADS threads, each with its own pinned session, each taking
    the next item as soon as it is done. A database error costs its item and that thread's connection."""
    pending, outcomes = deque(items), []

    def drain() -> None:
        while pending:
            with _pinned_session(rt) as db:
                while True:
                    try:
                        item = pending.popleft()
                    except IndexError:
                        return
                    try:
                        outcomes.append(work(db, item))
                    except SQLAlchemyError as exc:
                        log.warning("database error during a refresh: %s", exc.__class__.__name__)
                        outcomes.append("failed:database")
                        break  # a new connection for the rest

    threads = [threading.Thread(target=drain, daemon=True) for _ in range(min(REFRESH_THREADS, len(items)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def sweep_refreshes(runtime: Runtime | None = None) -> int:
    """Find due connections and enqueue them in batches; returns how many were enqueued.

    Overlapping sweeps are harmless: a connection already queued holds a marker and is skipped."""
    return _sweep(_runtime(runtime), "refresh", sweeps.due_batch, "workers.jobs.refresh_batch")


def sweep_checks(runtime: Runtime | None = None) -> int:
    """Find connections not checked for a day and enqueue their health checks in batches."""
    return _sweep(_runtime(runtime), "check", sweeps.check_batch, "workers.jobs.check_batch")


def _sweep(rt: Runtime, kind: str, find: Any, job: str) -> int:
    enqueued, after = 0, None
    with _pinned_session(rt) as db:  # one connection for every page
        while enqueued < MAX_PER_SWEEP:
            batch = find(db, rt.deps.now(), limit=1000, after=after)
            db.rollback()
            if not batch:
                break
            after = batch[-1][:2]
            fresh = set(queue.claim_markers(rt, kind, [cid for _, cid, _ in batch]))
            by_platform: dict[str, list[str]] = {}
            for _, cid, platform in batch:
                if cid in fresh:
                    by_platform.setdefault(platform, []).append(cid)
            for platform, ids in by_platform.items():
                for start in range(0, len(ids), BATCH_SIZE):
                    chunk = ids[start:start + BATCH_SIZE]
                    queue.enqueue_batch(rt, job, chunk, kind=kind, platform=platform)
                    enqueued += len(chunk)
    return enqueued


def check_batch(platform: str, *connection_ids: str, runtime: Runtime | None = None) -> dict[str, int]:
    """Health-check ``connection_ids``, REFRESH_THREADS at a time."""
    rt = _runtime(runtime)

    def one(db: Session, connection_id: str) -> str:
        try:
            return tokens.check_connection(db, rt.deps, connection_id)
        except PortalError as exc:
            db.rollback()
            return f"failed:{exc.code}"

    try:
        return dict(Counter(_fed_pool(rt, list(connection_ids), one)))
    finally:
        queue.release_markers(rt, "check", list(connection_ids))


def recover_stuck_refreshes(runtime: Runtime | None = None) -> int:
    return _in_session(runtime, lambda db, rt: len(sweeps.recover_stuck(db, rt.deps.now())))


def _in_session(runtime: Runtime | None, work: Callable[[Session, Runtime], int]) -> int:
    """Run one unit of sweep work in its own session and commit it (the caller owns the transaction)."""
    rt = _runtime(runtime)
    db = rt.session_factory()
    try:
        result = work(db, rt)
        db.commit()
        return int(result or 0)
    finally:
        db.close()


def purge_expired_attempts(runtime: Runtime | None = None) -> int:
    return _in_session(runtime, lambda db, rt: connections.purge_expired_attempts(db, rt.deps.now()))


def poll_telegram(runtime: Runtime | None = None) -> int:
    """The one getUpdates poller per bot (see portal.services.telegram)."""
    from portal.services import telegram

    return _in_session(runtime, lambda db, rt: telegram.poll_bots(db, rt.deps, timeout=0, lock_wait=0.0))


def warn_expiring(runtime: Runtime | None = None) -> int:
    return _in_session(runtime, lambda db, rt: sweeps.warn_expiring(db, rt.deps, rt.deps.now()))


def send_outbox(runtime: Runtime | None = None) -> int:
    from portal.services import notifications

    return _in_session(runtime, lambda db, rt: notifications.send_outbox(
        db, rt.settings.smtp_url, rt.settings.mail_from, rt.deps.now(), cipher=rt.deps.cipher))


def purge_idempotency_records(runtime: Runtime | None = None) -> int:
    from portal.services import idempotency

    return _in_session(runtime, lambda db, rt: idempotency.purge(db, rt.deps.now()))


def send_digests(runtime: Runtime | None = None) -> int:
    from portal.services import notifications

    return _in_session(runtime, lambda db, rt: notifications.send_digests(db, rt.deps, rt.deps.now()))


def deliver_webhooks(runtime: Runtime | None = None) -> int:
    """The outbox sweeper: send due webhook deliveries (the database alone says what is due)."""
    from portal.services import webhooks

    rt = _runtime(runtime)
    db = rt.session_factory()
    delivered = 0
    try:
        for _ in range(WEBHOOK_BATCHES):
            now = rt.deps.now()
            due = webhooks.due_ids(db, now, WEBHOOK_BATCH_SIZE)
            delivered += webhooks.deliver_due(db, rt.deps, now, limit=WEBHOOK_BATCH_SIZE)
            if len(due) < WEBHOOK_BATCH_SIZE:
                break
        return delivered
    finally:
        db.close()


# Offboarding and housekeeping ----------------------------------------------------------------------

def revoke_offboarded(seal_id: str, runtime: Runtime | None = None) -> dict[str, int]:
    """Revoke at the platforms the tokens of a deleted workspace or agency (already gone from the
    database). The sealed bundle waits in Redis under its id (portal.queue.enqueue_sealed)."""
    from portal.services import offboarding

    rt = _runtime(runtime)
    sealed = queue.take_sealed(rt, seal_id)
    if sealed is None:
        return {}  # already done, or expired: the tokens are deleted from the database either way
    db = rt.session_factory()
    try:
        return offboarding.revoke_sealed(db, rt.deps, seal_id, sealed)
    finally:
        # Even when revoking fails: the tokens are already gone from the database, and a bundle that
        # failed once (it does not decrypt, or the database is down) must not linger in Redis.
        try:
            db.close()
        finally:
            queue.drop_sealed(rt, seal_id)


def emit_link_expired(runtime: Runtime | None = None) -> int:
    from portal.services import purge

    return _in_session(runtime, lambda db, rt: purge.emit_link_expired(db, rt.deps.now()))


def purge_history(runtime: Runtime | None = None) -> int:
    """Finished webhook deliveries and events, sent emails and read notifications past their retention."""
    from datetime import timedelta

    from portal.services import purge

    def work(db: Session, rt: Runtime) -> int:
        now, settings = rt.deps.now(), rt.settings
        return (purge.purge_webhook_history(db, now, timedelta(days=settings.event_retention_days))
                + purge.purge_sent_emails(db, now, timedelta(days=settings.event_retention_days))
                + purge.purge_read_notifications(db, now, timedelta(days=settings.notification_retention_days)))

    return _in_session(runtime, work)


def purge_offboarded(runtime: Runtime | None = None) -> int:
    """What is left of workspaces and agencies deleted longer ago than the retention period."""
    from datetime import timedelta

    from portal.services import offboarding

    return _in_session(runtime, lambda db, rt: sum(offboarding.purge_offboarded(
        db, rt.deps.now(), timedelta(days=rt.settings.offboarding_retention_days)).values()))

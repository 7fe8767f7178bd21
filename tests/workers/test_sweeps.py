"""Scheduled sweeps: find due connections in batches, enqueue each once, recover stuck refreshes."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from datetime import timedelta

from sqlalchemy import update

from portal.errors import PlatformError
from portal.models import Connection, Health
from portal.runtime import build_runtime
from portal.services import sweeps, tokens
from tests.conftest import REDIS_URL
from tests.helpers import connect, connections_in, fresh, setup_link
from tests.workers.test_refresh import _worker_env
from workers import jobs


def _connections(client, db, runtime, accounts=("sbx-1001", "sbx-1002", "sbx-1003")):
    _, workspace, _, path = setup_link(db, runtime.deps)
    for account in accounts:
        connect(client, path, account=account)
    rows = connections_in(db, workspace.id)
    return workspace, [row.id for row in rows]


def _make_due(db, ids, runtime):
    db.execute(update(Connection).where(Connection.id.in_(ids))
               .values(refresh_due_at=runtime.deps.now() - timedelta(minutes=1)))
    db.commit()


def test_connect_schedules_the_next_refresh_before_expiry(client, db, runtime):
    _, [cid, *_] = _connections(client, db, runtime, ("sbx-1001",))
    row = fresh(db).get(Connection, cid)
    assert row.token_expires_at - timedelta(minutes=60) <= row.refresh_due_at < row.token_expires_at
    assert sweeps.due_batch(db, runtime.deps.now()) == []


def test_inline_sweep_refreshes_only_what_is_due(client, db, runtime, live_sandbox):
    _, ids = _connections(client, db, runtime)
    _make_due(db, ids[:2], runtime)
    before = live_sandbox.counters().get("refreshes", 0)
    assert jobs.sweep_refreshes(runtime=runtime) == 2
    assert live_sandbox.counters()["refreshes"] == before + 2
    fresh(db)
    rows = {i: db.get(Connection, i) for i in ids}
    assert all(rows[i].refresh_due_at > runtime.deps.now() for i in ids)
    assert rows[ids[2]].last_refreshed_at is None and rows[ids[0]].last_refreshed_at is not None


def test_due_batches_are_keyset_paged(client, db, runtime):
    _, ids = _connections(client, db, runtime)
    _make_due(db, ids, runtime)
    first = sweeps.due_batch(db, runtime.deps.now(), limit=2)
    rest = sweeps.due_batch(db, runtime.deps.now(), limit=2, after=first[-1][:2])
    assert len(first) == 2 and len(rest) == 1
    assert {cid for _, cid, _ in first + rest} == set(ids)
    assert {platform for *_, platform in first + rest} == {"sandbox"}


def test_overlapping_sweeps_enqueue_each_connection_once_and_a_worker_refreshes_them(
        client, db, runtime, settings, redis_client, live_sandbox):
    _, ids = _connections(client, db, runtime)
    _make_due(db, ids, runtime)
    rt = build_runtime(replace(settings, redis_url=REDIS_URL))
    try:
        assert jobs.sweep_refreshes(runtime=rt) == 3
        assert jobs.sweep_refreshes(runtime=rt) == 0  # already queued
        before = live_sandbox.counters().get("refreshes", 0)
        result = subprocess.run([sys.executable, "-m", "workers", "--burst"], env=_worker_env(settings),
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        assert live_sandbox.counters()["refreshes"] == before + 3
        assert jobs.sweep_refreshes(runtime=rt) == 0  # nothing due any more
        assert not redis_client.keys("easyconnect:queued:*")
    finally:
        rt.close()


def test_lost_queue_is_found_again_by_the_next_sweep(client, db, runtime, settings, redis_client):
    _, ids = _connections(client, db, runtime)
    _make_due(db, ids, runtime)
    rt = build_runtime(replace(settings, redis_url=REDIS_URL))
    try:
        assert jobs.sweep_refreshes(runtime=rt) == 3
        redis_client.flushdb()  # Redis lost every job and marker
        assert jobs.sweep_refreshes(runtime=rt) == 3
    finally:
        rt.close()


def test_stuck_refreshing_is_never_left_healthy(client, db, runtime):
    _, [cid, *_] = _connections(client, db, runtime, ("sbx-1001",))
    db.execute(update(Connection).where(Connection.id == cid).values(
        health=Health.REFRESHING, refresh_started_at=runtime.deps.now() - timedelta(minutes=30)))
    db.commit()
    assert jobs.recover_stuck_refreshes(runtime=runtime) == 1
    row = fresh(db).get(Connection, cid)
    assert row.health == Health.WARNING and row.refresh_due_at <= runtime.deps.now()
    assert jobs.sweep_refreshes(runtime=runtime) == 1
    assert fresh(db).get(Connection, cid).health == Health.HEALTHY


def test_failures_back_off_and_honour_retry_after(client, db, runtime, live_sandbox):
    _, [cid, *_] = _connections(client, db, runtime, ("sbx-1001",))
    live_sandbox.fail("token", "rate_limited")
    try:
        try:
            tokens.refresh_connection(db, runtime.deps, cid, force=True)
        except PlatformError as exc:
            assert exc.kind == PlatformError.RATE_LIMITED
    finally:
        live_sandbox.reset()
    row = fresh(db).get(Connection, cid)
    assert row.refresh_failures == 1 and row.health == Health.HEALTHY
    assert row.refresh_due_at >= runtime.deps.now() + timedelta(seconds=29)
    live_sandbox.fail("token", "invalid_grant")
    try:
        try:
            tokens.refresh_connection(db, runtime.deps, cid, force=True)
        except PlatformError:
            pass
    finally:
        live_sandbox.reset()
    row = fresh(db).get(Connection, cid)
    assert row.health == Health.ERROR and row.refresh_due_at is None


def test_purge_removes_old_attempts(client, db, runtime):
    from portal.models import ConnectAttempt

    _connections(client, db, runtime, ("sbx-1001",))
    db.execute(update(ConnectAttempt).values(expires_at=runtime.deps.now() - timedelta(days=2)))
    db.commit()
    assert jobs.purge_expired_attempts(runtime=runtime) == 1


def _age_checks(db, ids, runtime, hours=25):
    db.execute(update(Connection).where(Connection.id.in_(ids))
               .values(last_checked_at=runtime.deps.now() - timedelta(hours=hours)))
    db.commit()


def test_daily_check_sweep_checks_stale_connections(client, db, runtime):
    _, ids = _connections(client, db, runtime)
    _age_checks(db, ids[:2], runtime)
    assert jobs.sweep_checks(runtime=runtime) == 2
    rows = {i: fresh(db).get(Connection, i) for i in ids}
    assert all(rows[i].last_checked_at > runtime.deps.now() - timedelta(minutes=1) for i in ids[:2])
    assert jobs.sweep_checks(runtime=runtime) == 0


def test_check_of_a_revoked_token_schedules_a_refresh_and_outage_shows_degraded(client, db, runtime, live_sandbox):
    _, [cid, *_] = _connections(client, db, runtime, ("sbx-1001",))
    live_sandbox.fail("userinfo", "revoked")
    try:
        assert tokens.check_connection(db, runtime.deps, cid) == "refresh_due"
    finally:
        live_sandbox.reset()
    assert fresh(db).get(Connection, cid).refresh_due_at <= runtime.deps.now()
    live_sandbox.fail("userinfo", "server_error")
    try:
        assert tokens.check_connection(db, runtime.deps, cid).startswith("retry:")
    finally:
        live_sandbox.reset()
    row = fresh(db).get(Connection, cid)
    assert row.health == Health.WARNING and "trouble" in row.health_reason
    assert tokens.check_connection(db, runtime.deps, cid) == "ok"
    assert fresh(db).get(Connection, cid).health == Health.HEALTHY


def test_check_of_a_page_whose_permission_is_gone_marks_it_error_once(client, db, runtime, live_sandbox):
    from portal.models import Notification
    from tests.helpers import all_platforms_link, select

    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["facebook"])
    select(client, connect(client, path, platform="facebook").headers["Location"], ["9001001"])
    [page] = connections_in(db, workspace.id)
    live_sandbox.fail("userinfo", "revoked", times=10)
    try:
        assert tokens.check_connection(db, runtime.deps, page.id) == "error:token_invalid"
        assert tokens.check_connection(db, runtime.deps, page.id) == "error:token_invalid"
    finally:
        live_sandbox.reset()
    row = fresh(db).get(Connection, page.id)
    assert row.health == Health.ERROR
    assert len(db.scalars(select_(Notification)).all()) == 1


from sqlalchemy import select as select_  # noqa: E402


def test_a_platform_over_its_rate_is_paced_not_flooded(client, db, runtime, settings, redis_client, live_sandbox):
    _, ids = _connections(client, db, runtime)
    _make_due(db, ids, runtime)
    rt = build_runtime(replace(settings, redis_url=REDIS_URL, platform_refreshes_per_second=1))
    since = rt.deps.now()
    try:
        outcome = jobs.refresh_batch("sandbox", *ids, runtime=rt)
    finally:
        rt.close()
    # 16 threads, one refresh a second allowed: they wait for the next second rather than flood or give up
    # at once; what waits too long (3 s) is left for the next sweep.
    assert set(outcome) <= {"refreshed", "deferred"} and sum(outcome.values()) == 3
    assert outcome.get("refreshed", 0) >= 2
    fresh(db)
    refreshed = [row for row in (db.get(Connection, cid) for cid in ids)
                 if row.last_refreshed_at is not None and row.last_refreshed_at >= since]
    seconds = [int(row.last_refreshed_at.timestamp()) for row in refreshed]
    assert len(seconds) == outcome["refreshed"] and len(set(seconds)) == len(seconds)  # never two in one second

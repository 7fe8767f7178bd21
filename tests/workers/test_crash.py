"""A worker SIGKILLed in the middle of a refresh: after recovery and the next sweep, no connection
is reported Healthy with a dead token, nothing is lost, and a lost outcome is surfaced once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import timedelta

import requests
from sqlalchemy import select

from portal.models import Connection, Health, Notification
from portal.queue import enqueue
from portal.runtime import build_runtime
from portal.services.connections import read_tokens
from tests.conftest import REDIS_URL
from tests.helpers import connect, connections_in, fresh, setup_link
from tests.workers.test_refresh import _worker_env
from workers import jobs


def _token_works(live_sandbox, token: str | None) -> bool:
    if not token:
        return False
    answer = requests.get(live_sandbox.url + "/sandbox/api/me", headers={"Authorization": f"Bearer {token}"},
                          timeout=5)
    return answer.status_code == 200


def _kill_mid_refresh(db, settings, runtime, live_sandbox, connection_id, mode):
    rt = build_runtime(replace(settings, redis_url=REDIS_URL))
    live_sandbox.fail("token", mode, times=1)
    try:
        enqueue(rt, "workers.jobs.refresh_connection_now", connection_id, retries=0)
        worker = subprocess.Popen([sys.executable, "-m", "workers", "--burst"], env=_worker_env(settings),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if fresh(db).get(Connection, connection_id).health == Health.REFRESHING:
                break
            time.sleep(0.05)
        else:
            worker.kill()
            raise AssertionError("the worker never started the refresh")
        time.sleep(0.5)  # now inside the platform call
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        live_sandbox.reset()
        rt.close()


def _recover_and_sweep(db, runtime):
    from sqlalchemy import update

    # Eleven minutes pass: the killed refresh is now "stuck".
    db.execute(update(Connection).where(Connection.health == Health.REFRESHING)
               .values(refresh_started_at=runtime.deps.now() - timedelta(minutes=11)))
    db.commit()
    assert jobs.recover_stuck_refreshes(runtime=runtime) == 1, "the killed refresh must be found stuck"
    jobs.sweep_refreshes(runtime=runtime)


def _assert_truthful(db, runtime, live_sandbox, connection_id):
    row = fresh(db).get(Connection, connection_id)
    assert row is not None  # nothing lost
    access, _ = read_tokens(runtime.deps, row)
    if row.health == Health.HEALTHY:
        assert _token_works(live_sandbox, access)
    else:
        assert row.health == Health.ERROR and "reconnect" in row.health_reason
        notices = db.scalars(select(Notification).where(Notification.connection_id == connection_id)).all()
        assert len(notices) == 1  # surfaced once
    return row.health


def test_worker_killed_while_the_platform_rotates_the_token(client, db, runtime, settings, redis_client,
                                                            live_sandbox):
    _, workspace, _, path = setup_link(db, runtime.deps)
    connect(client, path)
    [row] = connections_in(db, workspace.id)
    _kill_mid_refresh(db, settings, runtime, live_sandbox, row.id, "slow")
    assert fresh(db).get(Connection, row.id).health == Health.REFRESHING  # the crash is visible
    time.sleep(2.5)  # the platform finishes the orphaned request: the stored refresh token is now spent
    _recover_and_sweep(db, runtime)
    # The platform finished the rotation after the worker died: the saved refresh token is spent, so the
    # honest outcome is Error ("needs reconnecting"), told once; never Healthy with a dead token.
    assert _assert_truthful(db, runtime, live_sandbox, row.id) == Health.ERROR
    jobs.sweep_refreshes(runtime=runtime)
    _assert_truthful(db, runtime, live_sandbox, row.id)


def test_recovery_racing_the_orphaned_platform_call_stays_truthful(client, db, runtime, settings, redis_client,
                                                                   live_sandbox):
    _, workspace, _, path = setup_link(db, runtime.deps)
    connect(client, path)
    [row] = connections_in(db, workspace.id)
    _kill_mid_refresh(db, settings, runtime, live_sandbox, row.id, "slow")
    _recover_and_sweep(db, runtime)  # at once: our refresh may beat the orphaned one at the platform
    time.sleep(2.5)
    _assert_truthful(db, runtime, live_sandbox, row.id)


def test_worker_killed_while_waiting_for_the_lock_leaves_everything_as_it_was(
        client, db, runtime, settings, redis_client, live_sandbox):
    from portal.locks import RedisLocks

    _, workspace, _, path = setup_link(db, runtime.deps)
    connect(client, path)
    [row] = connections_in(db, workspace.id)
    rt = build_runtime(replace(settings, redis_url=REDIS_URL))
    try:
        with RedisLocks(redis_client).hold(f"refresh:{row.grant_id}", ttl=30) as held:
            assert held
            enqueue(rt, "workers.jobs.refresh_connection_now", row.id, retries=0)
            worker = subprocess.Popen([sys.executable, "-m", "workers", "--burst"], env=_worker_env(settings),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(2.0)  # the worker is waiting for the lock
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(10)
    finally:
        rt.close()
    assert _assert_truthful(db, runtime, live_sandbox, row.id) == Health.HEALTHY
    refreshes = live_sandbox.counters().get("refreshes", 0)
    from sqlalchemy import update

    db.execute(update(Connection).where(Connection.id == row.id).values(refresh_due_at=runtime.deps.now()))
    db.commit()
    jobs.sweep_refreshes(runtime=runtime)
    assert live_sandbox.counters()["refreshes"] == refreshes + 1
    assert _assert_truthful(db, runtime, live_sandbox, row.id) == Health.HEALTHY

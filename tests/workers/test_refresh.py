"""Refresh: one refresher per connection, rotating tokens survive races, errors classified."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
from dataclasses import replace

import pytest

from portal.errors import PlatformError
from portal.models import Connection, Health
from portal.queue import enqueue
from portal.runtime import build_runtime
from portal.services import connections as connection_service
from portal.services import tokens
from portal.services.audit import SYSTEM
from portal.services.tokens import RefreshResult
from tests.conftest import REDIS_URL
from tests.helpers import connect, connections_in, fresh, setup_link


@pytest.fixture
def redis_runtime(settings, redis_client):
    """A second process's view: same database, locks in Redis."""
    rt = build_runtime(replace(settings, redis_url=REDIS_URL))
    yield rt
    rt.close()


def _connected(client, db, runtime):
    _, workspace, _, path = setup_link(db, runtime.deps)
    connect(client, path)
    [connection] = connections_in(db, workspace.id)
    db.expunge(connection)  # a snapshot: later reads load the row afresh
    return connection


def _refresh_in_thread(rt, connection_id, results, force=True):
    session = rt.session_factory()
    try:
        results.append(tokens.refresh_connection(session, rt.deps, connection_id, force=force))
    except Exception as exc:  # noqa: BLE001 - the assertion below shows what went wrong
        results.append(exc)
    finally:
        session.close()


def test_two_refreshers_at_once_make_exactly_one_platform_refresh(client, db, runtime, redis_runtime,
                                                                  live_sandbox):
    connection = _connected(client, db, runtime)
    other = build_runtime(replace(runtime.settings, redis_url=REDIS_URL))  # a second worker process
    before = live_sandbox.counters().get("refreshes", 0)
    live_sandbox.fail("token", "slow", times=1)  # keep the first refresh in flight while the second arrives
    results: list = []
    try:
        threads = [threading.Thread(target=_refresh_in_thread, args=(rt, connection.id, results))
                   for rt in (redis_runtime, other)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        live_sandbox.reset()
        other.close()

    assert sorted(map(str, results)) == [RefreshResult.ADOPTED, RefreshResult.REFRESHED], results
    assert live_sandbox.counters()["refreshes"] == before + 1
    fresh(db)
    row = db.get(Connection, connection.id)
    assert row.health == Health.HEALTHY and row.token_version == connection.token_version + 1
    # The stored refresh token is the live one: another refresh works.
    assert tokens.refresh_connection(db, runtime.deps, row.id, force=True) == RefreshResult.REFRESHED


def test_refresh_goes_through_a_real_rq_worker_process(client, db, runtime, redis_runtime, live_sandbox):
    connection = _connected(client, db, runtime)
    before = live_sandbox.counters().get("refreshes", 0)
    assert enqueue(redis_runtime, "workers.jobs.refresh_connection_now", connection.id) is not None
    assert enqueue(redis_runtime, "workers.jobs.refresh_connection_now", connection.id) is not None  # deduplicated

    result = subprocess.run([sys.executable, "-m", "workers", "--burst"], env=_worker_env(runtime.settings),
                            capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr[-2000:]
    assert live_sandbox.counters()["refreshes"] == before + 1
    fresh(db)
    row = db.get(Connection, connection.id)
    assert row.last_refreshed_at is not None and row.health == Health.HEALTHY
    for secret in tokens_of(runtime, row):
        assert secret not in result.stdout + result.stderr


def tokens_of(runtime, row):
    from portal.services.connections import token_context

    return [runtime.deps.cipher.decrypt(row.access_token_enc, token_context(row, "access")),
            runtime.deps.cipher.decrypt(row.refresh_token_enc, token_context(row, "refresh"))]


def _worker_env(settings):
    keys = ",".join(f"{kid}:{base64.urlsafe_b64encode(key).decode().rstrip('=')}" for kid, key in settings.token_keys)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PORTAL_", "DATABASE_URL", "REDIS_URL"))}
    env.update({
        "PORTAL_MODE": "test", "PORTAL_INSTANCE_PATH": str(settings.instance_path),
        "DATABASE_URL": settings.database_url, "REDIS_URL": REDIS_URL, "PORTAL_BASE_URL": settings.base_url,
        "PORTAL_SECRET_KEYS": ",".join(settings.secret_keys), "PORTAL_LINK_KEYS": ",".join(settings.link_keys),
        "PORTAL_TOKEN_KEYS": keys, "PORTAL_SANDBOX_URL": settings.sandbox_url,
        "PORTAL_SANDBOX_CLIENT_SECRET": settings.sandbox_client_secret,
        "PORTAL_SANDBOX_DATABASE_URL": settings.sandbox_database_url,
    })
    return env


def test_invalid_grant_marks_the_connection_error_once(client, db, runtime, live_sandbox):
    connection = _connected(client, db, runtime)
    live_sandbox.fail("token", "invalid_grant")
    try:
        with pytest.raises(PlatformError) as error:
            tokens.refresh_connection(db, runtime.deps, connection.id, force=True)
    finally:
        live_sandbox.reset()
    assert error.value.kind == PlatformError.TOKEN_INVALID and error.value.permanent
    fresh(db)
    row = db.get(Connection, connection.id)
    assert row.health == Health.ERROR and "reconnect" in row.health_reason
    assert row.refresh_started_at is None
    assert tokens.health_view(row, runtime.deps.now()).token_status == "Expired"


@pytest.mark.parametrize("mode, kind", [("server_error", PlatformError.TEMPORARY),
                                        ("rate_limited", PlatformError.RATE_LIMITED),
                                        ("invalid_client", PlatformError.APP_MISCONFIGURED)])
def test_temporary_and_app_errors_never_break_the_connection(client, db, runtime, live_sandbox, mode, kind):
    connection = _connected(client, db, runtime)
    live_sandbox.fail("token", mode)
    try:
        with pytest.raises(PlatformError) as error:
            tokens.refresh_connection(db, runtime.deps, connection.id, force=True)
    finally:
        live_sandbox.reset()
    assert error.value.kind == kind
    if mode == "rate_limited":
        assert error.value.retry_after == 30
    fresh(db)
    row = db.get(Connection, connection.id)
    assert row.health == Health.HEALTHY and row.token_version == connection.token_version
    assert row.refresh_started_at is None and row.health_reason
    # The refresh token was not spent: the next attempt succeeds.
    assert tokens.refresh_connection(db, runtime.deps, row.id, force=True) == RefreshResult.REFRESHED


def test_disconnect_during_a_refresh_stays_disconnected(client, db, runtime, live_sandbox):
    connection = _connected(client, db, runtime)
    results: list = []
    live_sandbox.fail("token", "slow", times=1)
    try:
        thread = threading.Thread(target=_refresh_in_thread, args=(runtime, connection.id, results))
        thread.start()
        import time

        time.sleep(0.5)  # the refresh is now waiting on the platform
        session = runtime.session_factory()
        result = connection_service.disconnect(session, runtime.deps, connection.agency_id, connection.id, SYSTEM)
        session.commit()
        session.close()
        result.revoke()
        thread.join(30)
    finally:
        live_sandbox.reset()
    assert results == [RefreshResult.GONE]
    fresh(db)
    assert db.get(Connection, connection.id) is None


def test_not_due_connections_are_left_alone_unless_forced(client, db, runtime, live_sandbox):
    connection = _connected(client, db, runtime)
    before = live_sandbox.counters().get("refreshes", 0)
    assert tokens.refresh_connection(db, runtime.deps, connection.id) == RefreshResult.NOT_DUE
    assert live_sandbox.counters().get("refreshes", 0) == before


def test_refresh_without_redis_lock_service_fails_closed(client, db, runtime, settings):
    connection = _connected(client, db, runtime)
    broken = build_runtime(replace(settings, redis_url="redis://127.0.0.1:1/0"))
    from portal.errors import ServiceUnavailable

    try:
        session = broken.session_factory()
        with pytest.raises(ServiceUnavailable):
            tokens.refresh_connection(session, broken.deps, connection.id, force=True)
        session.close()
    finally:
        broken.close()
    fresh(db)
    assert db.get(Connection, connection.id).token_version == connection.token_version

"""Fresh access tokens: usable at the platform, refreshed near expiry under the refresh lock,
audited on every read, never a refresh token, 424 with a reconnect link when only the client can
help, 503 with Retry-After on temporary platform trouble."""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import urlsplit

import requests
from sqlalchemy import select, update

from portal.models import ApiKey, AuditEvent, Connection, ConnectLink, Health
from portal.services import connections as connection_service
from tests.api.support import auth, connected
from tests.helpers import fresh


def _post(client, tenant, cid, key=None):
    return client.post(f"/api/v1/connections/{cid}/access-token", headers=auth(key or tenant.key))


def _near_expiry(db, runtime, cid, minutes=2):
    fresh(db).execute(update(Connection).where(Connection.id == cid).values(
        token_expires_at=runtime.deps.now() + timedelta(minutes=minutes)))
    db.commit()


def _stored_tokens(db, runtime, cid):
    return connection_service.read_tokens(runtime.deps, fresh(db).get(Connection, cid, populate_existing=True))


def _token_reads(db, cid):
    return fresh(db).scalars(select(AuditEvent).where(AuditEvent.object_id == cid,
                                                      AuditEvent.action == "connection.token_read")).all()


def test_a_fresh_token_works_at_the_platform(client, db, runtime, live_sandbox):
    tenant, row = connected(client, db, runtime)
    cid = row.id
    access, refresh = _stored_tokens(db, runtime, cid)
    before = live_sandbox.counters().get("refreshes", 0)
    response = _post(client, tenant, cid)
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert set(body) == {"access_token", "expires_at", "token_type"} and body["token_type"] == "Bearer"
    assert body["access_token"] == access and refresh not in response.get_data(as_text=True)
    me = requests.get(live_sandbox.url + "/sandbox/api/me", headers={"Authorization": f"Bearer {access}"},
                      timeout=10)
    assert me.status_code == 200 and me.json()["sub"] == "sbx-1001"
    assert live_sandbox.counters().get("refreshes", 0) == before  # fresh enough: no refresh
    _post(client, tenant, cid)
    reads = _token_reads(db, cid)
    assert len(reads) == 2 and {r.actor_type for r in reads} == {"api"}
    for event in reads:
        assert access not in str(event.details) and refresh not in str(event.details)


def test_a_token_near_expiry_is_refreshed_first(client, db, runtime, live_sandbox):
    tenant, row = connected(client, db, runtime)
    cid = row.id
    old_access, old_refresh = _stored_tokens(db, runtime, cid)
    _near_expiry(db, runtime, cid)
    before = live_sandbox.counters().get("refreshes", 0)
    response = _post(client, tenant, cid)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    new_access, new_refresh = _stored_tokens(db, runtime, cid)
    assert body["access_token"] == new_access != old_access
    assert live_sandbox.counters().get("refreshes", 0) == before + 1
    text = response.get_data(as_text=True)
    assert old_refresh not in text and new_refresh not in text
    assert body["expires_at"] > (runtime.deps.now() + timedelta(minutes=30)).isoformat()[:19]
    me = requests.get(live_sandbox.url + "/sandbox/api/me", headers={"Authorization": f"Bearer {new_access}"},
                      timeout=10)
    assert me.status_code == 200
    actions = [e.action for e in fresh(db).scalars(select(AuditEvent).where(AuditEvent.object_id == cid,
                                                                           AuditEvent.actor_type == "api"))]
    assert "connection.refreshed" in actions and "connection.token_read" in actions


def test_invalid_grant_gives_424_with_a_reconnect_link(client, db, runtime, live_sandbox):
    tenant, row = connected(client, db, runtime)
    cid = row.id
    _near_expiry(db, runtime, cid)
    live_sandbox.fail("token", "invalid_grant")
    try:
        response = _post(client, tenant, cid)
    finally:
        live_sandbox.reset()
    assert response.status_code == 424 and response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["code"] == "reconnect_required" and problem["status"] == 424
    assert problem["reconnect_url"].startswith("http://portal.test/c/")
    assert "access_token" not in problem
    assert client.get(urlsplit(problem["reconnect_url"]).path).status_code == 200
    connection = fresh(db).get(Connection, cid)
    assert connection.health == Health.ERROR
    link = db.scalar(select(ConnectLink).where(ConnectLink.reconnect_connection_id == cid))
    assert link.max_uses == 1 and link.agency_id == tenant.agency_id
    before = live_sandbox.counters().get("refreshes", 0)
    again = _post(client, tenant, cid)  # Error already: no platform call, the same open link
    assert again.status_code == 424 and again.get_json()["reconnect_url"] == problem["reconnect_url"]
    assert live_sandbox.counters().get("refreshes", 0) == before
    assert _token_reads(db, cid) == []
    detail = client.get(f"/api/v1/connections/{cid}", headers=auth(tenant.key)).get_json()
    assert detail["health"] == "error" and detail["token_status"] == "expired"


def test_temporary_platform_trouble_is_503_with_retry_after(client, db, runtime, live_sandbox):
    tenant, row = connected(client, db, runtime)
    cid = row.id
    _near_expiry(db, runtime, cid)
    live_sandbox.fail("token", "server_error")
    try:
        response = _post(client, tenant, cid)
    finally:
        live_sandbox.reset()
    assert response.status_code == 503 and response.get_json()["code"] == "platform_unavailable"
    assert int(response.headers["Retry-After"]) >= 1
    assert fresh(db).get(Connection, cid).health != Health.ERROR
    assert _token_reads(db, cid) == []
    retried = _post(client, tenant, cid)  # the platform is back: refreshed and served
    assert retried.status_code == 200 and len(_token_reads(db, cid)) == 1


def test_a_read_key_gets_no_token(client, db, runtime):
    tenant, row = connected(client, db, runtime)
    response = _post(client, tenant, row.id, key=tenant.read_key)
    assert response.status_code == 403 and "access_token" not in response.get_json()
    assert _token_reads(db, row.id) == []


def test_the_access_token_endpoint_refuses_a_body_with_fields(client, db, runtime):
    tenant, row = connected(client, db, runtime)
    response = client.post(f"/api/v1/connections/{row.id}/access-token", json={"refresh": True},
                           headers=auth(tenant.key))
    assert response.status_code == 400
    assert client.get(f"/api/v1/connections/{row.id}/access-token", headers=auth(tenant.key)).status_code == 405


def test_a_bad_body_without_a_key_is_401_and_with_a_read_key_403(client, db, runtime):
    tenant, row = connected(client, db, runtime)
    url = f"/api/v1/connections/{row.id}/access-token"
    assert client.post(url, data="{", content_type="application/json").status_code == 401
    assert client.post(url, json={"x": 1}, headers=auth(tenant.read_key)).status_code == 403
    assert client.post(url, data="not json", headers=auth(tenant.key)).status_code == 415
    assert client.post(url, json={}, headers=auth(tenant.key)).status_code == 200  # an empty object is no body
    assert len(_token_reads(db, row.id)) == 1


def test_a_revoked_key_reads_no_token_at_once(client, db, runtime):
    tenant, row = connected(client, db, runtime)
    assert _post(client, tenant, row.id).status_code == 200
    # the key is revoked in the database, as the admin panel does, between two requests
    fresh(db).execute(update(ApiKey).where(ApiKey.agency_id == tenant.agency_id)
                      .values(revoked_at=runtime.deps.now()))
    db.commit()
    response = _post(client, tenant, row.id)
    assert response.status_code == 401 and "access_token" not in response.get_data(as_text=True)
    assert len(_token_reads(db, row.id)) == 1


# Every state a connection can be in, against the hot path's one-statement read (PostgreSQL) and its
# two-statement read (SQLite): a token is handed out as it is only where the full path would too, with
# exactly one audit row per token handed out and none otherwise.
NEVER = None
STATES = {  # name: (health, access token minutes left, refresh token?, refresh token minutes left, access token?)
    "healthy": (Health.HEALTHY, 120, True, 60 * 24 * 30, True),
    "healthy, no expiry": (Health.HEALTHY, NEVER, True, NEVER, True),
    "warning": (Health.WARNING, 120, True, 60 * 24 * 30, True),
    "expiring in 2 minutes": (Health.HEALTHY, 2, True, 60 * 24 * 30, True),
    "expiring in exactly 5 minutes": (Health.HEALTHY, 5, True, 60 * 24 * 30, True),
    "expired, refreshable": (Health.HEALTHY, -10, True, 60 * 24 * 30, True),
    "error health": (Health.ERROR, 120, True, 60 * 24 * 30, True),
    "refresh token lapsed": (Health.HEALTHY, 120, True, -1, True),
    "no refresh token, access lapsed": (Health.HEALTHY, -1, False, NEVER, True),
    "no refresh token, valid": (Health.HEALTHY, 120, False, NEVER, True),
    "no access token": (Health.HEALTHY, 120, True, 60 * 24 * 30, False),
}


def test_the_hot_path_hands_out_a_token_as_it_is_only_where_the_full_path_would(client, db, runtime,
                                                                                  live_sandbox):
    from portal.services import token_access

    tenant, row = connected(client, db, runtime)
    cid = row.id
    for name, (health, access_left, has_refresh, refresh_left, has_access) in STATES.items():
        now = runtime.deps.now()
        stored = fresh(db).get(Connection, cid, populate_existing=True)
        values = {"health": health, "health_reason": "",
                  "token_expires_at": None if access_left is None else now + timedelta(minutes=access_left),
                  "refresh_expires_at": None if refresh_left is None else now + timedelta(minutes=refresh_left)}
        if not has_refresh:
            values["refresh_token_enc"] = None
        if not has_access:
            values["access_token_enc"] = None
        fresh(db).execute(update(Connection).where(Connection.id == cid).values(**values))
        db.commit()
        stored = fresh(db).get(Connection, cid, populate_existing=True)
        as_it_is = not token_access._needs_full_path(stored, now)
        access_before, _ = _stored_tokens(db, runtime, cid)
        reads_before = len(_token_reads(db, cid))
        refreshes_before = live_sandbox.counters().get("refreshes", 0)
        response = _post(client, tenant, cid)
        new_reads = _token_reads(db, cid)[reads_before:]
        refreshed = live_sandbox.counters().get("refreshes", 0) - refreshes_before
        if as_it_is:
            assert response.status_code == 200, name
            assert response.get_json()["access_token"] == access_before, name
            assert refreshed == 0, name
            assert len(new_reads) == 1 and new_reads[0].details["refreshed"] is False, name
            recorded = new_reads[0].details["expires_at"]
            expected = stored.token_expires_at
            assert (recorded is None) if expected is None else \
                datetime.fromisoformat(recorded) == expected, (name, recorded, expected)
        else:
            assert response.status_code != 200 or refreshed == 1 or not has_access, (name, response.status_code)
            assert len(new_reads) == (1 if response.status_code == 200 else 0), name
        # back to a working connection for the next state
        connected_again = fresh(db).get(Connection, cid, populate_existing=True)
        if connected_again.refresh_token_enc is None or connected_again.access_token_enc is None:
            tenant, row = connected(client, db, runtime)
            cid = row.id


def test_a_pooled_connection_that_died_is_replaced_without_failing_the_read(client, db, runtime):
    """The hot path's engine does not ping on checkout (a round trip a request); a connection found dead (the
    database restarted, an idle timeout) is replaced and the read runs once more."""
    from sqlalchemy import text

    from portal.db import run_direct

    tenant, row = connected(client, db, runtime)
    assert _post(client, tenant, row.id).status_code == 200
    engine = runtime.direct_engine
    if engine.dialect.name == "postgresql":
        pid = run_direct(engine, lambda c: c.execute(text("SELECT pg_backend_pid()")).scalar())
        killed = fresh(db).execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
        db.commit()
        assert killed
    else:
        run_direct(engine, lambda c: c.connection.driver_connection.close())
    response = _post(client, tenant, row.id)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert len(_token_reads(db, row.id)) == 2

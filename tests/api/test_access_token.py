"""Fresh access tokens: usable at the platform, refreshed near expiry under the refresh lock,
audited on every read, never a refresh token, 424 with a reconnect link when only the client can
help, 503 with Retry-After on temporary platform trouble."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

import requests
from sqlalchemy import select, update

from portal.models import AuditEvent, Connection, ConnectLink, Health
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

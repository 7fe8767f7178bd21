"""Connections through the API: list with filters, detail (never a token), activate, disconnect."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from portal.models import Connection, Health
from portal.services import connections as connection_service
from tests.api.support import auth, connected
from tests.helpers import fresh


def _tokens(runtime, row):
    return [t for t in connection_service.read_tokens(runtime.deps, row) if t]


def test_detail_shows_health_and_expiries_but_never_a_token(client, db, runtime):
    tenant, row = connected(client, db, runtime)
    response = client.get(f"/api/v1/connections/{row.id}", headers=auth(tenant.read_key))
    assert response.status_code == 200
    body = response.get_json()
    assert body["object"] == "connection" and body["platform"] == "sandbox" and body["active"] is True
    assert body["health"] == "healthy" and body["token_status"] == "valid"
    assert body["account"]["external_id"] == "sbx-1001" and body["scopes"]
    assert body["token_expires_at"] and "reconnect_by" in body and body["workspace_id"] == tenant.workspace.id
    text = response.get_data(as_text=True)
    listed = client.get("/api/v1/connections", headers=auth(tenant.read_key)).get_data(as_text=True)
    for secret in _tokens(runtime, row):
        assert secret not in text and secret not in listed
    assert "token_enc" not in text and "refresh_token" not in text


def test_list_filters(client, db, runtime):
    tenant, first = connected(client, db, runtime, account="sbx-1001")
    _, second = connected(client, db, runtime, tenant, account="sbx-1002")
    headers = auth(tenant.read_key)

    def ids(query=""):
        response = client.get(f"/api/v1/connections?{query}", headers=headers)
        assert response.status_code == 200, response.get_data(as_text=True)
        return [c["id"] for c in response.get_json()["data"]]

    assert ids() == [first.id, second.id]
    assert ids(f"workspace={tenant.workspace.id}&platform=sandbox") == [first.id, second.id]
    assert ids("platform=x") == [] and ids(f"workspace={'0' * 32}") == []
    now = runtime.deps.now()
    fresh(db).execute(update(Connection).where(Connection.id == second.id).values(
        active=False, health=Health.ERROR, health_reason="revoked"))
    db.execute(update(Connection).where(Connection.id == first.id).values(refresh_expires_at=now + timedelta(days=3)))
    db.commit()
    assert ids("active=false") == [second.id] and ids("active=true") == [first.id]
    assert ids("health=error") == [second.id] and ids("health=warning") == [first.id] and ids("health=healthy") == []
    assert ids("status=expired") == [second.id] and ids("status=expiring") == [first.id]
    assert ids("status=valid") == [first.id]
    assert ids("limit=1") == [first.id]


def test_activate_and_deactivate(client, db, runtime):
    tenant, row = connected(client, db, runtime)
    path = f"/api/v1/connections/{row.id}"
    response = client.patch(path, json={"active": False}, headers=auth(tenant.key))
    assert response.status_code == 200 and response.get_json()["active"] is False
    assert fresh(db).get(Connection, row.id).active is False
    assert client.patch(path, json={"active": "no"}, headers=auth(tenant.key)).status_code == 400
    assert client.patch(path, json={"active": True, "health": "healthy"}, headers=auth(tenant.key)).status_code == 400
    assert client.patch(path, json={"active": True}, headers=auth(tenant.read_key)).status_code == 403
    assert client.patch(path, json={"active": True}, headers=auth(tenant.key)).get_json()["active"] is True


def test_disconnect_with_and_without_revoking_at_the_platform(client, db, runtime, live_sandbox):
    tenant, first = connected(client, db, runtime, account="sbx-1001")
    _, second = connected(client, db, runtime, tenant, account="sbx-1002")
    before = live_sandbox.counters().get("revocations", 0)
    response = client.delete(f"/api/v1/connections/{first.id}?revoke=false", headers=auth(tenant.key))
    assert response.status_code == 200 and response.get_json() == {"id": first.id, "object": "connection",
                                                                   "deleted": True, "revoked": False}
    assert live_sandbox.counters().get("revocations", 0) == before
    assert client.delete(f"/api/v1/connections/{second.id}", headers=auth(tenant.key)).get_json()["revoked"] is True
    assert live_sandbox.counters().get("revocations", 0) == before + 1
    ids = [first.id, second.id]
    left = fresh(db).scalars(select(Connection.id).where(Connection.id.in_(ids))).all()
    assert left == []
    assert client.get(f"/api/v1/connections/{ids[0]}", headers=auth(tenant.key)).status_code == 404
    assert client.delete(f"/api/v1/connections/{ids[0]}?revoke=maybe",
                         headers=auth(tenant.key)).status_code == 400


def test_other_agencies_connections_are_404(client, db, runtime, other):
    _, row = connected(client, db, runtime)
    headers = auth(other.key)
    base = f"/api/v1/connections/{row.id}"
    assert client.get(base, headers=headers).status_code == 404
    assert client.patch(base, json={"active": False}, headers=headers).status_code == 404
    assert client.delete(base, headers=headers).status_code == 404
    assert client.post(base + "/access-token", headers=headers).status_code == 404
    assert client.get("/api/v1/connections", headers=headers).get_json()["data"] == []
    assert fresh(db).get(Connection, row.id).active is True

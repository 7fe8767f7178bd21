"""API keys: shown once, hashed at rest, header only, scoped, revocable at once, rate-limited."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

from sqlalchemy import select

from portal.models import ApiKey, AuditEvent
from portal.services import api_keys
from portal.services.audit import SYSTEM
from tests.api.support import auth, make_tenant
from tests.helpers import csrf_from, fresh, login


def test_a_key_is_shown_once_and_stored_only_as_its_hash(db, runtime, tenant):
    key, secret = api_keys.create_key(db, tenant.agency_id, "ci", "read", SYSTEM, runtime.deps.now())
    db.commit()
    assert re.fullmatch(r"eck_[0-9a-f]{8}_[A-Za-z0-9_-]{43}", secret)
    row = fresh(db).get(ApiKey, key.id)
    assert row.key_hash == hashlib.sha256(secret.encode()).hexdigest() and row.prefix == secret[4:12]
    assert secret not in repr(row) and all(secret not in str(value) for value in row.__dict__.values())
    assert api_keys.authenticate(db, f"Bearer {secret}", runtime.deps.now()).id == key.id
    assert api_keys.authenticate(db, f"bearer  {secret}", runtime.deps.now()).id == key.id
    for header in (None, "", secret, f"Basic {secret}", f"Bearer {secret}x", f"Bearer {secret[:-1]}",
                   "Bearer " + "eck_" + "a" * 300):
        assert api_keys.authenticate(db, header, runtime.deps.now()) is None, header


def test_last_used_is_written_at_most_once_a_minute(db, runtime, tenant):
    now = runtime.deps.now()
    key = api_keys.authenticate(db, f"Bearer {tenant.key}", now)
    db.commit()
    assert fresh(db).get(ApiKey, key.id).last_used_at == now
    api_keys.authenticate(db, f"Bearer {tenant.key}", now + timedelta(seconds=30))
    db.commit()
    assert fresh(db).get(ApiKey, key.id).last_used_at == now
    later = now + timedelta(seconds=61)
    api_keys.authenticate(db, f"Bearer {tenant.key}", later)
    db.commit()
    assert fresh(db).get(ApiKey, key.id).last_used_at == later


def test_requests_without_a_valid_key_get_401_problems(client, tenant):
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {tenant.key}"},
                    {"Authorization": f"Bearer {tenant.key}tampered"}):
        response = client.get("/api/v1/connections", headers=headers)
        assert response.status_code == 401 and response.mimetype == "application/problem+json"
        problem = response.get_json()
        assert problem["code"] == "unauthorized" and problem["status"] == 401 and problem["title"]
        assert "Bearer" in response.headers["WWW-Authenticate"]
    assert client.get("/api/v1/connections", headers=auth(tenant.key)).status_code == 200


def test_a_key_in_the_query_string_or_body_is_ignored(client, tenant):
    for name in ("api_key", "key", "access_token", "token"):
        assert client.get(f"/api/v1/workspaces?{name}={tenant.key}").status_code == 401
    response = client.post("/api/v1/workspaces", json={"name": "x", "api_key": tenant.key})
    assert response.status_code == 401


def test_a_revoked_key_is_refused_at_once(client, db, runtime, tenant):
    assert client.get("/api/v1/workspaces", headers=auth(tenant.key)).status_code == 200
    [row] = [k for k in api_keys.list_keys(db, tenant.agency_id) if k.scope == "read_write"]
    api_keys.revoke_key(db, tenant.agency_id, row.id, SYSTEM, runtime.deps.now())
    db.commit()
    assert client.get("/api/v1/workspaces", headers=auth(tenant.key)).status_code == 401
    assert client.get("/api/v1/workspaces", headers=auth(tenant.read_key)).status_code == 200


def test_a_read_key_cannot_change_anything(client, tenant):
    headers = auth(tenant.read_key)
    assert client.get("/api/v1/workspaces", headers=headers).status_code == 200
    attempts = [("post", "/api/v1/workspaces", {"name": "New"}),
                ("patch", f"/api/v1/workspaces/{tenant.workspace.id}", {"name": "Renamed"}),
                ("post", f"/api/v1/workspaces/{tenant.workspace.id}/archive", None),
                ("post", "/api/v1/links", {"workspace_id": tenant.workspace.id, "platforms": ["sandbox"]})]
    for method, path, body in attempts:
        response = getattr(client, method)(path, headers=headers, json=body)
        assert response.status_code == 403, path
        assert response.get_json()["code"] == "insufficient_scope"


def test_another_agencys_key_is_not_this_agencys(client, db, runtime, tenant):
    other = make_tenant(db, runtime, "Other")
    response = client.get(f"/api/v1/workspaces/{tenant.workspace.id}", headers=auth(other.key))
    assert response.status_code == 404 and response.get_json()["code"] == "not_found"


def test_admin_creates_lists_and_revokes_keys(client, db, runtime, tenant):
    login(client, tenant.member.email)
    page = client.get("/admin/api-keys").get_data(as_text=True)
    assert 'href="/admin/api-keys"' in page and "dashboard" in page  # nav link; the fixture's read key
    token = csrf_from(client, "/admin/api-keys")
    response = client.post("/admin/api-keys", data={"name": "Publisher", "scope": "read_write", "csrf_token": token})
    assert response.status_code == 201
    secret = re.search(r'value="(eck_[^"]+)"', response.get_data(as_text=True)).group(1)
    assert "shown only once" in response.get_data(as_text=True)
    assert secret not in (response.headers.get("Set-Cookie") or "")
    again = client.get("/admin/api-keys").get_data(as_text=True)
    assert secret not in again and f"eck_{secret[4:12]}_" in again  # only the prefix from now on
    assert client.get("/api/v1/workspaces", headers=auth(secret)).status_code == 200
    row = fresh(db).scalar(select(ApiKey).where(ApiKey.name == "Publisher"))
    assert row.last_used_at is not None
    client.post(f"/admin/api-keys/{row.id}/revoke", data={"csrf_token": token})
    assert client.get("/api/v1/workspaces", headers=auth(secret)).status_code == 401
    assert f"key-{row.id}" not in client.get("/admin/api-keys").get_data(as_text=True)
    actions = {e.action for e in fresh(db).scalars(select(AuditEvent).where(AuditEvent.agency_id == tenant.agency_id))}
    assert {"api_key.created", "api_key.revoked"} <= actions


def test_admin_refuses_a_bad_scope_and_needs_csrf(client, db, tenant):
    login(client, tenant.member.email)
    token = csrf_from(client, "/admin/api-keys")
    response = client.post("/admin/api-keys", data={"name": "x", "scope": "admin", "csrf_token": token},
                           follow_redirects=True)
    assert "Scope must be" in response.get_data(as_text=True)
    assert client.post("/admin/api-keys", data={"name": "x", "scope": "read"}).status_code == 400


def test_another_agency_cannot_revoke_a_key(client, db, runtime, tenant):
    other = make_tenant(db, runtime, "Other")
    [row] = [k for k in api_keys.list_keys(db, tenant.agency_id) if k.scope == "read"]
    login(client, other.member.email)
    token = csrf_from(client, "/admin/api-keys")
    assert client.post(f"/admin/api-keys/{row.id}/revoke", data={"csrf_token": token}).status_code == 404
    assert client.get("/api/v1/workspaces", headers=auth(tenant.read_key)).status_code == 200


def test_requests_are_rate_limited_per_key(settings, db, tenant):
    from dataclasses import replace

    from portal.app import create_app

    app = create_app(replace(settings, api_rate_limit="3 per minute"))
    try:
        client = app.test_client()
        statuses = [client.get("/api/v1/workspaces", headers=auth(tenant.key)).status_code for _ in range(5)]
        assert statuses == [200, 200, 200, 429, 429]
        response = client.get("/api/v1/workspaces", headers=auth(tenant.key))
        assert response.mimetype == "application/problem+json" and response.get_json()["code"] == "rate_limited"
        assert 0 < int(response.headers["Retry-After"]) <= 60
        # another key has its own budget
        assert client.get("/api/v1/workspaces", headers=auth(tenant.read_key)).status_code == 200
    finally:
        app.extensions["easyconnect"].close()


def test_with_redis_unreachable_the_api_answers_and_still_limits(settings, db, tenant):
    """The per-key limit lives in Redis; an outage of Redis falls back to counting in the process, so the API
    neither goes down nor loses its limits (portal.ratelimit)."""
    from dataclasses import replace

    from portal.app import create_app

    app = create_app(replace(settings, api_rate_limit="3 per minute", redis_url="redis://127.0.0.1:1/0"))  # closed
    try:
        client = app.test_client()
        statuses = [client.get("/api/v1/workspaces", headers=auth(tenant.key)).status_code for _ in range(5)]
        assert statuses == [200, 200, 200, 429, 429]
        assert 0 < int(client.get("/api/v1/workspaces", headers=auth(tenant.key)).headers["Retry-After"]) <= 60
    finally:
        app.extensions["easyconnect"].close()

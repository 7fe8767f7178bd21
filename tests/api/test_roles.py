"""Roles in the REST API. Keys belong to the agency; what a key may do is its scope: read (what a viewer
may do: list and read, never a token) or read_write. Viewers create no key, and a member demoted to
viewer keeps no read_write key. Every endpoint is found in the URL map, not listed by hand."""

from __future__ import annotations

from sqlalchemy import select

from portal.models import ApiKey, Connection, ConnectLink, Member, Workspace
from portal.security import passwords
from portal.services import api_keys, team
from portal.services.audit import Actor
from tests.api.support import auth, connected
from tests.helpers import fresh

PUBLIC = {"api.openapi", "api.docs"}


def _api_routes(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("api.") and rule.endpoint not in PUBLIC:
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                yield rule, method


def _url(rule, ids):
    return rule.build({name: ids[name] for name in rule.arguments}, append_unknown=False)[1]


def test_a_read_key_reads_everything_and_changes_nothing(client, db, runtime):
    tenant, connection = connected(client, db, runtime)
    link = fresh(db).scalar(select(ConnectLink).where(ConnectLink.agency_id == tenant.agency_id))
    ids = {"workspace_id": tenant.workspace.id, "link_id": link.id, "connection_id": connection.id}
    before = (connection.token_version, connection.access_token_enc, connection.active)
    seen = 0
    for rule, method in _api_routes(client.application):
        response = client.open(_url(rule, ids), method=method, headers=auth(tenant.read_key), json={})
        if method == "GET":
            assert response.status_code == 200, (method, rule.rule, response.status_code)
        else:
            assert response.status_code == 403, (method, rule.rule, response.status_code)
            assert response.get_json()["code"] == "insufficient_scope"
            assert "access_token" not in response.get_data(as_text=True)
        seen += 1
    assert seen >= 15
    fresh(db)
    row = db.get(Connection, connection.id)
    assert (row.token_version, row.access_token_enc, row.active) == before
    assert db.get(ConnectLink, link.id).revoked_at is None
    workspace = db.get(Workspace, tenant.workspace.id)
    assert workspace.archived_at is None and workspace.deleted_at is None and workspace.name == "Client Co"


def test_a_read_write_key_is_refused_nothing_by_role(client, db, runtime):
    tenant, connection = connected(client, db, runtime)
    bogus = "0" * 32
    ids = {"workspace_id": bogus, "link_id": bogus, "connection_id": bogus}
    for rule, method in _api_routes(client.application):
        response = client.open(_url(rule, ids), method=method, headers=auth(tenant.key), json={})
        assert response.status_code not in (401, 403), (method, rule.rule, response.status_code)


def test_a_member_demoted_to_viewer_keeps_only_read_keys(client, db, runtime):
    tenant, connection = connected(client, db, runtime)
    member = tenant.member
    _, secret = api_keys.create_key(db, tenant.agency_id, "mine", "read_write", Actor("member", member.id),
                                    runtime.deps.now(), creator_role="owner")
    db.commit()
    path = f"/api/v1/connections/{connection.id}/access-token"
    assert client.post(path, headers=auth(secret)).status_code == 200
    # a second owner first: the last owner could not step down
    db.add(Member(agency_id=tenant.agency_id, email="second@owner.example", role="owner",
                  password_hash=passwords.hash_password("a long passphrase")))
    db.commit()
    team.change_role(db, tenant.agency_id, member.id, "viewer", Actor("member", "someone"))
    db.commit()
    response = client.post(path, headers=auth(secret))
    assert response.status_code == 403 and response.get_json()["code"] == "insufficient_scope"
    assert client.get(f"/api/v1/connections/{connection.id}", headers=auth(secret)).status_code == 200
    assert client.post(path, headers=auth(tenant.key)).status_code == 200  # the agency's other keys are untouched
    scopes = dict(fresh(db).execute(select(ApiKey.name, ApiKey.scope)).all())
    assert scopes["mine"] == "read" and scopes["server"] == "read_write"

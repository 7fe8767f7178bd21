"""Strict tenant scoping: a member of agency B reaches none of agency A's objects."""

from __future__ import annotations

from sqlalchemy import select

from portal.models import AuditEvent, Connection, ConnectLink, Workspace
from tests.helpers import connect, connections_in, csrf_from, fresh, login, make_member, setup_link


def _object_routes(app):
    """Every admin route that takes an object id, with its methods (found, not listed by hand)."""
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("agency_admin.") and rule.arguments & {"workspace_id", "link_id",
                                                                            "connection_id"}:
            yield rule, sorted(rule.methods - {"HEAD", "OPTIONS"})


def test_member_of_another_agency_gets_404_on_every_admin_route(app, client, db, runtime):
    owner_a, workspace_a, link_a, path_a = setup_link(db, runtime.deps)
    connect(client, path_a)
    [connection_a] = connections_in(db, workspace_a.id)
    ids = {"workspace_id": workspace_a.id, "link_id": link_a.id, "connection_id": connection_a.id}
    snapshot = (connection_a.token_version, connection_a.access_token_enc)

    member_b = make_member(db, "Rival Agency")
    intruder = app.test_client()
    login(intruder, member_b.email)
    token = csrf_from(intruder)

    routes = list(_object_routes(app))
    assert len(routes) >= 7, routes  # workspace, rename, archive, revoke, connection, refresh, disconnect
    for rule, methods in routes:
        url = rule.build({name: ids[name] for name in rule.arguments}, append_unknown=False)[1]
        for method in methods:
            data = {"csrf_token": token, "name": "pwned"} if method == "POST" else None
            response = intruder.open(url, method=method, data=data)
            assert response.status_code == 404, (method, url, response.status_code)

    fresh(db)
    workspace = db.get(Workspace, workspace_a.id)
    assert workspace.name == "Client Co" and workspace.archived_at is None
    assert db.get(ConnectLink, link_a.id).revoked_at is None
    connection = db.get(Connection, connection_a.id)
    assert (connection.token_version, connection.access_token_enc) == snapshot
    rival_pages = intruder.get("/admin/").get_data(as_text=True) + intruder.get("/admin/links").get_data(
        as_text=True) + intruder.get("/admin/audit").get_data(as_text=True)
    assert "Client Co" not in rival_pages and link_a.id not in rival_pages
    assert not db.scalars(select(AuditEvent).where(AuditEvent.agency_id == member_b.agency_id,
                                                   AuditEvent.object_id.in_(ids.values()))).all()


def test_link_cannot_be_created_for_another_agencys_workspace(app, client, db, runtime):
    _, workspace_a, _, _ = setup_link(db, runtime.deps)
    member_b = make_member(db, "Rival Agency")
    login(client, member_b.email)
    response = client.post("/admin/links", data={"workspace_id": workspace_a.id, "platforms": ["sandbox"],
                                                 "lifetime_hours": "24", "csrf_token": csrf_from(client)})
    assert response.status_code == 404
    fresh(db)
    assert len(db.scalars(select(ConnectLink)).all()) == 1

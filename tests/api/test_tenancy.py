"""Every API route that takes an object id answers 404 to another agency's key, and changes nothing."""

from __future__ import annotations

from sqlalchemy import select

from portal.models import AuditEvent, Connection, ConnectLink, Workspace
from tests.api.support import auth, connected
from tests.helpers import fresh, make_link


def test_another_agencys_key_gets_404_on_every_object_route(app, client, db, runtime, other):
    tenant, connection = connected(client, db, runtime)
    link, _ = make_link(db, runtime.deps, tenant.workspace)
    ids = {"workspace_id": tenant.workspace.id, "link_id": link.id, "connection_id": connection.id}
    snapshot = (connection.token_version, connection.active)
    bodies = {"PATCH": {"name": "pwned", "active": False}}
    routes = [(rule, sorted(rule.methods - {"HEAD", "OPTIONS"})) for rule in app.url_map.iter_rules()
              if rule.endpoint.startswith("api.") and rule.arguments]
    assert len(routes) >= 9, routes
    for rule, methods in routes:
        url = rule.build({name: ids[name] for name in rule.arguments}, append_unknown=False)[1]
        for method in methods:
            body = bodies.get(method)
            if body is not None:
                body = {k: v for k, v in body.items() if (k == "name") == ("workspace" in url)}
            response = client.open(url, method=method, json=body, headers=auth(other.key))
            assert response.status_code == 404, (method, url, response.status_code, response.get_data(as_text=True))
    fresh(db)
    assert db.get(Workspace, ids["workspace_id"]).archived_at is None
    assert db.get(Workspace, ids["workspace_id"]).name == "Client Co"
    assert db.get(ConnectLink, ids["link_id"]).revoked_at is None
    row = db.get(Connection, ids["connection_id"])
    assert (row.token_version, row.active) == snapshot
    assert not db.scalars(select(AuditEvent).where(AuditEvent.agency_id == other.agency_id,
                                                   AuditEvent.object_id.in_(ids.values()))).all()

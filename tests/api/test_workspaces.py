"""Workspaces through the API: list (paginated), create, get, rename, archive; tenant-scoped."""

from __future__ import annotations

from sqlalchemy import select

from portal.models import AuditEvent, Workspace
from tests.api.support import auth
from tests.helpers import fresh


def test_create_get_rename_and_archive(client, db, tenant):
    headers = auth(tenant.key)
    created = client.post("/api/v1/workspaces", json={"name": "  Bakery  "}, headers=headers)
    assert created.status_code == 201
    body = created.get_json()
    assert body["object"] == "workspace" and body["name"] == "Bakery" and body["archived"] is False
    wid = body["id"]
    assert client.get(f"/api/v1/workspaces/{wid}", headers=headers).get_json()["name"] == "Bakery"
    renamed = client.patch(f"/api/v1/workspaces/{wid}", json={"name": "Bakery & Co"}, headers=headers)
    assert renamed.status_code == 200 and renamed.get_json()["name"] == "Bakery & Co"
    archived = client.post(f"/api/v1/workspaces/{wid}/archive", headers=headers)
    assert archived.status_code == 200 and archived.get_json()["archived"] is True
    assert fresh(db).get(Workspace, wid).archived_at is not None
    live = client.get("/api/v1/workspaces", headers=headers).get_json()["data"]
    assert wid not in [w["id"] for w in live]
    assert [w["id"] for w in client.get("/api/v1/workspaces?archived=true", headers=headers).get_json()["data"]] \
        == [wid]
    events = db.scalars(select(AuditEvent).where(AuditEvent.object_id == wid)).all()
    assert {e.action for e in events} == {"workspace.created", "workspace.renamed", "workspace.archived"}
    assert {e.actor_type for e in events} == {"api"}


def test_names_are_validated(client, tenant):
    for name in ("", "   ", "x" * 121, "bad\u202ename"):
        response = client.post("/api/v1/workspaces", json={"name": name}, headers=auth(tenant.key))
        assert response.status_code == 400, name


def test_other_agencies_workspaces_are_404(client, tenant, other):
    wid = other.workspace.id
    headers = auth(tenant.key)
    assert client.get(f"/api/v1/workspaces/{wid}", headers=headers).status_code == 404
    assert client.patch(f"/api/v1/workspaces/{wid}", json={"name": "Mine"}, headers=headers).status_code == 404
    assert client.post(f"/api/v1/workspaces/{wid}/archive", headers=headers).status_code == 404
    listed = client.get("/api/v1/workspaces?archived=all", headers=headers).get_json()["data"]
    assert [w["id"] for w in listed] == [tenant.workspace.id]


def test_pagination_walks_every_workspace_once_in_a_stable_order(client, tenant):
    headers = auth(tenant.key)
    made = [tenant.workspace.id] + [client.post("/api/v1/workspaces", json={"name": f"W{i}"}, headers=headers)
                                    .get_json()["id"] for i in range(6)]
    seen, cursor, pages = [], None, 0
    while True:
        query = "limit=4" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(f"/api/v1/workspaces?{query}", headers=headers).get_json()
        seen += [w["id"] for w in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == made and pages == 2
    everything = client.get("/api/v1/workspaces?limit=100", headers=headers).get_json()
    assert [w["id"] for w in everything["data"]] == made and everything["next_cursor"] is None

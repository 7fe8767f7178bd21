"""Links through the API: create (idempotent with Idempotency-Key), list with filters, get, revoke."""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

from sqlalchemy import func, select

from portal.models import ConnectLink
from tests.api.support import auth
from tests.helpers import fresh


def _create(client, tenant, key=None, **overrides):
    body = {"workspace_id": tenant.workspace.id, "platforms": ["sandbox"], **overrides}
    headers = {**auth(tenant.key), **({"Idempotency-Key": key} if key else {})}
    return client.post("/api/v1/links", json=body, headers=headers)


def test_create_a_link_whose_url_opens_the_portal(client, tenant):
    response = _create(client, tenant, label="Spring campaign", max_uses=2, expires_in_hours=48,
                       expected_accounts=["@sandbox"])
    assert response.status_code == 201
    link = response.get_json()
    assert link["object"] == "link" and link["state"] == "active" and link["max_uses"] == 2
    assert link["platforms"] == ["sandbox"] and link["label"] == "Spring campaign"
    assert link["url"].startswith("http://portal.test/c/")
    assert client.get(urlsplit(link["url"]).path).status_code == 200
    again = client.get(f"/api/v1/links/{link['id']}", headers=auth(tenant.key)).get_json()
    assert again == {**link, "opened_count": 1}


def test_link_input_is_validated(client, tenant, other):
    assert _create(client, tenant, platforms=["myspace"]).status_code == 400
    assert _create(client, tenant, platforms=[]).status_code == 400
    assert _create(client, tenant, expires_in_hours=10_000).status_code == 400
    for huge in (-120_753_194_628_387, 10**30):  # found by Schemathesis: date arithmetic must never overflow
        assert _create(client, tenant, expires_in_hours=huge).status_code == 400
    assert _create(client, tenant, max_uses=0).status_code == 400
    response = _create(client, tenant, workspace_id=other.workspace.id)
    assert response.status_code == 404 and response.get_json()["code"] == "not_found"


def test_the_same_idempotency_key_and_body_give_the_same_link(client, db, tenant):
    first = _create(client, tenant, key="order-42", label="x")
    again = _create(client, tenant, key="order-42", label="x")
    assert first.status_code == again.status_code == 201
    assert first.get_json() == again.get_json()
    assert fresh(db).scalar(select(func.count()).select_from(ConnectLink)) == 1
    conflict = _create(client, tenant, key="order-42", label="y")
    assert conflict.status_code == 409 and conflict.get_json()["code"] == "idempotency_key_reused"
    assert _create(client, tenant, key="order-43", label="x").get_json()["id"] != first.get_json()["id"]
    assert fresh(db).scalar(select(func.count()).select_from(ConnectLink)) == 2
    assert _create(client, tenant, key="bad key with spaces").status_code == 400


def test_idempotency_keys_are_per_agency(client, tenant, other):
    mine = _create(client, tenant, key="same").get_json()
    theirs = client.post("/api/v1/links", json={"workspace_id": other.workspace.id, "platforms": ["sandbox"]},
                         headers={**auth(other.key), "Idempotency-Key": "same"})
    assert theirs.status_code == 201 and theirs.get_json()["id"] != mine["id"]


def test_concurrent_retries_make_one_link(app, db, tenant):
    results = []

    def post():
        with app.test_client() as c:
            results.append(_create(c, tenant, key="concurrent").get_json()["id"])

    threads = [threading.Thread(target=post) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 4 and len(set(results)) == 1
    assert fresh(db).scalar(select(func.count()).select_from(ConnectLink)) == 1


def test_list_filters_get_and_revoke(client, tenant, other):
    headers = auth(tenant.key)
    second_ws = client.post("/api/v1/workspaces", json={"name": "Second"}, headers=headers).get_json()["id"]
    a = _create(client, tenant).get_json()
    b = _create(client, tenant, workspace_id=second_ws).get_json()
    _create(client, other)  # never listed
    everything = client.get("/api/v1/links", headers=headers).get_json()
    assert [link["id"] for link in everything["data"]] == [a["id"], b["id"]]
    only_second = client.get(f"/api/v1/links?workspace={second_ws}", headers=headers).get_json()["data"]
    assert [link["id"] for link in only_second] == [b["id"]]
    revoked = client.post(f"/api/v1/links/{a['id']}/revoke", headers=headers)
    assert revoked.status_code == 200 and revoked.get_json()["state"] == "revoked"
    assert client.get(urlsplit(a["url"]).path).status_code == 410
    assert [x["id"] for x in client.get("/api/v1/links?state=revoked", headers=headers).get_json()["data"]] == [a["id"]]
    assert [x["id"] for x in client.get("/api/v1/links?state=active", headers=headers).get_json()["data"]] == [b["id"]]
    assert client.get("/api/v1/links?state=expired", headers=headers).get_json()["data"] == []
    page = client.get("/api/v1/links?limit=1", headers=headers).get_json()
    assert len(page["data"]) == 1 and page["next_cursor"]
    rest = client.get(f"/api/v1/links?limit=1&cursor={page['next_cursor']}", headers=headers).get_json()
    assert [x["id"] for x in rest["data"]] == [b["id"]] and rest["next_cursor"] is None


def test_other_agencies_links_are_404(client, tenant, other):
    theirs = _create(client, other).get_json()
    assert client.get(f"/api/v1/links/{theirs['id']}", headers=auth(tenant.key)).status_code == 404
    assert client.post(f"/api/v1/links/{theirs['id']}/revoke", headers=auth(tenant.key)).status_code == 404
    assert client.get(f"/api/v1/links/{theirs['id']}", headers=auth(other.key)).get_json()["state"] == "active"

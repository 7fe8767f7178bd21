"""Every error is an RFC 9457 problem document: bad JSON, wrong types, unknown fields, huge or deep
bodies, wrong media types, unknown routes and methods. Never a stack trace, never HTML."""

from __future__ import annotations

import pytest

from tests.api.support import auth


def _is_problem(response, status, code=None):
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert set(body) >= {"type", "title", "status", "detail", "code"} and body["status"] == status
    assert "Traceback" not in response.get_data(as_text=True)
    if code:
        assert body["code"] == code
    return body


def test_bad_json_is_a_400(client, tenant):
    for raw in (b"{", b"{'name': 1}", b"[1, 2]", b'"text"', b"NaN", b'{"name": NaN}', b"\xff\xfe"):
        response = client.post("/api/v1/workspaces", data=raw, headers={**auth(tenant.key),
                                                                         "Content-Type": "application/json"})
        _is_problem(response, 400, "invalid_input")


def test_wrong_types_and_unknown_or_missing_fields_are_400(client, tenant):
    cases = [({"name": 5}, "name must be a string"), ({"name": None}, "name must be a string"),
             ({"name": "ok", "agency_id": "x"}, "Unknown fields: agency_id"), ({}, "Missing fields: name"),
             ({"name": "a\u0000b"}, "not allowed")]
    for body, message in cases:
        problem = _is_problem(client.post("/api/v1/workspaces", json=body, headers=auth(tenant.key)), 400)
        assert message in problem["detail"], problem
    link = {"workspace_id": tenant.workspace.id, "platforms": ["sandbox"]}
    for field, value in (("max_uses", True), ("max_uses", "3"), ("expires_in_hours", 1.5), ("platforms", "sandbox"),
                         ("platforms", [1]), ("expected_accounts", [None])):
        _is_problem(client.post("/api/v1/links", json={**link, field: value}, headers=auth(tenant.key)), 400)


def test_a_deeply_nested_body_is_a_clear_400(client, tenant):
    raw = b'{"name": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    response = client.post("/api/v1/workspaces", data=raw, headers={**auth(tenant.key),
                                                                     "Content-Type": "application/json"})
    _is_problem(response, 400, "invalid_input")


def test_a_huge_body_is_a_413(client, tenant):
    raw = b'{"name": "' + b"x" * (200 * 1024) + b'"}'
    response = client.post("/api/v1/workspaces", data=raw, headers={**auth(tenant.key),
                                                                     "Content-Type": "application/json"})
    _is_problem(response, 413, "body_too_large")
    response = client.post("/api/v1/workspaces", data={"name": "x" * (200 * 1024)}, headers=auth(tenant.key))
    _is_problem(response, 413, "body_too_large")


def test_a_body_that_is_not_json_is_a_415(client, tenant):
    response = client.post("/api/v1/workspaces", data="name=x", headers={**auth(tenant.key),
                                                                         "Content-Type": "text/plain"})
    _is_problem(response, 415, "unsupported_media_type")


@pytest.mark.parametrize("path", ["/api/v1/nothing", "/api/v1/connections/abc/def", "/api/v1"])
def test_unknown_routes_are_404_problems(client, tenant, path):
    _is_problem(client.get(path, headers=auth(tenant.key)), 404, "not_found")


def test_a_wrong_method_is_a_405_with_allow(client, tenant):
    response = client.put("/api/v1/workspaces", headers=auth(tenant.key), json={})
    _is_problem(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"] and "GET" in response.headers["Allow"]
    _is_problem(client.delete(f"/api/v1/links/{'a' * 32}", headers=auth(tenant.key)), 405)


def test_unknown_query_parameters_and_bad_values_are_400(client, tenant):
    headers = auth(tenant.key)
    for query in ("sort=name;drop table connections", "status=bogus", "health=fine", "active=yes", "limit=0",
                  "limit=101", "limit=-1", "limit=ten", "state=dead", "archived=maybe", "cursor=%%%",
                  "cursor=bm90LWpzb24", "cursor=WzEsMl0"):
        path = "/api/v1/links" if query.startswith("state") else (
            "/api/v1/workspaces" if query.startswith("archived") else "/api/v1/connections")
        _is_problem(client.get(f"{path}?{query}", headers=headers), 400, "invalid_input")


def test_nul_bytes_get_a_problem(client, tenant):
    _is_problem(client.get("/api/v1/connections?platform=a%00b", headers=auth(tenant.key)), 400)
    _is_problem(client.get("/api/v1/workspaces/a%00b", headers=auth(tenant.key)), 400)


def test_sql_looking_filters_are_just_values(client, tenant):
    response = client.get("/api/v1/connections?platform=x'%20OR%20'1'='1&workspace=1%20OR%201=1",
                          headers=auth(tenant.key))
    assert response.status_code == 200 and response.get_json()["data"] == []


def test_api_responses_are_not_cached(client, tenant):
    assert client.get("/api/v1/workspaces", headers=auth(tenant.key)).headers["Cache-Control"] == "no-store"
    assert client.get("/api/v1/workspaces").headers["Cache-Control"] == "no-store"

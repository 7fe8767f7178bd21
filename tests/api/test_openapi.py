"""The OpenAPI document is valid JSON, documents every route of the blueprint, and the reference
page is plain server-rendered HTML."""

from __future__ import annotations

import json
import re


def _routes(app):
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("api."):
            path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule).removeprefix("/api/v1")
            routes |= {(path, method.lower()) for method in rule.methods - {"HEAD", "OPTIONS"}}
    return routes


def test_the_document_lists_every_route_and_nothing_else(app, client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = json.loads(response.get_data(as_text=True))
    assert document["openapi"].startswith("3.1") and document["servers"][0]["url"] == "http://portal.test/api/v1"
    documented = {(path, method) for path, methods in document["paths"].items() for method in methods}
    assert documented == _routes(app)
    assert len(documented) >= 16


def test_every_reference_resolves_and_errors_use_the_problem_schema(client):
    document = client.get("/api/v1/openapi.json").get_json()
    text = json.dumps(document)
    for ref in set(re.findall(r'"\$ref": "#/([^"]+)"', text)):
        node = document
        for part in ref.split("/"):
            node = node[part]
    problem = document["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail", "code"}
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            assert op["summary"] and op["responses"], (path, method)
            if path not in ("/openapi.json", "/docs"):
                assert {"400", "401", "429"} <= set(op["responses"]), (path, method)
                if method != "get":
                    assert "403" in op["responses"], (path, method)


def test_the_reference_page_is_plain_html(client):
    response = client.get("/api/v1/docs")
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "<script" not in page and "style=" not in page and "http://" not in page.split("</head>")[1]
    for path in ("/api/v1/connections/{connection_id}/access-token", "/api/v1/links", "/api/v1/workspaces"):
        assert path in page
    assert 'id="error-reconnect_required"' in page and "Authorization: Bearer" in page
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]


def test_problem_types_point_at_documented_codes(client, tenant):
    page = client.get("/api/v1/docs").get_data(as_text=True)
    for path in ("/api/v1/nothing", "/api/v1/connections"):
        problem = client.get(path).get_json()
        assert f'id="{problem["type"].split("#")[1]}"' in page

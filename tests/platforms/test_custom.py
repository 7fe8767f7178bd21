"""Custom OAuth 2.0 / OpenID Connect platforms added by an agency, configured from discovery or by hand."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import select

from portal.errors import ValidationFailed
from portal.models import CustomPlatform
from portal.runtime import build_runtime
from portal.services import custom_platforms, links, tokens
from portal.services.audit import SYSTEM
from portal.services.tokens import RefreshResult
from tests.conftest import SANDBOX_SECRET
from tests.helpers import connect, connections_in, csrf_from, fresh, login, make_member, make_workspace


def _add_from_discovery(client, live_sandbox, **overrides):
    discovery = live_sandbox.url + "/sandbox/.well-known/openid-configuration" if live_sandbox else ""
    form = {"display_name": "Acme ID", "discovery_url": discovery,
            "scopes": "profile publish", "client_id": "easyconnect-demo", "client_secret": SANDBOX_SECRET,
            "csrf_token": csrf_from(client, "/admin/custom-platforms")}
    form.update(overrides)
    return client.post("/admin/custom-platforms", data=form, follow_redirects=True)


def test_custom_oidc_platform_from_discovery_connects_and_refreshes(client, db, runtime, live_sandbox):
    member = make_member(db)
    workspace = make_workspace(db, member.agency_id)
    login(client, member.email)
    page = _add_from_discovery(client, live_sandbox).get_data(as_text=True)
    assert "Acme ID added" in page and "http://portal.test/oauth/callback/custom-acme-id" in page
    fresh(db)
    row = db.scalar(select(CustomPlatform))
    assert row.token_url == live_sandbox.url + "/sandbox/oauth/token" and row.pkce
    assert SANDBOX_SECRET not in row.client_secret_enc

    available = links.create_link  # the platform is offered on links like any other
    link = available(db, runtime.deps, member.agency_id, SYSTEM, workspace_id=workspace.id,
                     platforms=["custom-acme-id"], available=["custom-acme-id"],
                     lifetime=__import__("datetime").timedelta(days=1), max_uses=None)
    db.commit()
    path = "/c/" + runtime.deps.signer.sign(link.token_id)
    assert "Acme ID" in client.get(path).get_data(as_text=True)
    response = connect(client, path, platform="custom-acme-id", account="sbx-1002")
    assert response.status_code == 303, response.get_data(as_text=True)[:400]
    [connection] = connections_in(db, workspace.id)
    assert (connection.platform, connection.external_id, connection.handle) == (
        "custom-acme-id", "sbx-1002", "northwind")
    assert "Acme ID" in client.get(f"/admin/workspaces/{workspace.id}").get_data(as_text=True)
    assert tokens.refresh_connection(db, runtime.deps, connection.id, force=True) == RefreshResult.REFRESHED


def test_manual_endpoints_and_field_map(client, db, runtime, live_sandbox):
    member = make_member(db)
    login(client, member.email)
    base = live_sandbox.url + "/sandbox"
    page = _add_from_discovery(client, live_sandbox, discovery_url="", authorize_url=base + "/oauth/authorize",
                               token_url=base + "/oauth/token", userinfo_url=base + "/api/me",
                               field_handle="name").get_data(as_text=True)
    assert "added" in page
    fresh(db)
    assert db.scalar(select(CustomPlatform)).field_map["handle"] == "name"


@pytest.mark.parametrize("overrides, message", [
    ({"discovery_url": "http://127.0.0.1:1/.well-known/openid-configuration"}, "could not be read"),
    ({"scopes": "bad\"scope"}, "Scopes are words"),
    ({"field_id": "sub; drop table"}, "field name"),
    ({"client_id": "has space"}, "client id"),
    ({"display_name": ""}, "required"),
])
def test_invalid_custom_platforms_are_refused(client, db, live_sandbox, overrides, message):
    member = make_member(db)
    login(client, member.email)
    page = _add_from_discovery(client, live_sandbox, **overrides).get_data(as_text=True)
    assert message in page
    fresh(db)
    assert db.scalars(select(CustomPlatform)).all() == []


def test_production_policy_refuses_private_and_plain_http_urls(db, settings, live_sandbox):
    member = make_member(db)
    strict = build_runtime(replace(settings, allow_private_urls=False))
    try:
        for url in (live_sandbox.url + "/sandbox/.well-known/openid-configuration",
                    "https://10.0.0.1/.well-known/openid-configuration",
                    "https://169.254.169.254/latest/meta-data", "https://[::1]/x", "https://localhost/x"):
            with pytest.raises(ValidationFailed, match="refused|could not be read"):
                custom_platforms.create(db, strict.deps, member.agency_id, SYSTEM, display_name="Evil",
                                        discovery_url=url, authorize_url="", token_url="", userinfo_url="",
                                        scopes="openid", client_id="x", client_secret="y", fields={})
            db.rollback()
        with pytest.raises(ValidationFailed, match="refused"):
            custom_platforms.create(db, strict.deps, member.agency_id, SYSTEM, display_name="Evil", discovery_url="",
                                    authorize_url="https://id.example/authorize", token_url="http://10.1.2.3/token",
                                    userinfo_url="https://id.example/me", scopes="openid", client_id="x",
                                    client_secret="y", fields={})
    finally:
        strict.close()


def test_discovery_with_a_foreign_issuer_is_refused(client, db, runtime):
    """A document that sends tokens to another server than its own is a mix-up attempt."""
    import json
    import threading

    from werkzeug.serving import make_server
    from werkzeug.wrappers import Response

    def hostile(environ, start_response):
        body = json.dumps({"issuer": "https://evil.example", "authorization_endpoint": "https://evil.example/a",
                           "token_endpoint": "https://evil.example/t", "userinfo_endpoint": "https://evil.example/u"})
        return Response(body, mimetype="application/json")(environ, start_response)

    server = make_server("127.0.0.1", 0, hostile)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        member = make_member(db)
        login(client, member.email)
        page = _add_from_discovery(client, None, discovery_url=f"http://127.0.0.1:{server.server_port}/.well-known/x")
        assert "issuer does not match" in page.get_data(as_text=True)
    finally:
        server.shutdown()
        server.server_close()
    fresh(db)
    assert db.scalars(select(CustomPlatform)).all() == []


def test_custom_platforms_are_tenant_scoped(app, client, db, live_sandbox):
    member = make_member(db)
    login(client, member.email)
    _add_from_discovery(client, live_sandbox)
    rival = make_member(fresh(db), "Rival")
    other = app.test_client()
    login(other, rival.email)
    assert "Acme ID" not in other.get("/admin/custom-platforms").get_data(as_text=True)
    assert other.post("/admin/custom-platforms/custom-acme-id/delete",
                      data={"csrf_token": csrf_from(other)}).status_code == 404
    fresh(db)
    assert len(db.scalars(select(CustomPlatform)).all()) == 1

"""Bluesky end to end against the sandbox's stand-ins (entryway, PDS hosts, plc.directory): app password
sign-in, identity proven against the DID's home server, rotating refresh with re-login, SSRF refusals."""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from sqlalchemy import select

from portal.errors import PlatformError, ValidationFailed
from portal.models import AuditEvent, ConnectAttempt, Connection, Health
from portal.oauth import OAuthClient
from portal.providers.adapters.bluesky import jwt_expiry
from portal.security.urls import GuardPolicy
from portal.services import connections, credentials, links, platforms, tokens
from portal.services.audit import SYSTEM
from portal.services.tokens import RefreshResult
from portal.views.sandbox_platforms.bluesky import DEMO_APP_PASSWORD
from tests.helpers import all_platforms_link, connections_in, fresh

BAKERY, NORTHWIND, CASA = "bluebottlebakery.bsky.social", "northwind.bsky.social", "casa-aurora.example"


def open_form(client, path):
    assert client.get(path).status_code == 200
    first = client.post(f"{path}/connect/bluesky")
    assert first.status_code == 303 and first.headers["Location"].endswith("/app-password/bluesky")
    return first.headers["Location"]


def sign_in(client, path, identifier=BAKERY, password=DEMO_APP_PASSWORD, server=""):
    return client.post(open_form(client, path), data={"identifier": identifier, "app_password": password,
                                                      "server": server})


def connected(client, db, runtime, path, workspace_id, **kwargs):
    response = sign_in(client, path, **kwargs)
    assert response.status_code == 303 and "/done/" in response.headers["Location"], \
        response.get_data(as_text=True)[:800]
    [row] = connections_in(db, workspace_id)
    return row


def kept(runtime, row):
    """The connection's second secret: refresh JWT, app password and DID."""
    return json.loads(connections.read_tokens(runtime.deps, row)[1])


def bound(db, runtime, row):
    spec, app = connections.spec_and_app(db, runtime.deps, row.agency_id, row.platform, row.instance)
    return spec, app, platforms.adapter_for(runtime.deps, spec)


def xrpc(live_sandbox, host, method, token, name):
    return requests.request(method, f"{live_sandbox.url}/sandbox/p/{host}/xrpc/{name}",
                            headers={"Authorization": f"Bearer {token}"}, timeout=5)


def set_status(live_sandbox, did, status):
    requests.post(f"{live_sandbox.url}/sandbox/p/bsky.social/_sandbox/account", json={"did": did, "status": status},
                  timeout=5).raise_for_status()


@pytest.fixture
def recorder():
    """A local server that records every request it gets: proof that none was made."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        do_GET = do_POST

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_port, hits
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def connect_directly(runtime, deps, path, identifier, server):
    session = runtime.session_factory()
    try:
        resolved = links.resolve_link(session, deps.signer, path.rsplit("/", 1)[1], deps.now())
        return credentials.connect_with_app_password(session, deps, resolved, "bluesky", identifier,
                                                     DEMO_APP_PASSWORD, server, None)
    finally:
        session.close()


# The form and the flow ------------------------------------------------------------------------------------

def test_the_form_explains_app_passwords_and_lists_the_sandbox_demo_logins(client, db, runtime):
    _, _, _, path = all_platforms_link(db, runtime.deps, ["bluesky"])
    page = client.get(open_form(client, path))
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert 'name="app_password" type="password"' in html and "never your main password" in html
    assert DEMO_APP_PASSWORD in html and BAKERY in html and "pds.casa-aurora.example" in html
    assert "<script" not in html and "style=" not in html  # the CSP forbids inline script and style


def test_connects_with_an_app_password(client, db, runtime, live_sandbox):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["bluesky"])
    before = live_sandbox.counters().get("bluesky_sessions", 0)
    response = sign_in(client, path, identifier="@BlueBottleBakery.bsky.social ")
    assert response.status_code == 303
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Blue Bottle Bakery" in page and f"@{BAKERY}" in page

    [row] = connections_in(db, workspace.id)
    assert (row.platform, row.external_id, row.handle, row.display_name) == (
        "bluesky", "did:plc:sbx1001", BAKERY, "Blue Bottle Bakery")
    assert row.instance == "https://bsky.social" and row.extra == {"pds": "https://bsky.social"}
    assert row.avatar_url and row.avatar_url.endswith("/sandbox/avatars/sbx-1001.svg")
    # The access JWT's own lifetime (2 hours), as an absolute time; no refresh lapse with the app password kept.
    now = runtime.deps.now()
    assert now + timedelta(minutes=118) < row.token_expires_at < now + timedelta(minutes=121)
    assert row.refresh_expires_at is None
    secrets_ = kept(runtime, row)
    assert secrets_["app_password"] == DEMO_APP_PASSWORD and secrets_["did"] == "did:plc:sbx1001"
    assert secrets_["refresh_jwt"].count(".") == 2
    assert live_sandbox.counters()["bluesky_sessions"] == before + 1


def test_the_app_password_is_encrypted_and_never_shown(client, db, runtime):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["bluesky"])
    response = sign_in(client, path)
    done = client.get(response.headers["Location"]).get_data(as_text=True)
    [row] = connections_in(db, workspace.id)
    columns = " ".join(str(getattr(row, c.key)) for c in Connection.__table__.columns)
    audit = json.dumps([e.details for e in fresh(db).scalars(select(AuditEvent))])
    for text in (columns, audit, done):
        assert DEMO_APP_PASSWORD not in text
    assert "password" not in columns.lower()


def test_an_entryway_account_is_proven_by_its_home_pds(client, db, runtime, live_sandbox):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["bluesky"])
    checks = live_sandbox.counters().get("bluesky_get_sessions", 0)
    row = connected(client, db, runtime, path, workspace.id, identifier=NORTHWIND)
    # Signed in at the entryway; the DID document names another PDS, which accepted the same session.
    assert (row.external_id, row.instance) == ("did:plc:sbx1002", "https://bsky.social")
    assert row.extra == {"pds": "https://morel.us-east.host.bsky.network"}
    assert live_sandbox.counters()["bluesky_get_sessions"] == checks + 1
    assert tokens.refresh_connection(db, runtime.deps, row.id, force=True) == RefreshResult.REFRESHED


def test_a_self_hosted_pds_is_used_when_given(client, db, runtime):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["bluesky"])
    wrong = sign_in(client, path, identifier=CASA)  # not on bsky.social
    assert wrong.status_code == 400 and "did not accept that handle and app password" in wrong.get_data(as_text=True)
    row = connected(client, db, runtime, path, workspace.id, identifier=CASA, server="https://pds.casa-aurora.example/")
    assert (row.external_id, row.handle, row.instance) == ("did:plc:sbx1003", CASA, "https://pds.casa-aurora.example")
    assert tokens.refresh_connection(db, runtime.deps, row.id, force=True) == RefreshResult.REFRESHED


def test_a_wrong_app_password_is_a_form_error_and_nothing_is_stored(client, db, runtime):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["bluesky"])
    response = sign_in(client, path, password="zzzz-zzzz-zzzz-zzzz")
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and "bsky.social did not accept that handle and app password" in html
    assert f'value="{BAKERY}"' in html and "zzzz-zzzz" not in html  # what was typed, never the password
    assert connections_in(db, workspace.id) == [] and fresh(db).scalars(select(ConnectAttempt)).all() == []


def test_a_main_password_is_refused_before_anything_is_sent(client, db, runtime, live_sandbox):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["bluesky"])
    form = open_form(client, path)
    before = live_sandbox.counters()
    response = client.post(form, data={"identifier": BAKERY, "app_password": "correct horse battery staple"})
    assert response.status_code == 400 and "Enter an app password" in response.get_data(as_text=True)
    assert live_sandbox.counters() == before
    assert connections_in(db, workspace.id) == []


def test_duplicate_connect_keeps_one_row(client, db, runtime):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["bluesky"])
    first = connected(client, db, runtime, path, workspace.id)
    first_id, version = first.id, first.token_version
    second = connected(client, db, runtime, path, workspace.id)
    assert second.id == first_id and second.token_version == version + 1


def test_an_account_the_link_does_not_expect_is_refused_and_its_session_ended(client, db, runtime, live_sandbox):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["bluesky"], expected_accounts=[NORTHWIND])
    revocations = live_sandbox.counters().get("revocations", 0)
    response = sign_in(client, path, identifier=BAKERY)
    assert response.status_code == 403 and "not one this link is for" in response.get_data(as_text=True)
    assert connections_in(db, workspace.id) == []
    assert live_sandbox.counters()["revocations"] == revocations + 1  # deleteSession for the unused session


# Refresh, revoke and errors ------------------------------------------------------------------------------

def test_refresh_rotates_and_the_used_refresh_token_dies(client, db, runtime, live_sandbox):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["bluesky"])
    row = connected(client, db, runtime, path, workspace.id)
    old, version = kept(runtime, row), row.token_version
    assert tokens.refresh_connection(db, runtime.deps, row.id, force=True) == RefreshResult.REFRESHED
    row = fresh(db).get(Connection, row.id)
    new = kept(runtime, row)
    assert new["refresh_jwt"] != old["refresh_jwt"] and new["app_password"] == DEMO_APP_PASSWORD
    assert row.token_version == version + 1 and row.health == Health.HEALTHY
    spent = xrpc(live_sandbox, "bsky.social", "POST", old["refresh_jwt"], "com.atproto.server.refreshSession")
    assert spent.status_code == 400 and spent.json()["error"] == "ExpiredToken"


def test_an_expired_session_is_renewed_with_the_stored_app_password(client, db, runtime, live_sandbox):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["bluesky"])
    row = connected(client, db, runtime, path, workspace.id)
    sessions = live_sandbox.counters()["bluesky_sessions"]
    live_sandbox.fail("token", "invalid_grant")  # refreshSession answers 400 ExpiredToken once
    try:
        assert tokens.refresh_connection(db, runtime.deps, row.id, force=True) == RefreshResult.REFRESHED
    finally:
        live_sandbox.reset()
    assert live_sandbox.counters()["bluesky_sessions"] == sessions + 1  # signed in again
    assert fresh(db).get(Connection, row.id).health == Health.HEALTHY


def test_a_revoked_app_password_means_reconnect(client, db, runtime, live_sandbox):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["bluesky"])
    row = connected(client, db, runtime, path, workspace.id)
    live_sandbox.fail("token", "invalid_client", times=2)  # 401 AuthenticationRequired: refresh, then sign-in
    try:
        with pytest.raises(PlatformError) as failed:
            tokens.refresh_connection(db, runtime.deps, row.id, force=True)
    finally:
        live_sandbox.reset()
    assert failed.value.kind == PlatformError.TOKEN_INVALID
    assert fresh(db).get(Connection, row.id).health == Health.ERROR


@pytest.mark.parametrize("mode, kind", [("rate_limited", PlatformError.RATE_LIMITED),
                                        ("server_error", PlatformError.TEMPORARY)])
def test_temporary_refresh_failures_keep_the_connection_healthy(client, db, runtime, live_sandbox, mode, kind):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["bluesky"])
    row = connected(client, db, runtime, path, workspace.id)
    live_sandbox.fail("token", mode)
    try:
        with pytest.raises(PlatformError) as failed:
            tokens.refresh_connection(db, runtime.deps, row.id, force=True)
    finally:
        live_sandbox.reset()
    assert failed.value.kind == kind
    if kind == PlatformError.RATE_LIMITED:  # from RateLimit-Reset, a Unix time
        assert 20 <= (failed.value.retry_after or 0) <= 31
    assert fresh(db).get(Connection, row.id).health == Health.HEALTHY


def test_health_check_and_account_states(client, db, runtime, live_sandbox):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["bluesky"])
    row = connected(client, db, runtime, path, workspace.id, identifier=NORTHWIND)
    spec, _, adapter = bound(db, runtime, row)
    access = connections.read_tokens(runtime.deps, row)[0]
    adapter.check(spec, access)
    live_sandbox.fail("userinfo", "revoked")
    try:
        with pytest.raises(PlatformError) as invalid:
            adapter.check(spec, access)
    finally:
        live_sandbox.reset()
    assert invalid.value.kind == PlatformError.TOKEN_INVALID
    try:
        set_status(live_sandbox, "did:plc:sbx1002", "deactivated")  # getSession says active: false
        with pytest.raises(PlatformError) as inactive:
            adapter.check(spec, access)
        set_status(live_sandbox, "did:plc:sbx1002", "takendown")  # refreshSession says AccountTakedown
        with pytest.raises(PlatformError) as takedown:
            tokens.refresh_connection(db, runtime.deps, row.id, force=True)
    finally:
        set_status(live_sandbox, "did:plc:sbx1002", "")
    assert (inactive.value.kind, inactive.value.platform_code) == (PlatformError.PERMISSION_LOST, "deactivated")
    assert (takedown.value.kind, takedown.value.platform_code) == (PlatformError.PERMISSION_LOST, "AccountTakedown")
    assert fresh(db).get(Connection, row.id).health == Health.ERROR


@pytest.mark.parametrize("status", ["takendown", "deactivated"])
def test_an_inactive_account_cannot_be_connected(client, db, runtime, live_sandbox, status):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["bluesky"])
    set_status(live_sandbox, "did:plc:sbx1001", status)
    try:
        response = sign_in(client, path)
    finally:
        set_status(live_sandbox, "did:plc:sbx1001", "")
    assert response.status_code == 400 and "suspended, taken down or deactivated" in response.get_data(as_text=True)
    assert connections_in(db, workspace.id) == []


def test_sign_in_rate_limit_is_explained(client, db, runtime, live_sandbox):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["bluesky"])
    live_sandbox.fail("token", "rate_limited")
    try:
        response = sign_in(client, path)
    finally:
        live_sandbox.reset()
    assert response.status_code == 400 and "too many sign-in attempts" in response.get_data(as_text=True)


def test_disconnect_deletes_the_session(client, db, runtime, live_sandbox):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["bluesky"])
    row = connected(client, db, runtime, path, workspace.id)
    spec, _, adapter = bound(db, runtime, row)
    access, secret = kept(runtime, row), connections.read_tokens(runtime.deps, row)[0]
    gone = connections.disconnect(db, runtime.deps, row.agency_id, row.id, SYSTEM)
    db.commit()
    gone.revoke()
    refreshed = xrpc(live_sandbox, "bsky.social", "POST", access["refresh_jwt"], "com.atproto.server.refreshSession")
    assert refreshed.status_code == 400
    with pytest.raises(PlatformError) as dead:
        adapter.check(spec, secret)
    assert dead.value.kind == PlatformError.TOKEN_INVALID


# Mix-up and SSRF ---------------------------------------------------------------------------------------

def test_a_server_claiming_an_account_it_does_not_host_is_refused(client, db, runtime):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["bluesky"])
    # evil-pds.example signs anyone in as did:plc:sbx1001, whose DID document names bsky.social,
    # and bsky.social does not accept evil's session.
    response = sign_in(client, path, identifier="anyone.example", server="evil-pds.example")
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and "whose home server does not confirm it" in html
    assert connections_in(db, workspace.id) == [] and fresh(db).scalars(select(ConnectAttempt)).all() == []


def test_an_identity_chain_into_the_metadata_address_is_refused_under_the_production_policy(db, runtime):
    # Sandboxed platforms, production URL policy: the did:web document of evil-pds.example names
    # https://169.254.169.254 as the home PDS; it is refused without being contacted.
    strict = GuardPolicy()
    deps = replace(runtime.deps, settings=replace(runtime.settings, mode="production", allow_private_urls=False),
                   oauth=OAuthClient(url_policy=strict))
    _, workspace, _, path = all_platforms_link(db, deps, ["bluesky"])
    with pytest.raises(ValidationFailed) as refused:
        connect_directly(runtime, deps, path, "ssrf.evil-pds.example", "evil-pds.example")
    assert "home server address is not allowed" in refused.value.public_message
    assert "private, local or reserved" in refused.value.public_message
    assert connections_in(db, workspace.id) == []


def test_an_identity_chain_into_another_server_is_refused_when_private_urls_are_allowed(client, db, runtime):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["bluesky"])
    response = sign_in(client, path, identifier="ssrf.evil-pds.example", server="evil-pds.example")
    assert response.status_code == 400 and "does not confirm it" in response.get_data(as_text=True)
    assert connections_in(db, workspace.id) == []


@pytest.mark.parametrize("server, message", [
    ("127.0.0.1", "private, local or reserved"),
    ("10.0.0.1", "private, local or reserved"),
    ("169.254.169.254", "private, local or reserved"),
    ("[::1]", "private, local or reserved"),
    ("http://pds.example.com", "only https:// addresses"),
    ("RECORDER", "private, local or reserved"),
])
def test_production_refuses_private_and_plain_http_pds_without_a_request(db, runtime, recorder, server, message):
    port, hits = recorder
    server = f"https://127.0.0.1:{port}" if server == "RECORDER" else server
    settings = replace(runtime.settings, mode="production", allow_private_urls=False, sandbox_platforms=False)
    deps = replace(runtime.deps, settings=settings, oauth=OAuthClient(url_policy=GuardPolicy()))
    _, workspace, _, path = all_platforms_link(db, deps, ["bluesky"])
    with pytest.raises(ValidationFailed) as refused:
        connect_directly(runtime, deps, path, BAKERY, server)
    assert refused.value.public_message.startswith("This server address cannot be used:")
    assert message in refused.value.public_message
    assert hits == [] and connections_in(db, workspace.id) == []


# Unit ----------------------------------------------------------------------------------------------------

def _jwt(payload):
    encoded = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    return f"e30.{encoded}.sig"


def test_jwt_lifetime_is_counted_from_our_clock():
    now = datetime(2025, 1, 1, tzinfo=UTC)
    skewed = 1_900_000_000  # the server's clock is years off: only exp - iat matters
    assert jwt_expiry(_jwt({"iat": skewed, "exp": skewed + 7200}), now) == now + timedelta(hours=2)
    assert jwt_expiry(_jwt({"exp": int(now.timestamp()) + 600}), now) == now + timedelta(minutes=10)
    assert jwt_expiry(_jwt({"exp": int(now.timestamp()) - 600}), now) == now  # already expired: due now
    assert jwt_expiry("not-a-jwt", now) is None and jwt_expiry(_jwt({"sub": "x"}), now) is None


def test_app_password_form_is_rate_limited_per_client(settings, db, runtime):
    from dataclasses import replace

    from portal.app import create_app
    from tests.helpers import all_platforms_link

    *_, path = all_platforms_link(db, runtime.deps, ["bluesky"])
    app = create_app(replace(settings, credential_rate_limit="2 per minute"))
    try:
        client = app.test_client()
        statuses = [client.post(f"{path}/app-password/bluesky",
                                data={"identifier": "nobody.example", "password": "aaaa-bbbb-cccc-dddd"}).status_code
                    for _ in range(3)]
        assert statuses[-1] == 429 and 429 not in statuses[:2]
    finally:
        app.extensions["easyconnect"].close()

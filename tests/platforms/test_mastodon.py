"""Mastodon end to end against the sandbox's stand-in servers: the client names a server, the portal
registers its app there once, and the OAuth flow is bound to that server; SSRF refusals in production."""

from __future__ import annotations

import secrets
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from sqlalchemy import select

from portal.errors import PlatformError, ValidationFailed
from portal.models import AuditEvent, ConnectAttempt, InstanceApp
from portal.oauth import OAuthClient
from portal.providers.adapters.mastodon import classify_mastodon_error
from portal.security.crypto import DecryptionError, column_context
from portal.security.urls import GuardPolicy
from portal.services import connections, credentials, links, platforms, tokens
from portal.services.audit import SYSTEM
from portal.services.tokens import RefreshResult
from tests.conftest import PORTAL_BASE
from tests.helpers import all_platforms_link, connections_in, consent, fresh, local_path
from tests.helpers import select as choose_accounts


def start(client, path, server="mastodon.example"):
    """Link page, Connect, the server form, then the form's answer (303 to the server's authorize page)."""
    assert client.get(path).status_code == 200
    first = client.post(f"{path}/connect/mastodon")
    assert first.status_code == 303 and first.headers["Location"].endswith("/instance-oauth/mastodon")
    form_path = first.headers["Location"]
    page = client.get(form_path)
    assert page.status_code == 200 and 'name="server"' in page.get_data(as_text=True)
    return client.post(form_path, data={"server": server})


def connect_at(client, path, server="mastodon.example", account="sbx-1001", scopes=None):
    started = start(client, path, server)
    assert started.status_code == 303, started.get_data(as_text=True)[:500]
    return client.get(local_path(consent(started.headers["Location"], account=account, scopes=scopes)))


def query_of(url):
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def bound(db, runtime, row):
    spec, app = connections.spec_and_app(db, runtime.deps, row.agency_id, row.platform, row.instance)
    return spec, app, platforms.adapter_for(runtime.deps, spec)


@pytest.fixture
def production(runtime):
    """Production's URL policy: public https servers only, platforms not sandboxed."""
    settings = replace(runtime.settings, mode="production", allow_private_urls=False, sandbox_platforms=False)
    return replace(runtime.deps, settings=settings, oauth=OAuthClient(url_policy=GuardPolicy()))


@pytest.fixture
def recorder():
    """A local server that records every request it gets: proof that none was made."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        do_POST = do_GET

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_port, hits
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def resolved_link(runtime, deps, path):
    session = runtime.session_factory()
    return session, links.resolve_link(session, deps.signer, path.rsplit("/", 1)[1], deps.now())


# The flow ----------------------------------------------------------------------------------------------

def test_mastodon_connects_end_to_end_bound_to_the_chosen_server(client, db, runtime, live_sandbox):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["mastodon"])
    before = live_sandbox.counters()
    started = start(client, path, "  Mastodon.Example ")
    location = started.headers["Location"]
    assert location.startswith(runtime.settings.sandbox_url + "/p/mastodon.example/oauth/authorize?")
    query = query_of(location)
    assert query["force_login"] == "true" and query["code_challenge_method"] == "S256" and query["code_challenge"]
    assert len(query["state"]) >= 22 and query["redirect_uri"] == PORTAL_BASE + "/oauth/callback/mastodon"
    assert set(query["scope"].split()) == {"read:accounts", "write:statuses", "write:media"}
    assert "code_verifier" not in location  # the verifier stays server-side

    response = client.get(local_path(consent(location, account="sbx-1002")))
    assert response.status_code == 303 and "/done/" in response.headers["Location"]
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Northwind Outfitters" in page and "@northwind@mastodon.example" in page

    [row] = connections_in(db, workspace.id)
    assert (row.platform, row.external_id, row.handle, row.instance) == (
        "mastodon", "mastodon.example:101002", "northwind@mastodon.example", "https://mastodon.example")
    assert row.refresh_token_enc is None and row.token_expires_at is None  # valid until revoked
    assert set(row.scopes.split()) == {"read:accounts", "write:statuses", "write:media"}
    assert row.avatar_url and row.avatar_url.endswith("/sandbox/avatars/sbx-1002.svg")
    after = live_sandbox.counters()
    assert after["mastodon_apps"] == before.get("mastodon_apps", 0) + 1
    assert after["code_exchanges"] == before.get("code_exchanges", 0) + 1
    # Nothing to refresh; the health check passes with the stored token.
    assert tokens.refresh_connection(db, runtime.deps, row.id, force=True) == RefreshResult.NOT_REFRESHABLE
    spec, _, adapter = bound(db, runtime, row)
    adapter.check(spec, connections.read_tokens(runtime.deps, row)[0])


def test_the_app_is_registered_once_per_server_and_its_secret_is_encrypted(client, db, runtime, live_sandbox):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["mastodon"])
    before = live_sandbox.counters()
    assert connect_at(client, path, account="sbx-1001").status_code == 303
    assert connect_at(client, path, account="sbx-1003").status_code == 303
    after = live_sandbox.counters()
    assert after["mastodon_apps"] == before.get("mastodon_apps", 0) + 1  # the second start used the cache
    assert after["mastodon_app_checks"] == before.get("mastodon_app_checks", 0) + 1  # ... after checking it
    assert sorted(c.external_id for c in connections_in(db, workspace.id)) == [
        "mastodon.example:101001", "mastodon.example:101003"]

    [app] = fresh(db).scalars(select(InstanceApp)).all()
    assert (app.platform, app.host, app.redirect_uri) == (
        "mastodon", "https://mastodon.example", PORTAL_BASE + "/oauth/callback/mastodon")
    secret = runtime.deps.cipher.decrypt(app.client_secret_enc, column_context("instance_apps", app.id,
                                                                              "client_secret"))
    assert secret and secret not in app.client_secret_enc
    with pytest.raises(DecryptionError):  # bound to its row: a copy elsewhere does not decrypt
        runtime.deps.cipher.decrypt(app.client_secret_enc, column_context("instance_apps", "other", "client_secret"))


def test_each_server_gets_its_own_app_and_ids_do_not_collide(client, db, runtime, live_sandbox):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["mastodon"])
    before = live_sandbox.counters().get("mastodon_apps", 0)
    assert connect_at(client, path, "one.example", account="sbx-1001").status_code == 303
    assert connect_at(client, path, "two.example", account="sbx-1001").status_code == 303
    rows = sorted(connections_in(db, workspace.id), key=lambda c: c.external_id)
    # The same account number on two servers is two different accounts.
    assert [(c.external_id, c.handle, c.instance) for c in rows] == [
        ("one.example:101001", "bluebottlebakery@one.example", "https://one.example"),
        ("two.example:101001", "bluebottlebakery@two.example", "https://two.example")]
    assert live_sandbox.counters()["mastodon_apps"] == before + 2
    assert len(fresh(db).scalars(select(InstanceApp)).all()) == 2


def test_a_server_that_forgot_the_app_gets_a_new_registration(client, db, runtime, live_sandbox):
    host = f"vacuum-{secrets.token_hex(3)}.example"
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["mastodon"])
    before = live_sandbox.counters().get("mastodon_apps", 0)
    assert connect_at(client, path, host, account="sbx-1001").status_code == 303
    [old] = fresh(db).scalars(select(InstanceApp)).all()
    old_client_id = old.client_id
    requests.post(f"{live_sandbox.url}/sandbox/p/{host}/_sandbox/vacuum", timeout=5).raise_for_status()

    assert connect_at(client, path, host, account="sbx-1002").status_code == 303
    [new] = fresh(db).scalars(select(InstanceApp)).all()
    assert new.client_id != old_client_id
    assert live_sandbox.counters()["mastodon_apps"] == before + 2
    assert len(connections_in(db, workspace.id)) == 2


def test_a_code_from_another_server_cannot_be_used(client, db, runtime):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["mastodon"])
    at_a = start(client, path, "server-a.example").headers["Location"]
    at_b = start(client, path, "server-b.example").headers["Location"]
    callback_b = consent(at_b, account="sbx-1002")
    # The state of the attempt at A with the code B issued: exchanged at A, which refuses it.
    forged = client.get(f"/oauth/callback/mastodon?state={query_of(at_a)['state']}&code={query_of(callback_b)['code']}")
    assert forged.status_code == 502
    assert "did not complete the sign-in" in forged.get_data(as_text=True)
    assert connections_in(db, workspace.id) == []
    # The code was not spent at A: B's genuine callback still completes, bound to B.
    genuine = client.get(local_path(callback_b))
    assert genuine.status_code == 303
    [row] = connections_in(db, workspace.id)
    assert (row.external_id, row.instance) == ("server-b.example:101002", "https://server-b.example")


def test_a_callback_in_another_browser_is_stored_only_once_confirmed(client, app, db, runtime):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["mastodon"])
    callback = consent(start(client, path).headers["Location"], account="sbx-1003")
    elsewhere = app.test_client().get(local_path(callback))  # no cookie of the browser that started
    assert elsewhere.status_code == 303 and "/select/" in elsewhere.headers["Location"]
    assert connections_in(db, workspace.id) == []
    assert choose_accounts(client, elsewhere.headers["Location"], ["mastodon.example:101003"]).status_code == 303
    [row] = connections_in(db, workspace.id)
    assert (row.handle, row.instance) == ("casa_aurora@mastodon.example", "https://mastodon.example")


def test_duplicate_connect_keeps_one_row(client, db, runtime):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["mastodon"])
    assert connect_at(client, path, account="sbx-1001").status_code == 303
    [first] = connections_in(db, workspace.id)
    first_id, first_version = first.id, first.token_version
    assert connect_at(client, path, account="sbx-1001").status_code == 303
    [again] = connections_in(db, workspace.id)
    assert again.id == first_id and again.token_version == first_version + 1
    actions = [e.action for e in fresh(db).scalars(select(AuditEvent).order_by(AuditEvent.id))]
    assert actions.count("connection.created") == 1 and actions.count("connection.reconnected") == 1


def test_unticked_publishing_scope_is_named_and_nothing_is_stored(client, db, runtime):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["mastodon"])
    response = connect_at(client, path, scopes=["read:accounts", "write:media"])
    assert response.status_code == 400 and "write:statuses" in response.get_data(as_text=True)
    assert connections_in(db, workspace.id) == []


def test_disconnect_revokes_the_token_at_the_server(client, db, runtime, live_sandbox):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["mastodon"])
    connect_at(client, path)
    [row] = connections_in(db, workspace.id)
    access = connections.read_tokens(runtime.deps, row)[0]
    spec, _, adapter = bound(db, runtime, row)
    revocations = live_sandbox.counters().get("revocations", 0)
    gone = connections.disconnect(db, runtime.deps, row.agency_id, row.id, SYSTEM)
    db.commit()
    gone.revoke()
    assert live_sandbox.counters()["revocations"] == revocations + 1
    with pytest.raises(PlatformError) as dead:
        adapter.check(spec, access)
    assert dead.value.kind == PlatformError.TOKEN_INVALID


# Errors ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode, kind", [("revoked", PlatformError.TOKEN_INVALID),
                                        ("rate_limited", PlatformError.RATE_LIMITED),
                                        ("server_error", PlatformError.TEMPORARY)])
def test_health_check_errors_map_to_shared_classes(client, db, runtime, live_sandbox, mode, kind):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["mastodon"])
    connect_at(client, path)
    [row] = connections_in(db, workspace.id)
    spec, _, adapter = bound(db, runtime, row)
    access = connections.read_tokens(runtime.deps, row)[0]
    live_sandbox.fail("userinfo", mode)
    try:
        with pytest.raises(PlatformError) as failed:
            adapter.check(spec, access)
    finally:
        live_sandbox.reset()
    assert failed.value.kind == kind
    if kind == PlatformError.RATE_LIMITED:  # from X-RateLimit-Reset, an ISO time
        assert 20 <= (failed.value.retry_after or 0) <= 31
    adapter.check(spec, access)  # the token itself is fine


def test_scope_and_disabled_login_refusals_are_permission_problems():
    for message in ("This action is outside the authorized scopes", "Your login is currently disabled"):
        assert classify_mastodon_error(403, {"error": message}, {}, "call").kind == PlatformError.PERMISSION_LOST
    assert classify_mastodon_error(401, {"error": "The access token was revoked"}, {},
                                   "call").kind == PlatformError.TOKEN_INVALID
    assert classify_mastodon_error(401, {"error": "invalid_client"}, {}, "call").kind == \
        PlatformError.APP_MISCONFIGURED
    assert classify_mastodon_error(422, {"error": "Validation failed"}, {}, "call").kind == PlatformError.TEMPORARY


def test_a_failing_code_exchange_gives_a_retryable_page(client, db, runtime, live_sandbox):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["mastodon"])
    started = start(client, path)
    callback = consent(started.headers["Location"])
    live_sandbox.fail("token", "server_error")
    try:
        response = client.get(local_path(callback))
    finally:
        live_sandbox.reset()
    assert response.status_code == 502 and "Try again" in response.get_data(as_text=True)
    assert connections_in(db, workspace.id) == []


@pytest.mark.parametrize("server, message", [
    ("mastodon.example/@me", "enter only the server name"),
    ("", "Enter the address of your server"),
    ("not-mastodon.example", "does not look like a Mastodon server"),
])
def test_bad_or_non_mastodon_servers_are_form_errors(client, db, runtime, server, message):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["mastodon"])
    response = start(client, path, server)
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and message in html and 'name="server"' in html
    assert response.headers["Cache-Control"] == "no-store"
    assert fresh(db).scalars(select(ConnectAttempt)).all() == []


def test_account_address_is_accepted_for_the_server(client, db, runtime):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["mastodon"])
    assert connect_at(client, path, "@casa_aurora@mastodon.example", account="sbx-1003").status_code == 303
    [row] = connections_in(db, workspace.id)
    assert row.instance == "https://mastodon.example"


def test_unreachable_server_is_a_clear_form_error(db, runtime):
    # A closed port on loopback, reached on purpose: private addresses allowed, platforms not sandboxed.
    deps = replace(runtime.deps, settings=replace(runtime.settings, sandbox_platforms=False, allow_private_urls=True))
    _, _, _, path = all_platforms_link(db, deps, ["mastodon"])
    session, resolved = resolved_link(runtime, deps, path)
    try:
        with pytest.raises(ValidationFailed, match="We could not reach 127.0.0.1:9"):
            credentials.begin_instance_oauth(session, deps, resolved, "mastodon", "http://127.0.0.1:9")
    finally:
        session.close()


def test_a_web_site_that_is_not_mastodon_is_a_clear_form_error(db, runtime, live_sandbox):
    # The sandbox's own root on loopback answers /api/v1/apps with an HTML 404, like any web site.
    deps = replace(runtime.deps, settings=replace(runtime.settings, sandbox_platforms=False, allow_private_urls=True))
    _, _, _, path = all_platforms_link(db, deps, ["mastodon"])
    session, resolved = resolved_link(runtime, deps, path)
    try:
        with pytest.raises(ValidationFailed, match="does not look like a Mastodon server"):
            credentials.begin_instance_oauth(session, deps, resolved, "mastodon", live_sandbox.url)
    finally:
        session.close()


# SSRF in production ---------------------------------------------------------------------------------

@pytest.mark.parametrize("server, message", [
    ("127.0.0.1", "private, local or reserved"),
    ("10.0.0.1", "private, local or reserved"),
    ("169.254.169.254", "private, local or reserved"),
    ("https://[::1]/", "private, local or reserved"),
    ("[::1]", "private, local or reserved"),
    ("http://mastodon.example", "only https:// addresses"),
    ("RECORDER", "private, local or reserved"),
])
def test_production_refuses_private_and_plain_http_servers_without_a_request(db, runtime, production, recorder,
                                                                             server, message):
    port, hits = recorder
    server = f"127.0.0.1:{port}" if server == "RECORDER" else server
    _, _, _, path = all_platforms_link(db, production, ["mastodon"])
    session, resolved = resolved_link(runtime, production, path)
    assert "mastodon" in platforms.offered(session, production, resolved.agency.id)  # no app to configure
    try:
        with pytest.raises(ValidationFailed) as refused:
            credentials.begin_instance_oauth(session, production, resolved, "mastodon", server)
    finally:
        session.close()
    assert refused.value.public_message.startswith("This server address cannot be used:")
    assert message in refused.value.public_message
    assert hits == []
    assert fresh(db).scalars(select(InstanceApp)).all() == []
    assert fresh(db).scalars(select(ConnectAttempt)).all() == []

"""TikTok end to end against its sandbox stand-in: client_key, comma scopes, open_id, 2-hour tokens,
rotating refresh tokens, the API and OAuth error envelopes, revocation."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from portal.errors import PlatformError
from portal.models import Connection, Health
from portal.providers.adapters.tiktok import classify_tiktok_error
from portal.services import connections as connection_service
from portal.services import platforms, tokens
from portal.services.audit import SYSTEM
from portal.services.tokens import RefreshResult
from tests.helpers import all_platforms_link, connect, connections_in, fresh, start_flow

ALL_SCOPES = ["user.info.basic", "user.info.profile", "video.publish", "video.upload"]


def _connected(client, db, runtime, account="sbx-1002", scopes=None):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["tiktok"])
    response = connect(client, path, platform="tiktok", account=account, scopes=scopes)
    assert response.status_code == 303 and "/done/" in response.headers["Location"], response.status_code
    [row] = connections_in(db, workspace.id)
    return row


def _kit(runtime):
    spec = platforms.spec_for(runtime.deps.settings, "tiktok")
    return spec, platforms.operator_app(runtime.deps.settings, spec), platforms.adapter_for(runtime.deps, spec)


def _raises(live_sandbox, endpoint, mode, call):
    live_sandbox.fail(endpoint, mode)
    try:
        with pytest.raises(PlatformError) as error:
            call()
    finally:
        live_sandbox.reset()
    return error.value


def test_authorize_url_names_the_client_key_and_comma_separated_scopes(client, db, runtime):
    _, _, _, path = all_platforms_link(db, runtime.deps, ["tiktok"])
    url = start_flow(client, path, "tiktok")
    query = parse_qs(urlsplit(url).query)
    assert urlsplit(url).path.endswith("/p/www.tiktok.com/v2/auth/authorize/")
    assert query["client_key"] == [runtime.deps.settings.sandbox_client_id] and "client_id" not in query
    assert query["scope"] == [",".join(ALL_SCOPES)] and query["response_type"] == ["code"]
    assert "code_challenge" not in query  # PKCE is for TikTok's mobile and desktop apps only


def test_tiktok_connects_with_open_id_and_two_hour_tokens(client, db, runtime):
    row = _connected(client, db, runtime)
    now = runtime.deps.now()
    assert (row.platform, row.external_id, row.handle, row.display_name, row.account_kind) == (
        "tiktok", "tt-open-1002", "northwind", "Northwind Outfitters", "profile")
    assert row.avatar_url.endswith("/sandbox/avatars/sbx-1002.svg")
    assert row.scopes == " ".join(ALL_SCOPES)  # TikTok's comma-separated scope, recorded
    assert now + timedelta(hours=1, minutes=59) < row.token_expires_at <= now + timedelta(hours=2)
    refresh_days = min(180, runtime.deps.settings.sandbox_refresh_lifetime // 86400)
    assert row.refresh_expires_at > now + timedelta(days=refresh_days - 1)
    assert row.refresh_token_enc is not None and row.health == Health.HEALTHY


def test_connecting_again_updates_the_same_row(client, db, runtime):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["tiktok"])
    assert connect(client, path, platform="tiktok", account="sbx-1001").status_code == 303
    [first] = connections_in(db, workspace.id)
    first_id, version = first.id, first.token_version
    assert connect(client, path, platform="tiktok", account="sbx-1001").status_code == 303
    [again] = connections_in(db, workspace.id)
    assert again.id == first_id and again.token_version == version + 1
    assert connect(client, path, platform="tiktok", account="sbx-1003").status_code == 303
    assert sorted(c.external_id for c in connections_in(db, workspace.id)) == ["tt-open-1001", "tt-open-1003"]


def test_refresh_rotates_and_the_old_refresh_token_dies(client, db, runtime, live_sandbox):
    row = _connected(client, db, runtime)
    _, old_refresh = connection_service.read_tokens(runtime.deps, row)
    row_id, version = row.id, row.token_version
    refreshes = live_sandbox.counters().get("refreshes", 0)
    assert tokens.refresh_connection(db, runtime.deps, row_id, force=True) == RefreshResult.REFRESHED
    assert live_sandbox.counters()["refreshes"] == refreshes + 1
    fresh(db)
    row = db.get(Connection, row_id)
    access, new_refresh = connection_service.read_tokens(runtime.deps, row)
    assert row.token_version == version + 1 and new_refresh != old_refresh
    assert row.refresh_expires_at > runtime.deps.now() + timedelta(days=30)  # a new refresh_expires_in came back
    spec, app, adapter = _kit(runtime)
    spent = _call_raises(lambda: adapter.refresh(spec, app, None, old_refresh, runtime.deps.now()))
    assert spent.kind == PlatformError.TOKEN_INVALID and spent.platform_code == "invalid_grant"
    adapter.check(spec, access)  # the new access token works
    assert tokens.refresh_connection(db, runtime.deps, row_id, force=True) == RefreshResult.REFRESHED


def _call_raises(call):
    with pytest.raises(PlatformError) as error:
        call()
    return error.value


def test_invalid_grant_on_refresh_marks_the_connection_for_reconnect(client, db, runtime, live_sandbox):
    row = _connected(client, db, runtime)
    row_id = row.id
    error = _raises(live_sandbox, "token", "invalid_grant",
                    lambda: tokens.refresh_connection(db, runtime.deps, row_id, force=True))
    assert error.kind == PlatformError.TOKEN_INVALID
    fresh(db)
    row = db.get(Connection, row_id)
    assert row.health == Health.ERROR and "reconnect" in row.health_reason


@pytest.mark.parametrize("mode, kind", [("server_error", PlatformError.TEMPORARY),
                                        ("rate_limited", PlatformError.RATE_LIMITED),
                                        ("invalid_client", PlatformError.APP_MISCONFIGURED)])
def test_refresh_failures_that_are_not_the_connections_fault(client, db, runtime, live_sandbox, mode, kind):
    row = _connected(client, db, runtime)
    row_id, version = row.id, row.token_version
    error = _raises(live_sandbox, "token", mode,
                    lambda: tokens.refresh_connection(db, runtime.deps, row_id, force=True))
    assert error.kind == kind
    if mode == "rate_limited":
        assert error.retry_after == 60.0  # TikTok's one-minute window; it sends no Retry-After
    fresh(db)
    row = db.get(Connection, row_id)
    assert row.health == Health.HEALTHY and row.token_version == version
    assert tokens.refresh_connection(db, runtime.deps, row_id, force=True) == RefreshResult.REFRESHED


@pytest.mark.parametrize("mode, kind, code", [("revoked", PlatformError.TOKEN_INVALID, "access_token_invalid"),
                                              ("rate_limited", PlatformError.RATE_LIMITED, "rate_limit_exceeded"),
                                              ("server_error", PlatformError.TEMPORARY, "internal_error")])
def test_health_check_maps_tiktok_api_errors(client, db, runtime, live_sandbox, mode, kind, code):
    row = _connected(client, db, runtime)
    access, _ = connection_service.read_tokens(runtime.deps, row)
    spec, _, adapter = _kit(runtime)
    adapter.check(spec, access)
    error = _raises(live_sandbox, "userinfo", mode, lambda: adapter.check(spec, access))
    assert (error.kind, error.platform_code) == (kind, code)


def test_unticked_required_scope_is_named_and_nothing_is_stored(client, db, runtime):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["tiktok"])
    response = connect(client, path, platform="tiktok", scopes=["user.info.basic", "user.info.profile"])
    assert response.status_code == 400 and "video.publish" in response.get_data(as_text=True)
    # Without user.info.basic the profile cannot be read: still a clear page naming it, not a failure.
    response = connect(client, path, platform="tiktok", scopes=["video.publish", "video.upload"])
    assert response.status_code == 400 and "user.info.basic" in response.get_data(as_text=True)
    assert connections_in(db, workspace.id) == []


def test_optional_profile_scope_unticked_asks_only_for_basic_fields(client, db, runtime):
    row = _connected(client, db, runtime, account="sbx-1003", scopes=["user.info.basic", "video.publish"])
    assert (row.external_id, row.display_name, row.handle) == ("tt-open-1003", "Casa Aurora Studio", "")
    assert row.scopes == "user.info.basic video.publish"


def test_asking_for_a_field_without_its_scope_is_refused_by_tiktok(client, db, runtime, live_sandbox):
    row = _connected(client, db, runtime, scopes=["user.info.basic", "video.publish"])
    access, _ = connection_service.read_tokens(runtime.deps, row)
    spec = platforms.spec_for(runtime.deps.settings, "tiktok")
    answer = requests.get(spec.userinfo_url, headers={"Authorization": f"Bearer {access}"}, timeout=5)
    body = answer.json()
    assert answer.status_code == 401 and body["error"]["code"] == "scope_not_authorized" and body["data"] == {}
    error = classify_tiktok_error(answer.status_code, body, None, "identity call")
    assert error.kind == PlatformError.PERMISSION_LOST


def test_identity_failure_at_the_callback_stores_nothing(client, db, runtime, live_sandbox):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["tiktok"])
    live_sandbox.fail("userinfo", "server_error")
    try:
        response = connect(client, path, platform="tiktok")
    finally:
        live_sandbox.reset()
    assert response.status_code == 502 and "try again" in response.get_data(as_text=True).lower()
    assert connections_in(db, workspace.id) == []


def test_spent_code_is_an_oauth_invalid_grant(client, db, runtime):
    spec, app, _ = _kit(runtime)
    answer = requests.post(spec.token_url, data={"client_key": app.client_id, "client_secret": app.client_secret,
                                                 "code": "not-a-code", "grant_type": "authorization_code",
                                                 "redirect_uri": "http://portal.test/oauth/callback/tiktok"},
                           timeout=5)
    body = answer.json()
    assert answer.status_code == 400 and body["error"] == "invalid_grant" and body["log_id"]
    assert classify_tiktok_error(400, body, None, "code exchange").kind == PlatformError.TOKEN_INVALID


def test_disconnect_revokes_at_tiktok(client, db, runtime, live_sandbox):
    row = _connected(client, db, runtime)
    access, _ = connection_service.read_tokens(runtime.deps, row)
    revocations = live_sandbox.counters().get("revocations", 0)
    result = connection_service.disconnect(db, runtime.deps, row.agency_id, row.id, SYSTEM)
    db.commit()
    result.revoke()
    assert live_sandbox.counters()["revocations"] == revocations + 1
    spec, _, adapter = _kit(runtime)
    assert _call_raises(lambda: adapter.check(spec, access)).kind == PlatformError.TOKEN_INVALID


@pytest.mark.parametrize("status, body, kind", [
    (401, {"error": {"code": "access_token_invalid"}}, PlatformError.TOKEN_INVALID),
    (401, {"error": {"code": "scope_not_authorized"}}, PlatformError.PERMISSION_LOST),
    (403, {"error": {"code": "scope_permission_missed"}}, PlatformError.PERMISSION_LOST),
    (429, {"error": {"code": "rate_limit_exceeded"}}, PlatformError.RATE_LIMITED),
    (500, {"error": {"code": "internal_error"}}, PlatformError.TEMPORARY),
    (400, {"error": {"code": "invalid_params"}}, PlatformError.TEMPORARY),
    (400, {"error": "invalid_grant", "error_description": "x", "log_id": "y"}, PlatformError.TOKEN_INVALID),
    (401, {"error": "invalid_client", "error_description": "x", "log_id": "y"}, PlatformError.APP_MISCONFIGURED),
    (503, {"error": "invalid_grant"}, PlatformError.TEMPORARY),  # the status wins: an outage is never "revoked"
    (400, {"something": "else"}, PlatformError.TEMPORARY),
])
def test_tiktok_error_classes(status, body, kind):
    assert classify_tiktok_error(status, body, None, "call").kind == kind

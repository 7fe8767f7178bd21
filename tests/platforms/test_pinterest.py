"""Pinterest end to end against its sandbox stand-in: HTTP Basic, boards as connections (bookmark
pagination), continuous refresh (a new refresh token and 60-day expiry each time), error codes,
no user-token revocation."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
import requests

from portal.errors import PlatformError
from portal.models import Connection, Health
from portal.oauth import TokenGrant
from portal.providers.adapters.pinterest import classify_pinterest_error, classify_pinterest_token_error
from portal.services import connections as connection_service
from portal.services import platforms, tokens
from portal.services.audit import SYSTEM
from portal.services.tokens import RefreshResult
from tests.helpers import (
    all_platforms_link,
    candidates_on,
    connect,
    connections_in,
    fresh,
    make_link,
    select,
    start_flow,
)

SIXTY_DAYS = timedelta(days=60)


def _kit(runtime):
    spec = platforms.spec_for(runtime.deps.settings, "pinterest")
    return spec, platforms.operator_app(runtime.deps.settings, spec), platforms.adapter_for(runtime.deps, spec)


def _connected(client, db, runtime, account="sbx-1002", boards=None):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["pinterest"])
    response = connect(client, path, platform="pinterest", account=account)
    assert response.status_code == 303 and "/select/" in response.headers["Location"], response.status_code
    select_path = response.headers["Location"]
    chosen = boards or candidates_on(client, select_path)[:1]
    assert select(client, select_path, chosen).status_code == 303
    return workspace, connections_in(db, workspace.id)


def _raises(call):
    with pytest.raises(PlatformError) as error:
        call()
    return error.value


def _failing(live_sandbox, endpoint, mode, call):
    live_sandbox.fail(endpoint, mode)
    try:
        return _raises(call)
    finally:
        live_sandbox.reset()


def test_boards_are_listed_across_bookmark_pages_and_each_becomes_a_connection(client, db, runtime):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["pinterest"])
    url = start_flow(client, path, "pinterest")
    assert "scope=boards%3Aread%2Cboards%3Awrite" in url and "client_id=" in url
    response = connect(client, path, platform="pinterest", account="sbx-1001")
    select_path = response.headers["Location"]
    # Three boards, served two per page: the third exists only behind a bookmark.
    assert candidates_on(client, select_path) == ["pb-1001-1", "pb-1001-2", "pb-1001-3"]
    page = client.get(select_path).get_data(as_text=True)
    assert "Sourdough Recipes" in page and "Public board" in page
    assert connections_in(db, workspace.id) == []
    assert select(client, select_path, ["pb-1001-1", "pb-1001-3"]).status_code == 303
    rows = sorted(connections_in(db, workspace.id), key=lambda c: c.external_id)
    assert [(c.external_id, c.display_name, c.account_kind, c.handle, c.parent_external_id) for c in rows] == [
        ("pb-1001-1", "Sourdough Recipes", "board", "bluebottlebakery", "bluebottlebakery"),
        ("pb-1001-3", "Seasonal Specials", "board", "bluebottlebakery", "bluebottlebakery")]
    assert rows[0].extra == {"privacy": "PUBLIC", "user_account": "bluebottlebakery"}
    now = runtime.deps.now()
    assert now + timedelta(days=29) < rows[0].token_expires_at <= now + timedelta(days=30)
    assert rows[0].refresh_expires_at > now + SIXTY_DAYS - timedelta(minutes=5)
    assert rows[0].scopes == "boards:read boards:write pins:read pins:write user_accounts:read"


def test_connecting_again_updates_the_board_rows(client, db, runtime):
    workspace, [row] = _connected(client, db, runtime, boards=["pb-1002-2"])
    row_id, version = row.id, row.token_version
    _, path = make_link(db, runtime.deps, workspace, platforms=["pinterest"], available=["pinterest"])
    select_path = connect(client, path, platform="pinterest", account="sbx-1002").headers["Location"]
    assert select(client, select_path, ["pb-1002-1", "pb-1002-2"]).status_code == 303
    rows = {c.external_id: c for c in connections_in(db, workspace.id)}
    assert sorted(rows) == ["pb-1002-1", "pb-1002-2"]
    assert rows["pb-1002-2"].id == row_id and rows["pb-1002-2"].token_version == version + 1


def test_personal_account_is_named_by_its_username(client, db, runtime):
    _, [row] = _connected(client, db, runtime, account="sbx-1003", boards=["pb-1003-1"])
    spec, _, adapter = _kit(runtime)
    access, _ = connection_service.read_tokens(runtime.deps, row)
    account = adapter.identify(spec, TokenGrant(access, None, None, None, ()))
    assert (account.external_id, account.display_name, account.handle) == ("casa_aurora", "casa_aurora",
                                                                           "casa_aurora")
    assert (row.external_id, row.display_name) == ("pb-1003-1", "Interiors")


def test_continuous_refresh_stores_the_new_refresh_token_and_expiry(client, db, runtime, live_sandbox):
    _, [row] = _connected(client, db, runtime)
    row_id, version = row.id, row.token_version
    _, old_refresh = connection_service.read_tokens(runtime.deps, row)
    assert tokens.refresh_connection(db, runtime.deps, row_id, force=True) == RefreshResult.REFRESHED
    fresh(db)
    row = db.get(Connection, row_id)
    access, new_refresh = connection_service.read_tokens(runtime.deps, row)
    assert new_refresh != old_refresh and row.token_version == version + 1
    assert row.refresh_expires_at > runtime.deps.now() + SIXTY_DAYS - timedelta(minutes=5)
    spec, app, adapter = _kit(runtime)
    spent = _raises(lambda: adapter.refresh(spec, app, None, old_refresh, runtime.deps.now()))
    assert (spent.kind, spent.platform_code) == (PlatformError.TOKEN_INVALID, "283")
    adapter.check(spec, access)
    assert tokens.refresh_connection(db, runtime.deps, row_id, force=True) == RefreshResult.REFRESHED


def test_invalid_grant_on_refresh_marks_the_board_for_reconnect(client, db, runtime, live_sandbox):
    _, [row] = _connected(client, db, runtime)
    row_id = row.id
    error = _failing(live_sandbox, "token", "invalid_grant",
                     lambda: tokens.refresh_connection(db, runtime.deps, row_id, force=True))
    assert (error.kind, error.platform_code) == (PlatformError.TOKEN_INVALID, "283")
    fresh(db)
    assert db.get(Connection, row_id).health == Health.ERROR


@pytest.mark.parametrize("mode, kind", [("server_error", PlatformError.TEMPORARY),
                                        ("rate_limited", PlatformError.RATE_LIMITED),
                                        ("invalid_client", PlatformError.APP_MISCONFIGURED)])
def test_refresh_failures_that_are_not_the_connections_fault(client, db, runtime, live_sandbox, mode, kind):
    _, [row] = _connected(client, db, runtime)
    row_id, version = row.id, row.token_version
    error = _failing(live_sandbox, "token", mode,
                     lambda: tokens.refresh_connection(db, runtime.deps, row_id, force=True))
    assert error.kind == kind
    if mode == "rate_limited":
        assert (error.retry_after, error.platform_code) == (60.0, "8")
    fresh(db)
    row = db.get(Connection, row_id)
    assert row.health == Health.HEALTHY and row.token_version == version
    assert tokens.refresh_connection(db, runtime.deps, row_id, force=True) == RefreshResult.REFRESHED


@pytest.mark.parametrize("mode, kind, code", [("revoked", PlatformError.TOKEN_INVALID, "2"),
                                              ("rate_limited", PlatformError.RATE_LIMITED, "8"),
                                              ("server_error", PlatformError.TEMPORARY, "1")])
def test_health_check_maps_pinterest_error_codes(client, db, runtime, live_sandbox, mode, kind, code):
    _, [row] = _connected(client, db, runtime)
    access, _ = connection_service.read_tokens(runtime.deps, row)
    spec, _, adapter = _kit(runtime)
    adapter.check(spec, access)
    error = _failing(live_sandbox, "userinfo", mode, lambda: adapter.check(spec, access))
    assert (error.kind, error.platform_code) == (kind, code)


def test_unticked_required_scope_is_named_and_nothing_is_stored(client, db, runtime):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["pinterest"])
    response = connect(client, path, platform="pinterest",
                       scopes=["boards:read", "boards:write", "pins:read", "user_accounts:read"])
    assert response.status_code == 400 and "pins:write" in response.get_data(as_text=True)
    # Without boards:read the boards cannot be listed: the page names it instead of failing the call.
    response = connect(client, path, platform="pinterest", scopes=["pins:write", "user_accounts:read"])
    assert response.status_code == 400 and "boards:read" in response.get_data(as_text=True)
    assert connections_in(db, workspace.id) == []


def test_token_endpoint_insists_on_http_basic(runtime):
    spec, app, _ = _kit(runtime)
    form = {"grant_type": "refresh_token", "refresh_token": "x", "client_id": app.client_id,
            "client_secret": app.client_secret}
    answer = requests.post(spec.token_url, data=form, timeout=5)
    assert answer.status_code == 401 and answer.json() == {"code": 2, "message": "Authentication failed."}
    assert classify_pinterest_token_error(401, answer.json(), None, "refresh").kind == PlatformError.APP_MISCONFIGURED
    basic = base64.b64encode(f"{app.client_id}:{app.client_secret}".encode()).decode()
    answer = requests.post(spec.token_url, data={"grant_type": "refresh_token", "refresh_token": "x"},
                           headers={"Authorization": f"Basic {basic}"}, timeout=5)
    assert answer.status_code == 401 and answer.json()["code"] == 283


def test_token_response_has_pinterests_fields(client, db, runtime):
    _, [row] = _connected(client, db, runtime)
    spec, app, _ = _kit(runtime)
    _, refresh = connection_service.read_tokens(runtime.deps, row)
    basic = base64.b64encode(f"{app.client_id}:{app.client_secret}".encode()).decode()
    body = requests.post(spec.token_url, data={"grant_type": "refresh_token", "refresh_token": refresh},
                         headers={"Authorization": f"Basic {basic}"}, timeout=5).json()
    assert {"access_token", "expires_in", "refresh_token", "refresh_token_expires_in", "refresh_token_expires_at",
            "scope", "token_type", "response_type"} <= set(body)
    assert body["response_type"] == "refresh_token" and body["refresh_token"] != refresh


def test_disconnect_does_not_call_a_revocation_pinterest_lacks(client, db, runtime, live_sandbox):
    _, [row] = _connected(client, db, runtime)
    access, _ = connection_service.read_tokens(runtime.deps, row)
    revocations = live_sandbox.counters().get("revocations", 0)
    result = connection_service.disconnect(db, runtime.deps, row.agency_id, row.id, SYSTEM)
    db.commit()
    result.revoke()
    assert live_sandbox.counters().get("revocations", 0) == revocations
    spec, _, adapter = _kit(runtime)
    adapter.check(spec, access)  # still valid at Pinterest: only the user can remove the app there


@pytest.mark.parametrize("status, body, kind", [
    (401, {"code": 2, "message": "Authentication failed."}, PlatformError.TOKEN_INVALID),
    (403, {"code": 29, "message": "You are not permitted to access that resource."}, PlatformError.PERMISSION_LOST),
    (429, {"code": 8, "message": "Rate limited"}, PlatformError.RATE_LIMITED),
    (500, {"code": 1, "message": "oops"}, PlatformError.TEMPORARY),
    (503, {"code": 2, "message": "Authentication failed."}, PlatformError.TEMPORARY),
    (401, {"code": 283, "message": "The authorization grant is invalid"}, PlatformError.TOKEN_INVALID),
    (400, {"code": 1, "message": "Invalid request"}, PlatformError.TEMPORARY),
])
def test_pinterest_error_classes(status, body, kind):
    assert classify_pinterest_error(status, body, None, "call").kind == kind

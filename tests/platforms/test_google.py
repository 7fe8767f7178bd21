"""Google end to end against the sandbox's stand-in: YouTube channels and Business Profile locations."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import requests

from portal.errors import PlatformError
from portal.models import Connection, Health
from portal.providers.adapters.google import classify_google_error
from portal.services import connections, platforms, tokens
from portal.services.audit import SYSTEM
from portal.services.tokens import RefreshResult
from tests.conftest import PORTAL_BASE, SANDBOX_SECRET
from tests.helpers import (
    all_platforms_link,
    candidates_on,
    connect,
    connections_in,
    consent,
    fresh,
    select,
    start_flow,
)

YT = "https://www.googleapis.com/auth/youtube"


def _connect_picked(client, db, runtime, platform, account, chosen=None):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, [platform])
    response = connect(client, path, platform=platform, account=account)
    assert response.status_code == 303 and "/select/" in response.headers["Location"], response.status_code
    select_path = response.headers["Location"]
    offered = candidates_on(client, select_path)
    done = select(client, select_path, chosen or offered)
    assert done.status_code == 303 and "/done/" in done.headers["Location"]
    return workspace, offered, sorted(connections_in(db, workspace.id), key=lambda c: c.external_id)


def _adapter(db, runtime, row):
    spec, app = connections.spec_and_app(db, runtime.deps, row.agency_id, row.platform, None)
    access, refresh = connections.read_tokens(runtime.deps, row)
    return platforms.adapter_for(runtime.deps, spec), spec, app, access, refresh


def _failure(operation):
    with pytest.raises(PlatformError) as caught:
        operation()
    return caught.value


def _sandbox_token(live_sandbox, **form):
    return requests.post(f"{live_sandbox.url}/sandbox/p/oauth2.googleapis.com/token", timeout=10,
                         data={"client_id": "easyconnect-demo", "client_secret": SANDBOX_SECRET, **form})


# YouTube ---------------------------------------------------------------------------------------------------

def test_youtube_channel_is_picked_and_stored_with_the_users_offline_grant(client, db, runtime, live_sandbox):
    before = live_sandbox.counters().get("code_exchanges", 0)
    _, offered, [row] = _connect_picked(client, db, runtime, "youtube", "sbx-1001")
    assert offered == ["UCbluebottle0001"]
    assert (row.external_id, row.account_kind, row.display_name, row.handle, row.parent_external_id) == (
        "UCbluebottle0001", "channel", "Blue Bottle Bakes", "bluebottlebakes", "11701001")
    assert row.avatar_url.endswith("/sandbox/avatars/sbx-1001.svg")
    assert row.refresh_token_enc is not None  # access_type=offline + prompt=consent
    now = runtime.deps.now()
    assert now + timedelta(minutes=58) < row.token_expires_at <= now + timedelta(seconds=3599)
    assert row.refresh_expires_at is None  # Google's refresh tokens have no fixed lifetime
    granted = row.scopes.split()
    assert {f"{YT}.upload", f"{YT}.readonly", "https://www.googleapis.com/auth/userinfo.email"} <= set(granted)
    assert live_sandbox.counters()["code_exchanges"] == before + 1


def test_youtube_refresh_gets_a_new_access_token_and_keeps_the_refresh_token(client, db, runtime, live_sandbox):
    _, _, [row] = _connect_picked(client, db, runtime, "youtube", "sbx-1002")
    access, refresh = connections.read_tokens(runtime.deps, row)
    refreshes, version = live_sandbox.counters().get("refreshes", 0), row.token_version
    for _ in range(2):  # Google's refresh token is not single use
        assert tokens.refresh_connection(db, runtime.deps, row.id, force=True) == RefreshResult.REFRESHED
    assert live_sandbox.counters()["refreshes"] == refreshes + 2
    fresh(db)
    again = db.get(Connection, row.id)
    new_access, same_refresh = connections.read_tokens(runtime.deps, again)
    assert new_access != access and same_refresh == refresh
    assert again.token_version == version + 2 and again.health == Health.HEALTHY


def test_google_answers_a_refresh_without_a_refresh_token(client, db, runtime, live_sandbox):
    _, _, [row] = _connect_picked(client, db, runtime, "youtube", "sbx-1003")
    _, refresh = connections.read_tokens(runtime.deps, row)
    answer = _sandbox_token(live_sandbox, grant_type="refresh_token", refresh_token=refresh)
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    body = answer.json()
    assert "refresh_token" not in body and body["expires_in"] == 3599 and body["token_type"] == "Bearer"


def _bare_code(client, db, runtime, drop=(), **params):
    """A code from Google's consent page for an authorize request changed as given (PKCE left out)."""
    _, _, _, path = all_platforms_link(db, runtime.deps, ["youtube"])
    url = urlsplit(start_flow(client, path, "youtube"))
    query = {k: v for k, v in parse_qsl(url.query) if k not in (*drop, "code_challenge", "code_challenge_method")}
    callback = consent(url._replace(query=urlencode({**query, **params})).geturl(), account="sbx-1001")
    return dict(parse_qsl(urlsplit(callback).query))["code"]


def _exchange(live_sandbox, code):
    answer = _sandbox_token(live_sandbox, grant_type="authorization_code", code=code,
                            redirect_uri=f"{PORTAL_BASE}/oauth/callback/youtube")
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_refresh_token_only_with_offline_access_and_on_repeat_only_with_prompt_consent(client, db, runtime,
                                                                                      live_sandbox):
    online = _exchange(live_sandbox, _bare_code(client, db, runtime, drop=("access_type",)))
    assert "access_token" in online and "refresh_token" not in online
    forced = _exchange(live_sandbox, _bare_code(client, db, runtime, prompt="consent"))
    assert "refresh_token" in forced
    repeat = _exchange(live_sandbox, _bare_code(client, db, runtime, drop=("prompt",)))
    assert "access_token" in repeat and "refresh_token" not in repeat  # Google already holds an offline grant


def test_unticked_youtube_permission_is_named_not_a_failed_listing(client, db, runtime):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["youtube"])
    response = connect(client, path, platform="youtube", scopes=["openid", "email", "profile", f"{YT}.upload"])
    assert response.status_code == 400
    assert f"{YT}.readonly" in response.get_data(as_text=True)
    assert connections_in(db, workspace.id) == []


def test_youtube_health_check_and_its_failures(client, db, runtime, live_sandbox):
    _, _, [row] = _connect_picked(client, db, runtime, "youtube", "sbx-1001")
    adapter, spec, _, access, _ = _adapter(db, runtime, row)
    adapter.check(spec, access)
    adapter.check(spec, access, external_id="UCbluebottle0001")
    lost = _failure(lambda: adapter.check(spec, access, external_id="UCnorthwind00002"))
    assert lost.kind == PlatformError.PERMISSION_LOST
    try:
        live_sandbox.fail("userinfo", "rate_limited")  # YouTube throttles with 403 rateLimitExceeded
        throttled = _failure(lambda: adapter.check(spec, access))
        live_sandbox.fail("userinfo", "server_error")
        down = _failure(lambda: adapter.check(spec, access))
    finally:
        live_sandbox.reset()
    assert (throttled.kind, throttled.platform_code) == (PlatformError.RATE_LIMITED, "rateLimitExceeded")
    assert (down.kind, down.platform_code) == (PlatformError.TEMPORARY, "backendError")
    dead = _failure(lambda: adapter.check(spec, "not-a-token"))
    assert (dead.kind, dead.platform_code) == (PlatformError.TOKEN_INVALID, "authError")


def test_disconnecting_a_channel_revokes_the_grant_at_google(client, db, runtime, live_sandbox):
    _, _, [row] = _connect_picked(client, db, runtime, "youtube", "sbx-1002")
    _, refresh = connections.read_tokens(runtime.deps, row)
    revocations = live_sandbox.counters().get("revocations", 0)
    gone = connections.disconnect(db, runtime.deps, row.agency_id, row.id, SYSTEM)
    db.commit()
    gone.revoke()
    assert live_sandbox.counters()["revocations"] == revocations + 1
    answer = _sandbox_token(live_sandbox, grant_type="refresh_token", refresh_token=refresh)
    assert answer.status_code == 400
    assert answer.json() == {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}


def test_revoked_google_grant_is_reported_as_needing_reconnect(client, db, runtime, live_sandbox):
    _, _, [row] = _connect_picked(client, db, runtime, "youtube", "sbx-1001")
    adapter, spec, app, access, refresh = _adapter(db, runtime, row)
    adapter.revoke(spec, app, access, refresh)  # as if the user removed the app in their Google account
    error = _failure(lambda: tokens.refresh_connection(db, runtime.deps, row.id, force=True))
    assert (error.kind, error.platform_code) == (PlatformError.TOKEN_INVALID, "invalid_grant")
    fresh(db)
    assert db.get(Connection, row.id).health == Health.ERROR
    assert _failure(lambda: adapter.check(spec, access)).kind == PlatformError.TOKEN_INVALID


# Business Profile ------------------------------------------------------------------------------------------

def test_business_locations_of_every_account_are_offered_with_their_addresses(client, db, runtime):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["gmb"])
    select_path = connect(client, path, platform="gmb", account="sbx-1001").headers["Location"]
    # three locations over two pages of the account's list
    assert candidates_on(client, select_path) == ["locations/51001", "locations/51002", "locations/51003"]
    page = client.get(select_path).get_data(as_text=True)
    assert "123 Main St, Springfield" in page and "789 Pine Rd, Springfield" in page
    assert "8 Quay Rd, Springfield · not verified yet" in page
    assert select(client, select_path, ["locations/51001", "locations/51003"]).status_code == 303
    rows = sorted(connections_in(db, workspace.id), key=lambda c: c.external_id)
    assert [(c.external_id, c.account_kind, c.display_name, c.extra, c.parent_external_id) for c in rows] == [
        ("locations/51001", "location", "Blue Bottle Bakery Downtown", {"account": "accounts/11001"}, "11701001"),
        ("locations/51003", "location", "Blue Bottle Bakery Uptown", {"account": "accounts/11001"}, "11701001")]
    assert all(c.refresh_token_enc is not None for c in rows)


def test_business_location_in_a_location_group_keeps_its_account_path(client, db, runtime):
    _, offered, [row] = _connect_picked(client, db, runtime, "gmb", "sbx-1002")
    assert offered == ["locations/52001"]  # the personal account has none; the group has one
    assert (row.display_name, row.extra) == ("Northwind Flagship", {"account": "accounts/21002"})


def test_person_without_business_locations_is_told_plainly(client, db, runtime):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["gmb"])
    response = connect(client, path, platform="gmb", account="sbx-1003")
    assert response.status_code == 400
    assert "could not find any location" in response.get_data(as_text=True)
    assert connections_in(db, workspace.id) == []


def test_business_information_requires_a_read_mask(client, db, runtime, live_sandbox):
    _, _, [row] = _connect_picked(client, db, runtime, "gmb", "sbx-1002")
    access, _ = connections.read_tokens(runtime.deps, row)
    url = f"{live_sandbox.url}/sandbox/p/mybusinessbusinessinformation.googleapis.com/v1/accounts/21002/locations"
    bare = requests.get(url, headers={"Authorization": f"Bearer {access}"}, timeout=10)
    assert bare.status_code == 400
    error = bare.json()["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert error["details"][0]["fieldViolations"][0]["field"] == "read_mask"
    masked = requests.get(url, params={"readMask": "name"}, headers={"Authorization": f"Bearer {access}"},
                          timeout=10)
    assert masked.status_code == 200 and masked.json() == {"locations": [{"name": "locations/52001"}]}
    mine = requests.get(url.replace("21002", "11001"), params={"readMask": "name"},
                        headers={"Authorization": f"Bearer {access}"}, timeout=10)
    assert mine.status_code == 403 and mine.json()["error"]["status"] == "PERMISSION_DENIED"


def test_business_health_check_reads_the_location(client, db, runtime, live_sandbox):
    _, _, rows = _connect_picked(client, db, runtime, "gmb", "sbx-1001", ["locations/51001"])
    adapter, spec, _, access, _ = _adapter(db, runtime, rows[0])
    adapter.check(spec, access, external_id="locations/51001")
    adapter.check(spec, access)
    lost = _failure(lambda: adapter.check(spec, access, external_id="locations/52001"))  # another person's location
    removed = _failure(lambda: adapter.check(spec, access, external_id="locations/59999"))
    assert (lost.kind, lost.platform_code) == (PlatformError.PERMISSION_LOST, "PERMISSION_DENIED")
    assert (removed.kind, removed.platform_code) == (PlatformError.PERMISSION_LOST, "NOT_FOUND")
    try:
        live_sandbox.fail("userinfo", "rate_limited")  # Business Profile throttles with 429 RESOURCE_EXHAUSTED
        throttled = _failure(lambda: adapter.check(spec, access, external_id="locations/51001"))
        live_sandbox.fail("userinfo", "server_error")
        down = _failure(lambda: adapter.check(spec, access, external_id="locations/51001"))
    finally:
        live_sandbox.reset()
    assert (throttled.kind, throttled.retry_after) == (PlatformError.RATE_LIMITED, 30.0)
    assert down.kind == PlatformError.TEMPORARY


def test_disconnecting_one_location_leaves_the_shared_grant_to_the_others(client, db, runtime, live_sandbox):
    _, _, rows = _connect_picked(client, db, runtime, "gmb", "sbx-1001", ["locations/51001", "locations/51002"])
    revocations = live_sandbox.counters().get("revocations", 0)
    gone = connections.disconnect(db, runtime.deps, rows[0].agency_id, rows[0].id, SYSTEM)
    db.commit()
    gone.revoke()
    assert live_sandbox.counters().get("revocations", 0) == revocations
    assert tokens.refresh_connection(db, runtime.deps, rows[1].id, force=True) == RefreshResult.REFRESHED


def test_refresh_that_omits_the_refresh_lifetime_keeps_the_stored_one(client, db, runtime):
    _, _, [row] = _connect_picked(client, db, runtime, "gmb", "sbx-1002")
    fresh(db)
    stored = db.get(Connection, row.id)
    known = runtime.deps.now().replace(microsecond=0) + timedelta(days=90)
    stored.refresh_expires_at = known
    db.commit()
    assert tokens.refresh_connection(db, runtime.deps, row.id, force=True) == RefreshResult.REFRESHED
    fresh(db)
    assert db.get(Connection, row.id).refresh_expires_at == known


def test_invalid_grant_at_refresh_marks_the_connection_for_reconnect(client, db, runtime, live_sandbox):
    _, _, [row] = _connect_picked(client, db, runtime, "gmb", "sbx-1002")
    live_sandbox.fail("token", "invalid_grant")
    try:
        error = _failure(lambda: tokens.refresh_connection(db, runtime.deps, row.id, force=True))
    finally:
        live_sandbox.reset()
    assert error.kind == PlatformError.TOKEN_INVALID
    fresh(db)
    assert db.get(Connection, row.id).health == Health.ERROR


# Google's error envelope -----------------------------------------------------------------------------------

def _envelope(code, status, reason=None, domain="global", details=None):
    error = {"code": code, "message": "m", "status": status}
    if reason:
        error["errors"] = [{"message": "m", "domain": domain, "reason": reason}]
    if details:
        error["details"] = details
    return {"error": error}


@pytest.mark.parametrize("status, body, retry_after, kind, wait", [
    (401, _envelope(401, "UNAUTHENTICATED", "authError"), None, PlatformError.TOKEN_INVALID, None),
    (403, _envelope(403, "PERMISSION_DENIED"), None, PlatformError.PERMISSION_LOST, None),
    (403, _envelope(403, "PERMISSION_DENIED", "insufficientPermissions"), None, PlatformError.PERMISSION_LOST, None),
    (403, _envelope(403, "", "rateLimitExceeded", "youtube.quota"), None, PlatformError.RATE_LIMITED, 60.0),
    (403, _envelope(403, "", "userRateLimitExceeded", "usageLimits"), "12", PlatformError.RATE_LIMITED, 12.0),
    (403, _envelope(403, "", "quotaExceeded", "youtube.quota"), None, PlatformError.RATE_LIMITED, 3600.0),
    (429, _envelope(429, "RESOURCE_EXHAUSTED"), "7", PlatformError.RATE_LIMITED, 7.0),
    (403, _envelope(403, "PERMISSION_DENIED", details=[{"reason": "SERVICE_DISABLED"}]), None,
     PlatformError.APP_MISCONFIGURED, None),
    (404, _envelope(404, "NOT_FOUND"), None, PlatformError.PERMISSION_LOST, None),
    (503, _envelope(503, "UNAVAILABLE", "backendError"), None, PlatformError.TEMPORARY, None),
    (500, {}, None, PlatformError.TEMPORARY, None),
    (400, _envelope(400, "INVALID_ARGUMENT"), None, PlatformError.TEMPORARY, None),
])
def test_google_errors_map_to_the_shared_classes(status, body, retry_after, kind, wait):
    error = classify_google_error(status, body, retry_after, "test call")
    assert error.kind == kind
    assert error.retry_after == wait

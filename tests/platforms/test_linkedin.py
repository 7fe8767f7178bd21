"""LinkedIn end to end against the sandbox's stand-in: the member's profile and the company pages they administer."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from sqlalchemy import update

from portal.errors import PlatformError
from portal.models import Connection, Health
from portal.providers.adapters.linkedin import API_VERSION, classify_linkedin_error
from portal.sandbox import SandboxToken, _hash
from portal.services import connections, platforms, tokens
from portal.services.audit import SYSTEM
from portal.services.tokens import RefreshResult
from tests.conftest import SANDBOX_SECRET
from tests.helpers import all_platforms_link, candidates_on, connect, connections_in, fresh, select

SLACK = timedelta(seconds=5)


def _profile(client, db, runtime, account="sbx-1002"):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["linkedin"])
    response = connect(client, path, platform="linkedin", account=account)
    assert response.status_code == 303 and "/done/" in response.headers["Location"], response.status_code
    [row] = connections_in(db, workspace.id)
    return row


def _pages(client, db, runtime, account="sbx-1002", chosen=None):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["linkedin-page"])
    response = connect(client, path, platform="linkedin-page", account=account)
    assert response.status_code == 303 and "/select/" in response.headers["Location"], response.status_code
    offered = candidates_on(client, response.headers["Location"])
    assert select(client, response.headers["Location"], chosen or offered).status_code == 303
    return offered, sorted(connections_in(db, workspace.id), key=lambda c: c.external_id)


def _adapter(db, runtime, row):
    spec, app = connections.spec_and_app(db, runtime.deps, row.agency_id, row.platform, None)
    access, refresh = connections.read_tokens(runtime.deps, row)
    return platforms.adapter_for(runtime.deps, spec), spec, app, access, refresh


def _failure(operation):
    with pytest.raises(PlatformError) as caught:
        operation()
    return caught.value


def _sandbox_server(live_sandbox):
    return live_sandbox.server.app.extensions["sandbox"]


# Profile ---------------------------------------------------------------------------------------------------

def test_profile_connects_with_a_60_day_token_and_a_365_day_refresh_token(client, db, runtime, live_sandbox):
    row = _profile(client, db, runtime)
    now = runtime.deps.now()
    assert (row.external_id, row.account_kind, row.display_name, row.handle) == (
        "li-1002", "profile", "Northwind Outfitters", "")
    assert row.avatar_url.endswith("/sandbox/avatars/sbx-1002.svg")
    assert row.scopes == "openid profile email w_member_social"  # answered comma-separated
    assert now + timedelta(days=60) - SLACK < row.token_expires_at <= now + timedelta(days=60)
    assert now + timedelta(days=365) - SLACK < row.refresh_expires_at <= now + timedelta(days=365)


def test_refreshing_does_not_extend_the_refresh_tokens_lifetime(client, db, runtime, live_sandbox):
    row = _profile(client, db, runtime, "sbx-1001")
    # The member consented 100 days ago: the platform's refresh token and our record both say so.
    _, refresh = connections.read_tokens(runtime.deps, row)
    consent_expiry = runtime.deps.now() + timedelta(days=265)
    with _sandbox_server(live_sandbox).sessions.begin() as sandbox_db:
        sandbox_db.execute(update(SandboxToken).where(SandboxToken.token_hash == _hash(refresh))
                           .values(expires_at=consent_expiry))
    fresh(db)
    db.get(Connection, row.id).refresh_expires_at = consent_expiry
    db.commit()
    for _ in range(2):
        assert tokens.refresh_connection(db, runtime.deps, row.id, force=True) == RefreshResult.REFRESHED
        fresh(db)
        again = db.get(Connection, row.id)
        assert consent_expiry - SLACK < again.refresh_expires_at <= consent_expiry  # never pushed out
        assert again.token_expires_at > runtime.deps.now() + timedelta(days=59)  # a new 60-day access token
        assert connections.read_tokens(runtime.deps, again)[1] == refresh


def test_linkedin_token_endpoint_takes_credentials_in_the_body_only(live_sandbox):
    url = f"{live_sandbox.url}/sandbox/p/www.linkedin.com/oauth/v2/accessToken"
    basic = requests.post(url, data={"grant_type": "refresh_token", "refresh_token": "x"},
                          auth=("easyconnect-demo", SANDBOX_SECRET), timeout=10)
    assert basic.status_code == 401 and basic.json()["error"] == "invalid_client"
    spent = requests.post(url, data={"grant_type": "refresh_token", "refresh_token": "x",
                                     "client_id": "easyconnect-demo", "client_secret": SANDBOX_SECRET}, timeout=10)
    assert spent.status_code == 400 and spent.json()["error"] == "invalid_grant"


def test_disconnecting_the_profile_revokes_its_token(client, db, runtime, live_sandbox):
    row = _profile(client, db, runtime)
    adapter, spec, _, access, _ = _adapter(db, runtime, row)
    adapter.check(spec, access)  # /v2/userinfo
    revocations = live_sandbox.counters().get("revocations", 0)
    gone = connections.disconnect(db, runtime.deps, row.agency_id, row.id, SYSTEM)
    db.commit()
    gone.revoke()
    assert live_sandbox.counters()["revocations"] == revocations + 1
    assert _failure(lambda: adapter.check(spec, access)).kind == PlatformError.TOKEN_INVALID


def test_invalid_refresh_token_marks_the_profile_for_reconnect(client, db, runtime, live_sandbox):
    row = _profile(client, db, runtime, "sbx-1003")
    live_sandbox.fail("token", "invalid_grant")
    try:
        error = _failure(lambda: tokens.refresh_connection(db, runtime.deps, row.id, force=True))
    finally:
        live_sandbox.reset()
    assert error.kind == PlatformError.TOKEN_INVALID
    fresh(db)
    assert db.get(Connection, row.id).health == Health.ERROR


# Company pages ---------------------------------------------------------------------------------------------

def test_pages_the_member_administers_are_offered_and_share_the_members_token(client, db, runtime):
    offered, rows = _pages(client, db, runtime, "sbx-1002")
    assert offered == ["72001", "72002"]  # not 72003, where the member is only an ANALYST
    assert [(c.external_id, c.account_kind, c.display_name, c.handle, c.parent_external_id) for c in rows] == [
        ("72001", "organization", "Northwind Outfitters Inc", "northwind-outfitters", "li-1002"),
        ("72002", "organization", "Northwind Trail Club", "northwind-trail", "li-1002")]
    first, second = (connections.read_tokens(runtime.deps, c) for c in rows)
    assert first == second and first[1] is not None  # one member token acts for both organizations
    assert all(c.refresh_expires_at is not None for c in rows)


def test_member_without_pages_is_told_plainly(client, db, runtime):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["linkedin-page"])
    response = connect(client, path, platform="linkedin-page", account="sbx-1003")
    assert response.status_code == 400
    assert "could not find any organization" in response.get_data(as_text=True)
    assert connections_in(db, workspace.id) == []


def test_unticked_organization_permission_is_named(client, db, runtime):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["linkedin-page"])
    response = connect(client, path, platform="linkedin-page", account="sbx-1001",
                       scopes=["openid", "profile", "w_organization_social", "r_organization_social"])
    assert response.status_code == 400
    assert "rw_organization_admin" in response.get_data(as_text=True)
    assert connections_in(db, workspace.id) == []


def test_versioned_rest_calls_need_both_headers(client, db, runtime, live_sandbox):
    _, [row] = _pages(client, db, runtime, "sbx-1001")
    access, _ = connections.read_tokens(runtime.deps, row)
    url = f"{live_sandbox.url}/sandbox/p/api.linkedin.com/rest/organizationAcls"
    params = {"q": "roleAssignee", "role": "ADMINISTRATOR", "state": "APPROVED"}
    bearer = {"Authorization": f"Bearer {access}"}
    versioned = {**bearer, "LinkedIn-Version": API_VERSION, "X-Restli-Protocol-Version": "2.0.0"}

    def get(headers):
        return requests.get(url, params=params, headers=headers, timeout=10)

    assert get(bearer).json()["code"] == "VERSION_MISSING"
    assert get({**versioned, "LinkedIn-Version": "2025"}).status_code == 426
    assert get({**bearer, "LinkedIn-Version": API_VERSION}).status_code == 400
    answer = get(versioned)
    assert answer.status_code == 200
    assert [e["organization"] for e in answer.json()["elements"]] == ["urn:li:organization:71001"]


def test_page_health_check_and_linkedins_errors(client, db, runtime, live_sandbox):
    _, rows = _pages(client, db, runtime, "sbx-1002", ["72001"])
    adapter, spec, _, access, refresh = _adapter(db, runtime, rows[0])
    adapter.check(spec, access, external_id="72001")
    lost = _failure(lambda: adapter.check(spec, access, external_id="71001"))  # another member's organization
    assert lost.kind == PlatformError.PERMISSION_LOST
    try:
        live_sandbox.fail("userinfo", "rate_limited")
        throttled = _failure(lambda: adapter.check(spec, access))
        live_sandbox.fail("userinfo", "server_error")
        down = _failure(lambda: adapter.check(spec, access))
    finally:
        live_sandbox.reset()
    assert (throttled.kind, throttled.platform_code) == (PlatformError.RATE_LIMITED, "TOO_MANY_REQUESTS")
    assert down.kind == PlatformError.TEMPORARY
    revoked_there = requests.post(f"{live_sandbox.url}/sandbox/p/www.linkedin.com/oauth/v2/revoke", timeout=10,
                                  data={"client_id": "easyconnect-demo", "client_secret": SANDBOX_SECRET,
                                        "token": refresh})  # the member removed the app on LinkedIn
    assert revoked_there.status_code == 200
    revoked = _failure(lambda: adapter.check(spec, access))
    assert (revoked.kind, revoked.platform_code) == (PlatformError.TOKEN_INVALID, "REVOKED_ACCESS_TOKEN")


def test_disconnecting_one_page_keeps_the_members_token_for_the_others(client, db, runtime, live_sandbox):
    _, rows = _pages(client, db, runtime, "sbx-1002")
    revocations = live_sandbox.counters().get("revocations", 0)
    gone = connections.disconnect(db, runtime.deps, rows[0].agency_id, rows[0].id, SYSTEM)
    db.commit()
    gone.revoke()
    assert live_sandbox.counters().get("revocations", 0) == revocations
    adapter, spec, _, access, _ = _adapter(db, runtime, rows[1])
    adapter.check(spec, access, external_id="72002")
    assert tokens.refresh_connection(db, runtime.deps, rows[1].id, force=True) == RefreshResult.REFRESHED


# LinkedIn's error body ------------------------------------------------------------------------------------

@pytest.mark.parametrize("status, body, retry_after, kind, code", [
    (401, {"status": 401, "serviceErrorCode": 65601, "code": "REVOKED_ACCESS_TOKEN", "message": "m"}, None,
     PlatformError.TOKEN_INVALID, "REVOKED_ACCESS_TOKEN"),
    (401, {"status": 401, "serviceErrorCode": 65600, "message": "Invalid access token"}, None,
     PlatformError.TOKEN_INVALID, "65600"),
    (403, {"status": 403, "serviceErrorCode": 100, "code": "ACCESS_DENIED", "message": "m"}, None,
     PlatformError.PERMISSION_LOST, "ACCESS_DENIED"),
    (429, {"status": 429, "code": "TOO_MANY_REQUESTS", "message": "m"}, "120", PlatformError.RATE_LIMITED,
     "TOO_MANY_REQUESTS"),
    (503, {"status": 503, "message": "Service Unavailable"}, None, PlatformError.TEMPORARY, "503"),
    (426, {"status": 426, "code": "NONEXISTENT_VERSION", "message": "m"}, None, PlatformError.TEMPORARY,
     "NONEXISTENT_VERSION"),
])
def test_linkedin_errors_map_to_the_shared_classes(status, body, retry_after, kind, code):
    error = classify_linkedin_error(status, body, retry_after, "test call")
    assert (error.kind, error.platform_code) == (kind, code)
    if status == 429:
        assert error.retry_after == 120.0

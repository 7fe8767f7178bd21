"""Discord end to end against its sandbox stand-in: bot authorization with the server picked on
Discord's consent screen, the token response's guild as the connection, channels read with the bot
token, user-token refresh, Discord's error codes, the bot-membership health check, revocation."""

from __future__ import annotations

import base64
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from portal.errors import PlatformError
from portal.models import Connection, Health
from portal.oauth import AppCredentials
from portal.providers.adapters.discord import bot_token, classify_discord_bot_error, classify_discord_error
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


def _channels(guild_id):
    """What the stand-in's servers hold that a bot can post in (voice, stage, categories left out)."""
    return [{"id": guild_id + "02", "name": "general", "type": "text"},
            {"id": guild_id + "03", "name": "announcements", "type": "announcement"},
            {"id": guild_id + "05", "name": "feedback", "type": "forum"}]


def _kit(runtime):
    spec = platforms.spec_for(runtime.deps.settings, "discord")
    return spec, platforms.operator_app(runtime.deps.settings, spec), platforms.adapter_for(runtime.deps, spec)


def _connected(client, db, runtime, guild="881002", account="sbx-1001", workspace=None):
    if workspace is None:
        _, workspace, _, path = all_platforms_link(db, runtime.deps, ["discord"])
    else:
        _, path = make_link(db, runtime.deps, workspace, platforms=["discord"], available=["discord"])
    response = connect(client, path, platform="discord", account=account, choice=guild)
    assert response.status_code == 303 and "/select/" in response.headers["Location"], response.status_code
    select_path = response.headers["Location"]
    assert candidates_on(client, select_path) == [guild]  # the one server the bot was added to
    assert select(client, select_path, [guild]).status_code == 303
    rows = [c for c in connections_in(db, workspace.id) if c.external_id == guild]
    return workspace, rows[0]


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


def _leave(spec, app, guild_id):
    url = f"{spec.base_url}/v10/users/@me/guilds/{guild_id}"
    answer = requests.delete(url, headers={"Authorization": f"Bot {bot_token(app)}"}, timeout=5)
    assert answer.status_code == 204


def test_authorize_url_asks_for_a_bot_with_permissions_as_a_guild_install(client, db, runtime):
    _, _, _, path = all_platforms_link(db, runtime.deps, ["discord"])
    query = parse_qs(urlsplit(start_flow(client, path, "discord")).query)
    assert query["scope"] == ["bot identify guilds"] and query["permissions"] == ["117760"]
    assert query["integration_type"] == ["0"] and query["response_type"] == ["code"]
    page = requests.get(start_flow(client, path, "discord"), timeout=5).text
    assert "Blue Bottle Regulars" in page and "Northwind Hikers" in page  # servers to pick on the consent page


def test_the_guild_from_the_token_response_becomes_the_connection_with_its_channels(client, db, runtime):
    workspace, row = _connected(client, db, runtime, guild="881001")
    assert (row.platform, row.external_id, row.display_name, row.account_kind) == (
        "discord", "881001", "Blue Bottle Regulars", "guild")
    assert row.parent_external_id == "22901001"  # the Discord user who added the bot
    assert row.extra == {"channels": _channels("881001")}  # voice, stage and category channels left out
    now = runtime.deps.now()
    assert now + timedelta(days=6, hours=23) < row.token_expires_at <= now + timedelta(days=7)
    assert row.refresh_token_enc is not None and set(row.scopes.split()) == {"bot", "identify", "guilds"}
    assert [c.external_id for c in connections_in(db, workspace.id)] == ["881001"]


def test_each_authorization_adds_one_server_and_reconnecting_updates_it(client, db, runtime):
    workspace, first = _connected(client, db, runtime, guild="881001")
    first_id, version = first.id, first.token_version
    _connected(client, db, runtime, guild="881002", workspace=workspace)
    _, again = _connected(client, db, runtime, guild="881001", workspace=workspace)
    assert again.id == first_id and again.token_version == version + 1
    assert sorted(c.external_id for c in connections_in(db, workspace.id)) == ["881001", "881002"]


def test_a_server_the_person_does_not_manage_is_not_joined(client, db, runtime):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["discord"])
    # Casa Aurora manages no server: the bot joins nothing and the client is told so plainly.
    response = connect(client, path, platform="discord", account="sbx-1003", choice="881001")
    assert response.status_code == 400 and "could not find any guild" in response.get_data(as_text=True)
    response = connect(client, path, platform="discord", account="sbx-1002", choice="881001")
    assert response.status_code == 400
    assert connections_in(db, workspace.id) == []


def test_unticking_bot_is_named_and_identify_is_optional(client, db, runtime):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["discord"])
    response = connect(client, path, platform="discord", scopes=["identify", "guilds"], choice="881001")
    assert response.status_code == 400 and "bot" in response.get_data(as_text=True)
    assert connections_in(db, workspace.id) == []
    response = connect(client, path, platform="discord", scopes=["bot", "guilds"], choice="881001")
    select_path = response.headers["Location"]
    assert select(client, select_path, ["881001"]).status_code == 303
    [row] = connections_in(db, workspace.id)
    assert (row.external_id, row.parent_external_id, row.scopes) == ("881001", "", "bot guilds")


def test_user_token_refresh_stores_what_discord_returns(client, db, runtime, live_sandbox):
    _, row = _connected(client, db, runtime)
    row_id, version = row.id, row.token_version
    _, old_refresh = connection_service.read_tokens(runtime.deps, row)
    assert tokens.refresh_connection(db, runtime.deps, row_id, force=True) == RefreshResult.REFRESHED
    fresh(db)
    row = db.get(Connection, row_id)
    access, new_refresh = connection_service.read_tokens(runtime.deps, row)
    assert row.token_version == version + 1 and new_refresh != old_refresh
    assert row.extra == {"channels": _channels("881002")}  # a refresh never touches the server's data
    spec, _, adapter = _kit(runtime)
    adapter.check(spec, access)  # the new user token works (GET /oauth2/@me)
    # The stand-in rotates (unverified at Discord): the stored token must be the one returned.
    assert tokens.refresh_connection(db, runtime.deps, row_id, force=True) == RefreshResult.REFRESHED


def test_invalid_grant_on_refresh_marks_the_server_for_reconnect(client, db, runtime, live_sandbox):
    _, row = _connected(client, db, runtime)
    row_id = row.id
    error = _failing(live_sandbox, "token", "invalid_grant",
                     lambda: tokens.refresh_connection(db, runtime.deps, row_id, force=True))
    assert error.kind == PlatformError.TOKEN_INVALID
    fresh(db)
    assert db.get(Connection, row_id).health == Health.ERROR


@pytest.mark.parametrize("mode, kind", [("server_error", PlatformError.TEMPORARY),
                                        ("rate_limited", PlatformError.RATE_LIMITED),
                                        ("invalid_client", PlatformError.APP_MISCONFIGURED)])
def test_refresh_failures_that_are_not_the_connections_fault(client, db, runtime, live_sandbox, mode, kind):
    _, row = _connected(client, db, runtime)
    row_id, version = row.id, row.token_version
    error = _failing(live_sandbox, "token", mode,
                     lambda: tokens.refresh_connection(db, runtime.deps, row_id, force=True))
    assert error.kind == kind
    if mode == "rate_limited":
        assert error.retry_after == 30.0  # Discord's retry_after (float seconds) from the body
    fresh(db)
    row = db.get(Connection, row_id)
    assert row.health == Health.HEALTHY and row.token_version == version
    assert tokens.refresh_connection(db, runtime.deps, row_id, force=True) == RefreshResult.REFRESHED


def test_health_check_asks_whether_the_bot_is_still_in_the_server(client, db, runtime):
    _, row = _connected(client, db, runtime, guild="881002")
    spec, app, adapter = _kit(runtime)
    access, _ = connection_service.read_tokens(runtime.deps, row)
    adapter.check(spec, access, app=app, guild_id="881002")
    assert adapter.channels(spec, app, "881002")[0] == {"id": "88100202", "name": "general", "type": "text"}
    _leave(spec, app, "881002")  # the owner removes the bot
    removed = _raises(lambda: adapter.check(spec, access, app=app, guild_id="881002"))
    assert (removed.kind, removed.platform_code) == (PlatformError.PERMISSION_LOST, "10004")
    adapter.check(spec, access)  # the person's token itself is still fine
    _connected(client, db, runtime, guild="881002")  # adding the bot again repairs it
    adapter.check(spec, access, app=app, guild_id="881002")


def test_a_refused_bot_token_is_the_apps_problem_not_the_connections(client, db, runtime):
    _, row = _connected(client, db, runtime)
    spec, app, adapter = _kit(runtime)
    wrong = AppCredentials(app.client_id, app.client_secret, "not-the-bot-token")
    error = _raises(lambda: adapter.check(spec, "unused", app=wrong, guild_id=row.external_id))
    assert error.kind == PlatformError.APP_MISCONFIGURED


@pytest.mark.parametrize("mode, kind", [("rate_limited", PlatformError.RATE_LIMITED),
                                        ("server_error", PlatformError.TEMPORARY)])
def test_bot_calls_map_rate_limits_and_outages(client, db, runtime, live_sandbox, mode, kind):
    _, row = _connected(client, db, runtime)
    spec, app, adapter = _kit(runtime)
    error = _failing(live_sandbox, "userinfo", mode,
                     lambda: adapter.check(spec, "unused", app=app, guild_id=row.external_id))
    assert error.kind == kind
    if mode == "rate_limited":
        assert error.retry_after == 30.0


def test_channel_listing_failure_at_the_callback_stores_nothing(client, db, runtime, live_sandbox):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["discord"])
    live_sandbox.fail("userinfo", "server_error", times=2)  # /users/@me, then the bot's channel listing
    try:
        response = connect(client, path, platform="discord", choice="881001")
    finally:
        live_sandbox.reset()
    assert response.status_code == 502
    assert connections_in(db, workspace.id) == []


def test_token_endpoint_takes_forms_only(runtime):
    spec, app, _ = _kit(runtime)
    basic = base64.b64encode(f"{app.client_id}:{app.client_secret}".encode()).decode()
    answer = requests.post(spec.token_url, json={"grant_type": "refresh_token", "refresh_token": "x"},
                           headers={"Authorization": f"Basic {basic}"}, timeout=5)
    assert answer.status_code == 400 and answer.json()["error"] == "unsupported_grant_type"


def test_disconnect_revokes_the_authorization_and_leaves_the_bot(client, db, runtime, live_sandbox):
    _, row = _connected(client, db, runtime, guild="881001")
    access, _ = connection_service.read_tokens(runtime.deps, row)
    revocations = live_sandbox.counters().get("revocations", 0)
    result = connection_service.disconnect(db, runtime.deps, row.agency_id, row.id, SYSTEM)
    db.commit()
    result.revoke()
    assert live_sandbox.counters()["revocations"] == revocations + 1
    spec, app, adapter = _kit(runtime)
    assert _raises(lambda: adapter.check(spec, access)).kind == PlatformError.TOKEN_INVALID
    adapter.check(spec, access, app=app, guild_id="881001")  # the bot stays until the owner removes it


@pytest.mark.parametrize("status, body, kind", [
    (401, {"message": "401: Unauthorized", "code": 0}, PlatformError.TOKEN_INVALID),
    (401, {"message": "Invalid authentication token", "code": 50014}, PlatformError.TOKEN_INVALID),
    (403, {"message": "Missing Access", "code": 50001}, PlatformError.PERMISSION_LOST),
    (403, {"message": "Missing Permissions", "code": 50013}, PlatformError.PERMISSION_LOST),
    (404, {"message": "Unknown Guild", "code": 10004}, PlatformError.PERMISSION_LOST),
    (429, {"message": "You are being rate limited.", "retry_after": 1.5, "global": False},
     PlatformError.RATE_LIMITED),
    (502, {"message": "502: Bad Gateway", "code": 0}, PlatformError.TEMPORARY),
    (400, {"error": "invalid_grant", "error_description": "Invalid \"code\" in request."},
     PlatformError.TOKEN_INVALID),
    (401, {"error": "invalid_client"}, PlatformError.APP_MISCONFIGURED),
    (400, {"message": "Invalid Form Body", "code": 50035}, PlatformError.TEMPORARY),
])
def test_discord_error_classes(status, body, kind):
    error = classify_discord_error(status, body, "3", "call")
    assert error.kind == kind
    if kind == PlatformError.RATE_LIMITED:
        assert error.retry_after == 1.5  # the body's float wins over the rounded header


def test_bot_token_errors_are_the_apps():
    error = classify_discord_bot_error(401, {"message": "401: Unauthorized", "code": 0}, None, "health check")
    assert error.kind == PlatformError.APP_MISCONFIGURED
    error = classify_discord_bot_error(404, {"message": "Unknown Guild", "code": 10004}, None, "health check")
    assert error.kind == PlatformError.PERMISSION_LOST


def test_bot_token_comes_from_its_own_setting_not_the_client_secret(db, runtime):
    from dataclasses import replace

    from portal.services import Deps
    from portal.services import platforms as platform_service
    from tests.helpers import make_member

    real = replace(runtime.settings, sandbox_platforms=False,
                   operator_apps={"discord": ("discord-app", "oauth-secret")})
    spec = platform_service.spec_for(real, "discord")
    missing = platform_service.operator_app(real, spec)
    assert missing.bot_token is None
    with pytest.raises(PlatformError) as error:
        bot_token(missing)
    assert error.value.kind == PlatformError.APP_MISCONFIGURED
    configured = platform_service.operator_app(replace(real, operator_bot_tokens={"discord": "bot-xyz"}), spec)
    assert bot_token(configured) == "bot-xyz" and configured.client_secret == "oauth-secret"
    assert "bot-xyz" not in repr(configured)
    member = make_member(db)
    platform_service.save_agency_app(db, runtime.deps, member.agency_id, "discord", "own-app", "own-secret",
                                     __import__("portal.services.audit", fromlist=["SYSTEM"]).SYSTEM,
                                     bot_token="own-bot")
    db.commit()
    agency = platform_service.app_for(db, Deps(**{**runtime.deps.__dict__, "settings": real}), member.agency_id, spec)
    assert (agency.client_id, agency.bot_token) == ("own-app", "own-bot")

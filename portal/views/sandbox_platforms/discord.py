"""Stand-in for Discord's bot authorization and API v10 (reference/platforms.md §14).

Real shapes: ``/oauth2/authorize`` with ``scope=bot identify guilds``, ``permissions`` and
``integration_type=0``, the server picked on the consent screen; a form-only token endpoint
(Basic or body credentials) answering ``access_token, token_type, expires_in (604800),
refresh_token, scope`` and, for the bot scope, the full ``guild`` object; ``/users/@me`` and
``/oauth2/@me`` with the user's Bearer token; ``/guilds/{id}`` and ``/guilds/{id}/channels`` with
``Authorization: Bot <token>``; errors as ``{"message", "code"}``, 429 as ``{"message",
"retry_after" (float seconds), "global"}`` with ``Retry-After``; OAuth errors as ``{"error",
"error_description"}``.

Sandbox assumptions, each stated where it is used: the bot token is the sandbox app's client
secret; the consent page lists every demo person's servers (it cannot know who signs in until
the form is sent), and a server the chosen person does not manage is not joined, so the token
comes back without a guild, as nothing was added; the bot's membership is kept in the sandbox's
counters so that it survives across processes: each join and leave is counted only when it changes
membership, so joined once more than left = a member.
"""

from __future__ import annotations

from typing import Any

from flask import jsonify, request

from portal.sandbox import ACCOUNTS_BY_ID, DEMO_ACCOUNTS, IssuedTokens, SandboxError
from portal.sandbox.data import platform_user_id, sub_accounts_for
from portal.views.sandbox_platforms import (
    bearer,
    consent_page,
    no_store,
    oauth2_token_endpoint,
    revoke_endpoint,
    route,
    server,
)

HOST = "discord.com"
USER_TOKEN_LIFETIME = 604800  # 7 days
RATE_WAIT = 30.0
_ERRORS = {  # sandbox failure -> (status, Discord code, message)
    "invalid_token": (401, 0, "401: Unauthorized"),
    "invalid_client": (401, 0, "401: Unauthorized"),
    "server_error": (502, 0, "502: Bad Gateway"),
    "unknown_guild": (404, 10004, "Unknown Guild"),
    "missing_access": (403, 50001, "Missing Access"),
}
# Channel layout of every sandbox server: (suffix, name, type, parent suffix).
CHANNELS = (("01", "Text Channels", 4, None), ("02", "general", 0, "01"), ("03", "announcements", 5, "01"),
            ("04", "Lounge", 2, None), ("05", "feedback", 15, "01"), ("06", "Town Hall", 13, None))


def api_error(kind: str) -> Any:
    if kind == "rate_limited":
        response = jsonify(message="You are being rate limited.", retry_after=RATE_WAIT, **{"global": False})
        response.status_code = 429
        response.headers["Retry-After"] = str(int(RATE_WAIT))
        response.headers["X-RateLimit-Scope"] = "user"
        return response
    status, code, message = _ERRORS.get(kind, (400, 50035, "Invalid Form Body"))
    response = jsonify(message=message, code=code)
    response.status_code = status
    return response


def oauth_error(exc: SandboxError) -> Any:
    if exc.error in ("rate_limited", "server_error"):
        return api_error(exc.error)  # throttling and outages come from the API gateway, not OAuth
    response = jsonify(error=exc.error, error_description=f"sandbox: {exc.error}")
    response.status_code = exc.status
    return no_store(response)


# Authorization --------------------------------------------------------------------------------------------

@route("GET", HOST, r"(?:api/)?oauth2/authorize")
def authorize() -> Any:
    args = request.args
    if "bot" in args.get("scope", "").split() and (args.get("integration_type", "0") != "0"
                                                    or not args.get("permissions", "0").isdigit()):
        return api_error("invalid_form")  # a bot joins servers only as a guild install, with a permission integer
    choices = [{"id": guild.id, "name": guild.name, "detail": f"{person.name} manages this server"}
               for person in DEMO_ACCOUNTS for guild in sub_accounts_for(person.id, "guild")]
    return consent_page("discord", "Discord", choices=choices)


@route("POST", HOST, r"api/(?:v\d+/)?oauth2/token")
def token() -> Any:
    # Read what the consent page kept before the code is spent by the exchange.
    code = request.form.get("code", "") if request.form.get("grant_type") == "authorization_code" else ""
    chosen = server().code_extra(code).get("choice") if code else None
    return oauth2_token_endpoint("discord", access_lifetime=USER_TOKEN_LIFETIME, error=oauth_error,
                                 extra=lambda issued, _source: _bot_join(issued, chosen))


def _bot_join(issued: IssuedTokens, chosen: str | None) -> dict[str, Any]:
    """For the bot scope, the bot joins the chosen server and the answer carries that guild."""
    body: dict[str, Any] = {"token_type": "Bearer"}
    managed = {guild.id for guild in sub_accounts_for(issued.account_id, "guild")}
    if chosen is None or "bot" not in issued.scope.split() or chosen not in managed:
        return body  # a refresh, no bot scope, or a server this person cannot add bots to
    if not _is_member(chosen):  # adding a bot that is already there changes nothing
        server().count(_joined(chosen))
    body["guild"] = _guild(chosen, issued.account_id)
    return body


@route("POST", HOST, r"api/(?:v\d+/)?oauth2/token/revoke")
def revoke() -> Any:
    return revoke_endpoint()


# The person's own token ------------------------------------------------------------------------------------

@route("GET", HOST, r"api/(?:v\d+/)?users/@me")
def me() -> Any:
    try:
        row = server().lookup("discord", bearer())
    except SandboxError as exc:
        return api_error(exc.error)
    if "identify" not in row.scope.split():
        return api_error("invalid_token")
    account = ACCOUNTS_BY_ID[row.account_id]
    return jsonify(id=platform_user_id("discord", account), username=account.handle.replace(".", "_"),
                   global_name=account.name, discriminator="0", avatar=None, banner=None, accent_color=None,
                   public_flags=0, flags=0, locale="en-US", mfa_enabled=False, premium_type=0)


@route("GET", HOST, r"api/(?:v\d+/)?oauth2/@me")
def authorization_info() -> Any:
    try:
        row = server().lookup("discord", bearer())
    except SandboxError as exc:
        return api_error(exc.error)
    body: dict[str, Any] = {"application": {"id": "1100000000000000001", "name": "EasyConnect (sandbox)",
                                            "bot_public": False, "bot_require_code_grant": True},
                            "scopes": row.scope.split(), "expires": row.expires_at.isoformat()}
    if "identify" in row.scope.split():
        account = ACCOUNTS_BY_ID[row.account_id]
        body["user"] = {"id": platform_user_id("discord", account), "username": account.handle.replace(".", "_"),
                        "global_name": account.name, "avatar": None}
    return jsonify(body)


# As the bot -----------------------------------------------------------------------------------------------

def _as_bot(guild_id: str) -> Any:
    """None when the bot token is right and the bot is in that server; otherwise Discord's error."""
    try:
        server()._maybe_fail("userinfo")  # the same failure switch as every other API call of the sandbox
        header = request.headers.get("Authorization", "")
        # Assumption: the sandbox app's client secret is its bot token.
        server().check_secret(header.removeprefix("Bot ") if header.startswith("Bot ") else "")
    except SandboxError as exc:
        return api_error(exc.error)
    return None if _is_member(guild_id) else api_error("unknown_guild")


@route("GET", HOST, r"api/v\d+/guilds/(?P<guild_id>\d+)")
def guild(guild_id: str) -> Any:
    return _as_bot(guild_id) or jsonify(_guild(guild_id, _owner(guild_id)))


@route("GET", HOST, r"api/v\d+/guilds/(?P<guild_id>\d+)/channels")
def channels(guild_id: str) -> Any:
    failure = _as_bot(guild_id)
    if failure is not None:
        return failure
    return jsonify([{"id": guild_id + suffix, "type": kind, "guild_id": guild_id, "name": name, "position": index,
                     "parent_id": guild_id + parent if parent else None, "permission_overwrites": [], "nsfw": False,
                     "flags": 0} for index, (suffix, name, kind, parent) in enumerate(CHANNELS)])


@route("DELETE", HOST, r"api/v\d+/users/@me/guilds/(?P<guild_id>\d+)")
def leave(guild_id: str) -> Any:
    """The bot leaves a server (as if the owner had removed it): later bot calls there get 10004."""
    failure = _as_bot(guild_id)
    if failure is not None:
        return failure
    server().count(_left(guild_id))
    return "", 204


def _joined(guild_id: str) -> str:
    return f"discord_bot_joined:{guild_id}"


def _left(guild_id: str) -> str:
    return f"discord_bot_left:{guild_id}"


def _is_member(guild_id: str) -> bool:
    counters = server().counters()
    return counters.get(_joined(guild_id), 0) > counters.get(_left(guild_id), 0)


def _owner(guild_id: str) -> str:
    return next((person.id for person in DEMO_ACCOUNTS
                 if any(g.id == guild_id for g in sub_accounts_for(person.id, "guild"))), DEMO_ACCOUNTS[0].id)


def _guild(guild_id: str, account_id: str) -> dict[str, Any]:
    item = next(g for g in sub_accounts_for(account_id, "guild") if g.id == guild_id)
    owner = platform_user_id("discord", ACCOUNTS_BY_ID[account_id])
    return {"id": guild_id, "name": item.name, "icon": None, "description": None, "splash": None,
            "discovery_splash": None, "banner": None, "owner_id": owner, "afk_channel_id": None, "afk_timeout": 300,
            "verification_level": 1, "default_message_notifications": 1, "explicit_content_filter": 0,
            "roles": [{"id": guild_id, "name": "@everyone", "permissions": "1071698660929", "position": 0,
                       "color": 0, "hoist": False, "managed": False, "mentionable": False}],
            "emojis": [], "stickers": [], "features": [], "mfa_level": 0, "application_id": None,
            "system_channel_id": guild_id + "02", "rules_channel_id": None, "vanity_url_code": None,
            "premium_tier": 0, "premium_subscription_count": 0, "preferred_locale": "en-US", "nsfw_level": 0,
            "public_updates_channel_id": None, "max_members": 500000, "max_video_channel_users": 25}

"""Discord (bot authorization): reference/platforms.md §14.

How it differs from plain OAuth 2.0: the client authorizes the agency's *bot* into one of their
servers (guilds). The server is chosen on Discord's own consent screen, and the token response
(form-encoded request, HTTP Basic) carries the full ``guild`` object: that guild is authoritative;
the ``guild_id`` on the callback is only a hint and is ignored. The connection is the guild
(kind "guild"). It is offered as the single candidate of the account picker rather than stored
directly, so the client confirms which server they added the bot to, and so its channel list
travels in ``SubAccount.extra`` into ``Connection.extra``. The stored token is the person's
7-day user token (refreshable; whether Discord rotates it is unverified, so whatever comes back is
stored); posting and health checks use the bot token.

The bot token is a secret of the agency's (or operator's) Discord app, separate from the OAuth
client secret: ``AppCredentials.bot_token`` (PORTAL_APP_DISCORD_BOT_TOKEN, or the agency's own app
on the Platforms page; the sandbox's bot token is its client secret).
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any
from urllib.parse import quote

from portal.errors import PlatformError
from portal.oauth import AccountInfo, AppCredentials, TokenGrant, classify_oauth_error, grant_from
from portal.providers.adapters.base import Adapter, Authorized, SubAccount
from portal.providers.spec import ProviderSpec

API_VERSION = "v10"
CDN = "https://cdn.discordapp.com"
CHANNEL_TYPES = {0: "text", 5: "announcement", 15: "forum"}  # where a bot can post
DEFAULT_RATE_WAIT = 1.0
_TOKEN_CODES = {40001, 50014}  # Unauthorized, Invalid authentication token
_PERMISSION_CODES = {50001, 50013, 10004, 10003}  # Missing Access/Permissions, Unknown Guild/Channel


def classify_discord_error(status: int, body: dict[str, Any], retry_after: str | None, what: str,
                           bot: bool = False) -> PlatformError:
    """Discord's ``{"code", "message"}`` (and the token endpoint's OAuth errors) to a shared class.

    With ``bot``, a 401 means the app's bot token is refused: the agency must fix its app, and
    reconnecting this server would not help, so it is APP_MISCONFIGURED, not TOKEN_INVALID."""
    code = body.get("code") if isinstance(body.get("code"), int) else None
    label = str(code) if code is not None else None
    if status == 429:
        wait = body.get("retry_after")
        seconds = float(wait) if isinstance(wait, int | float) and wait >= 0 else _seconds(retry_after)
        return PlatformError(PlatformError.RATE_LIMITED, f"Discord rate-limited the {what}",
                             retry_after=seconds if seconds is not None else DEFAULT_RATE_WAIT, platform_code=label)
    if status >= 500:
        return PlatformError(PlatformError.TEMPORARY, f"Discord had a temporary problem ({what})", platform_code=label)
    if isinstance(body.get("error"), str):
        return classify_oauth_error(body["error"], what)
    if status == 401 or code in _TOKEN_CODES:
        kind = PlatformError.APP_MISCONFIGURED if bot else PlatformError.TOKEN_INVALID
        whose = "bot" if bot else "user"
        return PlatformError(kind, f"Discord refused the {whose} token ({what})", platform_code=label)
    if code in _PERMISSION_CODES or status == 403:
        return PlatformError(PlatformError.PERMISSION_LOST, f"the bot lost access on Discord ({what})",
                             platform_code=label)
    return PlatformError(PlatformError.TEMPORARY, f"Discord failed the {what}", platform_code=label)


classify_discord_bot_error = partial(classify_discord_error, bot=True)


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def bot_token(app: AppCredentials) -> str:
    """The app's bot token; without one the app is misconfigured (not the client's connection)."""
    if not app.bot_token:
        raise PlatformError(PlatformError.APP_MISCONFIGURED, "no Discord bot token is configured for this app")
    return app.bot_token


def _snowflake(value: Any) -> str | None:
    text = str(value) if isinstance(value, str | int) else ""
    return text if text.isdigit() and len(text) <= 25 else None  # only digits ever go into an API path


class Discord(Adapter):
    """The agency's bot added to one Discord server per authorization; the server is the connection."""

    def authorize(self, spec: ProviderSpec, app: AppCredentials, redirect_uri: str, code: str,
                  verifier: str | None, now: datetime) -> Authorized:
        token = self._token(spec, app, {"grant_type": "authorization_code", "code": code,
                                        "redirect_uri": redirect_uri}, "code exchange")
        grant = grant_from(token, spec, now, spec.scopes)
        account = self._user(spec, grant)
        guild: dict[str, Any] = token["guild"] if isinstance(token.get("guild"), dict) else {}
        guild_id = _snowflake(guild.get("id"))
        # No bot scope or no guild: nothing was added. finish_authorization names a missing "bot",
        # or says plainly that no server was found.
        subs = [self._guild_account(spec, app, guild, guild_id, account)] if guild_id and "bot" in grant.scopes else []
        return Authorized(grant, account, grant.scopes, subs)

    def exchange(self, spec: ProviderSpec, app: AppCredentials, redirect_uri: str, code: str,
                 verifier: str | None, now: datetime) -> TokenGrant:
        token = self._token(spec, app, {"grant_type": "authorization_code", "code": code,
                                        "redirect_uri": redirect_uri}, "code exchange")
        return grant_from(token, spec, now, spec.scopes)

    def identify(self, spec: ProviderSpec, grant: TokenGrant) -> AccountInfo:
        data = self.oauth.call_json("GET", spec.userinfo_url, "identity call", token=grant.access_token,
                                    classify=classify_discord_error)
        user_id = _snowflake(data.get("id"))
        if user_id is None:
            raise PlatformError(PlatformError.TEMPORARY, "Discord did not say which user this is")
        username = str(data.get("username") or "")[:255]
        avatar = data.get("avatar")
        return AccountInfo(user_id, str(data.get("global_name") or username)[:255], username,
                           f"{CDN}/avatars/{user_id}/{avatar}.png" if isinstance(avatar, str) and avatar else None)

    def _user(self, spec: ProviderSpec, grant: TokenGrant) -> AccountInfo:
        if "identify" in grant.scopes:
            return self.identify(spec, grant)
        return AccountInfo("", "", "", None)  # who added the bot stays unknown; the guild is what matters

    def _guild_account(self, spec: ProviderSpec, app: AppCredentials, guild: dict[str, Any], guild_id: str,
                       account: AccountInfo) -> SubAccount:
        channels = self.channels(spec, app, guild_id)
        icon = guild.get("icon")
        added_by = f"Bot added by {account.display_name}" if account.display_name else "Bot added"
        return SubAccount(
            external_id=guild_id, display_name=str(guild.get("name") or guild_id)[:255], kind="guild",
            avatar_url=f"{CDN}/icons/{guild_id}/{icon}.png" if isinstance(icon, str) and icon else None,
            detail=f"{added_by} · {len(channels)} channel{'s' if len(channels) != 1 else ''} to post in",
            extra={"channels": channels})

    def channels(self, spec: ProviderSpec, app: AppCredentials, guild_id: str) -> list[dict[str, Any]]:
        """The guild's text, announcement and forum channels, read with the bot token."""
        data = self._bot_call(spec, app, f"guilds/{guild_id}/channels", "channel listing")
        rows = data["items"] if isinstance(data.get("items"), list) else []
        return [{"id": str(row["id"]), "name": str(row.get("name") or "")[:100], "type": CHANNEL_TYPES[row["type"]]}
                for row in rows
                if isinstance(row, dict) and _snowflake(row.get("id")) and row.get("type") in CHANNEL_TYPES]

    def refresh(self, spec: ProviderSpec, app: AppCredentials, access_token: str | None, refresh_token: str | None,
                now: datetime) -> TokenGrant:
        if not refresh_token:
            raise PlatformError(PlatformError.TOKEN_INVALID, "this connection has no refresh token")
        token = self._token(spec, app, {"grant_type": "refresh_token", "refresh_token": refresh_token},
                            "token refresh")
        return grant_from(token, spec, now, (), previous_refresh=refresh_token)

    def revoke(self, spec: ProviderSpec, app: AppCredentials, access_token: str | None,
               refresh_token: str | None) -> None:
        # Revoking one token revokes every token of that authorization. The bot stays in the server:
        # removing it (DELETE /users/@me/guilds/{id} with the bot token) is the server owner's call.
        token = refresh_token or access_token
        if token and spec.revoke_url:
            hint = "refresh_token" if refresh_token else "access_token"
            self.oauth.call_json("POST", spec.revoke_url, "revocation", data={"token": token, "token_type_hint": hint},
                                 auth=_basic(app), classify=classify_discord_error)

    def check(self, spec: ProviderSpec, access_token: str | None, *, app: AppCredentials | None = None,
              external_id: str | None = None, guild_id: str | None = None) -> None:
        """With the app and the guild: the bot is still in that server (``GET /guilds/{id}``, bot token).
        Without them (the base protocol's call): the person's token still works (``GET /oauth2/@me``)."""
        guild = _snowflake(guild_id or external_id)
        if app is not None and guild is not None:
            self._bot_call(spec, app, f"guilds/{guild}", "health check")
            return
        self.oauth.call_json("GET", f"{spec.base_url}/oauth2/@me", "health check", token=access_token,
                             classify=classify_discord_error)

    # Discord's wire format --------------------------------------------------------------------------

    def _token(self, spec: ProviderSpec, app: AppCredentials, form: dict[str, str], what: str) -> dict[str, Any]:
        # Form-encoded only (Discord rejects JSON here); Basic client authentication.
        return self.oauth.call_json("POST", spec.token_url, what, data=form, auth=_basic(app),
                                    classify=classify_discord_error)

    def _bot_call(self, spec: ProviderSpec, app: AppCredentials, path: str, what: str) -> dict[str, Any]:
        """A GET as the bot; an answer that is a bare array comes back under "items"."""
        return self.oauth.call_json("GET", f"{spec.base_url}/{API_VERSION}/{path}", what,
                                    headers={"Authorization": f"Bot {bot_token(app)}"},
                                    classify=classify_discord_bot_error, list_key="items")


def _basic(app: AppCredentials) -> tuple[str, str]:
    """HTTP Basic with form-encoded id and secret (RFC 6749 §2.3.1)."""
    return quote(app.client_id, safe=""), quote(app.client_secret, safe="")

"""TikTok (Login Kit, API v2): reference/platforms.md §7.

Differences from plain OAuth 2.0: the client is named ``client_key`` in the authorize URL and
in every token request (Authlib would send ``client_id``), so this adapter builds both itself;
scopes are comma-separated; the token response names the account (``open_id``); access tokens
live 2 hours and every refresh rotates the refresh token (the old one dies) with a new
``refresh_expires_in``; API answers always carry an ``error`` object, ``{"code": "ok"}`` on
success; OAuth endpoints answer ``{"error", "error_description", "log_id"}``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from portal.errors import PlatformError
from portal.oauth import AccountInfo, AppCredentials, TokenGrant, classify_oauth_error, grant_from
from portal.providers.adapters.base import Adapter, Authorized, account_from
from portal.providers.spec import ProviderSpec

DEFAULT_RATE_WAIT = 60.0  # TikTok limits per 1-minute sliding window and sends no Retry-After
# The profile fields each scope unlocks; asking for a field without its scope is refused.
FIELDS_BY_SCOPE = {
    "user.info.basic": ("open_id", "union_id", "avatar_url", "display_name"),
    "user.info.profile": ("username",),
}


def classify_tiktok_error(status: int, body: dict[str, Any], retry_after: str | None, what: str) -> PlatformError:
    """Both TikTok envelopes to a shared class: API ``{"error": {"code": ...}}`` and OAuth ``{"error": "..."}``."""
    error = body.get("error")
    code = str(error.get("code") or "") if isinstance(error, dict) else ""
    if status >= 500 or code == "internal_error":
        return PlatformError(PlatformError.TEMPORARY, f"TikTok had a temporary problem ({what})",
                             platform_code=code or None)
    if status == 429 or code == "rate_limit_exceeded":
        return PlatformError(PlatformError.RATE_LIMITED, f"TikTok rate-limited the {what}",
                             retry_after=_seconds(retry_after) or DEFAULT_RATE_WAIT,
                             platform_code="rate_limit_exceeded")
    if code == "access_token_invalid":
        return PlatformError(PlatformError.TOKEN_INVALID, f"TikTok no longer accepts this token ({what})",
                             platform_code=code)
    if code in ("scope_not_authorized", "scope_permission_missed"):
        return PlatformError(PlatformError.PERMISSION_LOST, f"a TikTok permission is missing ({what})",
                             platform_code=code)
    if isinstance(error, str) and error:
        return classify_oauth_error(error, what)
    if status == 401:
        return PlatformError(PlatformError.TOKEN_INVALID, f"TikTok no longer accepts this token ({what})",
                             platform_code=code or None)
    if status == 403:
        return PlatformError(PlatformError.PERMISSION_LOST, f"TikTok refused the {what}", platform_code=code or None)
    return PlatformError(PlatformError.TEMPORARY, f"TikTok failed the {what}", platform_code=code[:40] or None)


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


class TikTok(Adapter):
    """One TikTok account per connection, keyed by its per-app ``open_id``."""

    def authorization_url(self, spec: ProviderSpec, app: AppCredentials, redirect_uri: str, state: str,
                          verifier: str | None, reconsent: bool = False) -> str:
        # No PKCE: TikTok asks for it from mobile and desktop apps only, and the catalog says pkce = false.
        params = {"client_key": app.client_id, "scope": spec.scope_separator.join(spec.scopes),
                  "response_type": "code", "redirect_uri": redirect_uri, "state": state,
                  **dict(spec.authorize_params), **(dict(spec.reconsent_params) if reconsent else {})}
        return f"{spec.authorize_url}?{urlencode(params)}"

    def authorize(self, spec: ProviderSpec, app: AppCredentials, redirect_uri: str, code: str,
                  verifier: str | None, now: datetime) -> Authorized:
        token = self._token(spec, app, {"grant_type": "authorization_code", "code": code,
                                        "redirect_uri": redirect_uri}, "code exchange")
        grant = grant_from(token, spec, now, spec.scopes)
        open_id = str(token.get("open_id") or "")[:255]
        if "user.info.basic" not in grant.scopes:
            # The profile cannot be read without it; finish_authorization names the missing scope and
            # stores nothing, which is clearer to the client than a failed profile call.
            return Authorized(grant, AccountInfo(open_id, "", "", None), grant.scopes, None)
        account = self.identify(spec, grant)
        if open_id and account.external_id != open_id:
            raise PlatformError(PlatformError.TEMPORARY, "TikTok's profile answer named another account")
        return Authorized(grant, account, grant.scopes, None)

    def exchange(self, spec: ProviderSpec, app: AppCredentials, redirect_uri: str, code: str,
                 verifier: str | None, now: datetime) -> TokenGrant:
        token = self._token(spec, app, {"grant_type": "authorization_code", "code": code,
                                        "redirect_uri": redirect_uri}, "code exchange")
        return grant_from(token, spec, now, spec.scopes)

    def identify(self, spec: ProviderSpec, grant: TokenGrant) -> AccountInfo:
        fields = [name for scope in FIELDS_BY_SCOPE if scope in grant.scopes for name in FIELDS_BY_SCOPE[scope]]
        data = self._user_info(spec, grant.access_token, fields or ["open_id"], "identity call")
        info = account_from(data, dict(spec.userinfo_fields))
        # display_name is free text and may be empty; the username is the next best label.
        return info if info.display_name else AccountInfo(info.external_id, info.handle, info.handle, info.avatar_url)

    def refresh(self, spec: ProviderSpec, app: AppCredentials, access_token: str | None, refresh_token: str | None,
                now: datetime) -> TokenGrant:
        if not refresh_token:
            raise PlatformError(PlatformError.TOKEN_INVALID, "this connection has no refresh token")
        token = self._token(spec, app, {"grant_type": "refresh_token", "refresh_token": refresh_token},
                            "token refresh")
        # TikTok rotates: the answer's refresh token replaces the one just spent (grant_from keeps the
        # old one only if TikTok sent none, which would be an odd answer, not a rotation).
        return grant_from(token, spec, now, (), previous_refresh=refresh_token)

    def revoke(self, spec: ProviderSpec, app: AppCredentials, access_token: str | None,
               refresh_token: str | None) -> None:
        # TikTok's revoke endpoint takes the access token and ends the whole authorization.
        token = access_token or refresh_token
        if token and spec.revoke_url:
            self.oauth.call_json("POST", spec.revoke_url, "revocation", classify=classify_tiktok_error,
                                 data={"client_key": app.client_id, "client_secret": app.client_secret,
                                       "token": token})

    def check(self, spec: ProviderSpec, access_token: str | None, *, app: AppCredentials | None = None,
              external_id: str | None = None) -> None:
        self._user_info(spec, access_token, ["open_id"], "health check")

    # TikTok's wire format ---------------------------------------------------------------------------

    def _token(self, spec: ProviderSpec, app: AppCredentials, form: dict[str, str], what: str) -> dict[str, Any]:
        data = self.oauth.call_json("POST", spec.token_url, what, classify=classify_tiktok_error, data={
            "client_key": app.client_id, "client_secret": app.client_secret, **form})
        if isinstance(data.get("error"), str) and data["error"]:
            raise classify_tiktok_error(400, data, None, what)  # an OAuth error sent with a 2xx status
        return data

    def _user_info(self, spec: ProviderSpec, access_token: str, fields: list[str], what: str) -> dict[str, Any]:
        url = spec.userinfo_url.split("?", 1)[0]  # the catalog's URL names every field; ask only for granted ones
        data = self.oauth.call_json("GET", url, what, token=access_token, params={"fields": ",".join(fields)},
                                    classify=classify_tiktok_error)
        error = data.get("error")
        if isinstance(error, dict) and error.get("code") not in (None, "ok"):
            raise classify_tiktok_error(200, data, None, what)
        return data

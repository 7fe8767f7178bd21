"""Pinterest (API v5): reference/platforms.md §10.

Differences from plain OAuth 2.0: client authentication is HTTP Basic on a form request whose
errors come in Pinterest's own envelope ``{"code": int, "message": str}``; refresh tokens are
continuous: every refresh answers a NEW refresh token with a new 60-day expiry, which must be
stored (the previous one should be treated as spent); each board is a connection of its own
(kind "board") using the account's token; there is no revocation for user tokens.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

from portal.errors import PlatformError
from portal.oauth import AccountInfo, AppCredentials, TokenGrant, classify_oauth_error, grant_from
from portal.providers.adapters.base import Adapter, Authorized, SubAccount, account_from
from portal.providers.spec import ProviderSpec

DEFAULT_RATE_WAIT = 60.0  # no documented Retry-After on Pinterest's 429s
INVALID_GRANT = 283  # {"code": 283, "message": "The authorization grant is invalid"}
_TOKEN_INVALID, _PERMISSION, _RATE_LIMITED = 2, 29, 8


def classify_pinterest_error(status: int, body: dict[str, Any], retry_after: str | None,
                             what: str) -> PlatformError:
    """Pinterest's API envelope to a shared class: 401/2 token, 403/29 permission, 429/8 wait, 5xx retry."""
    code = body.get("code") if isinstance(body.get("code"), int) else None
    label = str(code) if code is not None else None
    if status >= 500:
        return PlatformError(PlatformError.TEMPORARY, f"Pinterest had a temporary problem ({what})",
                             platform_code=label)
    if status == 429 or code == _RATE_LIMITED:
        return PlatformError(PlatformError.RATE_LIMITED, f"Pinterest rate-limited the {what}",
                             retry_after=_seconds(retry_after) or DEFAULT_RATE_WAIT, platform_code=label)
    if isinstance(body.get("error"), str):  # a standard OAuth error, should Pinterest send one
        return classify_oauth_error(body["error"], what)
    if code in (_TOKEN_INVALID, INVALID_GRANT) or status == 401:
        return PlatformError(PlatformError.TOKEN_INVALID, f"Pinterest no longer accepts this token ({what})",
                             platform_code=label)
    if code == _PERMISSION or status == 403:
        return PlatformError(PlatformError.PERMISSION_LOST, f"a Pinterest permission is missing ({what})",
                             platform_code=label)
    return PlatformError(PlatformError.TEMPORARY, f"Pinterest failed the {what}", platform_code=label)


def classify_pinterest_token_error(status: int, body: dict[str, Any], retry_after: str | None,
                                   what: str) -> PlatformError:
    """At the token endpoint a 401 that is not an invalid grant is the app's Basic credentials being refused."""
    code = body.get("code") if isinstance(body.get("code"), int) else None
    if status == 401 and code != INVALID_GRANT and not isinstance(body.get("error"), str):
        return PlatformError(PlatformError.APP_MISCONFIGURED, f"Pinterest rejected the app credentials ({what})",
                             platform_code=str(code) if code is not None else None)
    return classify_pinterest_error(status, body, retry_after, what)


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


class Pinterest(Adapter):
    """A Pinterest account's boards, each its own connection with the account's (continuous) token."""

    page_size = 250  # Pinterest's maximum
    max_pages = 40  # at most 10,000 boards: a bound, not a platform limit

    def authorize(self, spec: ProviderSpec, app: AppCredentials, redirect_uri: str, code: str,
                  verifier: str | None, now: datetime) -> Authorized:
        grant = self.exchange(spec, app, redirect_uri, code, verifier, now)
        if any(scope not in grant.scopes for scope in spec.required_scopes):
            # The profile and board calls would fail without these scopes; finish_authorization names
            # what is missing and stores nothing.
            return Authorized(grant, AccountInfo("", "", "", None), grant.scopes, [])
        account = self.identify(spec, grant)
        return Authorized(grant, account, grant.scopes, self.list_sub_accounts(spec, grant, account))

    def exchange(self, spec: ProviderSpec, app: AppCredentials, redirect_uri: str, code: str,
                 verifier: str | None, now: datetime) -> TokenGrant:
        # continuous_refresh=true: apps made before 2025-09-25 only get rotating 60-day refresh tokens
        # when they ask; later apps get them anyway.
        token = self._token(spec, app, {"grant_type": "authorization_code", "code": code,
                                        "redirect_uri": redirect_uri, "continuous_refresh": "true"}, "code exchange")
        return grant_from(token, spec, now, spec.scopes)

    def identify(self, spec: ProviderSpec, grant: TokenGrant) -> AccountInfo:
        data = self.oauth.call_json("GET", spec.userinfo_url, "identity call", token=grant.access_token,
                                    classify=classify_pinterest_error)
        info = account_from(data, dict(spec.userinfo_fields))
        # business_name is empty for personal accounts: the username is their name.
        return info if info.display_name else AccountInfo(info.external_id, info.handle, info.handle, info.avatar_url)

    def list_sub_accounts(self, spec: ProviderSpec, grant: TokenGrant, account: AccountInfo) -> list[SubAccount]:
        return [SubAccount(external_id=str(board["id"])[:255], display_name=str(board.get("name") or "")[:255],
                           kind="board", handle=account.handle, detail=_detail(board),
                           extra={"privacy": str(board.get("privacy") or ""), "user_account": account.external_id})
                for board in self._boards(spec, grant.access_token)]

    def _boards(self, spec: ProviderSpec, access_token: str) -> list[dict[str, Any]]:
        boards: list[dict[str, Any]] = []
        params = {"page_size": str(self.page_size)}
        seen: set[str] = set()
        for _ in range(self.max_pages):
            data = self.oauth.call_json("GET", f"{spec.base_url}/v5/boards", "board listing", token=access_token,
                                        params=params, classify=classify_pinterest_error)
            items = data["items"] if isinstance(data.get("items"), list) else []
            boards.extend(item for item in items if isinstance(item, dict) and item.get("id"))
            bookmark = data.get("bookmark")
            if not isinstance(bookmark, str) or not bookmark or bookmark in seen:
                break  # the last page, or a bookmark going round in circles
            seen.add(bookmark)
            params = {"page_size": str(self.page_size), "bookmark": bookmark}
        return boards

    def refresh(self, spec: ProviderSpec, app: AppCredentials, access_token: str | None, refresh_token: str | None,
                now: datetime) -> TokenGrant:
        if not refresh_token:
            raise PlatformError(PlatformError.TOKEN_INVALID, "this connection has no refresh token")
        token = self._token(spec, app, {"grant_type": "refresh_token", "refresh_token": refresh_token},
                            "token refresh")
        # Continuous refresh: the answer's refresh token and its new 60-day expiry replace the old ones.
        return grant_from(token, spec, now, (), previous_refresh=refresh_token)

    def revoke(self, spec: ProviderSpec, app: AppCredentials, access_token: str | None,
               refresh_token: str | None) -> None:
        # Pinterest's /v5/oauth/token/revoke accepts only system-user (client credentials) tokens:
        # a user's token cannot be revoked by the app. Deleting our copy is all that can be done;
        # the user removes the app under their Pinterest settings.
        return

    def check(self, spec: ProviderSpec, access_token: str | None, *, app: AppCredentials | None = None,
              external_id: str | None = None) -> None:
        self.oauth.call_json("GET", spec.userinfo_url, "health check", token=access_token,
                             classify=classify_pinterest_error)

    def _token(self, spec: ProviderSpec, app: AppCredentials, form: dict[str, str], what: str) -> dict[str, Any]:
        # HTTP Basic with form-encoded id and secret (RFC 6749 §2.3.1), as Pinterest requires.
        auth = (quote(app.client_id, safe=""), quote(app.client_secret, safe=""))
        return self.oauth.call_json("POST", spec.token_url, what, data=form, auth=auth,
                                    classify=classify_pinterest_token_error)


def _detail(board: dict[str, Any]) -> str:
    privacy = str(board.get("privacy") or "").lower()
    pins = board.get("pin_count")
    parts = [f"{privacy.capitalize()} board" if privacy else "Board"]
    if isinstance(pins, int):
        parts.append(f"{pins} pins")
    return " · ".join(parts)

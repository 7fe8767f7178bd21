"""Meta's platforms: Facebook Pages, Instagram via Facebook, Instagram Login, Threads.

Differences from plain OAuth 2.0 (reference/platforms.md §1-3, §9): the Facebook code exchange
is a GET with the secret in the query; short-lived user tokens are exchanged for ~60-day
long-lived ones; each Page has its own token (non-expiring when made from a long-lived user
token); users can untick permissions, so granted scopes come from /me/permissions;
Instagram Login and Threads "refresh" by exchanging the current long-lived token.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from portal.errors import PlatformError
from portal.oauth import AccountInfo, AppCredentials, TokenGrant, grant_from, pluck
from portal.providers.adapters.base import Adapter, SubAccount, account_from
from portal.providers.spec import ProviderSpec

_TOKEN_INVALID = {190, 102, 463, 467}
_PERMISSION = {10} | set(range(200, 300))
_RATE_LIMITED = {4, 17, 32, 613, 80001, 80002}
_TEMPORARY = {1, 2, 341, 368}


def classify_graph_error(status: int, body: dict[str, Any], retry_after: str | None, what: str) -> PlatformError:
    """Graph API envelope {"error": {"code", "error_subcode", "is_transient", ...}} to a shared class."""
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    code = error.get("code") if isinstance(error.get("code"), int) else None
    if error.get("is_transient") or code in _TEMPORARY or status >= 500:
        return PlatformError(PlatformError.TEMPORARY, f"Meta had a temporary problem ({what})", platform_code=str(code))
    if code in _RATE_LIMITED or status == 429:
        return PlatformError(PlatformError.RATE_LIMITED, f"Meta rate-limited the {what}",
                             retry_after=float(retry_after) if retry_after and retry_after.isdigit() else 60.0,
                             platform_code=str(code))
    if code in _TOKEN_INVALID or status == 401:
        return PlatformError(PlatformError.TOKEN_INVALID, f"Meta no longer accepts this token ({what})",
                             platform_code=str(code))
    if code in _PERMISSION or status == 403:
        return PlatformError(PlatformError.PERMISSION_LOST, f"a Meta permission is missing ({what})",
                             platform_code=str(code))
    if error.get("type") == "OAuthException" and code == 101:
        return PlatformError(PlatformError.APP_MISCONFIGURED, f"Meta rejected the app credentials ({what})",
                             platform_code=str(code))
    return PlatformError(PlatformError.TEMPORARY, f"Meta failed the {what}", platform_code=str(code))


def _same_host(url: str, base: str) -> bool:
    return urlsplit(url).netloc == urlsplit(base).netloc


class FacebookPages(Adapter):
    """Facebook Login with a long-lived user token; each selected Page is a connection with its Page token."""

    page_fields = "id,name,username,access_token,picture{url}"

    def exchange(self, spec: ProviderSpec, app: AppCredentials, redirect_uri: str, code: str,
                 verifier: str | None, now: datetime) -> TokenGrant:
        short = self.oauth.call_json("GET", spec.token_url, "code exchange", classify=classify_graph_error, params={
            "client_id": app.client_id, "client_secret": app.client_secret, "redirect_uri": redirect_uri,
            "code": code})
        long_lived = self.oauth.call_json("GET", spec.token_url, "long-lived token exchange",
                                          classify=classify_graph_error, params={
                                              "grant_type": "fb_exchange_token", "client_id": app.client_id,
                                              "client_secret": app.client_secret,
                                              "fb_exchange_token": str(short.get("access_token", ""))})
        return grant_from(long_lived, spec, now, spec.scopes)

    def identify(self, spec: ProviderSpec, grant: TokenGrant) -> AccountInfo:
        data = self.oauth.call_json("GET", spec.userinfo_url, "identity call", token=grant.access_token,
                                    classify=classify_graph_error)
        return account_from(data, dict(spec.userinfo_fields))

    def granted_scopes(self, spec: ProviderSpec, grant: TokenGrant) -> tuple[str, ...]:
        data = self.oauth.call_json("GET", f"{spec.base_url}/me/permissions", "permission check",
                                    token=grant.access_token, classify=classify_graph_error)
        rows = data.get("data") if isinstance(data.get("data"), list) else []
        return tuple(str(row.get("permission")) for row in rows
                     if isinstance(row, dict) and row.get("status") == "granted")

    def _pages(self, spec: ProviderSpec, grant: TokenGrant, fields: str) -> list[dict[str, Any]]:
        url: str | None = f"{spec.base_url}/me/accounts"
        params: dict[str, str] | None = {"fields": fields, "limit": "100"}
        pages: list[dict[str, Any]] = []
        for _ in range(10):  # at most 1,000 Pages; following only Graph's own paging links
            if url is None:
                break
            data = self.oauth.call_json("GET", url, "page listing", token=grant.access_token, params=params,
                                        classify=classify_graph_error)
            pages.extend(row for row in data.get("data", []) if isinstance(row, dict) and row.get("id"))
            next_url = pluck(data, "paging.next")
            url = next_url if isinstance(next_url, str) and _same_host(next_url, spec.base_url) else None
            params = None
        return pages

    def list_sub_accounts(self, spec: ProviderSpec, grant: TokenGrant, account: AccountInfo) -> list[SubAccount]:
        return [SubAccount(external_id=str(page["id"]), display_name=str(page.get("name", ""))[:255], kind="page",
                           handle=str(page.get("username") or ""), avatar_url=_url(pluck(page, "picture.data.url")),
                           access_token=page.get("access_token") if isinstance(page.get("access_token"), str) else None)
                for page in self._pages(spec, grant, self.page_fields)]

    def can_refresh(self, spec: ProviderSpec, has_refresh_token: bool) -> bool:
        return False  # Page tokens made from a long-lived user token do not expire

    def check(self, spec: ProviderSpec, access_token: str | None, *, app: AppCredentials | None = None,
              external_id: str | None = None) -> None:
        self.oauth.call_json("GET", f"{spec.base_url}/me?fields=id", "health check", token=access_token,
                             classify=classify_graph_error)

    def revoke(self, spec: ProviderSpec, app: AppCredentials, access_token: str | None,
               refresh_token: str | None) -> None:
        return  # revoking a Page token would revoke the user's whole grant for their other Pages too


class InstagramViaFacebook(FacebookPages):
    """Instagram professional accounts linked to the user's Pages; the Page's token acts for them."""

    page_fields = "id,name,access_token,instagram_business_account{id,username,name,profile_picture_url}"

    def list_sub_accounts(self, spec: ProviderSpec, grant: TokenGrant, account: AccountInfo) -> list[SubAccount]:
        accounts = []
        for page in self._pages(spec, grant, self.page_fields):
            ig = page.get("instagram_business_account")
            if not isinstance(ig, dict) or not ig.get("id"):
                continue
            accounts.append(SubAccount(
                external_id=str(ig["id"]), display_name=str(ig.get("name") or ig.get("username") or "")[:255],
                kind="profile", handle=str(ig.get("username") or ""), avatar_url=_url(ig.get("profile_picture_url")),
                detail=f"Linked to the Facebook Page {page.get('name', '')}",
                access_token=page.get("access_token") if isinstance(page.get("access_token"), str) else None,
                extra={"page_id": str(page["id"])}))
        return accounts


class LongLivedExchange(Adapter):
    """Instagram Login and Threads: POST code exchange, then a long-lived token refreshed by exchange."""

    exchange_grant = "ig_exchange_token"
    refresh_grant = "ig_refresh_token"
    exchange_path = "/access_token"
    refresh_path = "/refresh_access_token"

    def exchange(self, spec: ProviderSpec, app: AppCredentials, redirect_uri: str, code: str,
                 verifier: str | None, now: datetime) -> TokenGrant:
        short = self.oauth.call_json("POST", spec.token_url, "code exchange", classify=classify_graph_error, data={
            "client_id": app.client_id, "client_secret": app.client_secret, "grant_type": "authorization_code",
            "redirect_uri": redirect_uri, "code": code.removesuffix("#_")})
        if isinstance(short.get("data"), list) and short["data"]:  # documented shape wraps it in "data"
            short = short["data"][0]
        scopes = short.get("permissions")
        long_lived = self.oauth.call_json("GET", spec.base_url + self.exchange_path, "long-lived token exchange",
                                          classify=classify_graph_error, params={
                                              "grant_type": self.exchange_grant, "client_secret": app.client_secret,
                                              "access_token": str(short.get("access_token", ""))})
        if isinstance(scopes, str | list) and "scope" not in long_lived:
            long_lived["scope"] = ",".join(scopes) if isinstance(scopes, list) else scopes
        return grant_from(long_lived, spec, now, spec.scopes)

    def identify(self, spec: ProviderSpec, grant: TokenGrant) -> AccountInfo:
        data = self.oauth.call_json("GET", spec.userinfo_url, "identity call", token=grant.access_token,
                                    classify=classify_graph_error)
        return account_from(data, dict(spec.userinfo_fields))

    def refresh(self, spec: ProviderSpec, app: AppCredentials, access_token: str | None, refresh_token: str | None,
                now: datetime) -> TokenGrant:
        if not access_token:
            raise PlatformError(PlatformError.TOKEN_INVALID, "this connection has no token to extend")
        data = self.oauth.call_json("GET", spec.base_url + self.refresh_path, "token refresh",
                                    classify=classify_graph_error,
                                    params={"grant_type": self.refresh_grant, "access_token": access_token})
        return grant_from(data, spec, now, ())

    def check(self, spec: ProviderSpec, access_token: str | None, *, app: AppCredentials | None = None,
              external_id: str | None = None) -> None:
        self.identify(spec, TokenGrant(access_token, None, None, None, ()))

    def revoke(self, spec: ProviderSpec, app: AppCredentials, access_token: str | None,
               refresh_token: str | None) -> None:
        return  # no revocation endpoint (reference/platforms.md §3, §9)


class Threads(LongLivedExchange):
    exchange_grant = "th_exchange_token"
    refresh_grant = "th_refresh_token"


def _url(value: Any) -> str | None:
    return value if isinstance(value, str) and value.startswith(("https://", "http://")) else None

"""An agency's own OAuth 2.0 / OpenID Connect platform. Its URLs were typed by an agency, so every
call goes through the SSRF-hardened client (public https only in production, checked on the
address connected, no redirects, size and time limits)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from portal.errors import PlatformError
from portal.oauth import AccountInfo, AppCredentials, TokenGrant, classify_http, classify_oauth_error, grant_from
from portal.providers.adapters.base import Adapter, account_from
from portal.providers.spec import ProviderSpec
from portal.security.urls import FetchFailed, UnsafeURL


class CustomOAuth(Adapter):
    def _post_token(self, spec: ProviderSpec, app: AppCredentials, form: dict[str, str], what: str) -> dict[str, Any]:
        body = {**form, "client_id": app.client_id, "client_secret": app.client_secret}
        return self._json("POST", spec.token_url, what, data=body)

    def _json(self, method: str, url: str, what: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self.oauth.guarded().request(method, url, **kwargs)
            data = response.json()
        except UnsafeURL as exc:
            raise PlatformError(PlatformError.APP_MISCONFIGURED, f"the platform's address is not allowed: {exc}") \
                from None
        except FetchFailed as exc:
            raise PlatformError(PlatformError.TEMPORARY, f"the platform could not complete the {what}: {exc.reason}",
                                retry_after=exc.retry_after) from None
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            raise classify_oauth_error(data["error"], what)
        if response.status >= 400 or not isinstance(data, dict):
            raise classify_http(response.status, response.headers.get("Retry-After"), what)
        return data

    def exchange(self, spec: ProviderSpec, app: AppCredentials, redirect_uri: str, code: str,
                 verifier: str | None, now: datetime) -> TokenGrant:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        if verifier:
            form["code_verifier"] = verifier
        return grant_from(self._post_token(spec, app, form, "code exchange"), spec, now, spec.scopes)

    def identify(self, spec: ProviderSpec, grant: TokenGrant) -> AccountInfo:
        data = self._json("GET", spec.userinfo_url, "identity call",
                          headers={"Authorization": f"Bearer {grant.access_token}", "Accept": "application/json"})
        return account_from(data, dict(spec.userinfo_fields))

    def refresh(self, spec: ProviderSpec, app: AppCredentials, access_token: str | None, refresh_token: str | None,
                now: datetime) -> TokenGrant:
        if not refresh_token:
            raise PlatformError(PlatformError.TOKEN_INVALID, "this connection has no refresh token")
        data = self._post_token(spec, app, {"grant_type": "refresh_token", "refresh_token": refresh_token},
                                "token refresh")
        return grant_from(data, spec, now, spec.scopes, previous_refresh=refresh_token)

    def revoke(self, spec: ProviderSpec, app: AppCredentials, access_token: str | None,
               refresh_token: str | None) -> None:
        return  # no revocation endpoint is configured for custom platforms

"""Mastodon (and servers speaking its API): OAuth 2.0 at a server the client chooses.

Differences from plain OAuth 2.0 (reference/platforms.md §12): every server is its own authorization
server and an outsider picks it, so every request goes through the SSRF-hardened client
(portal.security.urls) instead of Authlib's plain requests; the portal's app is registered at each
server on first use (portal.services.instances); tokens carry no expiry and no refresh token (valid
until revoked); an account id is unique only on its own server, so the connection's key is
``host:id`` and its handle ``user@host``.

The helpers at the top are shared with the other multi-instance adapter (Bluesky): a spec bound to a
server (``ProviderSpec.for_instance``) still knows which real server it stands for when the local
sandbox answers in its place.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from portal.errors import PlatformError
from portal.oauth import AccountInfo, AppCredentials, TokenGrant, classify_oauth_error, grant_from
from portal.providers.adapters.base import Adapter
from portal.providers.spec import ProviderSpec, sandbox_route
from portal.security.urls import FetchFailed, GuardPolicy, SafeHTTPClient, SafeResponse, UnsafeURL

Classifier = Callable[[int, dict[str, Any], Mapping[str, str], str], PlatformError]
_OAUTH_CODES = {"invalid_grant", "invalid_token", "invalid_client", "unauthorized_client", "insufficient_scope",
                "access_denied"}
DEFAULT_WAIT = 60.0


# Multi-instance helpers --------------------------------------------------------------------------------

def _sandbox_root(spec: ProviderSpec) -> str | None:
    """The sandbox's address when this bound spec is routed to the sandbox's stand-in, else None."""
    if not spec.sandboxed:
        return None
    root, sep, host = spec.base_url.rpartition("/p/")
    return root if sep and host and "/" not in host else None


def instance_url(spec: ProviderSpec) -> str:
    """The real server a bound spec talks to (``https://host[:port]``), also when the sandbox stands in."""
    if _sandbox_root(spec):
        return "https://" + spec.base_url.rpartition("/p/")[2]
    return spec.base_url.rstrip("/")


def routed(spec: ProviderSpec, url: str) -> str:
    """Where a request for the real ``url`` goes: the sandbox's stand-in for it when the spec is sandboxed."""
    root = _sandbox_root(spec)
    return sandbox_route(root, url) if root else url


def guarded_client(policy: GuardPolicy, spec: ProviderSpec, url: str) -> SafeHTTPClient:
    """The hardened client for one request. A request routed to the local sandbox goes to the operator's
    own stand-in (never to the address the client typed, which was checked under ``policy`` first), so
    only there may it reach loopback; production refuses sandbox routing altogether (config.validate)."""
    root = _sandbox_root(spec)
    if root and url.startswith(root + "/p/"):
        return SafeHTTPClient(replace(policy, allow_private=True, require_https=False))
    return SafeHTTPClient(policy)


def guarded_json(policy: GuardPolicy, spec: ProviderSpec, method: str, url: str, what: str, classify: Classifier,
                 *, token: str | None = None, data: dict[str, str] | None = None,
                 json_body: dict[str, Any] | None = None, params: dict[str, str] | None = None) -> dict[str, Any]:
    """One JSON call to a user-chosen server through the hardened client; failures become PlatformErrors."""
    headers = {"Accept": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        response = guarded_client(policy, spec, url).request(method, url, params=params, data=data, json=json_body,
                                                             headers=headers)
    except UnsafeURL as exc:
        raise PlatformError(PlatformError.TEMPORARY, f"the server's address was refused ({what}): {exc}",
                            platform_code="unsafe_address") from None
    except FetchFailed as exc:
        raise PlatformError(PlatformError.TEMPORARY, f"the server could not be reached ({what}): {exc.reason}",
                            retry_after=exc.retry_after, platform_code="unreachable") from None
    body = json_object(response)
    if response.status >= 400 or body is None:
        raise classify(response.status, body or {}, response.headers, what)
    return body


def json_object(response: SafeResponse) -> dict[str, Any] | None:
    """The body as a JSON object ({} when empty), or None when it is something else (HTML, a list ...)."""
    if not response.body.strip():
        return {}
    try:
        data = json.loads(response.body)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


# Mastodon ----------------------------------------------------------------------------------------------

def classify_mastodon_error(status: int, body: dict[str, Any], headers: Mapping[str, str],
                            what: str) -> PlatformError:
    """Mastodon's answers to the shared classes: 401 token, 403 scopes or disabled login, 429 with
    X-RateLimit-Reset, 5xx temporary; OAuth error codes from the token and revoke endpoints."""
    error = body.get("error") if isinstance(body.get("error"), str) else ""
    if status == 429:
        return PlatformError(PlatformError.RATE_LIMITED, f"Mastodon rate-limited the {what}",
                             retry_after=_reset_seconds(headers), platform_code="429")
    if status >= 500 or status < 400:
        return PlatformError(PlatformError.TEMPORARY, f"Mastodon failed the {what} (HTTP {status})",
                             platform_code=str(status))
    if error in _OAUTH_CODES:
        return classify_oauth_error(error, what)
    if status == 401:
        return PlatformError(PlatformError.TOKEN_INVALID, f"Mastodon no longer accepts this token ({what})",
                             platform_code="401")
    if status == 403:
        return PlatformError(PlatformError.PERMISSION_LOST, f"Mastodon refused the {what} (scopes or disabled "
                             "login)", platform_code="403")
    return PlatformError(PlatformError.TEMPORARY, f"Mastodon failed the {what} (HTTP {status})",
                         platform_code=str(status))


def _reset_seconds(headers: Mapping[str, str]) -> float:
    """Seconds until X-RateLimit-Reset (an ISO 8601 time on Mastodon), else Retry-After, else a minute."""
    reset = headers.get("X-RateLimit-Reset") or ""
    try:
        when = datetime.fromisoformat(reset.strip())
        return max(0.0, (when.replace(tzinfo=when.tzinfo or UTC) - datetime.now(UTC)).total_seconds())
    except ValueError:
        pass
    retry = (headers.get("Retry-After") or "").strip()
    return float(retry) if retry.isdigit() else DEFAULT_WAIT


class Mastodon(Adapter):
    """Authorization code + PKCE at the client's own server; the spec comes bound to that server."""

    def _json(self, spec: ProviderSpec, method: str, url: str, what: str, **kwargs: Any) -> dict[str, Any]:
        return guarded_json(self.oauth.url_policy, spec, method, url, what, classify_mastodon_error, **kwargs)

    def exchange(self, spec: ProviderSpec, app: AppCredentials, redirect_uri: str, code: str,
                 verifier: str | None, now: datetime) -> TokenGrant:
        form = {"grant_type": "authorization_code", "code": code, "client_id": app.client_id,
                "client_secret": app.client_secret, "redirect_uri": redirect_uri}
        if verifier:
            form["code_verifier"] = verifier
        token = self._json(spec, "POST", spec.token_url, "code exchange", data=form)
        return grant_from(token, spec, now, spec.scopes)  # no expires_in, no refresh token: valid until revoked

    def identify(self, spec: ProviderSpec, grant: TokenGrant) -> AccountInfo:
        data = self._json(spec, "GET", spec.userinfo_url, "identity call", token=grant.access_token)
        account_id, username = data.get("id"), data.get("username")
        if not isinstance(account_id, str | int) or not isinstance(username, str) or not str(account_id) \
                or not username:
            raise PlatformError(PlatformError.TEMPORARY, "the server did not say which account this is")
        # The host is the server we talked to, never one the answer names: ids repeat across servers.
        host = urlsplit(instance_url(spec)).netloc
        avatar = data.get("avatar")
        return AccountInfo(
            external_id=f"{host}:{account_id}"[:255],
            display_name=str(data.get("display_name") or username)[:255],
            handle=f"{username}@{host}"[:255],
            avatar_url=avatar if isinstance(avatar, str) and avatar.startswith(("https://", "http://")) else None,
        )

    def can_refresh(self, spec: ProviderSpec, has_refresh_token: bool) -> bool:
        return False  # tokens do not expire; nothing to refresh

    def revoke(self, spec: ProviderSpec, app: AppCredentials, access_token: str | None,
               refresh_token: str | None) -> None:
        if access_token and spec.revoke_url:
            self._json(spec, "POST", spec.revoke_url, "revocation", data={
                "client_id": app.client_id, "client_secret": app.client_secret, "token": access_token})

    def check(self, spec: ProviderSpec, access_token: str | None, *, app: AppCredentials | None = None,
              external_id: str | None = None) -> None:
        self.identify(spec, TokenGrant(access_token, None, None, None, ()))

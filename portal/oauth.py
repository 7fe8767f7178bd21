"""The only Authlib user: OAuth 2.0 authorization URLs, code exchange, refresh, identity, revoke.

Every platform failure leaves this module as a ``PlatformError`` of one shared class
(see ``ErrorClass``), so services and workers decide on retry or reconnect without
knowing the platform. Token values never reach an exception message or a ``repr``.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import certifi
import requests
import urllib3
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from requests.adapters import HTTPAdapter

from portal.errors import PlatformError
from portal.providers import ProviderSpec
from portal.security.urls import GuardPolicy, SafeHTTPClient

TIMEOUT = (5, 15)
MAX_RESPONSE_BYTES = 1_000_000
_PERMANENT_GRANT_ERRORS = {"invalid_grant", "invalid_token", "unauthorized_client_token"}
Classifier = Callable[[int, dict[str, Any], str | None, str], PlatformError]


@dataclass(frozen=True)
class AppCredentials:
    """An OAuth client registered at a platform (the operator's or an agency's own)."""

    client_id: str
    client_secret: str = field(repr=False)
    # Discord: the bot's own token, a separate secret of the same app (posting, channel listing).
    bot_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class TokenGrant:
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: datetime | None
    refresh_expires_at: datetime | None
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class AccountInfo:
    external_id: str
    display_name: str
    handle: str
    avatar_url: str | None


def grant_from(token: dict[str, Any], spec: ProviderSpec, now: datetime, requested: tuple[str, ...],
                previous_refresh: str | None = None) -> TokenGrant:
    access = token.get("access_token")
    if not isinstance(access, str) or not access:
        raise PlatformError(PlatformError.TEMPORARY, "the platform answered without an access token")
    expires_in = _as_seconds(token.get("expires_in"))
    refresh_in = _as_seconds(token.get("refresh_token_expires_in") or token.get("refresh_expires_in"))
    refresh = token.get("refresh_token")
    # A refresh response without a new refresh token keeps the old one: never replace it with nothing.
    refresh_token = refresh if isinstance(refresh, str) and refresh else previous_refresh
    scope = token.get("scope")
    scopes = tuple(scope.replace(",", " ").split()) if isinstance(scope, str) else requested
    return TokenGrant(
        access_token=access,
        refresh_token=refresh_token,
        expires_at=now + timedelta(seconds=expires_in) if expires_in else None,
        refresh_expires_at=now + timedelta(seconds=refresh_in) if refresh_in else None,
        scopes=scopes,
    )


def _as_seconds(value: Any) -> int | None:
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds > 0 else None


def classify_http(status: int, retry_after: str | None, what: str) -> PlatformError:
    """Map an HTTP failure to the shared error classes. Unknown failures are temporary."""
    if status == 429:
        return PlatformError(PlatformError.RATE_LIMITED, f"the platform rate-limited the {what}",
                             retry_after=_retry_after(retry_after))
    if status == 401:
        return PlatformError(PlatformError.TOKEN_INVALID, f"the platform no longer accepts the token ({what})")
    if status == 403:
        return PlatformError(PlatformError.PERMISSION_LOST, f"the platform refused the {what} (permission)")
    return PlatformError(PlatformError.TEMPORARY, f"the platform failed the {what} (HTTP {status})")


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class OAuthClient:
    """Talks OAuth 2.0 to platforms described by ProviderSpecs."""

    def __init__(self, timeout: float | tuple[float, float] = TIMEOUT, url_policy: GuardPolicy | None = None,
                 pool_size: int = 32) -> None:
        self.timeout = timeout
        self.url_policy = url_policy or GuardPolicy()
        # One keep-alive pool for every call to the catalog's platforms (a worker refreshes hundreds a second:
        # a new TCP and TLS connection for each would cost more than the refresh itself). Proxies come from
        # the environment once, not on every request as requests would look them up.
        self._adapter = HTTPAdapter(pool_connections=16, pool_maxsize=pool_size)
        self._proxies = urllib.request.getproxies()
        # Token refreshes and revocations go straight to urllib3 (requests' own bookkeeping cost as much CPU
        # as the rest of a refresh); certificates are checked against the same bundle requests uses.
        self._token_pool = urllib3.PoolManager(num_pools=16, maxsize=pool_size, cert_reqs="CERT_REQUIRED",
                                               ca_certs=certifi.where(), retries=False)

    def close(self) -> None:
        self._adapter.close()
        self._token_pool.clear()

    def _plain_session(self) -> requests.Session:
        # A new session per call (no cookie ever carried from one platform or agency to another) over the
        # shared connection pool.
        session = requests.Session()
        session.trust_env = False
        session.proxies.update(self._proxies)
        session.mount("https://", self._adapter)
        session.mount("http://", self._adapter)
        return session

    def guarded(self) -> SafeHTTPClient:
        """The SSRF-hardened client, for URLs an outsider chose (custom platforms, instances, PDS hosts)."""
        return SafeHTTPClient(self.url_policy)

    def _session(self, spec: ProviderSpec, app: AppCredentials, **kwargs: Any) -> OAuth2Session:
        session = _PooledOAuth2Session(
            self._token_pool if not self._proxies else None,
            client_id=app.client_id,
            client_secret=app.client_secret,
            token_endpoint_auth_method=spec.token_auth_method,
            revocation_endpoint_auth_method=spec.token_auth_method,
            scope=spec.scope_separator.join(spec.scopes),
            code_challenge_method="S256" if spec.pkce else None,
            default_timeout=self.timeout,
            **kwargs,
        )
        # Look at the HTTP status before Authlib parses the body: a 429 or 5xx that happens to carry
        # an OAuth-looking JSON error must stay temporary, and Retry-After must not be lost.
        for hook in ("access_token_response", "refresh_token_response"):
            session.register_compliance_hook(hook, _reject_throttled)
        session.trust_env = False
        session.proxies.update(self._proxies)
        session.mount("https://", self._adapter)
        session.mount("http://", self._adapter)
        return session

    def authorization_url(self, spec: ProviderSpec, app: AppCredentials, redirect_uri: str, state: str,
                          code_verifier: str | None, extra: dict[str, str] | None = None) -> str:
        with _open(self._session(spec, app, redirect_uri=redirect_uri)) as session:
            url, _ = session.create_authorization_url(
                spec.authorize_url, state=state, code_verifier=code_verifier if spec.pkce else None,
                **{**dict(spec.authorize_params), **(extra or {})},
            )
        return str(url)

    def exchange_code(self, spec: ProviderSpec, app: AppCredentials, redirect_uri: str, code: str,
                      code_verifier: str | None, now: datetime) -> TokenGrant:
        with _open(self._session(spec, app, redirect_uri=redirect_uri)) as session:
            token = self._call(lambda: session.fetch_token(
                spec.token_url, grant_type="authorization_code", code=code,
                code_verifier=code_verifier if spec.pkce else None,
            ), "code exchange")
        return grant_from(token, spec, now, spec.scopes)

    def refresh(self, spec: ProviderSpec, app: AppCredentials, refresh_token: str, now: datetime) -> TokenGrant:
        with _open(self._session(spec, app)) as session:
            token = self._call(lambda: session.refresh_token(spec.token_url, refresh_token=refresh_token),
                               "token refresh")
        return grant_from(token, spec, now, spec.scopes, previous_refresh=refresh_token)

    def fetch_account(self, spec: ProviderSpec, access_token: str) -> AccountInfo:
        data = self.get_json(spec.userinfo_url, access_token, "identity call")
        fields = dict(spec.userinfo_fields)
        external_id = pluck(data, fields["id"])
        if external_id in (None, ""):
            raise PlatformError(PlatformError.TEMPORARY, "the platform did not say which account this is")
        name = pluck(data, fields["name"])
        handle = pluck(data, fields["handle"]) if "handle" in fields else None
        avatar = pluck(data, fields["avatar"]) if "avatar" in fields else None
        return AccountInfo(
            external_id=str(external_id)[:255],
            display_name=str(name or "")[:255],
            handle=str(handle or "")[:255],
            avatar_url=avatar if isinstance(avatar, str) and avatar.startswith(("https://", "http://")) else None,
        )

    def revoke(self, spec: ProviderSpec, app: AppCredentials, token: str) -> None:
        if not spec.revoke_url:
            return
        with _open(self._session(spec, app)) as session:
            self._call(lambda: session.revoke_token(spec.revoke_url, token=token), "revocation")

    def get_json(self, url: str, access_token: str, what: str) -> dict[str, Any]:
        return self.call_json("GET", url, what, token=access_token)

    def call_json(self, method: str, url: str, what: str, *, token: str | None = None,
                  params: dict[str, str] | None = None, data: dict[str, str] | None = None,
                  json_body: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
                  auth: tuple[str, str] | None = None, classify: Classifier | None = None,
                  list_key: str | None = None) -> dict[str, Any]:
        """One platform API call with a JSON answer; failures become PlatformErrors of the shared classes.

        ``classify`` maps a platform's own error envelope (Meta's codes, Discord's codes ...);
        without it the HTTP status decides. ``list_key``: the endpoint answers a bare JSON array
        (Discord's channel list), returned as ``{list_key: [...]}``."""
        all_headers = {"Accept": "application/json", **(headers or {})}
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        try:
            response = self._plain_session().request(
                method, url, params=params, data=data, json=json_body, headers=all_headers, auth=auth,
                timeout=self.timeout, stream=True, allow_redirects=False)
            try:
                body = response.raw.read(MAX_RESPONSE_BYTES + 1, decode_content=True)
            except BaseException:
                response.close()
                raise
            if len(body) > MAX_RESPONSE_BYTES:
                response.close()  # not read to the end: the connection cannot be reused
            else:
                response.raw.release_conn()  # read to the end: back to the pool
        except requests.RequestException:
            # `from None`: a requests error quotes the URL, which may carry a secret in its query or path.
            raise PlatformError(PlatformError.TEMPORARY, f"the platform could not be reached ({what})") from None
        if len(body) > MAX_RESPONSE_BYTES:
            raise PlatformError(PlatformError.TEMPORARY, f"the platform's answer was too large ({what})")
        try:
            data_out = json.loads(body) if body else {}
        except (ValueError, RecursionError):
            data_out = None
        if list_key is not None and response.status_code < 400 and isinstance(data_out, list):
            return {list_key: data_out}
        if response.status_code >= 400 or not isinstance(data_out, dict):
            if classify is not None and isinstance(data_out, dict):
                raise classify(response.status_code, data_out, response.headers.get("Retry-After"), what)
            if response.status_code < 400:
                raise PlatformError(PlatformError.TEMPORARY, f"the platform's answer had an odd shape ({what})")
            raise classify_http(response.status_code, response.headers.get("Retry-After"), what)
        return data_out

    @staticmethod
    def _call(operation: Any, what: str) -> Any:
        try:
            result = operation()
        except PlatformError:
            raise
        except OAuthError as exc:
            raise classify_oauth_error(exc.error or "", what) from None
        except requests.HTTPError as exc:
            response = exc.response
            status = response.status_code if response is not None else 502
            retry = response.headers.get("Retry-After") if response is not None else None
            raise classify_http(status, retry, what) from None
        except (requests.RequestException, ValueError, RecursionError):
            raise PlatformError(PlatformError.TEMPORARY, f"the platform could not complete the {what}") from None
        if hasattr(result, "status_code") and result.status_code >= 400:
            raise classify_http(result.status_code, result.headers.get("Retry-After"), what)
        return result


class _PooledOAuth2Session(OAuth2Session):  # type: ignore[misc]
    """Authlib's session, with refresh and revocation requests sent over a shared urllib3 pool."""

    def __init__(self, pool: urllib3.PoolManager | None, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pool = pool

    def _http_post(self, url: str, body: str | None = None, auth: Any = None, headers: dict[str, str] | None = None,
                   **kwargs: Any) -> Any:
        if self._pool is None:  # behind a proxy: requests knows how to reach it
            return super()._http_post(url, body=body, auth=auth, headers=headers, **kwargs)
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json",
                   **(headers or {})}
        body = body or ""
        if auth is not None:  # client authentication: a Basic header or the secret in the body
            url, headers, body = auth.prepare("POST", url, headers, body)
        connect, read = self.default_timeout if isinstance(self.default_timeout, tuple) else (TIMEOUT[0], TIMEOUT[1])
        try:
            response = self._pool.request("POST", url, body=body.encode(), headers=headers, redirect=False,
                                          preload_content=False, timeout=urllib3.Timeout(connect=connect, read=read))
            content = response.read(MAX_RESPONSE_BYTES + 1)
        except urllib3.exceptions.HTTPError:
            raise requests.ConnectionError("the token endpoint could not be reached") from None
        if len(content) > MAX_RESPONSE_BYTES:
            response.close()  # not read to the end: never back in the pool
            raise PlatformError(PlatformError.TEMPORARY, "the platform's answer was too large (token request)")
        response.release_conn()
        return _TokenResponse(response.status, response.headers, content)


@dataclass(frozen=True)
class _TokenResponse:
    """What Authlib and the compliance hook read of a token endpoint's answer."""

    status_code: int
    headers: Any
    content: bytes = field(repr=False)

    def json(self) -> Any:
        return json.loads(self.content)

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise requests.HTTPError(f"HTTP {self.status_code}", response=self)  # type: ignore[arg-type]


@contextmanager
def _open(session: OAuth2Session) -> Iterator[OAuth2Session]:
    """A session over the shared pool: closing it would close the pool, so it is just dropped."""
    yield session


def _reject_throttled(response: requests.Response) -> requests.Response:
    if response.status_code == 429 or response.status_code >= 500:
        raise classify_http(response.status_code, response.headers.get("Retry-After"), "token request")
    return response


def classify_oauth_error(error: str, what: str) -> PlatformError:
    if error in _PERMANENT_GRANT_ERRORS:
        return PlatformError(PlatformError.TOKEN_INVALID, f"the platform refused the {what}: the grant is no longer "
                             "valid", platform_code=error)
    if error in ("invalid_client", "unauthorized_client"):
        return PlatformError(PlatformError.APP_MISCONFIGURED, f"the platform rejected the app credentials ({what})",
                             platform_code=error)
    if error in ("insufficient_scope", "access_denied"):
        return PlatformError(PlatformError.PERMISSION_LOST, f"the platform refused the {what} (permission)",
                             platform_code=error)
    if error in ("slow_down", "rate_limited"):
        return PlatformError(PlatformError.RATE_LIMITED, f"the platform asked us to wait ({what})", platform_code=error)
    # invalid_request with a known-bad token, server_error, unknown codes: temporary, never "revoked".
    return PlatformError(PlatformError.TEMPORARY, f"the platform failed the {what}", platform_code=error[:40])


def pluck(data: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data

"""Bluesky (AT Protocol) with an app password: XRPC sessions instead of OAuth.

Differences (reference/platforms.md §11): the client gives a handle (or email or DID) and an app
password; ``com.atproto.server.createSession`` at their server (default the bsky.social entryway, or
their own PDS) returns an access JWT (about 2 hours) and a refresh JWT (about 90 days), both read for
their lifetime from the JWT itself; ``refreshSession`` rotates both; ``deleteSession`` revokes.

Decision: the app password is kept, encrypted, as part of the connection's second secret (the
refresh column, which no API or page ever returns). When a refresh fails with ExpiredToken or
InvalidToken (a long outage, a session revoked by the server) we sign in again with it, as the
reference recommends, instead of asking the client to come back; revoking the app password in
Bluesky's settings still ends the connection. It grants no more than the refresh JWT we hold anyway
(an app password cannot change the account's password or settings).

Mix-up protection (SECURITY.md 7): the server that signed the client in may claim any DID. So the DID
document is resolved independently (plc.directory or did:web), and its ``#atproto_pds`` endpoint must be
the server we signed in at, or, for an entryway such as bsky.social, that home PDS must itself accept
the session for the same DID; otherwise the connection is refused. Every address on the way is checked
by the hardened client.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from portal.errors import IdentityMismatch, PlatformError
from portal.oauth import AccountInfo, AppCredentials, TokenGrant
from portal.providers.adapters.base import Adapter, Authorized
from portal.providers.adapters.mastodon import guarded_json, instance_url, routed
from portal.providers.spec import ProviderSpec
from portal.security.urls import UnsafeURL, normalize_host

PLC_DIRECTORY = "https://plc.directory"
CREATE, REFRESH = "com.atproto.server.createSession", "com.atproto.server.refreshSession"
GET_SESSION, DELETE = "com.atproto.server.getSession", "com.atproto.server.deleteSession"
_DID_PLC = re.compile(r"did:plc:[a-z0-9]{1,64}")
_DID_WEB = re.compile(r"did:web:([a-z0-9.-]{1,253})")  # atproto allows only hostname-level did:web
_TOKEN_ERRORS = {"ExpiredToken", "InvalidToken", "AuthenticationRequired", "AuthFactorTokenRequired"}
_ACCOUNT_ERRORS = {"AccountTakedown", "AccountDeactivated", "AccountSuspended"}
FALLBACK_LIFETIME = timedelta(hours=1)  # a JWT without a readable exp: refresh early rather than late
MAX_LIFETIME = timedelta(days=120)


@dataclass(frozen=True)
class Secrets:
    """What the connection's second secret holds, JSON-encoded and encrypted with the row."""

    refresh_jwt: str = field(repr=False)
    app_password: str = field(repr=False)
    did: str

    def dumps(self) -> str:
        return json.dumps({"v": 1, "refresh_jwt": self.refresh_jwt, "app_password": self.app_password,
                           "did": self.did})

    @staticmethod
    def loads(value: str | None) -> Secrets | None:
        try:
            data = json.loads(value or "")
            return Secrets(str(data["refresh_jwt"]), str(data["app_password"]), str(data["did"]))
        except (ValueError, KeyError, TypeError):
            return None


def classify_xrpc_error(status: int, body: dict[str, Any], headers: Mapping[str, str], what: str) -> PlatformError:
    """XRPC ``{"error": "Name", "message": ...}`` to the shared classes (never the message text)."""
    error = body.get("error")
    name = error if isinstance(error, str) else ""
    code = name[:40] or str(status)
    if name in _ACCOUNT_ERRORS:
        return PlatformError(PlatformError.PERMISSION_LOST, f"Bluesky refused the {what}: account state",
                             platform_code=code)
    if status == 429 or name == "RateLimitExceeded":
        return PlatformError(PlatformError.RATE_LIMITED, f"Bluesky rate-limited the {what}",
                             retry_after=_rate_limit_wait(headers), platform_code=code)
    if status >= 500 or status < 400:
        return PlatformError(PlatformError.TEMPORARY, f"Bluesky failed the {what} (HTTP {status})", platform_code=code)
    if name in _TOKEN_ERRORS or status == 401:
        return PlatformError(PlatformError.TOKEN_INVALID, f"Bluesky no longer accepts this session ({what})",
                             platform_code=code)
    if status == 403:
        return PlatformError(PlatformError.PERMISSION_LOST, f"Bluesky refused the {what}", platform_code=code)
    return PlatformError(PlatformError.TEMPORARY, f"Bluesky failed the {what} (HTTP {status})", platform_code=code)


def _rate_limit_wait(headers: Mapping[str, str]) -> float:
    """Seconds to wait: RateLimit-Reset is a Unix time on the reference PDS; Retry-After as a fallback."""
    for name, absolute in (("RateLimit-Reset", True), ("Retry-After", False)):
        value = (headers.get(name) or "").strip()
        if value.isdigit():
            seconds = float(value)
            return max(0.0, seconds - time.time()) if absolute and seconds > 1e9 else seconds
    return 60.0


def jwt_expiry(token: str, now: datetime) -> datetime | None:
    """When a JWT expires, read from its payload without verifying it (our store needs an absolute time).
    The lifetime is ``exp - iat`` counted from our clock, so clock skew with the server does not matter."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, RecursionError):
        return None
    exp, iat = (_number(payload.get(key)) if isinstance(payload, dict) else None for key in ("exp", "iat"))
    if exp is None:
        return None
    seconds = exp - iat if iat is not None and iat <= exp else exp - now.timestamp()
    return now + min(max(timedelta(seconds=seconds), timedelta(0)), MAX_LIFETIME)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _did_of(session: dict[str, Any]) -> str:
    did = session.get("did")
    if not isinstance(did, str) or not (_DID_PLC.fullmatch(did) or _DID_WEB.fullmatch(did)):
        raise PlatformError(PlatformError.TEMPORARY, "the server did not say which account this is",
                            platform_code="no_did")
    return did


def _check_active(session: dict[str, Any]) -> None:
    if session.get("active") is False:
        status = session.get("status") if isinstance(session.get("status"), str) else "inactive"
        raise PlatformError(PlatformError.PERMISSION_LOST, "the Bluesky account is not active",
                            platform_code=str(status)[:40])


def _pds_endpoint(document: dict[str, Any]) -> str | None:
    services = document.get("service")
    for service in services if isinstance(services, list) else []:
        if isinstance(service, dict) and str(service.get("id", "")).endswith("#atproto_pds") \
                and service.get("type") == "AtprotoPersonalDataServer":
            endpoint = service.get("serviceEndpoint")
            return endpoint if isinstance(endpoint, str) else None
    return None


class Bluesky(Adapter):
    """Sessions at the server the client signed in at; the spec comes bound to it (Connection.instance)."""

    def _xrpc(self, spec: ProviderSpec, method: str, what: str, *, token: str | None = None,
              json_body: dict[str, Any] | None = None, params: dict[str, str] | None = None,
              url: str | None = None) -> dict[str, Any]:
        return guarded_json(self.oauth.url_policy, spec, method, url or f"{spec.base_url}/xrpc/{what}", what,
                            classify_xrpc_error, token=token, json_body=json_body, params=params)

    # Sign-in ----------------------------------------------------------------------------------------

    def login(self, spec: ProviderSpec, identifier: str, app_password: str, now: datetime) -> tuple[Authorized, str]:
        """Sign in and prove the identity; returns the authorization and the account's home PDS.
        Raises PlatformError (the platform said no) or IdentityMismatch (the identity is not proven)."""
        session = self._xrpc(spec, "POST", CREATE, json_body={"identifier": identifier, "password": app_password})
        did = _did_of(session)
        _check_active(session)
        access = session.get("accessJwt")
        if not isinstance(access, str) or not access:
            raise PlatformError(PlatformError.TEMPORARY, "the server answered without a session")
        document = self._did_document(spec, did)
        home = self._verified_home(spec, did, access, document)
        claimed = session.get("handle")
        handle = claimed if isinstance(claimed, str) else ""
        if f"at://{handle}" not in (document.get("alsoKnownAs") or []):
            handle = ""  # a handle the DID document does not claim is not shown as the account's
        name, avatar = self._profile(spec, home, did, access)
        account = AccountInfo(did, (name or handle or did)[:255], handle[:255], avatar)
        return Authorized(self._grant(session, app_password, did, now), account, (), None), home

    def _did_document(self, spec: ProviderSpec, did: str) -> dict[str, Any]:
        """The DID document from the DID's own registry, never from the server that signed in."""
        web = _DID_WEB.fullmatch(did)
        try:
            url = normalize_host(web.group(1), self.oauth.url_policy) + "/.well-known/did.json" if web \
                else f"{PLC_DIRECTORY}/{did}"
        except UnsafeURL as exc:
            raise IdentityMismatch(f"Your account's identity (did:web) points to an address that is not allowed: "
                                   f"{exc}. Nothing was connected.") from None
        try:
            document = self._xrpc(spec, "GET", "identity lookup", url=routed(spec, url))
        except PlatformError as exc:
            raise IdentityMismatch("We could not confirm your account with the Bluesky identity directory, so "
                                   "nothing was connected. Please try again in a minute.") from exc
        if document.get("id") != did:
            raise IdentityMismatch("The identity directory does not confirm this account, so nothing was connected.")
        return document

    def _verified_home(self, spec: ProviderSpec, did: str, access: str, document: dict[str, Any]) -> str:
        """The account's home PDS per its DID document: the server we signed in at, or a PDS that accepts
        this very session for this DID (the bsky.social entryway hands sessions to its PDSes)."""
        server = instance_url(spec)
        try:
            home = normalize_host(_pds_endpoint(document) or "", self.oauth.url_policy)
        except UnsafeURL as exc:
            raise IdentityMismatch(f"Your account's home server address is not allowed ({exc}), so nothing was "
                                   "connected.") from None
        if home == server:
            return home
        try:
            session = self._xrpc(spec, "GET", GET_SESSION, token=access,
                                 url=routed(spec, f"{home}/xrpc/{GET_SESSION}"))
        except PlatformError as exc:
            raise IdentityMismatch(self._not_hosted(server)) from exc
        if session.get("did") != did:
            raise IdentityMismatch(self._not_hosted(server))
        return home

    @staticmethod
    def _not_hosted(server: str) -> str:
        return (f"{server.removeprefix('https://')} signed you in as an account whose home server does not "
                "confirm it, so nothing was connected. Check the server address and try again.")

    def _profile(self, spec: ProviderSpec, home: str, did: str, access: str) -> tuple[str, str | None]:
        """Display name and avatar, best effort: the connection works without them."""
        try:
            data = self._xrpc(spec, "GET", "app.bsky.actor.getProfile", token=access, params={"actor": did},
                              url=routed(spec, f"{home}/xrpc/app.bsky.actor.getProfile"))
        except PlatformError:
            return "", None
        name, avatar = data.get("displayName"), data.get("avatar")
        return (name if isinstance(name, str) else "",
                avatar if isinstance(avatar, str) and avatar.startswith(("https://", "http://")) else None)

    def _grant(self, session: dict[str, Any], app_password: str, did: str, now: datetime) -> TokenGrant:
        access, refresh = session.get("accessJwt"), session.get("refreshJwt")
        if not isinstance(access, str) or not access or not isinstance(refresh, str) or not refresh:
            raise PlatformError(PlatformError.TEMPORARY, "the server answered without a session")
        # No refresh expiry: with the app password kept, an expired refresh JWT means signing in again.
        return TokenGrant(access, Secrets(refresh, app_password, did).dumps(),
                          jwt_expiry(access, now) or now + FALLBACK_LIFETIME, None, ())

    # Lifecycle --------------------------------------------------------------------------------------

    def authorization_url(self, spec: ProviderSpec, app: AppCredentials, redirect_uri: str, state: str,
                          verifier: str | None, reconsent: bool = False) -> str:
        raise PlatformError(PlatformError.APP_MISCONFIGURED, "Bluesky app passwords have no OAuth redirect")

    def authorize(self, spec: ProviderSpec, app: AppCredentials, redirect_uri: str, code: str,
                  verifier: str | None, now: datetime) -> Authorized:
        raise PlatformError(PlatformError.APP_MISCONFIGURED, "Bluesky app passwords have no OAuth callback")

    def refresh(self, spec: ProviderSpec, app: AppCredentials, access_token: str | None, refresh_token: str | None,
                now: datetime) -> TokenGrant:
        """refreshSession (rotating); on ExpiredToken / InvalidToken, sign in again with the app password."""
        kept = Secrets.loads(refresh_token)
        if kept is None:
            raise PlatformError(PlatformError.TOKEN_INVALID, "this connection has no Bluesky session to refresh")
        try:
            session = self._xrpc(spec, "POST", REFRESH, token=kept.refresh_jwt)
        except PlatformError as exc:
            if exc.kind != PlatformError.TOKEN_INVALID:
                raise
            session = self._xrpc(spec, "POST", CREATE, json_body={"identifier": kept.did,
                                                                   "password": kept.app_password})
        if _did_of(session) != kept.did:
            raise PlatformError(PlatformError.TOKEN_INVALID, "the server answered for another account",
                                platform_code="did_changed")
        _check_active(session)
        return self._grant(session, kept.app_password, kept.did, now)

    def revoke(self, spec: ProviderSpec, app: AppCredentials, access_token: str | None,
               refresh_token: str | None) -> None:
        kept = Secrets.loads(refresh_token)
        if kept is None:
            return
        try:
            self._xrpc(spec, "POST", DELETE, token=kept.refresh_jwt)
        except PlatformError as exc:
            if exc.kind != PlatformError.TOKEN_INVALID:  # an already dead session is revoked enough
                raise

    def check(self, spec: ProviderSpec, access_token: str | None, *, app: AppCredentials | None = None,
              external_id: str | None = None) -> None:
        _check_active(self._xrpc(spec, "GET", GET_SESSION, token=access_token))

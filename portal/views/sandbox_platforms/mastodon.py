"""Stand-in for Mastodon servers: any host is its own server (reference/platforms.md §12).

Real shapes: ``POST /api/v1/apps`` (a client id and secret per registration), ``/oauth/authorize``
(PKCE S256, force_login), ``/oauth/token`` (authorization_code with no ``expires_in`` and no refresh
token; client_credentials for app-only tokens), ``/api/v1/accounts/verify_credentials``,
``/oauth/revoke``; errors ``{"error": "..."}`` with 401, 403 "outside the authorized scopes" and 429 with
``X-RateLimit-*`` headers.

Every host keeps its own apps, codes and tokens: a code or token from one server is refused by
another. Apps are stateless (an HMAC of the host and the registration); a server "forgets" every app
registered so far (as pre-4.3 servers vacuumed unused apps) on the sandbox-only control
``POST /p/<host>/_sandbox/vacuum``. The host ``not-mastodon.example`` answers like a web site that is
not Mastodon. Consent runs on the shared sandbox page, which knows only the sandbox's own client, so
the authorize step checks the server's app and hands the page that client, carrying the app along.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from flask import current_app, jsonify, redirect, render_template, request, url_for

from portal.sandbox import ACCOUNTS_BY_ID, SandboxError
from portal.sandbox.data import platform_user_id
from portal.views.sandbox_platforms import bearer, client_credentials, consent_page, no_store, route, server

TOKEN_LIFETIME = 10 * 365 * 86400  # "valid until revoked"
NOT_MASTODON = "not-mastodon.example"
UNKNOWN_CLIENT = ("Client authentication failed due to unknown client, no client authentication included, "
                  "or unsupported authentication method.")
INVALID_GRANT = ("The provided authorization grant is invalid, expired, revoked, does not match the redirection "
                 "URI used in the authorization request, or was issued to another client.")


def _host() -> str:
    return str((request.view_args or {}).get("host", "")).lower()


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _platform(host: str) -> str:
    """Codes and tokens are bound to the server that issued them."""
    return "mastodon:" + _digest(host)


def _mac(*parts: str) -> str:
    secret = current_app.extensions["easyconnect"].settings.sandbox_client_secret
    key = hashlib.sha256(f"mastodon-stand-in|{secret}".encode()).digest()
    return hmac.new(key, "|".join(parts).encode(), hashlib.sha256).hexdigest()


def _epoch(host: str) -> str:
    return str(server().counters().get(f"mastodon_vacuum:{_digest(host)}", 0))


def _app_ok(host: str, client_id: str, *, secret: str | None = None, redirect_uri: str | None = None) -> bool:
    """A client id this server issued since its last vacuum (and its secret, and its redirect URI)."""
    parts = (client_id or "").split(".")
    if len(parts) != 3 or parts[0] != _epoch(host):
        return False
    epoch, nonce, tag = parts
    if secret is not None and not hmac.compare_digest(secret, _mac("secret", host, client_id)[:43]):
        return False
    return redirect_uri is None or hmac.compare_digest(tag, _mac("id", host, epoch, nonce, redirect_uri)[:16])


def _error(status: int, message: str, **extra: str) -> Any:
    response = jsonify(error=message, **extra)
    response.status_code = status
    return response


def _sandbox_failure(exc: SandboxError) -> Any:
    if exc.status == 429:
        response = _error(429, "Too many requests")
        reset = datetime.now(UTC) + timedelta(seconds=exc.retry_after or 30)
        response.headers.update({"X-RateLimit-Limit": "300", "X-RateLimit-Remaining": "0",
                                 "X-RateLimit-Reset": reset.isoformat(timespec="milliseconds").replace("+00:00", "Z")})
        return response
    if exc.status >= 500:
        return _error(503, "Service Unavailable")
    if exc.error == "invalid_token" or exc.status == 401:
        return _error(401, "The access token is invalid")
    return _error(400, exc.error, error_description=INVALID_GRANT)


def _not_mastodon() -> Any:
    return "<!doctype html><title>Not found</title><h1>Nothing here</h1>", 404, {"Content-Type": "text/html"}


@route("POST", NOT_MASTODON, r"api/v1/apps")
@route("POST", NOT_MASTODON, r"oauth/token")
def not_mastodon() -> Any:
    return _not_mastodon()


@route("POST", "*", r"api/v1/apps")
def register_app() -> Any:
    host = _host()
    payload = request.get_json(silent=True) if request.is_json else request.form.to_dict()
    data: dict[str, Any] = payload if isinstance(payload, dict) else {}
    redirect_uris = data.get("redirect_uris")
    redirect_uri = redirect_uris[0] if isinstance(redirect_uris, list) and redirect_uris else redirect_uris
    if not isinstance(redirect_uri, str) or not redirect_uri.startswith(("https://", "http://")):
        return _error(422, "Validation failed: Redirect URI must be an absolute URI.")
    epoch, nonce = _epoch(host), secrets.token_urlsafe(12).replace(".", "_")
    client_id = f"{epoch}.{nonce}.{_mac('id', host, epoch, nonce, redirect_uri)[:16]}"
    scopes = str(data.get("scopes") or "read").split()
    server().count("mastodon_apps")
    return jsonify(id=str(int(time.time() * 1000)), name=str(data.get("client_name", ""))[:60],
                   website=data.get("website"), scopes=scopes, redirect_uris=[redirect_uri], redirect_uri=redirect_uri,
                   client_id=client_id, client_secret=_mac("secret", host, client_id)[:43],
                   client_secret_expires_at=0, vapid_key="sandbox")


@route("POST", "*", r"_sandbox/vacuum")
def vacuum() -> Any:
    """Sandbox-only: this server forgets every app registered so far."""
    server().count(f"mastodon_vacuum:{_digest(_host())}")
    return jsonify(ok=True)


@route("GET", "*", r"oauth/authorize")
def authorize() -> Any:
    host, args = _host(), request.args
    if not _app_ok(host, args.get("client_id", ""), redirect_uri=args.get("redirect_uri", "")):
        return render_template("sandbox/error.html", error=UNKNOWN_CLIENT), 401
    if args.get("code_challenge_method") not in (None, "", "S256"):
        return render_template("sandbox/error.html", error="Only S256 is supported as PKCE method."), 400
    query = {**args.to_dict(), "client_id": server().client_id, "app": args["client_id"]}
    consent_url = url_for("sandbox.platform_endpoint", host=host, rest="oauth/authorize/consent")
    return redirect(f"{consent_url}?{urlencode(query)}", 302)


@route("GET", "*", r"oauth/authorize/consent")
def consent() -> Any:
    host = _host()
    return consent_page(_platform(host), f"Mastodon ({host})", keep=("app",))


@route("POST", "*", r"oauth/token")
def token() -> Any:
    host, form = _host(), request.form
    client_id, secret = client_credentials()
    if not _app_ok(host, client_id or "", secret=secret or ""):
        return _error(401, "invalid_client", error_description=UNKNOWN_CLIENT)
    grant_type = form.get("grant_type")
    if grant_type == "client_credentials":  # an app-only token: it can read nothing of anyone's
        server().count("mastodon_app_checks")
        return no_store(jsonify(access_token=secrets.token_urlsafe(32), token_type="Bearer",
                                scope=form.get("scope", "read"), created_at=int(time.time())))
    if grant_type != "authorization_code":
        return _error(400, "unsupported_grant_type")
    code, redirect_uri = form.get("code", ""), form.get("redirect_uri", "")
    if server().code_extra(code).get("app") != client_id or not _app_ok(host, client_id or "",
                                                                       redirect_uri=redirect_uri):
        return _error(400, "invalid_grant", error_description=INVALID_GRANT)
    try:
        issued = server().exchange_code(server().client_id, code, redirect_uri, form.get("code_verifier"),
                                        platform=_platform(host), access_lifetime=TOKEN_LIFETIME, refresh=False)
    except SandboxError as exc:
        return _sandbox_failure(exc)
    return no_store(jsonify(access_token=issued.access_token, token_type="Bearer", scope=issued.scope,
                            created_at=int(time.time())))


@route("POST", "*", r"oauth/revoke")
def revoke() -> Any:
    host = _host()
    client_id, secret = client_credentials()
    if not _app_ok(host, client_id or "", secret=secret or ""):
        return _error(403, "unauthorized_client", error_description=UNKNOWN_CLIENT)
    server().revoke(server().client_id, request.form.get("token", ""))
    return jsonify({})


@route("GET", "*", r"api/v1/accounts/verify_credentials")
def verify_credentials() -> Any:
    host = _host()
    try:
        row = server().lookup(_platform(host), bearer())
    except SandboxError as exc:
        return _sandbox_failure(exc)
    if not {"read", "read:accounts", "profile"} & set(row.scope.split()):
        return _error(403, "This action is outside the authorized scopes")
    account = ACCOUNTS_BY_ID[row.account_id]
    username = account.handle.replace(".", "_")
    avatar = f"{request.host_url.rstrip('/')}/sandbox/avatars/{account.id}.svg"
    return jsonify(id=platform_user_id("mastodon", account), username=username, acct=username,
                   display_name=account.name, locked=False, bot=False, discoverable=True,
                   created_at="2022-11-01T00:00:00.000Z", note="", url=f"https://{host}/@{username}",
                   avatar=avatar, avatar_static=avatar, header="", header_static="", followers_count=128,
                   following_count=64, statuses_count=512, last_status_at="2024-01-01", emojis=[], fields=[],
                   source={"privacy": "public", "sensitive": False, "language": "en", "note": "", "fields": []})

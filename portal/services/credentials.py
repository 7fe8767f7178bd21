"""Connect flows whose first step is a form on our page, not a redirect: Bluesky (handle and app
password, optional own server) and Mastodon-style servers (the client names their server first).

Both check the server address the client typed under the deployment's URL policy before anything
is sent (SECURITY.md 18), and both talk to that server between database steps, so they commit
before each platform call: no transaction is ever held across one (db.py).
"""

from __future__ import annotations

import logging
import re

from sqlalchemy.orm import Session

from portal.errors import IdentityMismatch, PlatformError, PlatformNotAllowed, PortalError, ValidationFailed
from portal.models import ConnectAttempt, Connection
from portal.oauth import AppCredentials
from portal.providers import ProviderSpec
from portal.providers.adapters import Authorized
from portal.providers.adapters.bluesky import Bluesky
from portal.security.crypto import column_context
from portal.security.signing import hash_secret, random_id
from portal.security.urls import UnsafeURL, normalize_host
from portal.services import Deps, connections, instances, links, platforms
from portal.services.audit import Actor

log = logging.getLogger(__name__)
DEFAULT_PDS = "https://bsky.social"
APP_PASSWORD = re.compile(r"[a-z0-9]{4}(?:-[a-z0-9]{4}){3}")
_IDENTIFIER = re.compile(r"[^\s\x00-\x1f\x7f]{1,253}")


def spec_for_form(db: Session, deps: Deps, resolved: links.ResolvedLink, platform: str,
                  auth_kind: str) -> ProviderSpec:
    """The platform as this link offers it, if its first step is the form of ``auth_kind``."""
    spec = connections.offered_spec(db, deps, resolved.link, platform)
    if spec.auth_kind != auth_kind:
        raise PlatformNotAllowed()
    return spec


def normalize_server(deps: Deps, value: str, default: str | None = None) -> str:
    """A server address as typed ("mastodon.social", a URL, "@me@host") to ``https://host[:port]``,
    refused in plain words when the URL policy does not allow it. Touches no network."""
    text = (value or "").strip()
    if "@" in text and "://" not in text and "/" not in text:
        text = text.rsplit("@", 1)[1]  # "@me@mastodon.social": the server is after the last @
    text = text or (default or "")
    if not text:
        raise ValidationFailed("Enter the address of your server, for example mastodon.social.")
    try:
        return normalize_host(text, instances.url_policy(deps.settings))
    except UnsafeURL as exc:
        raise ValidationFailed(f"This server address cannot be used: {exc}.") from None


# Mastodon and compatible servers ----------------------------------------------------------------------

def begin_instance_oauth(db: Session, deps: Deps, resolved: links.ResolvedLink, platform: str, server: str,
                         browser_secret: str | None = None) -> connections.StartedAttempt:
    """Check the server, make sure the portal's app is registered there, and start an authorization
    (state, PKCE S256, force_login) bound to that server and to the starting browser by
    ``browser_secret`` (as connections.begin_attempt). The caller commits and redirects."""
    spec = spec_for_form(db, deps, resolved, platform, "instance_oauth")
    instance = normalize_server(deps, server)
    bound = spec.for_instance(instance, deps.settings.sandbox_url)
    db.commit()  # no transaction across the server's answers
    app = instances.registered_app(db, deps, bound, instance, verify=True)
    attempt, state = connections.create_attempt(db, deps, resolved.link, platform, instance=instance)
    attempt.browser_hash = hash_secret(browser_secret) if browser_secret else None
    verifier = random_id(64) if bound.pkce else None
    if verifier:  # the same binding complete_callback decrypts with
        attempt.verifier_enc = deps.cipher.encrypt(verifier, column_context("connect_attempts", attempt.id,
                                                                            "verifier"))
    url = platforms.adapter_for(deps, bound).authorization_url(
        bound, app, platforms.redirect_uri(deps.settings, platform), state, verifier)
    return connections.StartedAttempt(attempt, url)


# Bluesky -------------------------------------------------------------------------------------------------

def connect_with_app_password(db: Session, deps: Deps, resolved: links.ResolvedLink, platform: str,
                              identifier: str, app_password: str, server: str, ip: str | None) -> ConnectAttempt:
    """Sign in with an app password, prove the identity, store the connection. Commits.
    Wrong input or a refusal by the server raises ValidationFailed with a plain message; nothing is stored."""
    spec = spec_for_form(db, deps, resolved, platform, "app_password")
    identifier, app_password = _clean_identifier(identifier), _clean_app_password(app_password)
    instance = normalize_server(deps, server, DEFAULT_PDS)
    bound = spec.for_instance(instance, deps.settings.sandbox_url)
    adapter = platforms.adapter_for(deps, bound)
    if not isinstance(adapter, Bluesky):
        raise PlatformNotAllowed()
    db.commit()  # no transaction across the sign-in
    authorized, home = _sign_in(adapter, bound, instance, identifier, app_password, deps)
    attempt, _ = connections.create_attempt(db, deps, resolved.link, platform, instance=instance)
    try:
        with connections.failing_attempt(db, attempt):
            connections.finish_authorization(db, deps, attempt, resolved.link, bound, authorized,
                                             Actor("client", resolved.link.id, ip))
    except PortalError:
        _end_session(adapter, bound, authorized)  # refused after signing in: the session must not live on
        raise
    _note_home(db, attempt, home)
    return attempt


def _clean_identifier(value: str) -> str:
    identifier = (value or "").strip().removeprefix("@")
    if not _IDENTIFIER.fullmatch(identifier):
        raise ValidationFailed("Enter your Bluesky handle (like you.bsky.social), your email or your DID.")
    return identifier


def _clean_app_password(value: str) -> str:
    password = (value or "").strip().lower()
    if not APP_PASSWORD.fullmatch(password):
        # Refusing anything else keeps main passwords (and their 2FA prompts) out of the portal.
        raise ValidationFailed("Enter an app password: four groups of four letters or digits, like "
                               "abcd-efgh-ijkl-mnop. Create one in Bluesky under Settings → Privacy and security "
                               "→ App passwords. Never enter your main password here.")
    return password


def _sign_in(adapter: Bluesky, spec: ProviderSpec, instance: str, identifier: str, app_password: str,
             deps: Deps) -> tuple[Authorized, str]:
    host = instance.split("://", 1)[1]
    try:
        return adapter.login(spec, identifier, app_password, deps.now())
    except IdentityMismatch as exc:
        log.warning("bluesky sign-in at %s refused: identity not proven", host)
        raise ValidationFailed(exc.public_message) from exc
    except PlatformError as exc:
        log.info("bluesky sign-in at %s failed: %s (%s)", host, exc.kind, exc.platform_code or "-")
        raise ValidationFailed(_sign_in_message(exc, host)) from exc


def _sign_in_message(exc: PlatformError, host: str) -> str:
    code = exc.platform_code or ""
    if code == "AuthFactorTokenRequired":
        return "Bluesky asked for an email code, which happens with a main password. Use an app password instead."
    if exc.kind == PlatformError.TOKEN_INVALID or code == "InvalidRequest":
        return (f"{host} did not accept that handle and app password. Check both and try again; if your account "
                "is on your own server, enter that server's address too.")
    if exc.kind == PlatformError.PERMISSION_LOST:
        return "This Bluesky account is suspended, taken down or deactivated, so it cannot be connected."
    if exc.kind == PlatformError.RATE_LIMITED:
        minutes = max(1, round((exc.retry_after or 60) / 60))
        return f"There were too many sign-in attempts. Please wait {minutes} minute{'s' * (minutes > 1)} and try again."
    if code == "unsafe_address":
        return f"The server {host} leads to an address that is not allowed."
    return f"We could not reach {host} right now. Check the server address, or try again in a minute."


def _end_session(adapter: Bluesky, spec: ProviderSpec, authorized: Authorized) -> None:
    try:
        adapter.revoke(spec, AppCredentials("", ""), authorized.grant.access_token,
                       authorized.grant.refresh_token)
    except PlatformError as exc:
        log.warning("ending an unused bluesky session failed: %s", exc.kind)


def _note_home(db: Session, attempt: ConnectAttempt, home: str) -> None:
    """Record the account's home PDS (where its data lives) next to the server the tokens come from."""
    connection = db.get(Connection, attempt.connection_id) if attempt.connection_id else None
    if connection is not None and (connection.extra or {}).get("pds") != home:
        connection.extra = {**(connection.extra or {}), "pds": home}
        db.commit()

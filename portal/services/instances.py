"""Multi-instance platforms (Mastodon and compatible servers): the portal's app registered at each
server, cached per server (InstanceApp), its secret encrypted and bound to its row.

Registration is ``POST {instance}/api/v1/apps`` through the SSRF-hardened client. Servers older than
Mastodon 4.3 may forget ("vacuum") an app; starting a connection therefore checks the cached app
first (a client_credentials token request: 401 means forgotten) and registers again if needed.
These functions talk to the server between two database steps, so they commit before each call:
no transaction is ever held across a platform request (db.py).
"""

from __future__ import annotations

import logging

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.config import Settings
from portal.errors import ValidationFailed
from portal.models import InstanceApp, new_id
from portal.oauth import AppCredentials
from portal.providers import ProviderSpec
from portal.providers.adapters.mastodon import guarded_client, instance_url, json_object
from portal.security.crypto import column_context
from portal.security.urls import FetchFailed, GuardPolicy, SafeResponse, UnsafeURL
from portal.services import Deps, platforms

log = logging.getLogger(__name__)
CLIENT_NAME = "EasyConnect"


def url_policy(settings: Settings) -> GuardPolicy:
    """How far user-chosen servers may reach: public https only in production."""
    return GuardPolicy(allow_private=settings.allow_private_urls, require_https=settings.production)


def registered_app(db: Session, deps: Deps, spec: ProviderSpec, instance: str, *,
                   verify: bool = False) -> AppCredentials:
    """The portal's app at ``instance`` (registered on first use, then cached). With ``verify`` (when
    a client starts connecting) a cached app the server has forgotten is replaced by a new one.
    Raises ValidationFailed with a plain message when the server cannot be used."""
    if spec.auth_kind != "instance_oauth":
        return AppCredentials("", "")  # Bluesky: the client's own app password is the credential
    redirect_uri = platforms.redirect_uri(deps.settings, spec.name)
    row = _cached(db, spec.name, instance, redirect_uri)
    if row is not None:
        app = _decrypt(deps, row)
        if not verify:
            return app
        db.commit()  # no transaction across the check
        if _still_known(deps, spec, app):
            return app
        log.info("%s forgot the portal's app; registering it again", instance)
    db.commit()  # no transaction across the registration
    app = _register(deps, spec, redirect_uri)
    return _store(db, deps, spec.name, instance, redirect_uri, app, replaces=row.id if row else None)


def _cached(db: Session, platform: str, instance: str, redirect_uri: str) -> InstanceApp | None:
    return db.scalar(select(InstanceApp).where(InstanceApp.platform == platform, InstanceApp.host == instance,
                                               InstanceApp.redirect_uri == redirect_uri))


def _context(row_id: str) -> str:
    return column_context("instance_apps", row_id, "client_secret")


def _decrypt(deps: Deps, row: InstanceApp) -> AppCredentials:
    return AppCredentials(row.client_id, deps.cipher.decrypt(row.client_secret_enc, _context(row.id)))


def _store(db: Session, deps: Deps, platform: str, instance: str, redirect_uri: str, app: AppCredentials,
           replaces: str | None) -> AppCredentials:
    """Cache a new registration (replacing a forgotten one); a concurrent registration that won keeps its place."""
    if replaces:
        db.execute(delete(InstanceApp).where(InstanceApp.id == replaces))
    row = InstanceApp(id=new_id(), platform=platform, host=instance, redirect_uri=redirect_uri,
                      client_id=app.client_id, client_secret_enc="")
    row.client_secret_enc = deps.cipher.encrypt(app.client_secret, _context(row.id))
    try:
        with db.begin_nested():
            db.add(row)
            db.flush()
    except IntegrityError:
        winner = _cached(db, platform, instance, redirect_uri)
        if winner is None:
            raise
        return _decrypt(deps, winner)
    return app


def _host(spec: ProviderSpec) -> str:
    return instance_url(spec).split("://", 1)[1]


def _send(deps: Deps, spec: ProviderSpec, url: str, *, data: dict[str, str] | None = None,
          json_body: dict[str, str] | None = None) -> SafeResponse:
    """One POST to the server, failures as plain-language ValidationFailed."""
    host = _host(spec)
    try:
        return guarded_client(url_policy(deps.settings), spec, url).request(
            "POST", url, data=data, json=json_body, headers={"Accept": "application/json"})
    except UnsafeURL as exc:
        raise ValidationFailed(f"This server address cannot be used: {exc}.") from None
    except FetchFailed as exc:
        raise ValidationFailed(f"We could not reach {host} ({exc.reason}). Check the address and try again.") \
            from None


def _register(deps: Deps, spec: ProviderSpec, redirect_uri: str) -> AppCredentials:
    host = _host(spec)
    response = _send(deps, spec, f"{spec.base_url}/api/v1/apps", json_body={
        "client_name": CLIENT_NAME, "redirect_uris": redirect_uri, "scopes": " ".join(spec.scopes),
        "website": deps.settings.base_url})
    _raise_for_server_trouble(response, host)
    body = json_object(response)
    client_id = body.get("client_id") if body else None
    secret = body.get("client_secret") if body else None
    if response.status == 422:
        raise ValidationFailed(f"{host} refused to register this portal, so you cannot connect through it. "
                               "Please try again later or contact the sender of this link.")
    if response.status != 200 or not isinstance(client_id, str) or not isinstance(secret, str) \
            or not client_id or not secret or len(client_id) > 500:
        raise ValidationFailed(f"{host} does not look like a Mastodon server. Check the address of your "
                               "server (for example mastodon.social) and try again.")
    return AppCredentials(client_id, secret)


def _raise_for_server_trouble(response: SafeResponse, host: str) -> None:
    if response.status == 429:
        raise ValidationFailed(f"{host} is busy and asked us to wait. Please try again in a minute.")
    if response.status >= 500:
        raise ValidationFailed(f"{host} is having problems right now. Please try again later.")


def _still_known(deps: Deps, spec: ProviderSpec, app: AppCredentials) -> bool:
    """Whether the server still knows the app: an app-only token request says so without any user.
    Only a clear "unknown client" counts as forgotten; servers without this grant are given the benefit."""
    response = _send(deps, spec, spec.token_url, data={
        "grant_type": "client_credentials", "client_id": app.client_id, "client_secret": app.client_secret,
        "scope": " ".join(spec.scopes)})
    _raise_for_server_trouble(response, _host(spec))
    body = json_object(response) or {}
    if response.status == 401 or body.get("error") == "invalid_client":
        return False
    token = body.get("access_token")
    if response.status == 200 and isinstance(token, str) and token and spec.revoke_url:
        _discard(deps, spec, app, token)
    return True


def _discard(deps: Deps, spec: ProviderSpec, app: AppCredentials, token: str) -> None:
    """Revoke the app-only token of the check at once (best effort): it is of no further use."""
    try:
        _send(deps, spec, str(spec.revoke_url), data={"client_id": app.client_id,
                                                      "client_secret": app.client_secret, "token": token})
    except ValidationFailed:
        log.info("revoking the app check token at %s failed", instance_url(spec))

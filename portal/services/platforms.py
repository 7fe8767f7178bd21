"""Which platforms an agency can offer, resolved to this deployment's URLs, and whose app to use.

An agency's own app (ProviderApp, white-label consent screens) wins over the operator's default
app from configuration; with sandbox platforms on, every platform uses the sandbox's app. A
platform with no usable app is not offered, and ``availability`` says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.config import Settings
from portal.errors import PlatformNotAllowed, ValidationFailed
from portal.models import ProviderApp
from portal.oauth import AppCredentials
from portal.providers import ProviderSpec, load_catalog
from portal.providers.adapters import Adapter, get_adapter
from portal.security.crypto import column_context
from portal.services import Deps, audit
from portal.services.audit import Actor

# Bluesky: the client's own app password is the credential; Mastodon: the portal registers its app at
# each server on first use (services/instances.py), so neither needs an app configured beforehand.
NO_APP_NEEDED = ("app_password", "instance_oauth")


@dataclass(frozen=True)
class PlatformStatus:
    spec: ProviderSpec
    source: str | None  # "agency" | "operator" | "sandbox" | None (not offered)
    reason: str


@cache
def _resolved(sandbox_url: str, sandbox_enabled: bool, sandbox_platforms: bool) -> dict[str, ProviderSpec]:
    return {name: spec.resolve(sandbox_url, sandbox_platforms) for name, spec in load_catalog().items()
            if sandbox_enabled or not spec.sandbox_only}


def catalog(settings: Settings) -> dict[str, ProviderSpec]:
    """Every platform this deployment knows, resolved to its URLs (cached: the catalog is data)."""
    return _resolved(settings.sandbox_url, settings.sandbox_enabled, settings.sandbox_platforms)


def spec_for(settings: Settings, name: str) -> ProviderSpec:
    """A built-in platform's spec (custom platforms need the agency: see ``spec_of``)."""
    spec = catalog(settings).get(name)
    if spec is None:
        raise PlatformNotAllowed()
    return spec


def spec_of(db: Session, deps: Deps, agency_id: str, name: str) -> ProviderSpec:
    """Any platform's spec as this agency sees it, its own custom platforms included."""
    from portal.services import custom_platforms

    if custom_platforms.is_custom(name):
        return custom_platforms.to_spec(custom_platforms.get(db, agency_id, name))
    return spec_for(deps.settings, name)


def labels(db: Session, deps: Deps, agency_id: str) -> dict[str, str]:
    """Display names of every platform the agency may see connections of."""
    from portal.services import custom_platforms

    names = {name: spec.label for name, spec in catalog(deps.settings).items()}
    names.update({custom_platforms.PREFIX + row.slug: row.display_name
                  for row in custom_platforms.list_for(db, agency_id)})
    return names


def adapter_for(deps: Deps, spec: ProviderSpec) -> Adapter:
    return get_adapter(spec, deps.oauth)


def operator_app(settings: Settings, spec: ProviderSpec) -> AppCredentials | None:
    if spec.sandbox_only or spec.sandboxed:  # the sandbox's bot accepts its client secret as bot token
        return AppCredentials(settings.sandbox_client_id, settings.sandbox_client_secret,
                              settings.sandbox_client_secret)
    pair = settings.operator_apps.get(spec.credential_group)
    return AppCredentials(*pair, settings.operator_bot_tokens.get(spec.credential_group)) if pair else None


def _agency_apps(db: Session, agency_id: str) -> dict[str, ProviderApp]:
    rows = db.scalars(select(ProviderApp).where(ProviderApp.agency_id == agency_id))
    return {row.platform: row for row in rows}


def availability(db: Session, deps: Deps, agency_id: str) -> list[PlatformStatus]:
    """Each platform with where its app comes from, or why it is not offered."""
    from portal.services import custom_platforms

    apps = _agency_apps(db, agency_id)
    statuses = [PlatformStatus(custom_platforms.to_spec(row), "agency", "Your own platform.")
                for row in custom_platforms.list_for(db, agency_id)]
    for spec in catalog(deps.settings).values():
        own = apps.get(spec.credential_group)
        if spec.auth_kind in NO_APP_NEEDED:
            statuses.append(PlatformStatus(spec, "sandbox" if spec.sandboxed else "operator", "No app needed."))
        elif own is not None and own.invalid_since is None:
            statuses.append(PlatformStatus(spec, "agency", "Your own app."))
        elif own is not None:
            statuses.append(PlatformStatus(spec, None, "The platform rejected your app's credentials; update them."))
        elif operator_app(deps.settings, spec) is not None:
            source = "sandbox" if spec.sandboxed or spec.sandbox_only else "operator"
            statuses.append(PlatformStatus(spec, source, "The portal's default app."))
        else:
            statuses.append(PlatformStatus(spec, None, "No app is set up: add your own client id and secret."))
    return statuses


def offered(db: Session, deps: Deps, agency_id: str) -> dict[str, ProviderSpec]:
    """Platforms with a usable app for this agency, in catalog order."""
    return {status.spec.name: status.spec for status in availability(db, deps, agency_id) if status.source}


def app_for(db: Session, deps: Deps, agency_id: str, spec: ProviderSpec) -> AppCredentials:
    """The app this agency's flows use for a platform: its own, else the operator's."""
    if spec.auth_kind in NO_APP_NEEDED:
        return AppCredentials("", "")
    from portal.services import custom_platforms

    if custom_platforms.is_custom(spec.name):
        return custom_platforms.app_of(deps, custom_platforms.get(db, agency_id, spec.name))
    own = _agency_apps(db, agency_id).get(spec.credential_group)
    if own is not None and own.invalid_since is None:
        secret = deps.cipher.decrypt(own.client_secret_enc, column_context("provider_apps", own.id, "client_secret"))
        bot = (deps.cipher.decrypt(own.bot_token_enc, column_context("provider_apps", own.id, "bot_token"))
               if own.bot_token_enc else None)
        return AppCredentials(own.client_id, secret, bot)
    app = operator_app(deps.settings, spec)
    if app is None:
        raise PlatformNotAllowed("This platform is not set up on this portal.")
    return app


def redirect_uri(settings: Settings, name: str) -> str:
    return f"{settings.base_url}/oauth/callback/{name}"


def save_agency_app(db: Session, deps: Deps, agency_id: str, group: str, client_id: str, client_secret: str,
                    actor: Actor, bot_token: str = "") -> ProviderApp:
    """Set the agency's own app for a credential group; the secret is encrypted and never shown again."""
    if group not in {spec.credential_group for spec in catalog(deps.settings).values()}:
        raise ValidationFailed("Unknown platform.")
    client_id, client_secret = client_id.strip(), client_secret.strip()
    if not client_id or len(client_id) > 500 or any(ch.isspace() for ch in client_id):
        raise ValidationFailed("Enter the client id exactly as the platform shows it.")
    if not client_secret or len(client_secret) > 2000:
        raise ValidationFailed("Enter the client secret.")
    row = _agency_apps(db, agency_id).get(group)
    if row is None:
        row = ProviderApp(agency_id=agency_id, platform=group, client_id=client_id, client_secret_enc="")
        db.add(row)
        db.flush()
    row.client_id = client_id
    row.client_secret_enc = deps.cipher.encrypt(client_secret, column_context("provider_apps", row.id,
                                                                             "client_secret"))
    bot_token = bot_token.strip()
    if len(bot_token) > 500:
        raise ValidationFailed("That bot token is too long.")
    row.bot_token_enc = (deps.cipher.encrypt(bot_token, column_context("provider_apps", row.id, "bot_token"))
                         if bot_token else None)
    row.invalid_since = None
    audit.record(db, agency_id, actor, "provider_app.saved", "provider_app", row.id, platform=group)
    return row


def mark_app_invalid(db: Session, agency_id: str, platform: str, now: datetime) -> None:
    """The platform rejected the agency's own app: the app needs fixing, not each connection."""
    spec = catalog_entry(platform)
    group = spec.credential_group if spec else platform
    row = _agency_apps(db, agency_id).get(group)
    if row is not None and row.invalid_since is None:
        row.invalid_since = now
        audit.record(db, agency_id, audit.WORKER, "provider_app.rejected", "provider_app", row.id, platform=group)


def catalog_entry(name: str) -> ProviderSpec | None:
    return load_catalog().get(name)


def remove_agency_app(db: Session, agency_id: str, group: str, actor: Actor) -> None:
    row = _agency_apps(db, agency_id).get(group)
    if row is not None:
        db.delete(row)
        audit.record(db, agency_id, actor, "provider_app.removed", "provider_app", row.id, platform=group)

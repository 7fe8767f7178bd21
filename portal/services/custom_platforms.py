"""Custom OAuth 2.0 / OpenID Connect platforms an agency adds itself.

Given either an OIDC discovery URL or the authorization, token and userinfo URLs, plus scopes,
client credentials and which userinfo fields hold id, name, handle and avatar, the platform is
offered on the agency's links like any other (name ``custom-<slug>``).
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.errors import NotFound, ValidationFailed
from portal.models import CustomPlatform
from portal.oauth import AppCredentials
from portal.providers import ProviderSpec
from portal.security.crypto import column_context
from portal.security.urls import FetchFailed, UnsafeURL, normalize_public_url
from portal.services import Deps, audit
from portal.services.agencies import clean_name
from portal.services.audit import Actor

PREFIX = "custom-"
DEFAULT_FIELDS = {"id": "sub", "name": "name", "handle": "preferred_username", "avatar": "picture"}
_FIELD_PATH = re.compile(r"^[A-Za-z0-9_]{1,64}(\.[A-Za-z0-9_]{1,64}){0,4}$")
_SCOPE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,200}$")  # RFC 6749 scope-token characters


def is_custom(name: str) -> bool:
    return name.startswith(PREFIX)


def to_spec(row: CustomPlatform) -> ProviderSpec:
    return ProviderSpec(
        name=PREFIX + row.slug, display_name=row.display_name, account_kind="profile", base_url=row.authorize_url,
        scopes=tuple(row.scopes.split()), authorize_url=row.authorize_url, token_url=row.token_url,
        userinfo_url=row.userinfo_url, adapter="custom:CustomOAuth", credentials=PREFIX + row.slug,
        pkce=row.pkce, refresh="standard", description="Your own platform.",
        userinfo_fields=tuple(sorted(row.field_map.items())))


def list_for(db: Session, agency_id: str) -> list[CustomPlatform]:
    return list(db.scalars(select(CustomPlatform).where(CustomPlatform.agency_id == agency_id)
                           .order_by(CustomPlatform.display_name)))


def get(db: Session, agency_id: str, name: str) -> CustomPlatform:
    row = db.scalar(select(CustomPlatform).where(CustomPlatform.agency_id == agency_id,
                                                 CustomPlatform.slug == name.removeprefix(PREFIX)))
    if row is None:
        raise NotFound("No such platform.")
    return row


def app_of(deps: Deps, row: CustomPlatform) -> AppCredentials:
    secret = deps.cipher.decrypt(row.client_secret_enc, column_context("custom_platforms", row.id, "client_secret"))
    return AppCredentials(row.client_id, secret)


def discover(deps: Deps, discovery_url: str) -> dict[str, str | bool]:
    """Endpoints from an OIDC discovery document, fetched through the SSRF guard. The issuer must be
    the discovery URL's own origin, so a document cannot send tokens to another server."""
    client = deps.oauth.guarded()
    try:
        url = normalize_public_url(discovery_url, client.policy)
        document = client.get(url)
        data = document.json()
    except UnsafeURL as exc:
        raise ValidationFailed(f"Discovery URL refused: {exc}") from None
    except FetchFailed as exc:
        raise ValidationFailed(f"The discovery document could not be read: {exc.reason}.") from None
    if document.status != 200 or not isinstance(data, dict):
        raise ValidationFailed("The discovery URL did not return an OpenID Connect discovery document.")
    issuer = str(data.get("issuer", ""))
    if _origin(issuer) != _origin(url):
        raise ValidationFailed("The discovery document's issuer does not match its own address.")
    endpoints = {key: str(data.get(key) or "") for key in ("authorization_endpoint", "token_endpoint",
                                                             "userinfo_endpoint")}
    if not all(endpoints.values()):
        raise ValidationFailed("The discovery document lacks an authorization, token or userinfo endpoint.")
    methods = data.get("code_challenge_methods_supported") or []
    return {**endpoints, "pkce": isinstance(methods, list) and "S256" in methods}


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def create(db: Session, deps: Deps, agency_id: str, actor: Actor, *, display_name: str, discovery_url: str,
           authorize_url: str, token_url: str, userinfo_url: str, scopes: str, client_id: str, client_secret: str,
           fields: dict[str, str]) -> CustomPlatform:
    name = clean_name(display_name, "Platform name", 80)
    endpoints: dict[str, str | bool] = ({"authorization_endpoint": authorize_url, "token_endpoint": token_url,
                                         "userinfo_endpoint": userinfo_url, "pkce": True}
                                        if not discovery_url.strip() else discover(deps, discovery_url.strip()))
    urls = [_checked_url(deps, str(endpoints[key]), label) for key, label in (
        ("authorization_endpoint", "Authorization URL"), ("token_endpoint", "Token URL"),
        ("userinfo_endpoint", "Userinfo URL"))]
    row = CustomPlatform(agency_id=agency_id, slug=_unique_slug(db, agency_id, name), display_name=name,
                         discovery_url=discovery_url.strip() or None, authorize_url=urls[0], token_url=urls[1],
                         userinfo_url=urls[2], scopes=_clean_scopes(scopes), field_map=_clean_fields(fields),
                         client_id=_clean_client_id(client_id), client_secret_enc="", pkce=bool(endpoints["pkce"]))
    if not client_secret.strip() or len(client_secret) > 2000:
        raise ValidationFailed("Enter the client secret.")
    db.add(row)
    db.flush()
    row.client_secret_enc = deps.cipher.encrypt(client_secret.strip(),
                                                column_context("custom_platforms", row.id, "client_secret"))
    audit.record(db, agency_id, actor, "custom_platform.created", "custom_platform", row.id, name=name)
    return row


def delete(db: Session, agency_id: str, name: str, actor: Actor) -> None:
    row = get(db, agency_id, name)
    db.delete(row)
    audit.record(db, agency_id, actor, "custom_platform.deleted", "custom_platform", row.id, name=row.display_name)


def _checked_url(deps: Deps, url: str, label: str) -> str:
    try:
        return normalize_public_url(url.strip(), deps.oauth.url_policy)
    except UnsafeURL as exc:
        raise ValidationFailed(f"{label} refused: {exc}") from None


def _clean_scopes(value: str) -> str:
    scopes = value.replace(",", " ").split()
    if not scopes or len(scopes) > 30 or not all(_SCOPE.match(s) for s in scopes):
        raise ValidationFailed("Scopes are words separated by spaces, like: openid profile email.")
    return " ".join(dict.fromkeys(scopes))


def _clean_fields(fields: dict[str, str]) -> dict[str, str]:
    cleaned = {}
    for key in ("id", "name", "handle", "avatar"):
        value = (fields.get(key) or "").strip() or DEFAULT_FIELDS[key]
        if not _FIELD_PATH.match(value):
            raise ValidationFailed(f"The {key} field must be a field name like sub or data.user.id.")
        cleaned[key] = value
    return cleaned


def _clean_client_id(value: str) -> str:
    value = value.strip()
    if not value or len(value) > 500 or any(ch.isspace() for ch in value):
        raise ValidationFailed("Enter the client id exactly as the platform shows it.")
    return value


def _unique_slug(db: Session, agency_id: str, name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    base = re.sub(r"[^a-z0-9]+", "-", ascii_name).strip("-")[:30] or "platform"
    taken = {row.slug for row in list_for(db, agency_id)}
    slug, n = base, 2
    while slug in taken:
        slug, n = f"{base}-{n}", n + 1
    return slug

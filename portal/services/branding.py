"""White-label branding: what a client page looks like, resolved link over workspace over agency.

One function, ``resolve``, gives the effective branding of a link; the client pages, the branded
emails and the admin preview all call it, so the preview is the client page. Overrides are JSON on
the workspace and the link (only the keys in ``OVERRIDE_KEYS``; a missing or empty key inherits).
Logos and favicons are uploaded images (``BrandAsset``), sniffed from their bytes, size-checked and
served by the portal itself with ``nosniff``: never a remote URL, never SVG (it can carry script).

The agency-level part rarely changes and is asked for on every link page, so it is cached in this
process keyed by the row's own values (a change to the row is a new key: nothing to invalidate).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import replace
from functools import lru_cache
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.errors import NotFound, ValidationFailed
from portal.models import Agency, BrandAsset, ConnectLink, Workspace
from portal.services import audit, domains
from portal.services.agencies import (
    THEMES,
    Branding,
    clean_color,
    clean_name,
    clean_support_url,
    clean_text,
    get_workspace,
)
from portal.services.audit import Actor

LANGUAGES = ("en", "es", "fr", "de", "pt")
ASSET_KINDS = ("logo", "favicon")
MAX_ASSET_BYTES = {"logo": 512 * 1024, "favicon": 64 * 1024}
# Override keys: text fields with their limits, then the others. Asset keys hold BrandAsset ids.
TEXT_LIMITS = {"headline": (120, False), "instructions": (1000, True), "success_text": (500, True)}
OVERRIDE_KEYS = ("name", "color", "headline", "instructions", "success_text", "support_url", "theme",
                 "show_powered_by", "logo", "favicon")
_ASSET_ID = re.compile(r"^[0-9a-f]{32}$")
# Markup a browser (or a careless proxy) could sniff as a document: refused anywhere in an image.
_MARKUP = re.compile(rb"<\s*(script|html|svg|body|iframe|object|embed|\?xml|!doctype)|javascript:", re.IGNORECASE)


# Images ---------------------------------------------------------------------------------------------------

def sniff_image(data: bytes, kind: str = "logo") -> str:
    """The image's MIME type from its bytes, or ValidationFailed. PNG, JPEG, GIF and WebP only, whole
    files only (trailing bytes after the image's end are how polyglots hide a second format)."""
    limit = MAX_ASSET_BYTES.get(kind, MAX_ASSET_BYTES["logo"])
    if not data:
        raise ValidationFailed("Choose an image file.")
    if len(data) > limit:
        raise ValidationFailed(f"The {kind} must be at most {limit // 1024} KB.")
    if data.lstrip()[:5].lower() in (b"<svg ", b"<?xml") or b"<svg" in data[:1024].lower():
        raise ValidationFailed(f"The {kind} must be a PNG, JPEG, GIF or WebP image (SVG can carry scripts and "
                               "is not accepted).")
    mime = _container_type(data)
    if mime is None:
        raise ValidationFailed(f"The {kind} must be a PNG, JPEG, GIF or WebP image.")
    if _MARKUP.search(data):
        raise ValidationFailed(f"The {kind} contains markup or script and was refused.")
    return mime


def _container_type(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png" if data.endswith(b"IEND\xaeB`\x82") else None
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg" if data.rstrip(b"\x00").endswith(b"\xff\xd9") else None
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif" if data.endswith(b";") else None
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        declared = int.from_bytes(data[4:8], "little") + 8
        return "image/webp" if declared == len(data) else None
    return None


def store_asset(db: Session, agency_id: str, kind: str, data: bytes, actor: Actor) -> BrandAsset:
    """Keep an uploaded logo or favicon for the agency's overrides (the same bytes are stored once)."""
    if kind not in ASSET_KINDS:
        raise ValidationFailed("Unknown image kind.")
    mime = sniff_image(data, kind)
    digest = hashlib.sha256(data).hexdigest()
    existing = db.scalar(select(BrandAsset).where(BrandAsset.agency_id == agency_id, BrandAsset.kind == kind,
                                                  BrandAsset.sha256 == digest))
    if existing is not None:
        return existing
    asset = BrandAsset(agency_id=agency_id, kind=kind, content_type=mime, data=data, sha256=digest)
    db.add(asset)
    db.flush()
    audit.record(db, agency_id, actor, "brand_asset.uploaded", "brand_asset", asset.id, kind=kind, size=len(data))
    return asset


def get_asset(db: Session, asset_id: str) -> BrandAsset:
    """A stored image, for serving (asset ids are random; their images are public like any logo)."""
    asset = db.get(BrandAsset, asset_id) if _ASSET_ID.match(asset_id or "") else None
    if asset is None:
        raise NotFound()
    return asset


def asset_url(asset_id: str) -> str:
    return f"/brand/asset/{asset_id}"


def save_agency_favicon(db: Session, agency_id: str, data: bytes, actor: Actor) -> Agency:
    agency = db.get(Agency, agency_id)
    if agency is None:
        raise NotFound()
    agency.favicon_type = sniff_image(data, "favicon")
    agency.favicon = data
    agency.favicon_version = (agency.favicon_version or 0) + 1
    audit.record(db, agency_id, actor, "agency.favicon_updated", "agency", agency_id)
    return agency


# Overrides --------------------------------------------------------------------------------------------------

def clean_overrides(db: Session, agency_id: str, form: Mapping[str, Any]) -> dict[str, Any]:
    """The override keys a form or API body sets, validated; empty values are left out (inherit)."""
    unknown = set(form) - set(OVERRIDE_KEYS)
    if unknown:
        raise ValidationFailed(f"Unknown branding fields: {', '.join(sorted(unknown))}.")
    cleaned: dict[str, Any] = {}
    for key, raw in form.items():
        if raw is None or raw == "" or raw == "inherit":
            continue
        if not isinstance(raw, str | bool):
            raise ValidationFailed(f"{key} must be text.")
        cleaned[key] = _clean_one(db, agency_id, key, raw)
    return cleaned


def _clean_one(db: Session, agency_id: str, key: str, raw: str | bool) -> Any:
    if key == "show_powered_by":
        if raw not in (True, False, "1", "0", "true", "false"):
            raise ValidationFailed("Powered by must be shown or hidden.")
        return raw in (True, "1", "true")
    assert isinstance(raw, str)
    if key == "name":
        return clean_name(raw, "Display name")
    if key == "color":
        return clean_color(raw.strip())
    if key in TEXT_LIMITS:
        limit, multiline = TEXT_LIMITS[key]
        return clean_text(raw, key.replace("_", " ").capitalize(), limit, multiline) or None
    if key == "support_url":
        return clean_support_url(raw)
    if key == "theme":
        if raw not in THEMES:
            raise ValidationFailed("Theme must be light or dark.")
        return raw
    # logo / favicon: one of this agency's own uploaded images of that kind
    asset = db.get(BrandAsset, raw) if _ASSET_ID.match(raw) else None
    if asset is None or asset.agency_id != agency_id or asset.kind != key:
        raise ValidationFailed(f"Unknown {key} image.")
    return raw


def clean_language(value: str | None) -> str | None:
    value = (value or "").strip().lower()
    if not value:
        return None
    if value not in LANGUAGES:
        raise ValidationFailed(f"Language must be one of {', '.join(LANGUAGES)}.")
    return value


def save_workspace_branding(db: Session, agency_id: str, workspace_id: str, overrides: Mapping[str, Any],
                            actor: Actor) -> Workspace:
    workspace = get_workspace(db, agency_id, workspace_id)
    workspace.branding = clean_overrides(db, agency_id, overrides) or None
    audit.record(db, agency_id, actor, "workspace.branding_updated", "workspace", workspace.id,
                 fields=sorted(workspace.branding or {}))
    return workspace


def save_link_branding(db: Session, agency_id: str, link_id: str, overrides: Mapping[str, Any],
                       language: str | None, actor: Actor) -> ConnectLink:
    link = db.scalar(select(ConnectLink).where(ConnectLink.id == link_id, ConnectLink.agency_id == agency_id))
    if link is None:
        raise NotFound("No such link.")
    link.branding = clean_overrides(db, agency_id, overrides) or None
    link.language = clean_language(language)
    audit.record(db, agency_id, actor, "link.branding_updated", "connect_link", link.id,
                 fields=sorted(link.branding or {}), language=link.language)
    return link


# Resolution -------------------------------------------------------------------------------------------------

def agency_branding(agency: Agency) -> Branding:
    """The agency's own branding (cached per process, keyed by the values it is made of)."""
    return _agency_branding(agency.id, agency.name, agency.brand_color, agency.logo_version or 0,
                            agency.support_url, agency.headline or "", agency.instructions or "",
                            agency.success_text or "", agency.theme or "light", agency.show_powered_by is not False,
                            agency.favicon_version or 0)


@lru_cache(maxsize=4096)
def _agency_branding(agency_id: str, name: str, color: str, logo_version: int, support_url: str | None,
                     headline: str, instructions: str, success_text: str, theme: str, show_powered_by: bool,
                     favicon_version: int) -> Branding:
    logo_url = f"/brand/{agency_id}/logo?v={logo_version}" if logo_version else None
    favicon_url = f"/brand/{agency_id}/favicon?v={favicon_version}" if favicon_version else None
    return Branding(agency_id, name, color, logo_url, support_url, headline, instructions, success_text, theme,
                    show_powered_by, favicon_url)


def resolve(agency: Agency, workspace_overrides: Mapping[str, Any] | None = None,
            link_overrides: Mapping[str, Any] | None = None) -> Branding:
    """The effective branding: the link's overrides over the workspace's over the agency's."""
    brand = agency_branding(agency)
    for overrides in (workspace_overrides, link_overrides):
        if overrides:
            brand = _apply(brand, overrides)
    return brand


def for_link(agency: Agency, link: ConnectLink) -> Branding:
    return resolve(agency, link.workspace.branding, link.branding)


def _apply(brand: Branding, overrides: Mapping[str, Any]) -> Branding:
    changes: dict[str, Any] = {}
    for key in ("name", "color", "headline", "instructions", "success_text", "support_url", "theme",
                "show_powered_by"):
        value = overrides.get(key)
        if value is not None and value != "":
            changes[key] = value
    if overrides.get("logo"):
        changes["logo_url"] = asset_url(str(overrides["logo"]))
    if overrides.get("favicon"):
        changes["favicon_url"] = asset_url(str(overrides["favicon"]))
    return replace(brand, **changes) if changes else brand


def assets_of(db: Session, agency_id: str) -> list[BrandAsset]:
    """The agency's uploaded images, newest first (for the admin's pickers)."""
    return list(db.scalars(select(BrandAsset).where(BrandAsset.agency_id == agency_id)
                           .order_by(BrandAsset.created_at.desc())))


# Agency settings: custom domain and default language --------------------------------------------------------

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def clean_custom_domain(value: str, portal_host: str) -> str | None:
    """A bare hostname the agency points at the portal (no scheme, port, path or IP address)."""
    value = (value or "").strip().lower().rstrip(".")
    if not value:
        return None
    try:
        ascii_host = value.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValidationFailed("Enter a host name like connect.your-agency.com.") from None
    labels = ascii_host.split(".")
    if (len(ascii_host) > 253 or len(labels) < 2 or not all(_LABEL.match(label) for label in labels)
            or labels[-1].isdigit()):
        raise ValidationFailed("Enter a host name like connect.your-agency.com (no https://, port or path).")
    portal = portal_host.split(":", 1)[0].lower()
    if ascii_host == portal or ascii_host.endswith("." + portal) or ascii_host in ("localhost",):
        raise ValidationFailed("Use your own domain, not the portal's.")
    return ascii_host


def save_agency_settings(db: Session, agency_id: str, actor: Actor, *, custom_domain: str,
                         default_language: str, portal_host: str) -> Agency:
    """The agency's custom domain claim and its clients' default language. A claim is served only once
    proven by DNS (``domains.verify``); any agency may claim a domain nobody has proven yet."""
    agency = db.get(Agency, agency_id)
    if agency is None:
        raise NotFound()
    domain = clean_custom_domain(custom_domain, portal_host)
    if domain and domain != agency.custom_domain and domains.verified_by_another(db, agency_id, domain):
        raise ValidationFailed("This domain is already used by another account.")
    changed = domain != agency.custom_domain
    domains.claim(agency, domain)
    agency.default_language = clean_language(default_language)
    db.flush()
    audit.record(db, agency_id, actor, "agency.settings_updated", "agency", agency_id, custom_domain=domain,
                 domain_changed=changed, default_language=agency.default_language)
    return agency


def agency_id_for_domain(db: Session, host: str) -> str | None:
    """The agency whose proven custom domain this request host is (port ignored), if any."""
    name = host.split(":", 1)[0].lower().rstrip(".")
    if not name or len(name) > 253:
        return None
    return db.scalar(select(Agency.id).where(Agency.custom_domain == name, Agency.deleted_at.is_(None),
                                             Agency.custom_domain_verified_at.is_not(None)))

"""Agencies, members, admin sessions, workspaces and branding."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.errors import NotFound, ValidationFailed
from portal.models import AdminSession, Agency, Member, Workspace
from portal.security import passwords
from portal.security.signing import hash_secret, random_id
from portal.services import audit
from portal.services.audit import Actor

SESSION_LIFETIME = timedelta(days=14)
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{2,63}$")
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
LOGO_MAX_BYTES = 512 * 1024


def clean_name(value: str, field: str, max_length: int = 120) -> str:
    """A display name: trimmed, no control or format characters (NUL, bidi overrides), bounded."""
    value = unicodedata.normalize("NFC", (value or "").strip())
    if not value:
        raise ValidationFailed(f"{field} is required.")
    if len(value) > max_length:
        raise ValidationFailed(f"{field} must be at most {max_length} characters.")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co") for ch in value):
        raise ValidationFailed(f"{field} contains characters that are not allowed.")
    return value


def clean_email(value: str) -> str:
    email = (value or "").strip().lower()
    if not _EMAIL.match(email) or len(email) > 254:
        raise ValidationFailed("Enter a valid email address.")
    return email


def clean_color(value: str) -> str:
    if not _COLOR.match(value or ""):
        raise ValidationFailed("Colour must look like #4f46e5.")
    return value.lower()


def check_password(password: str) -> str:
    if len(password or "") < passwords.MIN_PASSWORD_LENGTH:
        raise ValidationFailed(f"Password must be at least {passwords.MIN_PASSWORD_LENGTH} characters.")
    if len(password) > passwords.MAX_PASSWORD_LENGTH:
        raise ValidationFailed(f"Password must be at most {passwords.MAX_PASSWORD_LENGTH} characters.")
    return password


def sign_up(db: Session, agency_name: str, email: str, password: str, ip: str | None = None) -> Member:
    """Create an agency with its first member (owner)."""
    agency = Agency(name=clean_name(agency_name, "Agency name"))
    member = Member(agency=agency, email=clean_email(email), password_hash=passwords.hash_password(
        check_password(password)), role="owner")
    db.add_all([agency, member])
    try:
        with db.begin_nested():
            db.flush()
    except IntegrityError:
        raise ValidationFailed("An account with this email already exists. Log in instead.") from None
    audit.record(db, agency.id, Actor("member", member.id, ip), "agency.created", "agency", agency.id)
    return member


def authenticate(db: Session, email: str, password: str) -> Member | None:
    member = db.scalar(select(Member).where(Member.email == (email or "").strip().lower()))
    if not passwords.verify_password(member.password_hash if member else None, password or ""):
        return None
    assert member is not None
    if passwords.needs_rehash(member.password_hash):
        member.password_hash = passwords.hash_password(password)
    return member


def open_session(db: Session, member: Member, now: datetime, ip: str | None) -> str:
    """A new server-side admin session; returns the random id the cookie carries."""
    session_id = random_id()
    db.add(AdminSession(id_hash=hash_secret(session_id), member_id=member.id, created_at=now,
                        expires_at=now + SESSION_LIFETIME))
    audit.record(db, member.agency_id, Actor("member", member.id, ip), "member.login", "member", member.id)
    return session_id


def member_for_session(db: Session, session_id: str, now: datetime) -> Member | None:
    row = db.get(AdminSession, hash_secret(session_id))
    if row is None or row.expires_at <= now:
        return None
    return db.get(Member, row.member_id)


def close_session(db: Session, session_id: str, ip: str | None) -> None:
    row = db.get(AdminSession, hash_secret(session_id))
    if row is None:
        return
    member = db.get(Member, row.member_id)
    db.execute(delete(AdminSession).where(AdminSession.id_hash == row.id_hash))
    if member:
        audit.record(db, member.agency_id, Actor("member", member.id, ip), "member.logout", "member", member.id)


# Workspaces -----------------------------------------------------------------------------------

def list_workspaces(db: Session, agency_id: str, include_archived: bool = False) -> list[Workspace]:
    query = (select(Workspace).where(Workspace.agency_id == agency_id, Workspace.deleted_at.is_(None))
             .order_by(Workspace.name))
    if not include_archived:
        query = query.where(Workspace.archived_at.is_(None))
    return list(db.scalars(query))


def get_workspace(db: Session, agency_id: str, workspace_id: str) -> Workspace:
    workspace = db.scalar(select(Workspace).where(Workspace.id == workspace_id, Workspace.agency_id == agency_id,
                                                  Workspace.deleted_at.is_(None)))  # deleted: gone
    if workspace is None:
        raise NotFound("No such workspace.")
    return workspace


def create_workspace(db: Session, agency_id: str, name: str, actor: Actor) -> Workspace:
    workspace = Workspace(agency_id=agency_id, name=clean_name(name, "Workspace name"))
    db.add(workspace)
    db.flush()
    audit.record(db, agency_id, actor, "workspace.created", "workspace", workspace.id, name=workspace.name)
    return workspace


def rename_workspace(db: Session, agency_id: str, workspace_id: str, name: str, actor: Actor) -> Workspace:
    workspace = get_workspace(db, agency_id, workspace_id)
    workspace.name = clean_name(name, "Workspace name")
    audit.record(db, agency_id, actor, "workspace.renamed", "workspace", workspace.id, name=workspace.name)
    return workspace


def archive_workspace(db: Session, agency_id: str, workspace_id: str, actor: Actor, now: datetime) -> Workspace:
    workspace = get_workspace(db, agency_id, workspace_id)
    if workspace.archived_at is None:
        workspace.archived_at = now
        audit.record(db, agency_id, actor, "workspace.archived", "workspace", workspace.id)
    return workspace


# Branding -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Branding:
    """What client pages need of an agency, as a plain value (templates never query)."""

    agency_id: str
    name: str
    color: str
    logo_url: str | None
    support_url: str | None
    headline: str = ""
    instructions: str = ""
    success_text: str = ""
    theme: str = "light"
    show_powered_by: bool = True
    favicon_url: str | None = None


def branding_for(agency: Agency) -> Branding:
    """The agency's own branding; a link's effective branding is ``services.branding.for_link``."""
    from portal.services import branding

    return branding.agency_branding(agency)


THEMES = ("light", "dark")


def clean_text(value: str, field: str, max_length: int, multiline: bool = False) -> str:
    """Optional free text: trimmed, bounded, no control or bidi-override characters (newlines if multiline)."""
    value = unicodedata.normalize("NFC", (value or "").strip().replace("\r\n", "\n"))
    if len(value) > max_length:
        raise ValidationFailed(f"{field} must be at most {max_length} characters.")
    allowed = {"\n"} if multiline else set()
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co") and ch not in allowed for ch in value):
        raise ValidationFailed(f"{field} contains characters that are not allowed.")
    return value


def clean_support_url(value: str) -> str | None:
    value = (value or "").strip()
    if not value:
        return None
    if len(value) > 500 or not re.match(r"^(https://[^\s<>\"']+|mailto:[^\s<>\"'@]+@[^\s<>\"']+)$", value):
        raise ValidationFailed("The support link must be an https:// address or a mailto: address.")
    return value


def detect_logo_type(data: bytes) -> str:
    """The logo's type from its bytes (whole PNG, JPEG, GIF or WebP files only; see services.branding)."""
    from portal.services import branding

    return branding.sniff_image(data, "logo")


def update_branding(db: Session, agency_id: str, actor: Actor, *, name: str, color: str,
                    logo: bytes | None = None, texts: dict[str, str] | None = None) -> Agency:
    """Name, colour, logo and (with ``texts``) headline, instructions, success text, support link,
    theme and the "Powered by" line."""
    agency = db.get(Agency, agency_id)
    if agency is None:
        raise NotFound()
    agency.name = clean_name(name, "Agency name")
    agency.brand_color = clean_color(color)
    if texts is not None:
        agency.headline = clean_text(texts.get("headline", ""), "Headline", 120)
        agency.instructions = clean_text(texts.get("instructions", ""), "Instructions", 1000, multiline=True)
        agency.success_text = clean_text(texts.get("success_text", ""), "Success text", 500, multiline=True)
        agency.support_url = clean_support_url(texts.get("support_url", ""))
        theme = texts.get("theme") or "light"
        if theme not in THEMES:
            raise ValidationFailed("Theme must be light or dark.")
        agency.theme = theme
        agency.show_powered_by = texts.get("show_powered_by") == "1"
    if logo:
        agency.logo_type = detect_logo_type(logo)
        agency.logo = logo
        agency.logo_version += 1
    audit.record(db, agency_id, actor, "agency.branding_updated", "agency", agency_id)
    return agency


def count_members(db: Session, agency_id: str) -> int:
    return int(db.scalar(select(func.count()).select_from(Member).where(Member.agency_id == agency_id)) or 0)

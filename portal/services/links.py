"""EasyConnect links: create, resolve (signature, then the row), reserve a use, revoke."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, object_session

from portal.errors import (
    LinkExpired,
    LinkInvalid,
    LinkRevoked,
    LinkUsedUp,
    NotFound,
    PlatformNotAllowed,
    ValidationFailed,
)
from portal.models import Agency, ConnectLink
from portal.security.signing import LinkSigner, random_id
from portal.services import Deps, audit, webhooks
from portal.services.agencies import clean_name, get_workspace
from portal.services.audit import Actor

MIN_LIFETIME = timedelta(hours=1)
MAX_LIFETIME = timedelta(days=30)


def lifetime_in_hours(hours: int) -> timedelta:
    """A link lifetime given in hours (API, forms), checked before any date arithmetic can overflow."""
    if not MIN_LIFETIME // timedelta(hours=1) <= hours <= MAX_LIFETIME // timedelta(hours=1):
        raise ValidationFailed("Expiry must be between 1 hour and 30 days.")
    return timedelta(hours=hours)
MAX_USES_LIMIT = 1000


@dataclass(frozen=True)
class ResolvedLink:
    link: ConnectLink
    agency: Agency
    token: str


def link_url(deps: Deps, link: ConnectLink) -> str:
    """The link's URL: on the agency's proven custom domain when it has one (and the operator allows them)."""
    return f"{public_base(deps, link)}/c/{deps.signer.sign(link.token_id)}"


def public_base(deps: Deps, link: ConnectLink) -> str:
    settings = deps.settings
    if not settings.custom_domains:
        return settings.base_url
    session = object_session(link)
    agency = session.get(Agency, link.agency_id) if session is not None else None  # identity map: no query
    if agency is None or not agency.custom_domain or agency.custom_domain_verified_at is None:
        return settings.base_url  # an unproven domain may be someone else's: never hand it out
    return f"{settings.base_url.split('://', 1)[0]}://{agency.custom_domain}"


def create_link(db: Session, deps: Deps, agency_id: str, actor: Actor, *, workspace_id: str,
                platforms: Iterable[str], available: Iterable[str], lifetime: timedelta,
                max_uses: int | None, label: str = "", expected_accounts: Iterable[str] = (),
                reconnect_connection_id: str | None = None, language: str | None = None) -> ConnectLink:
    """Create a link for one of the agency's workspaces; platforms must be offered by this deployment.

    ``expected_accounts``: ids or @handles the agency expects; any other account is refused.
    ``reconnect_connection_id``: a reconnect link for one connection (its account only).
    ``language``: the client pages' language (en, es, fr, de, pt); None = the agency's default."""
    from portal.services.branding import clean_language

    workspace = get_workspace(db, agency_id, workspace_id)
    if workspace.archived_at is not None:
        raise ValidationFailed("This workspace is archived; restore it before sending links.")
    chosen = sorted(set(platforms))
    if not chosen:
        raise ValidationFailed("Choose at least one platform.")
    unknown = set(chosen) - set(available)
    if unknown:
        raise ValidationFailed(f"These platforms are not available: {', '.join(sorted(unknown))}.")
    if not MIN_LIFETIME <= lifetime <= MAX_LIFETIME:
        raise ValidationFailed("Expiry must be between 1 hour and 30 days.")
    if max_uses is not None and not 1 <= max_uses <= MAX_USES_LIMIT:
        raise ValidationFailed(f"Uses must be between 1 and {MAX_USES_LIMIT}, or unlimited.")
    label = clean_name(label, "Label") if label and label.strip() else ""
    expected = _clean_expected(expected_accounts)
    link = ConnectLink(agency_id=agency_id, workspace_id=workspace.id, token_id=random_id(),
                       allowed_platforms=chosen, expires_at=deps.now() + lifetime, max_uses=max_uses,
                       label=label, created_by=actor.id, uses=0, opened_count=0, expected_accounts=expected or None,
                       reconnect_connection_id=reconnect_connection_id, language=clean_language(language))
    db.add(link)
    db.flush()
    audit.record(db, agency_id, actor, "link.created", "connect_link", link.id, workspace_id=workspace.id,
                 platforms=chosen, max_uses=max_uses, expires_at=link.expires_at.isoformat())
    return link


def _clean_expected(values: Iterable[str]) -> list[str]:
    cleaned = []
    for value in values:
        value = value.strip()
        if not value:
            continue
        if len(value) > 255 or any(ch.isspace() or ord(ch) < 32 for ch in value):
            raise ValidationFailed("Expected accounts are ids or @handles, one per line, without spaces.")
        cleaned.append(value)
    if len(cleaned) > 50:
        raise ValidationFailed("At most 50 expected accounts per link.")
    return cleaned


def create_reconnect_link(db: Session, deps: Deps, agency_id: str, connection_id: str, actor: Actor) -> ConnectLink:
    """A 7-day, single-use link to reconnect one connection: a different account is refused."""
    from portal.models import Connection

    connection = db.scalar(select(Connection).where(Connection.id == connection_id,
                                                    Connection.agency_id == agency_id))
    if connection is None:
        raise NotFound("No such connection.")
    name = connection.handle or connection.display_name or connection.external_id
    return create_link(db, deps, agency_id, actor, workspace_id=connection.workspace_id,
                       platforms=[connection.platform], available=[connection.platform],
                       lifetime=timedelta(days=7), max_uses=1, label=f"Reconnect {name}"[:120],
                       reconnect_connection_id=connection.id)


def resolve_link(db: Session, signer: LinkSigner, token: str, now: datetime,
                 platform: str | None = None) -> ResolvedLink:
    """Check the signature, then the row: revoked, expired, used up, platform allowed."""
    token_id = signer.unsign(token)
    if token_id is None:
        raise LinkInvalid()
    link = find_by_token_id(db, token_id)
    if link is None:
        raise LinkInvalid()
    check_usable(link, now)
    if platform is not None and platform not in link.allowed_platforms:
        raise PlatformNotAllowed()
    agency = db.get(Agency, link.agency_id)
    assert agency is not None
    return ResolvedLink(link, agency, token)


def check_usable(link: ConnectLink, now: datetime) -> None:
    if link.revoked_at is not None:
        raise LinkRevoked()
    if link.expires_at <= now:
        raise LinkExpired()
    if link.max_uses is not None and link.uses >= link.max_uses:
        raise LinkUsedUp()
    if link.workspace.archived_at is not None:
        raise LinkRevoked("This link's workspace is no longer active. Ask the sender for a new link.")


def note_opened(db: Session, link: ConnectLink) -> None:
    """Count a page view. Never consumes a use: mail scanners open links too."""
    db.execute(update(ConnectLink).where(ConnectLink.id == link.id)
               .values(opened_count=ConnectLink.opened_count + 1))
    webhooks.link_opened(db, link)


def reserve_use(db: Session, link_id: str, now: datetime) -> None:
    """Count one completed connection, atomically: of two concurrent completions of a
    single-use link exactly one succeeds (the row update re-checks every condition)."""
    result = db.execute(
        update(ConnectLink)
        .where(ConnectLink.id == link_id, ConnectLink.revoked_at.is_(None), ConnectLink.expires_at > now,
               or_(ConnectLink.max_uses.is_(None), ConnectLink.uses < ConnectLink.max_uses))
        .values(uses=ConnectLink.uses + 1)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        link = db.get(ConnectLink, link_id, populate_existing=True)
        if link is None:
            raise LinkInvalid()
        check_usable(link, now)
        raise LinkUsedUp()


def find_by_token_id(db: Session, token_id: str) -> ConnectLink | None:
    return db.scalar(select(ConnectLink).where(ConnectLink.token_id == token_id))


def find_by_id(db: Session, link_id: str) -> ConnectLink | None:
    return db.get(ConnectLink, link_id)


def list_links(db: Session, agency_id: str, workspace_id: str | None = None) -> list[ConnectLink]:
    query = select(ConnectLink).where(ConnectLink.agency_id == agency_id).order_by(ConnectLink.created_at.desc())
    if workspace_id:
        query = query.where(ConnectLink.workspace_id == workspace_id)
    return list(db.scalars(query))


def get_link(db: Session, agency_id: str, link_id: str) -> ConnectLink:
    link = db.scalar(select(ConnectLink).where(ConnectLink.id == link_id, ConnectLink.agency_id == agency_id))
    if link is None:
        raise NotFound("No such link.")
    return link


def revoke_link(db: Session, deps: Deps, agency_id: str, link_id: str, actor: Actor) -> ConnectLink:
    link = get_link(db, agency_id, link_id)
    if link.revoked_at is None:
        link.revoked_at = deps.now()
        audit.record(db, agency_id, actor, "link.revoked", "connect_link", link.id)
    return link

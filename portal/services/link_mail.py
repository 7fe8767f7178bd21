"""Sending an EasyConnect link to a client: a branded email in the link's language, or a QR code.

The email goes through the same outbox as every notification (SMTP when configured). The link URL is
a bearer credential, so it goes into the email only: the audit event names the link and the
recipient, never the URL or its token. Sending is rate-limited per link and per agency, counted
from the audit log (shared by every web process, no extra table).
"""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path

import segno
from babel.support import NullTranslations, Translations
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from portal.errors import PortalError, ValidationFailed
from portal.models import Agency, AuditEvent, ConnectLink, OutboxEmail
from portal.services import Deps, audit, branding, links, notifications
from portal.services.agencies import clean_email
from portal.services.audit import Actor

TRANSLATIONS = Path(__file__).resolve().parent.parent / "translations"
PER_LINK_PER_HOUR = 5
PER_AGENCY_PER_HOUR = 200


class TooManyEmails(PortalError):
    status = 429
    code = "rate_limited"
    public_message = "Too many link emails in the last hour; try again later."


@lru_cache(maxsize=8)
def translations(language: str) -> NullTranslations:
    """The compiled catalog of a language (English: the message ids themselves)."""
    if language not in branding.LANGUAGES or language == "en":
        return NullTranslations()
    return Translations.load(str(TRANSLATIONS), [language], domain="messages")


def email_link(db: Session, deps: Deps, agency_id: str, link_id: str, to_address: str, actor: Actor) -> OutboxEmail:
    """Queue the branded email with the link for ``to_address``; count it on the link."""
    link = links.get_link(db, agency_id, link_id)
    now = deps.now()
    if link.state(now) != "active":
        raise ValidationFailed("Only an active link can be sent.")
    address = clean_email(to_address)
    _check_rate(db, agency_id, link.id, now)
    agency = db.get(Agency, agency_id)
    assert agency is not None
    language = link.language or agency.default_language or "en"
    url = links.link_url(deps, link)
    subject, body = compose(agency, link, url, language)
    # The link is a bearer credential: sealed in the outbox, shown redacted, readable only by the sender.
    mail = notifications.queue_email(db, deps, agency_id, address, subject, body, secret=True, hide=(url,), now=now)
    db.execute(update(ConnectLink).where(ConnectLink.id == link.id)
               .values(emailed_count=ConnectLink.emailed_count + 1).execution_options(synchronize_session=False))
    audit.record(db, agency_id, actor, "link.emailed", "connect_link", link.id, recipient=address, language=language)
    return mail


def compose(agency: Agency, link: ConnectLink, url: str, language: str) -> tuple[str, str]:
    """Subject and plain-text body in the link's branding and language."""
    brand = branding.for_link(agency, link)
    _ = translations(language).gettext
    subject = _("%(agency)s: connect your accounts") % {"agency": brand.name}
    intro = brand.instructions or _(
        "%(agency)s asks you to connect your social accounts for %(workspace)s. You sign in on each platform's "
        "own page; %(agency)s never sees your password.") % {"agency": brand.name, "workspace": link.workspace.name}
    lines = [brand.headline or _("Connect your accounts"), "", intro, "", _("Open this link to start:"), url, "",
             _("This link expires on %(date)s.") % {"date": link.expires_at.strftime("%Y-%m-%d %H:%M UTC")},
             _("Keep this email to yourself: anyone with the link can connect accounts to it.")]
    if brand.support_url:
        lines += ["", _("Need help?") + " " + brand.support_url]
    lines += ["", f"— {brand.name}"]
    if brand.show_powered_by:
        lines.append(_("Secure connection powered by EasyConnect. Your passwords are never shared."))
    return subject, "\n".join(lines) + "\n"


def _check_rate(db: Session, agency_id: str, link_id: str, now: datetime) -> None:
    since = now - timedelta(hours=1)
    sent = select(func.count()).select_from(AuditEvent).where(
        AuditEvent.agency_id == agency_id, AuditEvent.action == "link.emailed", AuditEvent.created_at > since)
    if int(db.scalar(sent.where(AuditEvent.object_id == link_id)) or 0) >= PER_LINK_PER_HOUR:
        raise TooManyEmails(f"This link was emailed {PER_LINK_PER_HOUR} times in the last hour; try again later.")
    if int(db.scalar(sent) or 0) >= PER_AGENCY_PER_HOUR:
        raise TooManyEmails("Too many link emails in the last hour; try again later.")


def qr_svg(deps: Deps, db: Session, agency_id: str, link_id: str) -> bytes:
    """The link's URL as a QR code (SVG drawn by segno: paths only, no script, no external reference)."""
    link = links.get_link(db, agency_id, link_id)
    if link.state(deps.now()) != "active":
        raise ValidationFailed("Only an active link has a QR code.")
    out = io.BytesIO()
    segno.make(links.link_url(deps, link), error="m").save(out, kind="svg", scale=6, border=2, xmldecl=False,
                                                           svgns=True, title="EasyConnect link")
    return out.getvalue()

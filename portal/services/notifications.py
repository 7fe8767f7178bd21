"""Telling the agency: once per state change of a connection, in the admin panel and by email.

A notification is keyed by its state change (``dedupe_key``), so a connection that fails a hundred
refreshes in a row produces one "needs reconnecting" notice, and temporary trouble none at all.
Every notice about a connection that needs the client carries a one-click reconnect link.

Mail that carries a secret (an invitation link, a client's reconnect or EasyConnect link) is queued
with ``queue_email(..., secret=True)``: its body is stored encrypted with the token cipher, bound to
its outbox row, next to a copy with the links redacted. Only the sender decrypts it, just before the
SMTP call; once sent only the redacted copy stays. The admin outbox shows the redacted copy, always.
"""

from __future__ import annotations

import logging
import re
import smtplib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.models import Agency, Connection, Member, Notification, OutboxEmail, new_id
from portal.security.crypto import DecryptionError, TokenCipher, column_context
from portal.services import Deps, links, webhooks
from portal.services.audit import WORKER

log = logging.getLogger(__name__)
NEEDS_CLIENT = ("health_error", "expiring")
MAX_SEND_ATTEMPTS = 6
# A sealed body: SEALED_MARKER, the ciphertext (no newline in it), a newline, the redacted text. The
# marker starts with a control character no composed email starts with.
SEALED_MARKER = "\x1esealed-mail:v1:"
HIDDEN_LINK = "[link hidden: it is only in the email itself]"
_URL = re.compile(r"https?://\S+")


# Queueing mail --------------------------------------------------------------------------------------

def redact(body: str, hide: Iterable[str] = ()) -> str:
    """``body`` with every URL, and each string of ``hide``, replaced by a placeholder."""
    for value in hide:
        if value:
            body = body.replace(value, HIDDEN_LINK)
    return _URL.sub(HIDDEN_LINK, body)


def _body_context(mail_id: str) -> str:
    return column_context("outbox_emails", mail_id, "body")


def queue_email(db: Session, deps: Deps | None, agency_id: str, to_address: str, subject: str, body: str, *,
                secret: bool = False, hide: Iterable[str] = (), now: datetime | None = None) -> OutboxEmail:
    """Put one email in the outbox. ``secret=True`` when the body carries a credential (any URL in it
    is treated as one, plus the strings in ``hide``): the body is then stored encrypted (``deps`` is
    needed for the cipher) and readable only by the sender; the admin panel shows it redacted."""
    mail = OutboxEmail(id=new_id(), agency_id=agency_id, to_address=to_address, subject=subject[:255])
    if now is not None:
        mail.created_at = now
    if secret:
        if deps is None:
            raise ValueError("a secret email needs the token cipher")
        sealed = deps.cipher.encrypt(body, _body_context(mail.id))
        mail.body_text = f"{SEALED_MARKER}{sealed}\n{redact(body, hide)}"
    else:
        mail.body_text = body
    db.add(mail)
    return mail


def is_sealed(mail: OutboxEmail) -> bool:
    return mail.body_text.startswith(SEALED_MARKER)


def body_to_send(cipher: TokenCipher, mail: OutboxEmail) -> str:
    """The text to send: a sealed body decrypted (DecryptionError when it was sealed for another row)."""
    if not is_sealed(mail):
        return mail.body_text
    sealed, _, _ = mail.body_text[len(SEALED_MARKER):].partition("\n")
    return cipher.decrypt(sealed, _body_context(mail.id))


def displayed_body(mail: OutboxEmail) -> str:
    """What the admin panel may show: a sealed body's redacted copy, never its ciphertext or secret."""
    if not is_sealed(mail):
        return mail.body_text
    return mail.body_text[len(SEALED_MARKER):].partition("\n")[2]


def _name(connection: Connection) -> str:
    return f"@{connection.handle}" if connection.handle else (connection.display_name or connection.external_id)


def notify(db: Session, deps: Deps, connection: Connection, kind: str, dedupe: str, title: str, body: str) -> bool:
    """Record one notice (and its emails) unless this state change was already told. Returns whether it was new."""
    reconnect_url = None
    link_id = None
    with db.begin_nested() as savepoint:
        notice = Notification(agency_id=connection.agency_id, connection_id=connection.id, kind=kind,
                              dedupe_key=f"{kind}:{connection.id}:{dedupe}"[:120], title=title[:255], body=body)
        db.add(notice)
        try:
            db.flush()
        except IntegrityError:
            savepoint.rollback()
            return False
        if kind.startswith(NEEDS_CLIENT):
            link = links.create_reconnect_link(db, deps, connection.agency_id, connection.id, WORKER)
            notice.reconnect_link_id, link_id = link.id, link.id
            reconnect_url = links.link_url(deps, link)
    webhooks.notice_told(db, deps, connection, kind)
    _queue_emails(db, deps, connection.agency_id, title, body, reconnect_url)
    log.info("notified agency %s: %s (%s)", connection.agency_id, kind, link_id or "-")
    return True


def _queue_emails(db: Session, deps: Deps | None, agency_id: str, title: str, body: str,
                  reconnect_url: str | None) -> None:
    agency = db.get(Agency, agency_id, populate_existing=True)  # the digest setting may have just changed
    if agency is not None and agency.notify_digest:
        return  # told in the daily digest instead
    brand = agency.name if agency else "EasyConnect"
    text = body + (f"\n\nSend this link to your client to reconnect (single use, 7 days):\n{reconnect_url}\n"
                   if reconnect_url else "\n")
    for email in db.scalars(select(Member.email).where(Member.agency_id == agency_id)):
        # a reconnect link is the client's credential: sealed (the notifications page shows it to members)
        queue_email(db, deps, agency_id, email, f"[{brand}] {title}", text + f"\n— {brand}, via EasyConnect\n",
                    secret=reconnect_url is not None, hide=(reconnect_url or "",))


def health_error(db: Session, deps: Deps, connection: Connection) -> bool:
    return notify(db, deps, connection, "health_error", str(connection.token_version),
                  f"{_name(connection)} on {connection.platform} needs reconnecting",
                  f"{connection.display_name} ({connection.platform}) stopped working: {connection.health_reason}")


def recovered(db: Session, deps: Deps, connection: Connection) -> bool:
    return notify(db, deps, connection, "recovered", str(connection.token_version),
                  f"{_name(connection)} on {connection.platform} works again",
                  f"{connection.display_name} ({connection.platform}) was reconnected and is healthy again.")


def expiring(db: Session, deps: Deps, connection: Connection, days: int, lapse: datetime) -> bool:
    return notify(db, deps, connection, f"expiring_{days}", lapse.date().isoformat(),
                  f"{_name(connection)} on {connection.platform} must be reconnected within {days} day"
                  f"{'s' if days != 1 else ''}",
                  f"The platform lets {connection.display_name} stay connected until "
                  f"{lapse.strftime('%d %B %Y')}. After that the client has to sign in again.")


def webhook_disabled(db: Session, agency_id: str, endpoint_id: str, host: str, failing_since: datetime) -> bool:
    """Tell the agency, once per failing spell, that a webhook endpoint was switched off."""
    title = f"Webhooks to {host} were switched off"
    body = (f"Every delivery to your webhook endpoint at {host} failed since "
            f"{failing_since.strftime('%d %B %Y %H:%M UTC')}, so it was disabled. Fix the receiver, then enable "
            "it again in the admin panel and replay the deliveries you need.")
    with db.begin_nested() as savepoint:
        db.add(Notification(agency_id=agency_id, kind="webhook_disabled", title=title[:255], body=body,
                            dedupe_key=f"webhook_disabled:{endpoint_id}:{failing_since.isoformat()}"[:120]))
        try:
            db.flush()
        except IntegrityError:
            savepoint.rollback()
            return False
    _queue_emails(db, None, agency_id, title, body, None)
    log.info("notified agency %s: webhook endpoint %s disabled", agency_id, endpoint_id)
    return True


def set_digest(db: Session, agency_id: str, enabled: bool) -> None:
    agency = db.get(Agency, agency_id)
    if agency is not None:
        agency.notify_digest = enabled


def send_digests(db: Session, deps: Deps, now: datetime) -> int:
    """Once a day per agency that asked for it: one email per member with the day's notices."""
    from datetime import timedelta

    from portal.models import ConnectLink

    due = db.scalars(select(Agency).where(Agency.notify_digest.is_(True)))
    queued = 0
    for agency in due:
        since = agency.digest_sent_at or now - timedelta(days=1)
        if since > now - timedelta(days=1):
            continue
        notices = list(db.scalars(select(Notification).where(Notification.agency_id == agency.id,
                                                             Notification.created_at > since)
                                  .order_by(Notification.created_at)))
        agency.digest_sent_at = now
        if not notices:
            continue
        lines: list[str] = []
        reconnect_urls: list[str] = []  # each one is a client's credential: the digest is sealed
        for notice in notices:
            link = db.get(ConnectLink, notice.reconnect_link_id) if notice.reconnect_link_id else None
            url = links.link_url(deps, link) if link and link.state(now) == "active" else ""
            if url:
                reconnect_urls.append(url)
            reconnect = f"\n  Reconnect link for the client: {url}" if url else ""
            lines.append(f"- {notice.title}\n  {notice.body}{reconnect}")
        body = f"{len(notices)} change(s) since {since.strftime('%d %B %Y %H:%M UTC')}:\n\n" + "\n\n".join(lines)
        subject = f"[{agency.name}] Daily connection report: {len(notices)} change(s)"
        for email in db.scalars(select(Member.email).where(Member.agency_id == agency.id)):
            queue_email(db, deps, agency.id, email, subject, body + f"\n\n— {agency.name}, via EasyConnect\n",
                        secret=bool(reconnect_urls), hide=reconnect_urls)
            queued += 1
    return queued


# Reading and marking ------------------------------------------------------------------------------

def unread_count(db: Session, agency_id: str) -> int:
    return int(db.scalar(select(func.count()).select_from(Notification).where(
        Notification.agency_id == agency_id, Notification.read_at.is_(None))) or 0)


def recent(db: Session, agency_id: str, limit: int = 100) -> list[Notification]:
    return list(db.scalars(select(Notification).where(Notification.agency_id == agency_id)
                           .order_by(Notification.created_at.desc()).limit(limit)))


def mark_read(db: Session, agency_id: str, now: datetime, notification_id: str | None = None) -> None:
    query = update(Notification).where(Notification.agency_id == agency_id, Notification.read_at.is_(None))
    if notification_id:
        query = query.where(Notification.id == notification_id)
    db.execute(query.values(read_at=now))


@dataclass(frozen=True)
class OutboxRow:
    """One email as the admin panel shows it: a secret one redacted (``secret`` while still sealed)."""

    to_address: str
    subject: str
    body: str
    secret: bool
    created_at: datetime
    sent_at: datetime | None


def outbox(db: Session, agency_id: str, limit: int = 50) -> list[OutboxRow]:
    rows = db.scalars(select(OutboxEmail).where(OutboxEmail.agency_id == agency_id)
                      .order_by(OutboxEmail.created_at.desc()).limit(limit))
    return [OutboxRow(m.to_address, m.subject, displayed_body(m), is_sealed(m), m.created_at, m.sent_at) for m in rows]


# Sending ------------------------------------------------------------------------------------------

def send_outbox(db: Session, smtp_url: str | None, sender: str, now: datetime, limit: int = 100, *,
                cipher: TokenCipher) -> int:
    """Send queued mail through SMTP (smtp://user:pass@host:port, smtps:// for TLS). Without SMTP the
    mail stays in the outbox for the admin panel to show (sealed mail redacted). Returns how many were
    sent. A sealed body is decrypted here only, and replaced by its redacted copy once sent."""
    if not smtp_url:
        return 0
    pending = list(db.scalars(select(OutboxEmail).where(OutboxEmail.sent_at.is_(None),
                                                        OutboxEmail.attempts < MAX_SEND_ATTEMPTS)
                              .order_by(OutboxEmail.created_at).limit(limit)))
    sent = 0
    for mail in pending:
        try:
            body = body_to_send(cipher, mail)
        except DecryptionError:
            # sealed for another row or under a retired key: it never will decrypt, so stop trying
            mail.attempts, mail.last_error = MAX_SEND_ATTEMPTS, "sealed body does not decrypt"
            log.warning("outbox email %s: sealed body does not decrypt; not sent", mail.id)
            continue
        try:
            _send(smtp_url, sender, mail, body)
            mail.sent_at = now
            if is_sealed(mail):
                mail.body_text = displayed_body(mail)  # the secret leaves the database once delivered
            sent += 1
        except (OSError, smtplib.SMTPException) as exc:
            mail.attempts += 1
            mail.last_error = exc.__class__.__name__
    return sent


def _send(smtp_url: str, sender: str, mail: OutboxEmail, body: str) -> None:
    parts = urlsplit(smtp_url)
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, mail.to_address, mail.subject
    message.set_content(body)
    smtp_class = smtplib.SMTP_SSL if parts.scheme == "smtps" else smtplib.SMTP
    with smtp_class(parts.hostname or "localhost", parts.port or (465 if parts.scheme == "smtps" else 25),
                    timeout=15) as smtp:
        if parts.scheme == "smtp+starttls":
            smtp.starttls()
        if parts.username:
            smtp.login(unquote(parts.username), unquote(parts.password or ""))
        smtp.send_message(message)

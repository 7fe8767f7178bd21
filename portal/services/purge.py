"""Housekeeping sweeps: the ``link.expired`` event, and purging history past its retention.

Retentions come from Settings (days): finished webhook deliveries and their events, sent emails
(``event_retention_days``), read notifications (``notification_retention_days``). Expired
idempotency records are purged by ``idempotency.purge``; offboarded workspaces and agencies by
``offboarding.purge_offboarded``. Each purge deletes in bounded batches so a big backlog never
holds one long transaction; the caller commits.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, delete, exists, select, update
from sqlalchemy.orm import Session

from portal.models import ConnectLink, Notification, OutboxEmail, WebhookDelivery, WebhookEvent
from portal.services import representation, webhooks

# Links that expired longer ago than this never get the event (e.g. links older than the feature):
# it keeps the sweep one short range scan of the expires_at index.
EXPIRED_EVENT_WINDOW = timedelta(days=7)
BATCH = 1000


def emit_link_expired(db: Session, now: datetime, limit: int = BATCH) -> int:
    """``link.expired`` once per link that reached its expiry (revoked links excluded): the link is
    stamped with a conditional update first, so two overlapping sweeps emit it once."""
    rows = db.scalars(select(ConnectLink).where(
        ConnectLink.expires_at <= now, ConnectLink.expires_at > now - EXPIRED_EVENT_WINDOW,
        ConnectLink.expired_event_at.is_(None), ConnectLink.revoked_at.is_(None))
        .order_by(ConnectLink.expires_at).limit(limit)).all()
    emitted = 0
    for link in rows:
        claimed = db.execute(update(ConnectLink).where(ConnectLink.id == link.id,
                                                       ConnectLink.expired_event_at.is_(None))
                             .values(expired_event_at=now).execution_options(synchronize_session=False))
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            continue
        webhooks.record(db, link.agency_id, "link.expired", {"link": representation.link_summary(link, now)}, now)
        emitted += 1
    return emitted


def _ids_then_delete(db: Session, model: type, query: object) -> int:
    ids = db.scalars(query).all()  # type: ignore[call-overload]
    if ids:
        db.execute(delete(model).where(model.id.in_(ids)).execution_options(  # type: ignore[attr-defined]
            synchronize_session=False))
    return len(ids)


def purge_webhook_history(db: Session, now: datetime, retention: timedelta, limit: int = BATCH) -> int:
    """Finished deliveries (delivered or given up) older than the retention, then the events left with
    no delivery still pending. Returns how many rows went."""
    cutoff = now - retention
    deliveries = _ids_then_delete(db, WebhookDelivery, select(WebhookDelivery.id).where(
        WebhookDelivery.status.in_(("delivered", "failed")), WebhookDelivery.created_at <= cutoff).limit(limit))
    pending = exists().where(and_(WebhookDelivery.event_id == WebhookEvent.id,
                                  WebhookDelivery.status == "pending"))
    events = _ids_then_delete(db, WebhookEvent, select(WebhookEvent.id).where(
        WebhookEvent.created_at <= cutoff, ~pending).limit(limit))
    return deliveries + events


def purge_sent_emails(db: Session, now: datetime, retention: timedelta, limit: int = BATCH) -> int:
    return _ids_then_delete(db, OutboxEmail, select(OutboxEmail.id).where(
        OutboxEmail.sent_at.is_not(None), OutboxEmail.sent_at <= now - retention).limit(limit))


def purge_read_notifications(db: Session, now: datetime, retention: timedelta, limit: int = BATCH) -> int:
    return _ids_then_delete(db, Notification, select(Notification.id).where(
        Notification.read_at.is_not(None), Notification.read_at <= now - retention).limit(limit))

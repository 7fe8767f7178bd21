"""Signed webhooks delivered from a database outbox (Standard Webhooks).

``record`` writes the event and one delivery row per subscribed endpoint in the transaction of the
change it reports, with no network: a rolled-back change leaves no event, and a committed one is
found by the next sweep whatever happened to Redis. ``deliver_due`` claims due rows, commits, POSTs
through the SSRF-guarded client, then records the outcome; failures are retried with backoff and an
endpoint failing for three days is switched off (the agency is told once). Payloads never carry a
token or a secret: connections appear as the REST API's summary, links without their URL.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, inspect, select, update
from sqlalchemy.orm import Session

from portal.db import utcnow
from portal.errors import NotFound, ValidationFailed
from portal.models import Connection, ConnectLink, WebhookDelivery, WebhookEndpoint, WebhookEvent, new_id
from portal.security.crypto import DecryptionError, column_context
from portal.security.signing import new_webhook_secret, sign_webhook
from portal.security.urls import FetchFailed, SafeHTTPClient, UnsafeURL, normalize_public_url
from portal.services import Deps, audit, representation
from portal.services.audit import Actor

log = logging.getLogger(__name__)

VERSION = 1
EVENT_TYPES = ("connection.created", "connection.reconnected", "connection.health_changed",
               "connection.expiring", "connection.recovered", "connection.deleted",
               "link.opened", "link.completed", "link.expired")
TEST_EVENT = "webhook.test"
# Waits after each failed attempt: 7 attempts over about a day (the first one is immediate).
RETRY_DELAYS = (60, 300, 1800, 7200, 28800, 50400)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
DISABLE_AFTER = timedelta(days=3)
ROTATION_OVERLAP = timedelta(hours=24)
DELIVERY_TIMEOUT = 10.0  # total seconds per attempt
CLAIM_SECONDS = 120  # a claimed delivery whose sweeper died is retried after this
MAX_ENDPOINTS = 20
MAX_RESPONSE_BYTES = 64_000


# Recording -------------------------------------------------------------------------------------------

def record(db: Session, agency_id: str, type: str, data: dict[str, Any],  # noqa: A002 - the event's type
           now: datetime | None = None) -> WebhookEvent | None:
    """Add an event and its deliveries to the current transaction (no network). None when no enabled
    endpoint of the agency wants this type."""
    endpoints = [e for e in db.scalars(select(WebhookEndpoint).where(
        WebhookEndpoint.agency_id == agency_id, WebhookEndpoint.enabled.is_(True)))
        if not e.event_types or type in e.event_types]
    return _add_event(db, agency_id, type, data, endpoints, now or utcnow()) if endpoints else None


def _add_event(db: Session, agency_id: str, type: str, data: dict[str, Any],  # noqa: A002
               endpoints: Iterable[WebhookEndpoint], now: datetime) -> WebhookEvent:
    event_id = "evt_" + secrets.token_hex(12)
    payload = {"id": event_id, "type": type, "version": VERSION, "created_at": representation.iso(now),
               "agency_id": agency_id, "data": data}
    event = WebhookEvent(id=event_id, agency_id=agency_id, type=type, payload=payload, created_at=now)
    db.add(event)
    db.flush()
    for endpoint in endpoints:
        db.add(WebhookDelivery(event_id=event_id, endpoint_id=endpoint.id, attempts=0, status="pending",
                               next_attempt_at=now, created_at=now))
    db.flush()
    return event


def connection_changed(db: Session, deps: Deps, connection: Connection, type: str,  # noqa: A002
                       **extra: Any) -> WebhookEvent | None:
    """connection.created / reconnected / deleted / recovered / expiring with the API's summary."""
    now = deps.now()
    return record(db, connection.agency_id, type,
                  {"connection": representation.connection_summary(connection, now), **extra}, now)


def health_changed(db: Session, deps: Deps, connection: Connection, previous: str | None,
                   reason_code: str) -> WebhookEvent | None:
    """connection.health_changed, only when the health really changed. ``previous`` None: the value the
    row had before this (unflushed) change."""
    if previous is None:
        history = inspect(connection).attrs.health.history
        previous = history.deleted[0] if history.deleted else connection.health
    if str(previous) == str(connection.health):
        return None
    return connection_changed(db, deps, connection, "connection.health_changed", previous_health=str(previous),
                              health=str(connection.health), reason=connection.health_reason,
                              reason_code=reason_code)


def notice_told(db: Session, deps: Deps, connection: Connection, kind: str) -> WebhookEvent | None:
    """A notification was told for the first time: recovered and expiring notices become events
    (health errors are reported as health_changed where they happen)."""
    if kind == "recovered":
        return connection_changed(db, deps, connection, "connection.recovered", previous_health="error")
    if kind.startswith("expiring_"):
        return connection_changed(db, deps, connection, "connection.expiring",
                                  days_left=int(kind.removeprefix("expiring_")))
    return None


def link_opened(db: Session, link: ConnectLink) -> WebhookEvent | None:
    now = utcnow()
    return record(db, link.agency_id, "link.opened", {"link": representation.link_summary(link, now)}, now)


def link_completed(db: Session, deps: Deps, link: ConnectLink, stored: list[Connection]) -> WebhookEvent | None:
    now = deps.now()
    return record(db, link.agency_id, "link.completed", {
        "link": representation.link_summary(link, now),
        "connections": [representation.connection_summary(c, now) for c in stored]}, now)


# Endpoints -------------------------------------------------------------------------------------------

def _secret_context(endpoint_id: str, which: str = "secret") -> str:
    return column_context("webhook_endpoints", endpoint_id, which)


def check_url(deps: Deps, url: str) -> str:
    """The URL in canonical form, or ValidationFailed saying why the SSRF policy refuses it."""
    try:
        return normalize_public_url(url.strip(), deps.oauth.url_policy)
    except UnsafeURL as exc:
        raise ValidationFailed(f"This address cannot receive webhooks: {exc}.") from None


def _clean_types(types: Iterable[str]) -> list[str]:
    chosen = sorted(set(types))
    unknown = set(chosen) - set(EVENT_TYPES)
    if unknown:
        raise ValidationFailed("Unknown event type.")
    return chosen


def create_endpoint(db: Session, deps: Deps, agency_id: str, url: str, actor: Actor, description: str = "",
                    event_types: Iterable[str] = ()) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its signing secret (returned once; only its encryption is stored)."""
    clean = check_url(deps, url)
    if len(list_endpoints(db, agency_id)) >= MAX_ENDPOINTS:
        raise ValidationFailed(f"At most {MAX_ENDPOINTS} webhook endpoints per agency.")
    if len(description) > 200:
        raise ValidationFailed("The description is too long (200 characters at most).")
    secret = new_webhook_secret()
    endpoint = WebhookEndpoint(id=new_id(), agency_id=agency_id, url=clean, description=description.strip(),
                               event_types=_clean_types(event_types), enabled=True, created_at=deps.now())
    endpoint.secret_enc = deps.cipher.encrypt(secret, _secret_context(endpoint.id))
    db.add(endpoint)
    db.flush()
    audit.record(db, agency_id, actor, "webhook.created", "webhook_endpoint", endpoint.id,
                 host=urlsplit(clean).hostname)
    return endpoint, secret


def list_endpoints(db: Session, agency_id: str) -> list[WebhookEndpoint]:
    return list(db.scalars(select(WebhookEndpoint).where(WebhookEndpoint.agency_id == agency_id)
                           .order_by(WebhookEndpoint.created_at)))


def get_endpoint(db: Session, agency_id: str, endpoint_id: str) -> WebhookEndpoint:
    endpoint = db.scalar(select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id,
                                                       WebhookEndpoint.agency_id == agency_id))
    if endpoint is None:
        raise NotFound("No such webhook endpoint.")
    return endpoint


def rotate_secret(db: Session, deps: Deps, agency_id: str, endpoint_id: str, actor: Actor) -> str:
    """A new secret (returned once); the old one keeps signing alongside it for 24 hours."""
    endpoint = get_endpoint(db, agency_id, endpoint_id)
    old = deps.cipher.decrypt(endpoint.secret_enc, _secret_context(endpoint.id))
    secret = new_webhook_secret()
    endpoint.previous_secret_enc = deps.cipher.encrypt(old, _secret_context(endpoint.id, "previous_secret"))
    endpoint.previous_secret_until = deps.now() + ROTATION_OVERLAP
    endpoint.secret_enc = deps.cipher.encrypt(secret, _secret_context(endpoint.id))
    audit.record(db, agency_id, actor, "webhook.rotated", "webhook_endpoint", endpoint.id)
    return secret


def set_enabled(db: Session, agency_id: str, endpoint_id: str, enabled: bool, actor: Actor) -> WebhookEndpoint:
    endpoint = get_endpoint(db, agency_id, endpoint_id)
    if endpoint.enabled != enabled:
        endpoint.enabled = enabled
        endpoint.disabled_reason = None if enabled else "Disabled by a member."
        endpoint.failing_since = None
        audit.record(db, agency_id, actor, "webhook.enabled" if enabled else "webhook.disabled",
                     "webhook_endpoint", endpoint.id)
    return endpoint


def delete_endpoint(db: Session, agency_id: str, endpoint_id: str, actor: Actor) -> None:
    endpoint = get_endpoint(db, agency_id, endpoint_id)
    db.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id))
    db.delete(endpoint)
    audit.record(db, agency_id, actor, "webhook.deleted", "webhook_endpoint", endpoint_id)


def send_test(db: Session, deps: Deps, agency_id: str, endpoint_id: str, actor: Actor) -> WebhookEvent:
    """A ``webhook.test`` event for one endpoint, delivered by the next sweep like any other."""
    endpoint = get_endpoint(db, agency_id, endpoint_id)
    audit.record(db, agency_id, actor, "webhook.tested", "webhook_endpoint", endpoint.id)
    return _add_event(db, agency_id, TEST_EVENT, {"endpoint_id": endpoint.id,
                                                  "message": "A test event from EasyConnect."},
                      [endpoint], deps.now())


@dataclass(frozen=True)
class DeliveryRow:
    """One line of the delivery log (plain values for the template)."""

    id: str
    event_id: str
    event_type: str
    endpoint_id: str
    endpoint_url: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime


def recent_deliveries(db: Session, agency_id: str, limit: int = 50) -> list[DeliveryRow]:
    rows = db.execute(select(WebhookDelivery, WebhookEvent.type, WebhookEndpoint.url)
                      .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
                      .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
                      .where(WebhookEndpoint.agency_id == agency_id)
                      .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id).limit(limit))
    return [DeliveryRow(d.id, d.event_id, kind, d.endpoint_id, url, d.status, d.attempts, d.last_status_code,
                        d.last_error, d.next_attempt_at, d.created_at) for d, kind, url in rows]


def replay(db: Session, deps: Deps, agency_id: str, delivery_id: str, actor: Actor) -> WebhookDelivery:
    """Send a delivery again (same event id and body, so receivers can de-duplicate)."""
    delivery = db.scalar(select(WebhookDelivery).join(WebhookEndpoint, WebhookEndpoint.id ==
                                                      WebhookDelivery.endpoint_id)
                         .where(WebhookDelivery.id == delivery_id, WebhookEndpoint.agency_id == agency_id))
    if delivery is None:
        raise NotFound("No such delivery.")
    delivery.status, delivery.attempts, delivery.next_attempt_at = "pending", 0, deps.now()
    delivery.last_error = None
    audit.record(db, agency_id, actor, "webhook.replayed", "webhook_delivery", delivery.id)
    return delivery


# Delivering ------------------------------------------------------------------------------------------

def signature_header(deps: Deps, endpoint: WebhookEndpoint, message_id: str, timestamp: int, body: bytes,
                     now: datetime) -> str:
    """``v1,<sig>`` with the current secret, and the previous one too while the rotation overlaps."""
    keys = [deps.cipher.decrypt(endpoint.secret_enc, _secret_context(endpoint.id))]
    if endpoint.previous_secret_enc and endpoint.previous_secret_until and now < endpoint.previous_secret_until:
        keys.append(deps.cipher.decrypt(endpoint.previous_secret_enc,
                                        _secret_context(endpoint.id, "previous_secret")))
    return " ".join(sign_webhook(key, message_id, timestamp, body) for key in keys)


def due_ids(db: Session, now: datetime, limit: int) -> list[str]:
    return list(db.scalars(select(WebhookDelivery.id)
                           .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
                           .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now,
                                  WebhookEndpoint.enabled.is_(True))
                           .order_by(WebhookDelivery.next_attempt_at).limit(limit)))


def deliver_due(db: Session, deps: Deps, now: datetime, limit: int = 100,
                timeout: float = DELIVERY_TIMEOUT) -> int:
    """Attempt up to ``limit`` due deliveries; returns how many succeeded. Commits around each HTTP
    call (claim, call, record) so no transaction is held while a receiver answers."""
    ids = due_ids(db, now, limit)
    db.rollback()
    client = SafeHTTPClient(replace(deps.oauth.url_policy, timeout=timeout, max_bytes=MAX_RESPONSE_BYTES,
                                    max_redirects=0))
    return sum(1 for delivery_id in ids if deliver_one(db, deps, client, delivery_id, now))


def deliver_one(db: Session, deps: Deps, client: SafeHTTPClient, delivery_id: str, now: datetime) -> bool:
    if not _claim(db, delivery_id, now):
        return False
    delivery = db.get(WebhookDelivery, delivery_id, populate_existing=True)
    assert delivery is not None
    endpoint = db.get(WebhookEndpoint, delivery.endpoint_id, populate_existing=True)
    event = db.get(WebhookEvent, delivery.event_id)
    assert endpoint is not None and event is not None
    endpoint_id = endpoint.id
    try:
        url, body, headers = _signed_request(deps, endpoint, event, now)
    except (UnsafeURL, DecryptionError) as exc:
        db.commit()
        return _finish(db, deps, delivery_id, endpoint_id, now, None, _reason(exc))
    db.commit()  # the claim stands; nothing is held open while the receiver answers
    try:
        response = client.post(url, data=body, headers=headers)
    except UnsafeURL as exc:
        return _finish(db, deps, delivery_id, endpoint_id, now, None, _reason(exc))
    except FetchFailed as exc:
        return _finish(db, deps, delivery_id, endpoint_id, now, exc.status, exc.reason)
    ok = 200 <= response.status < 300
    return _finish(db, deps, delivery_id, endpoint_id, now, response.status,
                   None if ok else f"the server answered with status {response.status}")


def _reason(exc: Exception) -> str:
    if isinstance(exc, DecryptionError):
        return "the signing secret could not be read; rotate it"
    return f"address refused: {exc}"


def _claim(db: Session, delivery_id: str, now: datetime) -> bool:
    """Atomically take a due delivery for CLAIM_SECONDS, so overlapping sweeps never send it twice."""
    claimed = db.execute(update(WebhookDelivery).where(
        WebhookDelivery.id == delivery_id, WebhookDelivery.status == "pending",
        WebhookDelivery.next_attempt_at <= now).values(next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS))
        .execution_options(synchronize_session=False))
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        db.rollback()
        return False
    return True


def _signed_request(deps: Deps, endpoint: WebhookEndpoint, event: WebhookEvent,
                    now: datetime) -> tuple[str, bytes, dict[str, str]]:
    url = normalize_public_url(endpoint.url, deps.oauth.url_policy)  # checked again: the policy may be stricter now
    body = json.dumps(event.payload, separators=(",", ":"), ensure_ascii=False).encode()
    timestamp = int(now.timestamp())
    headers = {"Content-Type": "application/json", "User-Agent": "EasyConnect-Webhooks/1",
               "webhook-id": event.id, "webhook-timestamp": str(timestamp),
               "webhook-signature": signature_header(deps, endpoint, event.id, timestamp, body, now)}
    return url, body, headers


def retry_delay(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failure, with ±10 % jitter so failed receivers are not hit in step."""
    base = RETRY_DELAYS[min(attempts, len(RETRY_DELAYS)) - 1]
    return timedelta(seconds=base * (0.9 + secrets.randbelow(201) / 1000))


def _finish(db: Session, deps: Deps, delivery_id: str, endpoint_id: str, now: datetime, status: int | None,
            error: str | None) -> bool:
    """Record one attempt's outcome and commit."""
    delivery = db.get(WebhookDelivery, delivery_id, populate_existing=True)
    endpoint = db.get(WebhookEndpoint, endpoint_id, populate_existing=True)
    if delivery is None or endpoint is None:  # deleted meanwhile
        db.rollback()
        return False
    delivery.attempts += 1
    delivery.last_attempt_at, delivery.last_status_code = now, status
    if error is None:
        delivery.status, delivery.delivered_at, delivery.next_attempt_at, delivery.last_error = (
            "delivered", now, None, None)
        endpoint.failing_since = None
    else:
        delivery.last_error = error[:255]
        if delivery.attempts >= MAX_ATTEMPTS:
            delivery.status, delivery.next_attempt_at = "failed", None
        else:
            delivery.next_attempt_at = now + retry_delay(delivery.attempts)
        _note_failure(db, deps, endpoint, now)
        log.info("webhook delivery %s to endpoint %s failed (attempt %s): %s", delivery.id, endpoint.id,
                 delivery.attempts, delivery.last_error)
    db.commit()
    return error is None


def _note_failure(db: Session, deps: Deps, endpoint: WebhookEndpoint, now: datetime) -> None:
    if endpoint.failing_since is None:
        endpoint.failing_since = now
    elif endpoint.enabled and now - endpoint.failing_since >= DISABLE_AFTER:
        disable_failing(db, deps, endpoint, now)


def disable_failing(db: Session, deps: Deps, endpoint: WebhookEndpoint, now: datetime) -> None:
    """Switch off an endpoint failing for DISABLE_AFTER, give up its pending deliveries, tell the agency once."""
    from portal.services import notifications

    endpoint.enabled = False
    endpoint.disabled_reason = "Every delivery failed for 3 days; switched off automatically."
    db.execute(update(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id,
                                             WebhookDelivery.status == "pending")
               .values(status="failed", next_attempt_at=None, last_error="endpoint disabled after 3 days of failures")
               .execution_options(synchronize_session=False))
    audit.record(db, endpoint.agency_id, audit.WORKER, "webhook.disabled", "webhook_endpoint", endpoint.id,
                 reason="failing")
    notifications.webhook_disabled(db, endpoint.agency_id, endpoint.id, urlsplit(endpoint.url).hostname or "",
                                   endpoint.failing_since or now)

"""Housekeeping sweeps: link.expired once per link, and purges of history past its retention."""

from __future__ import annotations

import importlib
from dataclasses import replace
from datetime import timedelta

from sqlalchemy import func, select, update

from portal.models import (
    ConnectLink,
    IdempotencyRecord,
    Notification,
    OutboxEmail,
    WebhookDelivery,
    WebhookEvent,
)
from portal.services import purge, webhooks
from portal.services.audit import SYSTEM
from tests.helpers import fresh, make_link, make_member, make_workspace
from workers import jobs


def _agency_with_endpoint(db, runtime, name="Acme Agency"):
    member = make_member(db, name)
    workspace = make_workspace(db, member.agency_id)
    endpoint, _ = webhooks.create_endpoint(db, runtime.deps, member.agency_id, "http://127.0.0.1:9/hook", SYSTEM)
    db.commit()
    return member, workspace, endpoint


def _expire(db, link_id, ago):
    db.execute(update(ConnectLink).where(ConnectLink.id == link_id).values(expires_at=ago))
    db.commit()


def test_link_expired_is_emitted_once_per_link(db, runtime):
    member, workspace, endpoint = _agency_with_endpoint(db, runtime)
    now = runtime.deps.now()
    expired, _ = make_link(db, runtime.deps, workspace, label="expired")
    long_ago, _ = make_link(db, runtime.deps, workspace, label="long ago")
    revoked, _ = make_link(db, runtime.deps, workspace, label="revoked")
    active, _ = make_link(db, runtime.deps, workspace, label="active")
    _expire(db, expired.id, now - timedelta(minutes=1))
    _expire(db, long_ago.id, now - timedelta(days=30))
    _expire(db, revoked.id, now - timedelta(minutes=1))
    db.execute(update(ConnectLink).where(ConnectLink.id == revoked.id).values(revoked_at=now - timedelta(hours=1)))
    db.commit()
    silent_member = make_member(db, "No Hooks")  # an agency without endpoints: stamped, no event
    silent_link, _ = make_link(db, runtime.deps, make_workspace(db, silent_member.agency_id))
    _expire(db, silent_link.id, now - timedelta(minutes=5))

    assert jobs.emit_link_expired(runtime=runtime) == 2
    assert jobs.emit_link_expired(runtime=runtime) == 0  # once: the next sweep finds nothing
    fresh(db)
    events = db.scalars(select(WebhookEvent).where(WebhookEvent.type == "link.expired")).all()
    assert [e.payload["data"]["link"]["id"] for e in events] == [expired.id]
    payload = events[0].payload
    assert payload["agency_id"] == member.agency_id and payload["data"]["link"]["state"] == "expired"
    assert "url" not in payload["data"]["link"] and expired.token_id not in str(payload)
    assert db.scalar(select(WebhookDelivery.endpoint_id).where(WebhookDelivery.event_id == events[0].id)) == endpoint.id
    stamped = {link.id: link.expired_event_at for link in db.scalars(select(ConnectLink))}
    assert stamped[expired.id] is not None and stamped[silent_link.id] is not None
    assert stamped[long_ago.id] is None and stamped[revoked.id] is None and stamped[active.id] is None
    assert "link.expired" in webhooks.EVENT_TYPES


def test_two_overlapping_sweeps_emit_link_expired_once(db, runtime):
    _, workspace, _ = _agency_with_endpoint(db, runtime)
    link, _ = make_link(db, runtime.deps, workspace)
    _expire(db, link.id, runtime.deps.now() - timedelta(minutes=1))
    first, second = runtime.session_factory(), runtime.session_factory()
    try:
        # the second sweep read the link before the first one stamped it
        seen = second.scalars(select(ConnectLink).where(ConnectLink.id == link.id)).all()
        assert len(seen) == 1
        second.rollback()
        assert purge.emit_link_expired(first, runtime.deps.now()) == 1
        first.commit()
        assert purge.emit_link_expired(second, runtime.deps.now()) == 0
        second.commit()
    finally:
        first.close()
        second.close()
    assert fresh(db).scalar(select(func.count()).select_from(WebhookEvent).where(
        WebhookEvent.type == "link.expired")) == 1


def test_history_is_purged_after_its_retention_and_nothing_younger_or_pending(db, runtime):
    member, _, endpoint = _agency_with_endpoint(db, runtime)
    agency = member.agency_id
    now = runtime.deps.now()
    old, recent = now - timedelta(days=31), now - timedelta(days=1)
    rows = {}
    for name, created, status in (("old_done", old, "delivered"), ("old_failed", old, "failed"),
                                  ("old_pending", old, "pending"), ("new_done", recent, "delivered")):
        event = webhooks.record(db, agency, "link.opened", {"name": name}, created)
        db.execute(update(WebhookDelivery).where(WebhookDelivery.event_id == event.id).values(status=status))
        rows[name] = event.id
    db.add_all([
        OutboxEmail(agency_id=agency, to_address="a@x.example", subject="old sent", body_text="", created_at=old,
                    sent_at=old),
        OutboxEmail(agency_id=agency, to_address="a@x.example", subject="old unsent", body_text="", created_at=old),
        OutboxEmail(agency_id=agency, to_address="a@x.example", subject="new sent", body_text="", created_at=recent,
                    sent_at=recent),
        Notification(agency_id=agency, kind="k", dedupe_key="read-old", title="read old", body="", created_at=old,
                     read_at=now - timedelta(days=91)),
        Notification(agency_id=agency, kind="k", dedupe_key="unread-old", title="unread old", body="",
                     created_at=old - timedelta(days=100)),
        Notification(agency_id=agency, kind="k", dedupe_key="read-new", title="read new", body="", created_at=old,
                     read_at=recent),
        IdempotencyRecord(agency_id=agency, key="old", request_hash="h", status=201, object_type="link",
                          object_id="x", created_at=now - timedelta(hours=25)),
        IdempotencyRecord(agency_id=agency, key="new", request_hash="h", status=201, object_type="link",
                          object_id="x", created_at=now - timedelta(hours=1)),
    ])
    db.commit()

    purged = jobs.purge_history(runtime=runtime)
    assert purged == 2 + 2 + 1 + 1  # deliveries, their events, one sent email, one read notification
    assert jobs.purge_idempotency_records(runtime=runtime) == 1
    fresh(db)
    events = set(db.scalars(select(WebhookEvent.id)))
    assert events == {rows["old_pending"], rows["new_done"]}
    assert set(db.scalars(select(WebhookDelivery.status))) == {"pending", "delivered"}
    assert set(db.scalars(select(OutboxEmail.subject))) == {"old unsent", "new sent"}
    assert set(db.scalars(select(Notification.title))) == {"unread old", "read new"}
    assert set(db.scalars(select(IdempotencyRecord.key))) == {"new"}
    assert endpoint.id
    assert jobs.purge_history(runtime=runtime) == 0


def test_retentions_are_configurable(db, runtime):
    member, _, _ = _agency_with_endpoint(db, runtime)
    now = runtime.deps.now()
    event = webhooks.record(db, member.agency_id, "link.opened", {}, now - timedelta(days=3))
    db.execute(update(WebhookDelivery).where(WebhookDelivery.event_id == event.id).values(status="delivered"))
    db.commit()
    assert jobs.purge_history(runtime=runtime) == 0  # 30 days by default
    short = replace(runtime, settings=replace(runtime.settings, event_retention_days=2))
    assert jobs.purge_history(runtime=short) == 2


def test_the_sweeps_are_registered_with_the_cron(monkeypatch):
    from rq import cron

    registered = []
    monkeypatch.setattr(cron, "register", lambda func, *args, **kwargs: registered.append(func.__name__))
    import workers.cron

    importlib.reload(workers.cron)
    assert {"emit_link_expired", "purge_history", "purge_offboarded", "purge_idempotency_records"} <= set(registered)

"""Outbox recording, signed delivery, retries, auto-disable, replay and the SSRF policy."""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import timedelta

import pytest
from redis import Redis
from sqlalchemy import select
from standardwebhooks import Webhook

from portal.errors import ValidationFailed
from portal.models import AuditEvent, Notification, WebhookDelivery, WebhookEvent
from portal.oauth import OAuthClient
from portal.security.urls import GuardPolicy
from portal.services import connections, webhooks
from portal.services.audit import SYSTEM
from tests.helpers import connect, connections_in, fresh, make_member, make_workspace, setup_link
from workers import jobs


def _endpoint(db, runtime, agency_id, url, **kwargs):
    endpoint, secret = webhooks.create_endpoint(db, runtime.deps, agency_id, url, SYSTEM, **kwargs)
    db.commit()
    return endpoint, secret


def _connected(client, db, runtime, receiver, **kwargs):
    member, workspace, link, path = setup_link(db, runtime.deps)
    endpoint, secret = _endpoint(db, runtime, member.agency_id, receiver.url, **kwargs)
    connect(client, path)
    [connection] = connections_in(db, workspace.id)
    return member, endpoint, secret, connection


def _events(db, agency_id=None):
    query = select(WebhookEvent).order_by(WebhookEvent.created_at)
    if agency_id:
        query = query.where(WebhookEvent.agency_id == agency_id)
    return list(fresh(db).scalars(query))


def _deliver(db, runtime, now=None, **kwargs):
    count = webhooks.deliver_due(fresh(db), runtime.deps, now or runtime.deps.now(), **kwargs)
    fresh(db)
    return count


def test_events_are_written_in_the_transaction_of_the_change(client, db, runtime, receiver):
    member, endpoint, _, connection = _connected(client, db, runtime, receiver)
    types = [e.type for e in _events(db)]
    assert "connection.created" in types and "link.opened" in types and "link.completed" in types
    assert all(d.status == "pending" for d in db.scalars(select(WebhookDelivery)))
    assert receiver.received == []  # recording never touches the network

    connections.disconnect(db, runtime.deps, member.agency_id, connection.id, SYSTEM)
    db.rollback()  # the change is rolled back: so is its event
    assert "connection.deleted" not in [e.type for e in _events(db)]
    connections.disconnect(db, runtime.deps, member.agency_id, connection.id, SYSTEM)
    db.commit()
    [deleted] = [e for e in _events(db) if e.type == "connection.deleted"]
    assert deleted.payload["data"]["connection"]["id"] == connection.id


def test_delivery_is_signed_per_standard_webhooks(client, db, runtime, receiver):
    member, endpoint, secret, connection = _connected(client, db, runtime, receiver)
    assert secret.startswith("whsec_")
    assert _deliver(db, runtime) == len(receiver.received) >= 3
    verifier = Webhook(secret)
    for hit in receiver.received:
        payload = verifier.verify(hit.body, hit.headers)
        assert set(payload) == {"id", "type", "version", "created_at", "agency_id", "data"}
        assert payload["version"] == 1 and payload["agency_id"] == member.agency_id
        assert hit.headers["webhook-id"] == payload["id"] and payload["id"].startswith("evt_")
    created = next(json.loads(h.body) for h in receiver.received if b'"connection.created"' in h.body)
    summary = created["data"]["connection"]
    assert summary["id"] == connection.id and summary["object"] == "connection" and summary["health"] == "healthy"
    assert all(d.status == "delivered" and d.attempts == 1 for d in db.scalars(select(WebhookDelivery)))
    with pytest.raises(Exception):  # noqa: B017 - any verification error
        Webhook("whsec_" + "A" * 43 + "=").verify(receiver.received[0].body, receiver.received[0].headers)


def test_rotation_signs_with_both_secrets_for_a_day_then_only_the_new_one(db, runtime, receiver):
    member = make_member(db)
    endpoint, old = _endpoint(db, runtime, member.agency_id, receiver.url)
    new = webhooks.rotate_secret(db, runtime.deps, member.agency_id, endpoint.id, SYSTEM)
    webhooks.send_test(db, runtime.deps, member.agency_id, endpoint.id, SYSTEM)
    db.commit()
    _deliver(db, runtime)
    [hit] = receiver.received
    Webhook(old).verify(hit.body, hit.headers)
    Webhook(new).verify(hit.body, hit.headers)
    assert len(hit.headers["webhook-signature"].split(" ")) == 2

    webhooks.send_test(db, runtime.deps, member.agency_id, endpoint.id, SYSTEM)
    db.commit()
    later = runtime.deps.now() + timedelta(hours=25)
    _deliver(db, runtime, later)
    hit = receiver.received[-1]
    sent = hit.headers["webhook-signature"].split(" ")
    stamp = later.replace(microsecond=0)
    assert sent == [Webhook(new).sign(hit.headers["webhook-id"], stamp, hit.body.decode())]
    assert Webhook(old).sign(hit.headers["webhook-id"], stamp, hit.body.decode()) not in sent


def test_failures_are_retried_with_backoff_then_given_up(db, runtime, receiver):
    receiver.status = 500
    member = make_member(db)
    endpoint, _ = _endpoint(db, runtime, member.agency_id, receiver.url)
    webhooks.send_test(db, runtime.deps, member.agency_id, endpoint.id, SYSTEM)
    db.commit()
    now, waits = runtime.deps.now(), []
    for _ in range(10):
        _deliver(db, runtime, now)
        delivery = db.scalar(select(WebhookDelivery))
        if delivery.next_attempt_at is None:
            break
        waits.append((delivery.next_attempt_at - now).total_seconds())
        now = delivery.next_attempt_at
    assert delivery.status == "failed" and delivery.attempts == webhooks.MAX_ATTEMPTS >= 6
    assert len(receiver.received) == webhooks.MAX_ATTEMPTS
    assert delivery.last_status_code == 500 and "500" in delivery.last_error
    for wait, base in zip(waits, webhooks.RETRY_DELAYS, strict=True):
        assert base * 0.89 <= wait <= base * 1.11
    assert 20 * 3600 <= sum(waits) <= 30 * 3600  # spread over about a day
    assert db.get(type(endpoint), endpoint.id).enabled  # one day of failures is not three


def test_a_slow_receiver_is_a_timeout_and_retried(db, runtime, receiver):
    receiver.delay = 2.0
    member = make_member(db)
    endpoint, _ = _endpoint(db, runtime, member.agency_id, receiver.url)
    webhooks.send_test(db, runtime.deps, member.agency_id, endpoint.id, SYSTEM)
    db.commit()
    assert _deliver(db, runtime, timeout=0.5) == 0
    delivery = db.scalar(select(WebhookDelivery))
    assert delivery.status == "pending" and delivery.attempts == 1 and "too long" in delivery.last_error
    assert delivery.next_attempt_at > runtime.deps.now() + timedelta(seconds=50)


def test_an_endpoint_failing_for_three_days_is_disabled_and_told_once(db, runtime, receiver):
    receiver.status = 503
    member = make_member(db)
    endpoint, _ = _endpoint(db, runtime, member.agency_id, receiver.url)
    start = runtime.deps.now()
    for day in (0, 1, 2, 3):
        webhooks.send_test(db, runtime.deps, member.agency_id, endpoint.id, SYSTEM)
        db.commit()
        _deliver(db, runtime, start + timedelta(days=day, minutes=1))
    sent = len(receiver.received)
    webhooks.record(db, member.agency_id, "connection.created", {})  # a disabled endpoint gets nothing new
    db.commit()
    _deliver(db, runtime, start + timedelta(days=4))
    row = db.get(type(endpoint), endpoint.id)
    assert not row.enabled and "3 days" in row.disabled_reason
    [notice] = db.scalars(select(Notification)).all()
    assert notice.kind == "webhook_disabled" and "127.0.0.1" in notice.title
    assert all(d.status == "failed" for d in db.scalars(select(WebhookDelivery)))
    assert len(receiver.received) == sent  # nothing is sent to a disabled endpoint


def test_replay_sends_the_same_event_again(db, runtime, receiver):
    member = make_member(db)
    endpoint, secret = _endpoint(db, runtime, member.agency_id, receiver.url)
    webhooks.send_test(db, runtime.deps, member.agency_id, endpoint.id, SYSTEM)
    db.commit()
    _deliver(db, runtime)
    delivery = db.scalar(select(WebhookDelivery))
    assert delivery.status == "delivered"
    webhooks.replay(db, runtime.deps, member.agency_id, delivery.id, SYSTEM)
    db.commit()
    _deliver(db, runtime)
    first, second = receiver.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"] and first.body == second.body
    assert json.loads(Webhook(secret).verify(second.body, second.headers) and second.body)["type"] == "webhook.test"
    other = make_member(db, "Other Agency")
    with pytest.raises(Exception, match="No such delivery"):
        webhooks.replay(db, runtime.deps, other.agency_id, delivery.id, SYSTEM)


def test_agency_b_never_receives_agency_a_events(client, db, runtime, receiver, other_receiver):
    other = make_member(db, "Other Agency")
    _endpoint(db, runtime, other.agency_id, other_receiver.url)
    member, _, _, _ = _connected(client, db, runtime, receiver)
    _deliver(db, runtime)
    assert receiver.received and other_receiver.received == []
    assert all(json.loads(h.body)["agency_id"] == member.agency_id for h in receiver.received)


def test_subscriptions_filter_event_types(client, db, runtime, receiver):
    _connected(client, db, runtime, receiver, event_types=["connection.created"])
    assert [e.type for e in _events(db)] == ["connection.created"]


def test_no_token_or_secret_in_payloads_logs_or_audit(client, db, runtime, receiver, caplog):
    caplog.set_level(logging.DEBUG)
    member, endpoint, secret, connection = _connected(client, db, runtime, receiver)
    access, refresh = connections.read_tokens(runtime.deps, fresh(db).get(type(connection), connection.id))
    receiver.status = 500
    _deliver(db, runtime)
    secrets_ = [s for s in (secret, secret.removeprefix("whsec_"), access, refresh) if s]
    haystacks = [h.body.decode() + json.dumps(h.headers) for h in receiver.received]
    haystacks += [json.dumps(e.payload) for e in _events(db)]
    haystacks += [json.dumps(a.details) for a in db.scalars(select(AuditEvent))]
    haystacks += [d.last_error or "" for d in db.scalars(select(WebhookDelivery))]
    haystacks.append(caplog.text)
    for text in haystacks:
        assert not any(s in text for s in secrets_)
        assert "/c/" not in text  # a link URL is a credential too


def test_delivery_needs_only_the_database(client, db, runtime, receiver):
    _connected(client, db, runtime, receiver)
    broken = dataclasses.replace(runtime, redis=Redis.from_url("redis://127.0.0.1:1", socket_connect_timeout=1))
    try:
        assert jobs.deliver_webhooks(runtime=broken) >= 3
    finally:
        broken.redis.close()
    assert all(d.status == "delivered" for d in fresh(db).scalars(select(WebhookDelivery)))


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/hook", "http://10.0.0.5/hook", "http://169.254.169.254/",
                                 "http://[::1]/hook", "http://0x7f.1/hook", "http://100.64.0.1/",
                                 "http://user:pw@example.com/"])
def test_private_addresses_are_refused_when_the_policy_says_so(db, runtime, url):
    strict = dataclasses.replace(runtime.deps, oauth=OAuthClient(url_policy=GuardPolicy(allow_private=False,
                                                                                         require_https=False)))
    member = make_member(db)
    with pytest.raises(ValidationFailed, match="cannot receive webhooks"):
        webhooks.create_endpoint(db, strict, member.agency_id, url, SYSTEM)


def test_a_saved_private_url_is_refused_again_at_delivery(db, runtime, receiver):
    member = make_member(db)
    make_workspace(db, member.agency_id)
    endpoint, _ = _endpoint(db, runtime, member.agency_id, receiver.url)  # allowed by the test policy
    webhooks.send_test(db, runtime.deps, member.agency_id, endpoint.id, SYSTEM)
    db.commit()
    strict = dataclasses.replace(runtime.deps, oauth=OAuthClient(url_policy=GuardPolicy(allow_private=False,
                                                                                         require_https=False)))
    assert webhooks.deliver_due(fresh(db), strict, strict.now()) == 0
    delivery = fresh(db).scalar(select(WebhookDelivery))
    assert receiver.received == [] and "private" in delivery.last_error and delivery.status == "pending"

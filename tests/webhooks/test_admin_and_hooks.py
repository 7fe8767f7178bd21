"""The admin pages (secret shown once, SSRF reason, test-send, log, replay, tenancy) and the service hooks."""

from __future__ import annotations

import json

from sqlalchemy import select

from portal.errors import PlatformError
from portal.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from portal.services import tokens, webhooks
from portal.services.audit import SYSTEM
from tests.helpers import connect, connections_in, csrf_from, fresh, login, make_member, setup_link


def _admin_endpoint(client, db, receiver):
    token = csrf_from(client, "/admin/webhooks")
    page = client.post("/admin/webhooks", data={"url": receiver.url, "description": "ops", "csrf_token": token})
    assert page.status_code == 201
    endpoint = fresh(db).scalar(select(WebhookEndpoint))
    return endpoint, page.get_data(as_text=True), token


def test_admin_adds_an_endpoint_shows_the_secret_once_and_tests_it(client, db, runtime, receiver):
    member = make_member(db)
    login(client, member.email)
    assert "Webhooks" in client.get("/admin/").get_data(as_text=True)
    endpoint, html, token = _admin_endpoint(client, db, receiver)
    [secret] = {part.split('"')[0] for part in html.split('value="whsec_')[1:]}
    secret = "whsec_" + secret
    later = client.get("/admin/webhooks").get_data(as_text=True)
    assert secret not in later and receiver.url in later

    client.post(f"/admin/webhooks/{endpoint.id}/test", data={"csrf_token": token})
    webhooks.deliver_due(fresh(db), runtime.deps, runtime.deps.now())
    [hit] = receiver.received
    assert json.loads(hit.body)["type"] == "webhook.test"
    page = client.get("/admin/webhooks").get_data(as_text=True)
    assert "webhook.test" in page and "delivered" in page and secret not in page

    delivery = fresh(db).scalar(select(WebhookDelivery))
    client.post(f"/admin/webhooks/deliveries/{delivery.id}/replay", data={"csrf_token": token})
    webhooks.deliver_due(fresh(db), runtime.deps, runtime.deps.now())
    assert len(receiver.received) == 2

    rotated = client.post(f"/admin/webhooks/{endpoint.id}/rotate", data={"csrf_token": token})
    assert rotated.status_code == 200 and 'value="whsec_' in rotated.get_data(as_text=True)
    client.post(f"/admin/webhooks/{endpoint.id}/enabled", data={"enabled": "0", "csrf_token": token})
    assert not fresh(db).get(WebhookEndpoint, endpoint.id).enabled
    client.post(f"/admin/webhooks/{endpoint.id}/delete", data={"csrf_token": token})
    assert fresh(db).scalars(select(WebhookEndpoint)).all() == []


def test_admin_refuses_an_unsafe_url_with_the_reason(client, db, runtime):
    member = make_member(db)
    login(client, member.email)
    token = csrf_from(client, "/admin/webhooks")
    page = client.post("/admin/webhooks", data={"url": "http://user:pw@hooks.example/", "csrf_token": token},
                       follow_redirects=True).get_data(as_text=True)
    assert "cannot receive webhooks" in page and "user name or password" in page
    assert fresh(db).scalars(select(WebhookEndpoint)).all() == []


def test_admin_routes_are_404_across_agencies(app, client, db, runtime, receiver):
    member = make_member(db)
    login(client, member.email)
    endpoint, _, token = _admin_endpoint(client, db, receiver)
    client.post(f"/admin/webhooks/{endpoint.id}/test", data={"csrf_token": token})
    delivery = fresh(db).scalar(select(WebhookDelivery))

    other = app.test_client()
    login(other, make_member(db, "Other Agency").email)
    other_token = csrf_from(other, "/admin/webhooks")
    for path in (f"/admin/webhooks/{endpoint.id}/test", f"/admin/webhooks/{endpoint.id}/rotate",
                 f"/admin/webhooks/{endpoint.id}/enabled", f"/admin/webhooks/{endpoint.id}/delete",
                 f"/admin/webhooks/deliveries/{delivery.id}/replay"):
        assert other.post(path, data={"csrf_token": other_token}).status_code == 404, path
    assert receiver.url not in other.get("/admin/webhooks").get_data(as_text=True)
    assert fresh(db).get(WebhookEndpoint, endpoint.id).enabled


def test_health_changes_and_recovery_become_events(client, db, runtime, live_sandbox, receiver):
    member, workspace, _, path = setup_link(db, runtime.deps)
    webhooks.create_endpoint(db, runtime.deps, member.agency_id, receiver.url, SYSTEM)
    db.commit()
    connect(client, path)
    [connection] = connections_in(db, workspace.id)
    live_sandbox.fail("token", "invalid_grant")
    try:
        tokens.refresh_connection(db, runtime.deps, connection.id, force=True)
    except PlatformError:
        pass
    finally:
        live_sandbox.reset()
    connect(client, path)  # the client reconnects
    events = {e.type: e.payload for e in fresh(db).scalars(select(WebhookEvent))}
    changed = events["connection.health_changed"]["data"]
    assert changed["previous_health"] == "healthy" and changed["health"] == "error"
    assert changed["reason_code"] == PlatformError.TOKEN_INVALID and changed["reason"]
    assert changed["connection"]["id"] == connection.id
    assert "connection.reconnected" in events and "connection.recovered" in events

"""Admin pages for webhooks: endpoints (the signing secret is shown once, on the page answering the
POST), rotation, enable/disable, delete, test-send, and the delivery log with replay."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from agency_admin import bp
from portal.errors import ValidationFailed
from portal.services import webhooks
from portal.services.audit import Actor
from portal.web import client_ip, db, deps


def _agency_id() -> str:
    return str(current_user.agency_id)


def _actor() -> Actor:
    return Actor("member", current_user.member.id, client_ip())


def _page(new_secret: str | None = None, secret_for: str | None = None, status: int = 200) -> Any:
    session = db()
    return render_template("agency_admin/webhooks.html", endpoints=webhooks.list_endpoints(session, _agency_id()),
                           deliveries=webhooks.recent_deliveries(session, _agency_id()),
                           event_types=webhooks.EVENT_TYPES, new_secret=new_secret, secret_for=secret_for), status


def _back() -> Any:
    return redirect(url_for("agency_admin.webhook_list"))


@bp.get("/webhooks")
@login_required
def webhook_list() -> Any:
    return _page()


@bp.post("/webhooks")
@login_required
def create_webhook() -> Any:
    try:
        endpoint, secret = webhooks.create_endpoint(db(), deps(), _agency_id(), request.form.get("url", ""),
                                                    _actor(), request.form.get("description", ""),
                                                    request.form.getlist("event_types"))
    except ValidationFailed as exc:
        db().rollback()
        flash(exc.public_message, "error")
        return _back()
    db().commit()
    return _page(new_secret=secret, secret_for=endpoint.id, status=201)


@bp.post("/webhooks/<endpoint_id>/rotate")
@login_required
def rotate_webhook_secret(endpoint_id: str) -> Any:
    secret = webhooks.rotate_secret(db(), deps(), _agency_id(), endpoint_id, _actor())
    db().commit()
    return _page(new_secret=secret, secret_for=endpoint_id)


@bp.post("/webhooks/<endpoint_id>/enabled")
@login_required
def set_webhook_enabled(endpoint_id: str) -> Any:
    webhooks.set_enabled(db(), _agency_id(), endpoint_id, request.form.get("enabled") == "1", _actor())
    db().commit()
    return _back()


@bp.post("/webhooks/<endpoint_id>/delete")
@login_required
def delete_webhook(endpoint_id: str) -> Any:
    webhooks.delete_endpoint(db(), _agency_id(), endpoint_id, _actor())
    db().commit()
    flash("Webhook endpoint deleted.", "info")
    return _back()


@bp.post("/webhooks/<endpoint_id>/test")
@login_required
def test_webhook(endpoint_id: str) -> Any:
    webhooks.send_test(db(), deps(), _agency_id(), endpoint_id, _actor())
    db().commit()
    flash("Test event queued: it is sent within a minute and appears in the delivery log.", "info")
    return _back()


@bp.post("/webhooks/deliveries/<delivery_id>/replay")
@login_required
def replay_webhook_delivery(delivery_id: str) -> Any:
    webhooks.replay(db(), deps(), _agency_id(), delivery_id, _actor())
    db().commit()
    flash("Delivery queued again.", "info")
    return _back()

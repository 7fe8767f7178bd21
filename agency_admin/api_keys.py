"""Admin page for REST API keys: create (the key is shown once, on the page that answers the
POST, never in a flash message or the session cookie), list and revoke."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from agency_admin import bp
from portal.errors import ValidationFailed
from portal.services import api_keys
from portal.services.audit import Actor
from portal.web import client_ip, db, deps


def _agency_id() -> str:
    return str(current_user.agency_id)


def _page(new_key: str | None = None, status: int = 200) -> Any:
    rows = api_keys.list_keys(db(), _agency_id())
    return render_template("agency_admin/api_keys.html", rows=rows, new_key=new_key, scopes=api_keys.SCOPES,
                           docs_url=url_for("api.docs")), status


@bp.get("/api-keys")
@login_required
def api_key_list() -> Any:
    return _page()


@bp.post("/api-keys")
@login_required
def create_api_key() -> Any:
    actor = Actor("member", current_user.member.id, client_ip())
    try:
        _, secret = api_keys.create_key(db(), _agency_id(), request.form.get("name", ""),
                                        request.form.get("scope", ""), actor, deps().now(),
                                        creator_role=current_user.member.role)
    except ValidationFailed as exc:
        db().rollback()
        flash(exc.public_message, "error")
        return redirect(url_for("agency_admin.api_key_list"))
    db().commit()
    return _page(new_key=secret, status=201)


@bp.post("/api-keys/<key_id>/revoke")
@login_required
def revoke_api_key(key_id: str) -> Any:
    actor = Actor("member", current_user.member.id, client_ip())
    key = api_keys.revoke_key(db(), _agency_id(), key_id, actor, deps().now())
    db().commit()
    flash(f"Key {key.name} revoked. Requests made with it are refused from now on.", "info")
    return redirect(url_for("agency_admin.api_key_list"))

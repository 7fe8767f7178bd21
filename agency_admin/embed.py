"""Admin page for the connect widget: the agency's embed origins (the sites allowed to open its links
as a popup or frame them) and the snippet to paste on those sites."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from agency_admin import bp
from portal.errors import ValidationFailed
from portal.models import Agency
from portal.services import widget
from portal.services.audit import Actor
from portal.web import client_ip, db, deps


def _agency() -> Agency:
    agency = db().get(Agency, str(current_user.agency_id))
    if agency is None:
        abort(404)
    return agency


@bp.get("/embed")
@login_required
def embed_settings() -> Any:
    agency = _agency()
    settings = deps().settings
    return render_template("agency_admin/embed.html", origins=list(agency.embed_origins or []),
                           max_origins=widget.MAX_EMBED_ORIGINS, snippet=widget.snippet(settings.base_url),
                           local_http=not settings.production)


@bp.post("/embed/origins")
@login_required
def add_embed_origin() -> Any:
    actor = Actor("member", current_user.member.id, client_ip())
    try:
        origin = widget.add_embed_origin(db(), _agency(), request.form.get("origin", ""), actor,
                                         production=deps().settings.production)
    except ValidationFailed as exc:
        db().rollback()
        flash(exc.public_message, "error")
        return redirect(url_for("agency_admin.embed_settings"))
    db().commit()
    flash(f"{origin} may now embed your links.", "success")
    return redirect(url_for("agency_admin.embed_settings"))


@bp.post("/embed/origins/remove")
@login_required
def remove_embed_origin() -> Any:
    actor = Actor("member", current_user.member.id, client_ip())
    try:
        widget.remove_embed_origin(db(), _agency(), request.form.get("origin", ""), actor)
    except ValidationFailed as exc:
        db().rollback()
        flash(exc.public_message, "error")
        return redirect(url_for("agency_admin.embed_settings"))
    db().commit()
    flash("Origin removed. Pages on it can no longer embed your links.", "info")
    return redirect(url_for("agency_admin.embed_settings"))

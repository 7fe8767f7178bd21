"""Admin pages to delete a workspace (admins) or the whole agency (owners), each confirmed by typing
its name. Tokens go in the request; platform revocations run in a worker job after the commit."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, logout_user

from agency_admin import bp
from portal import queue
from portal.errors import ValidationFailed
from portal.models import Agency
from portal.services import agencies, offboarding
from portal.services.audit import Actor
from portal.web import client_ip, db, deps, runtime


def _actor() -> Actor:
    return Actor("member", current_user.member.id, client_ip())


def revoke_after_commit(result: offboarding.Offboarded) -> None:
    """Hand the sealed tokens to a worker; without Redis (demo) revoke here, after the commit."""
    if result.sealed is None:
        return
    rt = runtime()
    if not queue.enqueue_sealed(rt, "workers.jobs.revoke_offboarded", result.seal_id, result.sealed):
        offboarding.revoke_sealed(db(), rt.deps, result.seal_id, result.sealed)


@bp.route("/workspaces/<workspace_id>/delete", methods=["GET", "POST"])
@login_required
def delete_workspace(workspace_id: str) -> Any:
    workspace = agencies.get_workspace(db(), str(current_user.agency_id), workspace_id)
    retention = deps().settings.offboarding_retention_days
    if request.method == "GET":
        return render_template("agency_admin/delete_workspace.html", workspace=workspace, retention=retention)
    try:
        result = offboarding.delete_workspace(db(), deps(), str(current_user.agency_id), workspace_id,
                                              request.form.get("confirm_name", ""), _actor())
    except ValidationFailed as exc:
        db().rollback()
        flash(exc.public_message, "error")
        return render_template("agency_admin/delete_workspace.html", workspace=workspace, retention=retention), 400
    db().commit()
    revoke_after_commit(result)
    flash(f"Workspace deleted: {result.connections_deleted} connection(s) and their tokens are gone; the rest is "
          f"purged after {retention} days.", "info")
    return redirect(url_for("agency_admin.dashboard"))


@bp.route("/agency/delete", methods=["GET", "POST"])
@login_required
def delete_agency() -> Any:
    agency = db().get(Agency, str(current_user.agency_id))
    retention = deps().settings.offboarding_retention_days
    if request.method == "GET" or agency is None:
        return render_template("agency_admin/delete_agency.html", agency=agency, retention=retention)
    try:
        result = offboarding.delete_agency(db(), deps(), agency.id, request.form.get("confirm_name", ""), _actor())
    except ValidationFailed as exc:
        db().rollback()
        flash(exc.public_message, "error")
        return render_template("agency_admin/delete_agency.html", agency=agency, retention=retention), 400
    db().commit()
    revoke_after_commit(result)
    logout_user()
    session.clear()
    flash("Your agency was deleted. Its tokens are gone; everything else is purged after "
          f"{retention} days.", "info")
    return redirect(url_for("agency_admin.login"))

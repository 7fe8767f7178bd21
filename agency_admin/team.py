"""Admin pages for the team: members and invitations (owners manage, everyone reads), and the
public page where an invitee accepts (sets a password and joins)."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, logout_user

from agency_admin import bp
from agency_admin.auth import start_session
from portal.errors import PortalError, ValidationFailed
from portal.services import team
from portal.services.audit import Actor
from portal.web import client_ip, db, deps


def _agency_id() -> str:
    return str(current_user.agency_id)


def _actor() -> Actor:
    return Actor("member", current_user.member.id, client_ip())


def _back() -> Any:
    return redirect(url_for("agency_admin.team"))


@bp.get("/team", endpoint="team")
@login_required
def team_page() -> Any:
    return render_template("agency_admin/team.html", members=team.list_members(db(), _agency_id()),
                           invites=team.list_invites(db(), _agency_id(), deps().now()), roles=team.ROLES,
                           me=current_user.member.id)


@bp.post("/team/invites")
@login_required
def invite_member() -> Any:
    form = request.form
    try:
        row = team.invite(db(), deps(), _agency_id(), form.get("email", ""), form.get("role", ""), _actor())
    except ValidationFailed as exc:
        db().rollback()
        flash(exc.public_message, "error")
        return _back()
    db().commit()
    if not deps().settings.smtp_url:  # the link is sealed in the outbox: only SMTP can deliver it
        flash(f"Invitation to {row.email} queued, but no SMTP server is configured (PORTAL_SMTP_URL): it waits in "
              "the outbox and reaches nobody until one is.", "error")
        return _back()
    flash(f"Invitation sent to {row.email}. The link works once, for {team.INVITE_LIFETIME.days} days.", "success")
    return _back()


@bp.post("/team/invites/<invite_id>/revoke")
@login_required
def revoke_invite(invite_id: str) -> Any:
    row = team.revoke_invite(db(), _agency_id(), invite_id, _actor(), deps().now())
    db().commit()
    flash(f"The invitation to {row.email} no longer works.", "info")
    return _back()


@bp.post("/team/members/<member_id>/role")
@login_required
def change_member_role(member_id: str) -> Any:
    try:
        member = team.change_role(db(), _agency_id(), member_id, request.form.get("role", ""), _actor(), deps().now())
        db().commit()
        flash(f"{member.email} is now {member.role}.", "success")
    except (ValidationFailed, team.LastOwner) as exc:
        db().rollback()
        flash(exc.public_message, "error")
    return _back()


@bp.post("/team/members/<member_id>/remove")
@login_required
def remove_member(member_id: str) -> Any:
    try:
        email = team.remove_member(db(), _agency_id(), member_id, _actor(), deps().now())
        db().commit()
    except team.LastOwner as exc:
        db().rollback()
        flash(exc.public_message, "error")
        return _back()
    if member_id == current_user.member.id:  # removed themselves: their session is gone too
        logout_user()
        session.clear()
        return redirect(url_for("agency_admin.login"))
    flash(f"{email} was removed; their sessions, the API keys they created and the invitations they sent no "
          "longer work.", "info")
    return _back()


@bp.route("/invite/<token>", methods=["GET", "POST"])
def accept_invite(token: str) -> Any:
    now = deps().now()
    try:
        pending = team.peek(db(), token, now)
    except team.InviteInvalid as exc:
        return render_template("agency_admin/invite_invalid.html", message=exc.public_message), exc.status
    if request.method == "POST":
        try:
            member = team.accept(db(), token, request.form.get("password", ""), now, client_ip())
        except PortalError as exc:
            db().rollback()
            flash(exc.public_message, "error")
            return render_template("agency_admin/invite_accept.html", invite=pending), exc.status
        db().commit()
        if current_user.is_authenticated:
            logout_user()
        start_session(member)
        flash(f"Welcome to {pending.agency_name}.", "success")
        return redirect(url_for("agency_admin.dashboard"))
    return render_template("agency_admin/invite_accept.html", invite=pending)

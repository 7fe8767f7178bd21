"""Login, logout and sign-up. The cookie carries a random session id; the row behind it
decides, so logout ends the session for good and a new id is issued at every login."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, session, url_for
from flask_login import UserMixin, current_user, login_required, login_user, logout_user

from agency_admin import bp, login_manager
from portal.errors import ValidationFailed
from portal.models import Member
from portal.services import agencies
from portal.web import client_ip, db, deps


class AdminUser(UserMixin):
    def __init__(self, member: Member, session_id: str) -> None:
        self.member = member
        self.session_id = session_id
        self.agency_id = member.agency_id

    def get_id(self) -> str:
        return self.session_id


@login_manager.user_loader
def load_user(session_id: str) -> AdminUser | None:
    member = agencies.member_for_session(db(), session_id, deps().now())
    db().commit()  # end the read: a view may call out (e.g. OIDC discovery) before it writes
    if member is None or member.agency.deleted_at is not None:  # a deleted agency's sessions are over
        return None
    return AdminUser(member, session_id)


def _start_session(member: Member) -> None:
    session_id = agencies.open_session(db(), member, deps().now(), client_ip())
    db().commit()
    session.clear()  # a fresh session at login: nothing from before survives (fixation)
    login_user(AdminUser(member, session_id))


start_session = _start_session  # also used when an invitee joins


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if current_user.is_authenticated:
        return redirect(url_for("agency_admin.dashboard"))
    if request.method == "POST":
        member = agencies.authenticate(db(), request.form.get("email", ""), request.form.get("password", ""))
        if member is not None and member.agency.deleted_at is not None:
            member = None  # the agency was deleted: same answer as a wrong password
        if member is None:
            flash("That email and password do not match an account.", "error")
            return render_template("agency_admin/login.html", email=request.form.get("email", "")), 401
        _start_session(member)
        return redirect(url_for("agency_admin.dashboard"))
    return render_template("agency_admin/login.html", email="")


@bp.route("/signup", methods=["GET", "POST"])
def signup() -> Any:
    form = request.form
    if request.method == "POST":
        try:
            member = agencies.sign_up(db(), form.get("agency_name", ""), form.get("email", ""),
                                      form.get("password", ""), client_ip())
        except ValidationFailed as exc:
            flash(exc.public_message, "error")
            return render_template("agency_admin/signup.html", form=form), 400
        _start_session(member)
        return redirect(url_for("agency_admin.dashboard"))
    return render_template("agency_admin/signup.html", form={})


@bp.post("/logout")
@login_required
def logout() -> Any:
    agencies.close_session(db(), current_user.session_id, client_ip())
    db().commit()
    logout_user()
    session.clear()
    flash("You are logged out.", "info")
    return redirect(url_for("agency_admin.login"))

"""Admin panel pages: dashboard, workspaces, links, connections, branding, audit log.

Every route is login-protected and reaches objects only through the member's agency:
another agency's id is a 404. State changes are POSTs with a CSRF token.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from agency_admin import bp
from portal import queue
from portal.errors import PlatformError, RefreshBusy, ServiceUnavailable, ValidationFailed
from portal.services import agencies, audit, connections, custom_platforms, links, notifications, platforms, tokens
from portal.services.audit import Actor
from portal.web import client_ip, db, deps, runtime, write_link_views

LIFETIME_CHOICES = [(1, "1 hour"), (24, "1 day"), (72, "3 days"), (168, "7 days"), (336, "14 days"),
                    (720, "30 days")]


def _actor() -> Actor:
    return Actor("member", current_user.member.id, client_ip())


def _agency_id() -> str:
    return str(current_user.agency_id)


@bp.before_request
def _require_login() -> Any:
    if request.endpoint in ("agency_admin.login", "agency_admin.signup", "agency_admin.accept_invite"):
        return None
    if not current_user.is_authenticated:
        return redirect(url_for("agency_admin.login", next=None))
    return None


@bp.after_request
def _no_store(response: Any) -> Any:
    # Admin pages show live link URLs and account details: keep them out of shared caches and history.
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/")
@login_required
def dashboard() -> Any:
    session, now = db(), deps().now()
    workspaces = agencies.list_workspaces(session, _agency_id())
    conns = connections.list_connections(session, _agency_id())
    counts: dict[str, int] = {}
    for connection in conns:
        health = tokens.health_view(connection, now).health
        counts[health] = counts.get(health, 0) + 1
    per_workspace = {w.id: sum(1 for c in conns if c.workspace_id == w.id) for w in workspaces}
    expiring = len(connections.search(session, _agency_id(), now, status="expiring"))
    return render_template("agency_admin/dashboard.html", workspaces=workspaces, counts=counts,
                           per_workspace=per_workspace, total=len(conns), expiring=expiring)


@bp.post("/workspaces")
@login_required
def create_workspace() -> Any:
    try:
        workspace = agencies.create_workspace(db(), _agency_id(), request.form.get("name", ""), _actor())
    except ValidationFailed as exc:
        flash(exc.public_message, "error")
        return redirect(url_for("agency_admin.dashboard"))
    db().commit()
    return redirect(url_for("agency_admin.workspace", workspace_id=workspace.id))


@bp.get("/workspaces/<workspace_id>")
@login_required
def workspace(workspace_id: str) -> Any:
    session, d = db(), deps()
    write_link_views()
    ws = agencies.get_workspace(session, _agency_id(), workspace_id)
    now = d.now()
    rows = [(c, tokens.health_view(c, now)) for c in connections.list_connections(session, _agency_id(), ws.id)]
    link_rows = [(link, link.state(now), links.link_url(d, link)) for link in
                 links.list_links(session, _agency_id(), ws.id)]
    return render_template("agency_admin/workspace.html", workspace=ws, rows=rows, link_rows=link_rows,
                           platforms=platforms.offered(session, d, _agency_id()),
                           labels=platforms.labels(session, d, _agency_id()), lifetimes=LIFETIME_CHOICES)


@bp.post("/workspaces/<workspace_id>/rename")
@login_required
def rename_workspace(workspace_id: str) -> Any:
    try:
        agencies.rename_workspace(db(), _agency_id(), workspace_id, request.form.get("name", ""), _actor())
        db().commit()
    except ValidationFailed as exc:
        flash(exc.public_message, "error")
    return redirect(url_for("agency_admin.workspace", workspace_id=workspace_id))


@bp.post("/workspaces/<workspace_id>/archive")
@login_required
def archive_workspace(workspace_id: str) -> Any:
    agencies.archive_workspace(db(), _agency_id(), workspace_id, _actor(), deps().now())
    db().commit()
    flash("Workspace archived. Its links no longer work.", "info")
    return redirect(url_for("agency_admin.dashboard"))


@bp.get("/links")
@login_required
def list_links() -> Any:
    d, now = deps(), deps().now()
    write_link_views()
    rows = [(link, link.state(now), links.link_url(d, link)) for link in links.list_links(db(), _agency_id())]
    return render_template("agency_admin/links.html", link_rows=rows)


@bp.post("/links")
@login_required
def create_link() -> Any:
    form = request.form
    workspace_id = form.get("workspace_id", "")
    try:
        link = links.create_link(
            db(), deps(), _agency_id(), _actor(), workspace_id=workspace_id,
            platforms=form.getlist("platforms"), available=platforms.offered(db(), deps(), _agency_id()),
            lifetime=links.lifetime_in_hours(_int(form.get("lifetime_hours"), "Expiry")),
            max_uses=None if form.get("max_uses", "").strip() in ("", "unlimited") else _int(form["max_uses"], "Uses"),
            label=form.get("label", ""), expected_accounts=form.get("expected_accounts", "").splitlines(),
            language=form.get("language") or None)
    except ValidationFailed as exc:
        flash(exc.public_message, "error")
        return redirect(url_for("agency_admin.workspace", workspace_id=workspace_id) if workspace_id
                        else url_for("agency_admin.dashboard"))
    db().commit()
    flash("Link created. Copy it and send it to your client.", "success")
    return redirect(url_for("agency_admin.workspace", workspace_id=link.workspace_id, _anchor=f"link-{link.id}"))


def _int(value: str | None, field: str) -> int:
    try:
        return int((value or "").strip())
    except ValueError:
        raise ValidationFailed(f"{field} must be a whole number.") from None


@bp.post("/links/<link_id>/revoke")
@login_required
def revoke_link(link_id: str) -> Any:
    link = links.revoke_link(db(), deps(), _agency_id(), link_id, _actor())
    db().commit()
    flash("Link revoked. It stops working immediately.", "info")
    return redirect(url_for("agency_admin.workspace", workspace_id=link.workspace_id))


@bp.get("/connections/<connection_id>")
@login_required
def connection(connection_id: str) -> Any:
    conn = connections.get_connection(db(), _agency_id(), connection_id)
    reconnect_id = request.args.get("reconnect")
    reconnect = links.get_link(db(), _agency_id(), reconnect_id) if reconnect_id else None
    return render_template("agency_admin/connection.html", connection=conn,
                           reconnect_url=links.link_url(deps(), reconnect) if reconnect else None,
                           health=tokens.health_view(conn, deps().now()),
                           platform_label=platforms.labels(db(), deps(), _agency_id()).get(conn.platform,
                                                                                            conn.platform))


@bp.post("/connections/<connection_id>/refresh")
@login_required
def refresh_connection(connection_id: str) -> Any:
    conn = connections.get_connection(db(), _agency_id(), connection_id)
    db().commit()
    rt = runtime()
    if rt.redis is not None:
        if queue.enqueue(rt, "workers.jobs.refresh_connection_now", conn.id):
            flash("Refresh queued. The page shows the new expiry once it is done.", "info")
        else:
            flash("Background jobs are unavailable right now; the connection was not refreshed. Try again soon.",
                  "error")
    else:
        try:
            tokens.refresh_connection(db(), rt.deps, conn.id, agency_id=_agency_id(), force=True, actor=_actor())
            flash("Connection refreshed.", "success")
        except (PlatformError, RefreshBusy, ServiceUnavailable) as exc:
            flash(f"Refresh did not complete: {exc.public_message}", "error")
    return redirect(url_for("agency_admin.connection", connection_id=conn.id))


@bp.post("/connections/<connection_id>/check")
@login_required
def check_connection(connection_id: str) -> Any:
    conn = connections.get_connection(db(), _agency_id(), connection_id)
    db().commit()
    outcome = tokens.check_connection(db(), deps(), conn.id)
    messages = {"ok": ("The platform confirms the connection works.", "success"),
                "refresh_due": ("The access token was no longer accepted; a refresh is scheduled.", "info"),
                "changed": ("The connection changed meanwhile; check again.", "info")}
    message, category = messages.get(outcome, (f"The check found a problem ({outcome.split(':', 1)[-1]}).", "error"))
    flash(message, category)
    return redirect(url_for("agency_admin.connection", connection_id=conn.id))


@bp.post("/connections/<connection_id>/reconnect-link")
@login_required
def reconnect_link(connection_id: str) -> Any:
    link = links.create_reconnect_link(db(), deps(), _agency_id(), connection_id, _actor())
    db().commit()
    # The URL is shown from the database, not carried in the (signed, readable) session cookie.
    return redirect(url_for("agency_admin.connection", connection_id=connection_id, reconnect=link.id))


@bp.post("/connections/<connection_id>/disconnect")
@login_required
def disconnect(connection_id: str) -> Any:
    result = connections.disconnect(db(), deps(), _agency_id(), connection_id, _actor())
    db().commit()
    result.revoke()
    conn = result.connection
    flash(f"{conn.display_name or 'The connection'} was disconnected and its tokens deleted.", "info")
    return redirect(url_for("agency_admin.workspace", workspace_id=conn.workspace_id))


@bp.route("/branding", methods=["GET", "POST"])
@login_required
def branding() -> Any:
    from portal.models import Agency

    agency = db().get(Agency, _agency_id())
    if agency is None:
        abort(404)
    if request.method == "POST":
        upload = request.files.get("logo")
        try:
            form = request.form
            agencies.update_branding(db(), agency.id, _actor(), name=form.get("name", ""),
                                     color=form.get("color", ""),
                                     logo=upload.read(agencies.LOGO_MAX_BYTES + 1) if upload else None,
                                     texts={key: form.get(key, "") for key in (
                                         "headline", "instructions", "success_text", "support_url", "theme",
                                         "show_powered_by")})
            db().commit()
            flash("Branding saved.", "success")
            return redirect(url_for("agency_admin.branding"))
        except ValidationFailed as exc:
            db().rollback()
            flash(exc.public_message, "error")
    return render_template("agency_admin/branding.html", agency=agency, brand=agencies.branding_for(agency))


@bp.get("/branding/preview")
@login_required
def branding_preview() -> Any:
    """The client link page exactly as clients see it, with sample platforms and nothing connected."""
    from types import SimpleNamespace

    from portal.models import Agency

    agency = db().get(Agency, _agency_id())
    if agency is None:
        abort(404)
    offered = list(platforms.offered(db(), deps(), _agency_id()).values())[:4]
    sample_link = SimpleNamespace(workspace=SimpleNamespace(name="Your client"),
                                  expires_at=deps().now() + timedelta(days=7))
    return render_template("connect/link.html", brand=agencies.branding_for(agency), token="preview",
                           link=sample_link, platforms=offered, connected=[], preview=True)


@bp.get("/audit")
@login_required
def audit_log() -> Any:
    category = request.args.get("category") or None
    if category is not None and category not in audit.CATEGORIES:
        abort(400)
    return render_template("agency_admin/audit.html", events=audit.recent(db(), _agency_id(), 200, category),
                           categories=audit.CATEGORIES, category=category)


@bp.get("/connections")
@login_required
def connection_list() -> Any:
    session, d = db(), deps()
    args = request.args
    status = args.get("status", "all")
    rows = connections.search(session, _agency_id(), d.now(), status=status, platform=args.get("platform") or None,
                              workspace_id=args.get("workspace") or None)
    now = d.now()
    return render_template("agency_admin/connections.html", rows=[(c, tokens.health_view(c, now)) for c in rows],
                           status=status, statuses=connections.STATUS_FILTERS, platform=args.get("platform", ""),
                           workspace=args.get("workspace", ""), labels=platforms.labels(session, d, _agency_id()),
                           workspaces=agencies.list_workspaces(session, _agency_id()))


@bp.post("/connections/<connection_id>/active")
@login_required
def toggle_active(connection_id: str) -> Any:
    conn = connections.set_active(db(), _agency_id(), connection_id, request.form.get("active") == "1", _actor())
    db().commit()
    flash("Connection is active: offered for new posts." if conn.active else
          "Connection is inactive: kept fresh, but not offered for new posts.", "info")
    return redirect(url_for("agency_admin.connection", connection_id=conn.id))


@bp.get("/platforms")
@login_required
def platform_apps() -> Any:
    d = deps()
    statuses = platforms.availability(db(), d, _agency_id())
    groups: dict[str, list[Any]] = {}
    for status in statuses:
        groups.setdefault(status.spec.credential_group, []).append(status)
    return render_template("agency_admin/platforms.html", groups=groups,
                           redirect_uri=lambda name: platforms.redirect_uri(d.settings, name))


@bp.post("/platforms/<group>")
@login_required
def save_platform_app(group: str) -> Any:
    try:
        platforms.save_agency_app(db(), deps(), _agency_id(), group, request.form.get("client_id", ""),
                                  request.form.get("client_secret", ""), _actor(),
                                  bot_token=request.form.get("bot_token", ""))
        db().commit()
        flash("App saved. Its secret is stored encrypted and will not be shown again.", "success")
    except ValidationFailed as exc:
        flash(exc.public_message, "error")
    return redirect(url_for("agency_admin.platform_apps", _anchor=f"app-{group}"))


@bp.post("/platforms/<group>/remove")
@login_required
def remove_platform_app(group: str) -> Any:
    platforms.remove_agency_app(db(), _agency_id(), group, _actor())
    db().commit()
    flash("Your app was removed; the portal's default app is used where there is one.", "info")
    return redirect(url_for("agency_admin.platform_apps"))


@bp.get("/custom-platforms")
@login_required
def custom_platforms_page() -> Any:
    return render_template("agency_admin/custom_platforms.html",
                           rows=custom_platforms.list_for(db(), _agency_id()), defaults=custom_platforms.DEFAULT_FIELDS,
                           redirect_uri=lambda slug: platforms.redirect_uri(deps().settings,
                                                                            custom_platforms.PREFIX + slug))


@bp.post("/custom-platforms")
@login_required
def create_custom_platform() -> Any:
    form = request.form
    try:
        row = custom_platforms.create(
            db(), deps(), _agency_id(), _actor(), display_name=form.get("display_name", ""),
            discovery_url=form.get("discovery_url", ""), authorize_url=form.get("authorize_url", ""),
            token_url=form.get("token_url", ""), userinfo_url=form.get("userinfo_url", ""),
            scopes=form.get("scopes", ""), client_id=form.get("client_id", ""),
            client_secret=form.get("client_secret", ""),
            fields={key: form.get(f"field_{key}", "") for key in custom_platforms.DEFAULT_FIELDS})
        db().commit()
        flash(f"{row.display_name} added. Register the redirect URI shown below at the platform.", "success")
    except ValidationFailed as exc:
        db().rollback()
        flash(exc.public_message, "error")
    return redirect(url_for("agency_admin.custom_platforms_page"))


@bp.post("/custom-platforms/<name>/delete")
@login_required
def delete_custom_platform(name: str) -> Any:
    custom_platforms.delete(db(), _agency_id(), name, _actor())
    db().commit()
    flash("Platform removed. Existing connections keep their tokens until disconnected.", "info")
    return redirect(url_for("agency_admin.custom_platforms_page"))


@bp.app_context_processor
def _unread() -> dict[str, Any]:
    if request.blueprint == "agency_admin" and current_user.is_authenticated:
        return {"unread_notifications": notifications.unread_count(db(), _agency_id())}
    return {}


@bp.get("/notifications")
@login_required
def notification_list() -> Any:
    rows = notifications.recent(db(), _agency_id())
    link_ids = [n.reconnect_link_id for n in rows if n.reconnect_link_id]
    urls = {link.id: links.link_url(deps(), link) for link in links.list_links(db(), _agency_id())
            if link.id in link_ids and link.state(deps().now()) == "active"}
    from portal.models import Agency

    agency = db().get(Agency, _agency_id())
    return render_template("agency_admin/notifications.html", rows=rows, urls=urls,
                           digest=bool(agency and agency.notify_digest),
                           outbox=notifications.outbox(db(), _agency_id()), smtp=bool(deps().settings.smtp_url))


@bp.post("/notifications/digest")
@login_required
def notification_digest() -> Any:
    enabled = request.form.get("digest") == "1"
    notifications.set_digest(db(), _agency_id(), enabled)
    audit.record(db(), _agency_id(), _actor(), "agency.notifications_changed", "agency", _agency_id(), digest=enabled)
    db().commit()
    flash("You will get one email a day." if enabled else "You will get an email for each change.", "info")
    return redirect(url_for("agency_admin.notification_list"))


@bp.post("/notifications/read")
@login_required
def mark_notifications_read() -> Any:
    notifications.mark_read(db(), _agency_id(), deps().now(), request.form.get("id") or None)
    db().commit()
    return redirect(url_for("agency_admin.notification_list"))

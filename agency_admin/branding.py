"""Admin pages for white-label overrides, agency settings and sending links.

Workspace and link overrides are edited next to a live preview that is the client's link page itself
(rendered from the same template with the same resolved branding, buttons disabled); unsaved values
typed in the form are previewed through the preview's query string, validated like a save.
"""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

from flask import Response, abort, flash, make_response, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from agency_admin import bp
from portal import i18n
from portal.errors import PortalError, ValidationFailed
from portal.models import Agency
from portal.security.framing import content_security_policy
from portal.services import agencies, branding, domains, link_mail, links, platforms, self_service
from portal.services.audit import Actor
from portal.web import client_ip, csp_nonce, db, deps


def _actor() -> Actor:
    return Actor("member", current_user.member.id, client_ip())


def _agency_id() -> str:
    return str(current_user.agency_id)


def _agency() -> Agency:
    agency = db().get(Agency, _agency_id())
    if agency is None:
        abort(404)
    return agency


def _override_form() -> dict[str, Any]:
    form = request.form if request.method == "POST" else request.args
    return {key: form.get(key, "") for key in branding.OVERRIDE_KEYS if key in form}


# Agency settings: favicon, custom domain, default language --------------------------------------------------

@bp.post("/branding/settings")
@login_required
def save_agency_settings() -> Any:
    try:
        branding.save_agency_settings(db(), _agency_id(), _actor(), custom_domain=request.form.get("custom_domain", ""),
                                      default_language=request.form.get("default_language", ""),
                                      portal_host=urlsplit(deps().settings.base_url).netloc)
        db().commit()
        flash("Settings saved.", "success")
    except ValidationFailed as exc:
        db().rollback()
        flash(exc.public_message, "error")
    return redirect(url_for("agency_admin.branding"))


@bp.post("/branding/domain/verify")
@login_required
def verify_custom_domain() -> Any:
    try:
        agency = domains.verify(db(), deps().settings, _agency_id(), _actor(), deps().now())
        db().commit()
        flash(f"{agency.custom_domain} is verified: links and client pages now use it.", "success")
    except ValidationFailed as exc:
        db().rollback()
        flash(exc.public_message, "error")
    return redirect(url_for("agency_admin.branding"))


@bp.app_template_global()
def custom_domain_challenge(agency: Agency) -> domains.Challenge | None:
    """For the branding page (its view lives in views.py): the DNS record still to publish, if any."""
    return domains.pending_challenge(agency)


@bp.app_template_global()
def custom_domain_cname_target() -> str:
    return urlsplit(deps().settings.base_url).hostname or ""


@bp.post("/branding/favicon")
@login_required
def upload_favicon() -> Any:
    upload = request.files.get("favicon")
    try:
        data = upload.read(branding.MAX_ASSET_BYTES["favicon"] + 1) if upload else b""
        branding.save_agency_favicon(db(), _agency_id(), data, _actor())
        db().commit()
        flash("Favicon saved.", "success")
    except ValidationFailed as exc:
        db().rollback()
        flash(exc.public_message, "error")
    return redirect(url_for("agency_admin.branding"))


@bp.post("/branding/assets")
@login_required
def upload_brand_asset() -> Any:
    """An image for workspace or link overrides; back to the page that asked."""
    kind = request.form.get("kind", "")
    upload = request.files.get("image")
    try:
        data = upload.read(branding.MAX_ASSET_BYTES.get(kind, 0) + 1) if upload else b""
        branding.store_asset(db(), _agency_id(), kind, data, _actor())
        db().commit()
        flash("Image uploaded. Pick it below and save.", "success")
    except ValidationFailed as exc:
        db().rollback()
        flash(exc.public_message, "error")
    back = request.form.get("back", "")
    return redirect(back if back.startswith("/admin/") and "//" not in back else url_for("agency_admin.branding"))


# Workspace and link overrides -------------------------------------------------------------------------------

@bp.route("/workspaces/<workspace_id>/branding", methods=["GET", "POST"])
@login_required
def workspace_branding(workspace_id: str) -> Any:
    workspace = agencies.get_workspace(db(), _agency_id(), workspace_id)
    if request.method == "POST":
        try:
            branding.save_workspace_branding(db(), _agency_id(), workspace.id, _override_form(), _actor())
            db().commit()
            flash("Workspace branding saved.", "success")
            return redirect(url_for("agency_admin.workspace_branding", workspace_id=workspace.id))
        except ValidationFailed as exc:
            db().rollback()
            flash(exc.public_message, "error")
    return render_template("agency_admin/branding_overrides.html", target="workspace", name=workspace.name,
                           overrides=workspace.branding or {}, language=None,
                           assets=branding.assets_of(db(), _agency_id()),
                           preview_url=url_for("agency_admin.workspace_branding_preview", workspace_id=workspace.id),
                           back=request.path)


@bp.route("/links/<link_id>/branding", methods=["GET", "POST"])
@login_required
def link_branding(link_id: str) -> Any:
    link = links.get_link(db(), _agency_id(), link_id)
    if request.method == "POST":
        try:
            branding.save_link_branding(db(), _agency_id(), link.id, _override_form(),
                                        request.form.get("language", ""), _actor())
            db().commit()
            flash("Link branding saved.", "success")
            return redirect(url_for("agency_admin.link_branding", link_id=link.id))
        except ValidationFailed as exc:
            db().rollback()
            flash(exc.public_message, "error")
    return render_template("agency_admin/branding_overrides.html", target="link",
                           name=link.label or link.workspace.name, overrides=link.branding or {},
                           language=link.language or "", languages=branding.LANGUAGES,
                           assets=branding.assets_of(db(), _agency_id()),
                           preview_url=url_for("agency_admin.link_branding_preview", link_id=link.id),
                           back=request.path)


@bp.get("/workspaces/<workspace_id>/branding/preview")
@login_required
def workspace_branding_preview(workspace_id: str) -> Any:
    """The link page of a sample link of this workspace, with the saved (or typed) overrides."""
    workspace = agencies.get_workspace(db(), _agency_id(), workspace_id)
    overrides = _previewed(workspace.branding)
    sample = SimpleNamespace(workspace=SimpleNamespace(name=workspace.name, branding=overrides), branding=None,
                             expires_at=deps().now() + timedelta(days=7), language=None)
    offered = list(platforms.offered(db(), deps(), _agency_id()).values())[:4]
    return _preview(branding.resolve(_agency(), overrides), sample, offered, [])


@bp.get("/links/<link_id>/branding/preview")
@login_required
def link_branding_preview(link_id: str) -> Any:
    """This link's page exactly as its client sees it (its platforms, connections and branding)."""
    link = links.get_link(db(), _agency_id(), link_id)
    choices, connected = self_service.link_page_content(db(), deps(), link)
    agency = _agency()
    i18n.use_language(link.language or agency.default_language)  # the client's page speaks the link's language
    brand = branding.resolve(agency, link.workspace.branding, _previewed(link.branding))
    return _preview(brand, link, choices, connected)


def _previewed(saved: dict[str, Any] | None) -> dict[str, Any] | None:
    """Saved overrides, or the unsaved ones typed in the form (validated: a bad value previews nothing)."""
    if request.args.get("live") != "1":
        return saved
    try:
        return branding.clean_overrides(db(), _agency_id(), _override_form())
    except ValidationFailed:
        return saved


def _preview(brand: Any, link: Any, choices: list[Any], connected: list[Any]) -> Response:
    html = render_template("connect/link.html", brand=brand, token="preview", link=link, platforms=choices,
                           connected=connected, preview=True, manage_url="#")
    response = make_response(html)
    # The editing page shows this preview in a frame; only the admin's own pages may frame it.
    response.headers["Content-Security-Policy"] = content_security_policy(csp_nonce(), frame_ancestors="'self'")
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response


# Sending links -----------------------------------------------------------------------------------------------

@bp.post("/links/<link_id>/email")
@login_required
def email_link(link_id: str) -> Any:
    link = links.get_link(db(), _agency_id(), link_id)
    try:
        mail = link_mail.email_link(db(), deps(), _agency_id(), link.id, request.form.get("email", ""), _actor())
        db().commit()
        flash(f"The link was emailed to {mail.to_address}.", "success")
    except PortalError as exc:
        db().rollback()
        flash(exc.public_message, "error")
    return redirect(url_for("agency_admin.workspace", workspace_id=link.workspace_id, _anchor=f"link-{link.id}"))


@bp.get("/links/<link_id>/qr.svg")
@login_required
def link_qr(link_id: str) -> Response:
    svg = link_mail.qr_svg(deps(), db(), _agency_id(), link_id)
    response = make_response(svg)
    response.headers["Content-Type"] = "image/svg+xml"
    response.headers["Cache-Control"] = "no-store"  # the picture is the link: a bearer credential
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Content-Disposition"] = 'inline; filename="easyconnect-link.svg"'
    return response

"""Blueprint "widget": connect.js (versioned), the session status for host pages, the phone hand-off,
and the embedding context the client link pages use when opened by the widget."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, abort, jsonify, make_response, redirect, request
from flask_babel import gettext

from portal.errors import PortalError, ValidationFailed
from portal.models import Agency, ConnectAttempt, ConnectLink
from portal.services import links
from portal.services import widget as widget_service
from portal.web import allow_embedding, db, deps, no_store

bp = Blueprint("widget", __name__)
SCRIPT = Path(__file__).resolve().parent.parent / "static" / "widget" / "connect.js"
SCRIPT_VERSION = 1  # in the path: a new contract gets a new path, so the old one can be cached for a year


@bp.get(f"/widget/v{SCRIPT_VERSION}/connect.js")
def script() -> Response:
    response = make_response(SCRIPT.read_bytes())
    response.headers["Content-Type"] = "text/javascript; charset=utf-8"
    response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"  # loaded by the agencies' pages
    return response


@bp.get(f"/widget/v{SCRIPT_VERSION}/status/<handle>")
def status(handle: str) -> Response:
    """Polled by the host page. Readable only from the session's own origin (CORS, exact, no cookies)."""
    found = widget_service.session_status(db(), deps(), handle)
    if found is None:
        abort(404)
    origin, body = found
    response = jsonify(body)
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Vary"] = "Origin"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get(f"/widget/v{SCRIPT_VERSION}/handoff/<token>")
def handoff(token: str) -> Response:
    """The phone's entry: a fresh, unused hand-off code opens the link page joined to the desktop's session."""
    session = db()
    found = widget_service.consume_handoff(session, deps(), token)
    if found is None:
        abort(404)
    link, handle, ticket = found
    session.commit()
    query = urlencode({"embed": widget_service.HANDOFF, "session": handle, "join": ticket})
    return no_store(redirect(f"/c/{deps().signer.sign(link.token_id)}?{query}", 303))


@bp.post(f"/widget/v{SCRIPT_VERSION}/handoff-code")
def handoff_code() -> Response:
    """Asked by the embedded page when the client opens "Continue on your phone": a new QR code (the
    session is recorded now, not when the page was merely viewed)."""
    form, session, d = request.form, db(), deps()
    resolved = links.resolve_link(session, d.signer, form.get("link", "")[:300], d.now())
    try:
        url = widget_service.issue_handoff(session, d, resolved.link, resolved.agency, form.get("mode", ""),
                                           form.get("origin"), form.get("session"), form.get("return_url"))
    except ValidationFailed as exc:
        session.rollback()
        return no_store(make_response(jsonify({"error": exc.code, "message": gettext(exc.public_message)}), 400))
    session.commit()
    return no_store(jsonify({"qr": widget_service.qr_code_data_uri(url)}))


def embed_context(link: ConnectLink, agency: Agency) -> dict[str, Any] | None:
    """For the link page: the widget session asked for by ``?embed=...`` (None for a plain visit), with
    the frame and opener rules of its mode applied to this response. Hostile parameters raise a 400."""
    args = request.args
    mode = args.get("embed")
    if not mode:
        return None
    session = widget_service.open_session(db(), deps(), link, agency, mode, args.get("origin"),
                                          args.get("session"), args.get("return_url"), args.get("join"))
    allow_embedding(framed_by=session.frame_ancestors if mode == "iframe" else (), keep_opener=mode == "popup")
    return {"mode": mode, "origin": session.origin, "session": session.handle, "return_url": session.return_url,
            "status_url": f"/widget/v{SCRIPT_VERSION}/status/{session.handle}",
            "handoff_code_url": (f"/widget/v{SCRIPT_VERSION}/handoff-code"
                                 if mode != widget_service.HANDOFF else None)}


def _form_session() -> dict[str, str | None]:
    """The widget session a link page's form carries (page.js adds mode, origin and return address)."""
    form = request.form
    return {"handle": form.get("widget_session"), "mode": form.get("widget_mode"),
            "origin": form.get("widget_origin"), "return_url": form.get("widget_return_url")}


def attach_attempt(resolved: links.ResolvedLink, attempt: ConnectAttempt) -> bool:
    """List an OAuth attempt started from an embedded link page on its widget session."""
    return widget_service.attach_attempt(db(), deps(), resolved.link, resolved.agency, attempt, **_form_session())


def carry_into_flow(resolved: links.ResolvedLink, platform: str, browser_secret: str) -> bool:
    """The client chose a platform with a page of its own (Bluesky, Mastodon, Telegram) in the widget."""
    return widget_service.carry_into_flow(db(), deps(), resolved.link, resolved.agency, platform, browser_secret,
                                          **_form_session())


def attach_carried(resolved: links.ResolvedLink, attempt: ConnectAttempt, browser_secret: str | None) -> bool:
    """List the attempt of such a platform's page on the session this browser carried into it."""
    return widget_service.attach_carried(db(), deps(), resolved.link, resolved.agency, attempt, browser_secret)


def relay_context(attempt: ConnectAttempt) -> dict[str, Any] | None:
    """For the done page of an attempt started in a widget: where to tell (or send) the host page."""
    if not attempt.widget_origin:
        return None
    allow_embedding(keep_opener=True)
    return {"origin": attempt.widget_origin, "attempt": attempt.id, "platform": attempt.platform,
            "return_url": attempt.return_url}


def error_context(exc: PortalError, agency: Agency) -> dict[str, Any] | None:
    """A link page opened by the widget failed (an expired or revoked link, a stale session ...): tell
    the host page, but only when it is one of the agency's origins; a framed one may then show the
    error page instead of the browser's refusal."""
    mode, origin = request.args.get("embed"), request.args.get("origin")
    if request.endpoint != "connect.link_page" or mode not in ("popup", "iframe"):
        return None
    if not widget_service.origin_allowed(agency, origin):
        return None
    allow_embedding(framed_by=tuple(agency.embed_origins or ()) if mode == "iframe" else (),
                    keep_opener=mode == "popup")
    handle = request.args.get("session", "")
    return {"mode": mode, "origin": origin, "session": handle if widget_service.valid_handle(handle) else "",
            "code": exc.code, "message": gettext(exc.public_message)}


def in_app_browser() -> str | None:
    return widget_service.in_app_browser(request.headers.get("User-Agent"))

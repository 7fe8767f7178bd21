"""Blueprint "connect": the client-facing link page, OAuth start and callback, account choice, done page.

These pages carry no login and no cookie: the signed link token in the URL and the OAuth
`state` (server-side) are the whole state, so they also work in iframes and with
third-party cookies blocked. CSRF tokens would need a cookie; the capability in the URL
plays that role here.
"""

from __future__ import annotations

import secrets
from typing import Any

from flask import Blueprint, Response, abort, make_response, redirect, render_template, request

from portal.errors import AttemptInvalid, PortalError
from portal.models import Agency, AttemptStage, ConnectLink
from portal.services import connections, links, platforms
from portal.services.agencies import Branding, branding_for
from portal.web import client_ip, db, deps, no_store

bp = Blueprint("connect", __name__)
BROWSER_COOKIE = "easyconnect_flow"
RECONSENT_CODES = ("scopes_missing",)


def _page(template: str, status: int = 200, **context: Any) -> Response:
    return no_store(make_response(render_template(template, **context), status))


@bp.get("/c/<token>")
def link_page(token: str) -> Response:
    session, d = db(), deps()
    resolved = links.resolve_link(session, d.signer, token, d.now())
    links.note_opened(session, resolved.link)
    offered = platforms.offered(session, d, resolved.agency.id)
    allowed = set(resolved.link.allowed_platforms)
    choices = [spec for name, spec in offered.items() if name in allowed]  # catalog order
    connected = connections.list_connections(session, resolved.agency.id, resolved.link.workspace_id)
    session.commit()
    return _page("connect/link.html", brand=branding_for(resolved.agency), token=token, link=resolved.link,
                 platforms=choices, connected=[c for c in connected if c.platform in resolved.link.allowed_platforms])


@bp.post("/c/<token>/connect/<platform>")
def start(token: str, platform: str) -> Response:
    session, d = db(), deps()
    resolved = links.resolve_link(session, d.signer, token, d.now(), platform=platform)
    spec = connections.offered_spec(session, d, resolved.link, platform)
    if spec.auth_kind != "oauth2":  # credential, instance and bot flows have their own first page
        return no_store(redirect(f"/c/{token}/{spec.auth_kind.replace('_', '-')}/{platform}", 303))
    secret = flow_secret()
    started = connections.begin_attempt(session, d, resolved, platform, reconsent=request.form.get("reconsent") == "1",
                                        browser_secret=secret)
    session.commit()
    return redirect_to_platform(started.authorize_url, secret)


def browser_secret() -> str | None:
    """The cookie that ties a callback to the browser that pressed Connect (see connections.same_browser_as)."""
    value = request.cookies.get(BROWSER_COOKIE)
    return value if value and len(value) <= 100 else None


def flow_secret() -> str:
    """This browser's flow secret: the one it already carries, or a new one."""
    return browser_secret() or secrets.token_urlsafe(32)


def redirect_to_platform(authorize_url: str, secret: str) -> Response:
    """Send the browser to the platform's consent page, carrying the flow cookie for the callback."""
    response = no_store(redirect(authorize_url, 303))
    response.set_cookie(BROWSER_COOKIE, secret, max_age=3600, httponly=True, samesite="Lax",
                        secure=deps().settings.secure_cookies)
    return response


@bp.get("/oauth/callback/<platform>")
def callback(platform: str) -> Response:
    session, d = db(), deps()
    args = request.args
    attempt = connections.complete_callback(session, d, platform, args.get("state"), args.get("code"),
                                            args.get("error"), client_ip(), browser_secret())
    link = links.get_link(session, attempt.agency_id, attempt.link_id)
    return no_store(redirect(after_attempt_url(link, attempt), 303))


def after_attempt_url(link: ConnectLink, attempt: Any) -> str:
    step = "select" if attempt.stage == AttemptStage.SELECTING else "done"
    return f"/c/{deps().signer.sign(link.token_id)}/{step}/{attempt.id}"


@bp.get("/c/<token>/select/<attempt_id>")
def select(token: str, attempt_id: str) -> Response:
    session, d = db(), deps()
    resolved = links.resolve_link(session, d.signer, token, d.now())
    attempt = connections.selecting_attempt(session, d, resolved.link, attempt_id)
    spec = platforms.spec_of(session, d, resolved.link.agency_id, attempt.platform)
    return _page("connect/select.html", brand=branding_for(resolved.agency), token=token, attempt=attempt,
                 platform=spec)


@bp.post("/c/<token>/select/<attempt_id>")
def choose(token: str, attempt_id: str) -> Response:
    session, d = db(), deps()
    resolved = links.resolve_link(session, d.signer, token, d.now())
    attempt = connections.select_accounts(session, d, resolved.link, attempt_id, request.form.getlist("account"),
                                          client_ip())
    return no_store(redirect(f"/c/{token}/done/{attempt.id}", 303))


@bp.get("/c/<token>/done/<attempt_id>")
def done(token: str, attempt_id: str) -> Response:
    session, d = db(), deps()
    token_id = d.signer.unsign(token)
    link = links.find_by_token_id(session, token_id) if token_id else None
    if link is None:
        abort(404)
    attempt = connections.attempt_for(session, link.id, attempt_id)
    if attempt.stage != AttemptStage.CONNECTED:
        raise AttemptInvalid()
    connected = connections.connections_by_ids(session, link.agency_id, attempt.connection_ids or
                                               [attempt.connection_id])
    agency = session.get(Agency, link.agency_id)
    assert agency is not None
    return _page("connect/done.html", brand=branding_for(agency), token=token, connected=connected,
                 platform_label=platforms.labels(session, d, agency.id).get(attempt.platform, attempt.platform))


@bp.get("/brand/<agency_id>/logo")
def logo(agency_id: str) -> Response:
    agency = db().get(Agency, agency_id)
    if agency is None or not agency.logo or not agency.logo_type:
        abort(404)
    response = make_response(agency.logo)
    response.headers["Content-Type"] = agency.logo_type
    response.headers["Cache-Control"] = "public, max-age=86400"
    response.headers["Content-Security-Policy"] = "default-src 'none'"
    return response


def render_error(exc: PortalError) -> Response:
    """Branded where the link (and so the agency) is known, plain otherwise. Never a stack trace."""
    brand: Branding | None = None
    token = request.view_args.get("token") if request.view_args else None
    retry_url = f"/c/{token}" if token and exc.status != 410 and exc.code != "link_invalid" else None
    platform = request.view_args.get("platform") if request.view_args else None
    if exc.code == "unavailable":  # the database is down: no branding lookup, just a way to retry
        return _page("connect/error.html", status=503, brand=None, error=exc, retry_url=retry_url or request.path,
                     reconsent_url=None)
    if token:
        token_id = deps().signer.unsign(token)
        link = links.find_by_token_id(db(), token_id) if token_id else None
        agency = db().get(Agency, link.agency_id) if link else None
        brand = branding_for(agency) if agency else None
        if exc.code == "selection_expired":
            retry_url = f"/c/{token}"
    elif request.endpoint == "connect.callback":
        brand, retry_url = _callback_context()
    reconsent_url = f"{retry_url}/connect/{platform}" if retry_url and exc.code in RECONSENT_CODES else None
    return _page("connect/error.html", status=exc.status, brand=brand, error=exc, retry_url=retry_url,
                 reconsent_url=reconsent_url)


def _callback_context() -> tuple[Branding | None, str | None]:
    """For a failed callback: the link's branding and a way to try again, but only in the browser that
    started the attempt (a `state` seen by a platform or its logs must not reveal the link)."""
    attempt = connections.attempt_by_state(db(), request.args.get("state"))
    if attempt is None or not connections.same_browser_as(attempt, browser_secret()):
        return None, None
    link = links.find_by_id(db(), attempt.link_id)
    agency = db().get(Agency, attempt.agency_id)
    if link is None or agency is None:
        return None, None
    return branding_for(agency), f"/c/{deps().signer.sign(link.token_id)}"


# Flows whose first step is not a plain OAuth redirect register their routes on this blueprint.
from portal.views import connect_bluesky, connect_mastodon, connect_telegram  # noqa: E402,F401

"""Blueprint "connect": the client-facing link page, OAuth start and callback, account choice, done page.

These pages carry no login and no cookie: the signed link token in the URL and the OAuth
`state` (server-side) are the whole state, so they also work in iframes and with
third-party cookies blocked. CSRF tokens would need a cookie; the capability in the URL
plays that role here.
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, abort, current_app, g, make_response, redirect, render_template, request
from flask_wtf.csrf import validate_csrf
from wtforms import ValidationError

from portal import i18n
from portal.errors import AttemptInvalid, PortalError
from portal.models import Agency, AttemptStage, ConnectLink
from portal.services import Deps, branding, connections, links, platforms, self_service
from portal.services import link_page as link_pages
from portal.services.agencies import Branding
from portal.views import widget as widget_view
from portal.web import client_ip, db, deps, no_store, runtime

bp = Blueprint("connect", __name__)
BROWSER_COOKIE = "easyconnect_flow"
RECONSENT_CODES = ("scopes_missing",)


def _page(template: str, status: int = 200, **context: Any) -> Response:
    return no_store(make_response(render_template(template, **context), status))


def page_brand(agency: Agency, link: ConnectLink) -> Branding:
    """The link's effective branding; the link's (else the agency's) language becomes the page's default."""
    i18n.use_language(link.language or agency.default_language)
    return branding.for_link(agency, link)


@bp.get("/c/<token>")
def link_page(token: str) -> Response:
    state, key = _cache_key(token)  # counts the visit when it returns a state
    cached = _pages().get(key) if key else None
    if state is not None and cached is not None:  # the fast path: one statement, no rendering, no session
        return _fresh_nonce(cached)
    session, d = db(), deps()
    resolved = links.resolve_link(session, d.signer, token, d.now())
    if state is None:
        links.note_opened(session, resolved.link)
    choices, connected = self_service.link_page_content(session, d, resolved.link)
    embed = widget_view.embed_context(resolved.link, resolved.agency)
    session.commit()
    if key is not None and embed is None:
        g.csp_nonce = NONCE_SLOT  # rendered once with a placeholder; every response gets its own nonce
    html = render_template("connect/link.html", brand=page_brand(resolved.agency, resolved.link), token=token,
                           link=resolved.link, manage_url=f"/c/{token}/manage", platforms=choices,
                           connected=connected, embed=embed, in_app_browser=widget_view.in_app_browser())
    if g.get("csp_nonce") != NONCE_SLOT:
        return no_store(make_response(html))
    _pages().put(key, html)  # type: ignore[arg-type]
    return _fresh_nonce(html)


NONCE_SLOT = "csp-nonce-slot"
NO_STORE = (("Cache-Control", "no-store"), ("Referrer-Policy", "no-referrer"))  # what web.no_store sets


def _pages() -> link_pages.PageCache:
    """This app's rendered link pages (per app: tests run apps with different settings in one process)."""
    return current_app.extensions.setdefault("link_page_cache", link_pages.PageCache())  # type: ignore[no-any-return]


def _cache_key(token: str) -> tuple[link_pages.PageState | None, tuple[Any, ...] | None]:
    """The rendered page depends on the link's state (see services.link_page), the token in its forms,
    the language and the in-app browser notice. Widget visits (``?embed=``) are never cached."""
    if request.args.get("embed"):
        return None, None
    rt = runtime()
    state = link_pages.open_page(rt.direct_engine, rt.view_counts, deps().signer, token, deps().now())
    if state is None:
        return None, None
    i18n.use_language(state.language)
    return state, (state.key, token, i18n.select_locale(), widget_view.in_app_browser())


def _fresh_nonce(html: str) -> Response:
    g.csp_nonce = secrets.token_urlsafe(16)
    return Response(html.replace(NONCE_SLOT, g.csp_nonce), mimetype="text/html", headers=NO_STORE)


@bp.post("/c/<token>/connect/<platform>")
def start(token: str, platform: str) -> Response:
    session, d = db(), deps()
    resolved = links.resolve_link(session, d.signer, token, d.now(), platform=platform)
    spec = connections.offered_spec(session, d, resolved.link, platform)
    if spec.auth_kind != "oauth2":  # credential, instance and bot flows have their own first page
        first_page = f"/c/{token}/{spec.auth_kind.replace('_', '-')}/{platform}"
        secret = flow_secret()
        if widget_view.carry_into_flow(resolved, platform, secret):  # its attempt is listed when created
            session.commit()
            return redirect_to_platform(first_page, secret)
        return no_store(redirect(first_page, 303))
    secret = flow_secret()
    started = connections.begin_attempt(session, _oauth_deps(d, resolved.agency.id, platform), resolved, platform,
                                        reconsent=request.form.get("reconsent") == "1", browser_secret=secret)
    widget_view.attach_attempt(resolved, started.attempt)
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
    if g.get("host_agency_id"):  # on an agency's domain: only its own attempts, with its own redirect_uri
        started = connections.attempt_by_state(session, args.get("state"))
        if started is None or started.agency_id != g.host_agency_id:
            abort(404)
        d = _oauth_deps(d, started.agency_id, platform)
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
    return _page("connect/select.html", brand=page_brand(resolved.agency, resolved.link), token=token, attempt=attempt,
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
    return _page("connect/done.html", brand=page_brand(agency, link), token=token, connected=connected,
                 manage_url=f"/c/{token}/manage",
                 platform_label=platforms.labels(session, d, agency.id).get(attempt.platform, attempt.platform),
                 relay=widget_view.relay_context(attempt))


@bp.get("/c/<token>/manage")
def manage(token: str) -> Response:
    """The client's self-service page: what this link connected, its health, reconnect and remove."""
    session, d = db(), deps()
    resolved = links.resolve_link(session, d.signer, token, d.now())
    rows = self_service.list_for_link(session, resolved.link, d.now())
    return _page("connect/manage.html", brand=page_brand(resolved.agency, resolved.link), token=token, rows=rows,
                 labels=platforms.labels(session, d, resolved.agency.id),
                 allowed=set(resolved.link.allowed_platforms))


@bp.post("/c/<token>/manage/<connection_id>/remove")
def remove_connection(token: str, connection_id: str) -> Response:
    # Unlike the connect buttons, removing is destructive: a session-bound CSRF token as well as the URL.
    try:
        validate_csrf(request.form.get("csrf_token"))
    except ValidationError:
        abort(400)
    session, d = db(), deps()
    resolved = links.resolve_link(session, d.signer, token, d.now())
    removed = self_service.remove(session, d, resolved.link, connection_id, client_ip())
    session.commit()
    removed.revoke()  # best effort, after the tokens are gone from our side
    return no_store(redirect(f"/c/{token}/manage?removed=1", 303))


@bp.get("/brand/<agency_id>/logo")
def logo(agency_id: str) -> Response:
    return _agency_image(agency_id, "logo")


@bp.get("/brand/<agency_id>/favicon")
def favicon(agency_id: str) -> Response:
    return _agency_image(agency_id, "favicon")


def _agency_image(agency_id: str, kind: str) -> Response:
    agency = db().get(Agency, agency_id)
    data, content_type = (getattr(agency, kind), getattr(agency, f"{kind}_type")) if agency else (None, None)
    if not data or not content_type:
        abort(404)
    return _image(data, content_type, "public, max-age=86400")


@bp.get("/brand/asset/<asset_id>")
def brand_asset(asset_id: str) -> Response:
    asset = branding.get_asset(db(), asset_id)
    # An asset's bytes never change (a new upload is a new id), so it may be cached for good.
    return _image(asset.data, asset.content_type, "public, max-age=31536000, immutable")


def _image(data: bytes, content_type: str, cache: str) -> Response:
    """An uploaded image exactly as checked at upload: its sniffed type, nosniff, and no script context."""
    response = make_response(data)
    response.headers["Content-Type"] = content_type
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = cache
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Content-Disposition"] = "inline"
    return response


def render_error(exc: PortalError) -> Response:
    """Branded where the link (and so the agency) is known, plain otherwise. Never a stack trace."""
    brand: Branding | None = None
    embed_error = None
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
        brand = page_brand(agency, link) if agency and link else None
        embed_error = widget_view.error_context(exc, agency) if agency else None
        if exc.code == "selection_expired":
            retry_url = f"/c/{token}"
    elif request.endpoint == "connect.callback":
        brand, retry_url = _callback_context()
    reconsent_url = f"{retry_url}/connect/{platform}" if retry_url and exc.code in RECONSENT_CODES else None
    return _page("connect/error.html", status=exc.status, brand=brand, error=exc, retry_url=retry_url,
                 reconsent_url=reconsent_url, embed_error=embed_error)


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
    return page_brand(agency, link), f"/c/{deps().signer.sign(link.token_id)}"


# Custom domains ------------------------------------------------------------------------------------------

def guard_custom_domain() -> None:
    """Before every request when custom domains are on. The Host is as trusted as ProxyFix makes it
    (PORTAL_TRUSTED_PROXIES): the portal's own host serves everything; an agency's domain serves only
    that agency's client pages (another agency's link there is a 404); any other host gets nothing."""
    settings = deps().settings
    if request.host.lower() == urlsplit(settings.base_url).netloc.lower():
        return
    agency_id = branding.agency_id_for_domain(db(), request.host)
    if agency_id is None or (request.blueprint != "connect" and request.endpoint != "static"):
        abort(404)
    g.host_agency_id = agency_id
    token = (request.view_args or {}).get("token")
    if token:
        token_id = deps().signer.unsign(token)
        link = links.find_by_token_id(db(), token_id) if token_id else None
        if link is None or link.agency_id != agency_id:
            abort(404)


def _oauth_deps(d: Deps, agency_id: str, platform: str) -> Deps:
    """On an agency's own domain, OAuth callbacks come back to that domain, but only with the agency's own
    app: its redirect_uri must be registered at the platform, which only the app's owner can do (the
    operator's shared apps know the portal's callback only)."""
    host_agency = g.get("host_agency_id")
    if host_agency != agency_id:
        return d
    source = next((s.source for s in platforms.availability(db(), d, agency_id) if s.spec.name == platform), None)
    if source != "agency":
        return d
    base = f"{urlsplit(d.settings.base_url).scheme}://{request.host.lower()}"
    return replace(d, settings=replace(d.settings, base_url=base))


# Flows whose first step is not a plain OAuth redirect register their routes on this blueprint.
from portal.views import connect_bluesky, connect_mastodon, connect_telegram  # noqa: E402,F401

"""Request-scope helpers shared by the blueprints: the DB session, the runtime, the client IP."""

from __future__ import annotations

import secrets

from flask import Flask, Request, Response, current_app, g, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface, SessionMixin
from sqlalchemy.orm import Session

from portal.runtime import Runtime
from portal.security.framing import baseline_headers, content_security_policy, frame_ancestors
from portal.services import Deps


def runtime() -> Runtime:
    return current_app.extensions["easyconnect"]  # type: ignore[no-any-return]


def deps() -> Deps:
    return runtime().deps


def db() -> Session:
    """The request's DB session, opened on first use and closed on teardown."""
    if "db" not in g:
        g.db = runtime().session_factory()
    return g.db  # type: ignore[no-any-return]


def write_link_views() -> None:
    """Write this process's pending link page views before a page or an API answer shows counts. The request's
    own transaction ends first: on SQLite it may hold the write lock the write needs."""
    db().commit()
    runtime().view_counts.flush()


def client_ip() -> str | None:
    # request.remote_addr is already corrected by ProxyFix when (and only when) proxies are trusted.
    return request.remote_addr


class CookieSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session (the admin panel's), minus its per-request cost for the many requests that
    carry no session cookie (client pages, the API, the widget): there is no signature to check, and nothing to
    write back while the session stays empty. Behaves exactly like Flask's otherwise."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if not session and not session.modified:
            if session.accessed:
                response.vary.add("Cookie")
            return
        super().save_session(app, session, response)


def init_app(app: Flask) -> None:
    app.session_interface = CookieSessionInterface()

    @app.teardown_appcontext
    def _close_db(_exc: BaseException | None) -> None:
        session = g.pop("db", None)
        if session is not None:
            session.rollback()
            session.close()


def no_store(response: Response) -> Response:
    """For pages that carry a link token or an OAuth code in their URL."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def csp_nonce() -> str:
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(16)
    return g.csp_nonce  # type: ignore[no-any-return]


def init_security_headers(app: Flask, secure: bool, form_targets: str = "") -> None:
    app.jinja_env.globals["csp_nonce"] = csp_nonce

    @app.after_request
    def _headers(response: Response) -> Response:
        ancestors = g.get("frame_ancestors", "'none'")
        headers = response.headers
        present = {name.lower() for name in headers.keys()}  # noqa: SIM118 - Headers iterates as pairs
        if "content-security-policy" not in present:  # a view may have set its own
            headers.add("Content-Security-Policy", content_security_policy(csp_nonce(), form_targets, ancestors))
        for name, value in baseline_headers(secure, framed=ancestors != "'none'",
                                            keep_opener=g.get("keep_opener", False)):
            if name.lower() not in present:
                headers.add(name, value)
        return response


def allow_embedding(framed_by: tuple[str, ...] = (), keep_opener: bool = False) -> None:
    """Opt this response in to the widget: framed by these exact origins, and/or keeping window.opener."""
    if framed_by:
        g.frame_ancestors = frame_ancestors(framed_by)
    if keep_opener:
        g.keep_opener = True

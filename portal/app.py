"""The composition root: ``create_app`` builds the app, its runtime and its blueprints."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, render_template, request
from flask_limiter import Limiter
from flask_limiter.errors import RateLimitExceeded
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from portal import i18n, logsafe, web
from portal.config import Settings, load_settings
from portal.errors import PortalError, ServiceUnavailable
from portal.providers import load_catalog
from portal.runtime import build_runtime
from portal.security.crypto import DecryptionError

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent
log = logging.getLogger(__name__)
csrf = CSRFProtect()


def create_app(config: Settings | Mapping[str, Any] | None = None) -> Flask:
    settings = config if isinstance(config, Settings) else load_settings(**dict(config or {}))
    load_catalog()  # fails start-up on an invalid catalog entry
    app = Flask("portal", template_folder=str(ROOT / "templates"), static_folder=str(ROOT / "portal" / "static"),
                instance_path=str(settings.instance_path))
    app.config.update(
        SECRET_KEY=settings.secret_keys[0],
        SECRET_KEY_FALLBACKS=list(settings.secret_keys[1:]),
        SESSION_COOKIE_NAME="easyconnect_admin",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        SESSION_COOKIE_SAMESITE="Lax",
        MAX_CONTENT_LENGTH=2 * 1024 * 1024,
        MAX_FORM_MEMORY_SIZE=512 * 1024,
        WTF_CSRF_TIME_LIMIT=None,  # tied to the session instead, which expires
        WTF_CSRF_SSL_STRICT=settings.secure_cookies,
        RATELIMIT_STORAGE_URI=settings.redis_url or "memory://",
        RATELIMIT_HEADERS_ENABLED=False,  # Retry-After is set on refusals (API problems); no Redis read per request
        # Redis down must not take logins and client pages down with it: count in memory meanwhile.
        RATELIMIT_IN_MEMORY_FALLBACK_ENABLED=True,
        RATELIMIT_SWALLOW_ERRORS=True,
        EASYCONNECT_SETTINGS=settings,
    )
    if settings.trusted_proxies:
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]
    logsafe.install()
    runtime = build_runtime(settings)
    app.extensions["easyconnect"] = runtime
    web.init_app(app)
    web.init_security_headers(app, settings.secure_cookies, _sandbox_origin(settings))
    i18n.init_app(app, str(ROOT / "portal" / "translations"))
    csrf.init_app(app)
    _register_blueprints(app, settings)
    _register_error_handlers(app)
    from portal.cli import register_commands

    register_commands(app)
    return app


def _sandbox_origin(settings: Settings) -> str:
    if not settings.sandbox_enabled:
        return ""
    parts = urlsplit(settings.sandbox_url)
    return f"{parts.scheme}://{parts.netloc}"


def _register_blueprints(app: Flask, settings: Settings) -> None:
    from agency_admin import bp as admin_bp
    from agency_admin import login_manager
    from portal.views import api, connect, home, widget

    login_manager.init_app(app)
    if settings.custom_domains:
        app.before_request(connect.guard_custom_domain)
    csrf.exempt(connect.bp)  # capability URLs without cookies: see portal.views.connect
    app.register_blueprint(home.bp)
    app.register_blueprint(connect.bp)
    app.register_blueprint(widget.bp)  # connect.js, widget session status, phone hand-off
    app.register_blueprint(admin_bp)
    # One limiter per app: limits registered on a shared one would leak between apps (tests, workers).
    limiter = Limiter(key_func=get_remote_address, default_limits=[], app=app)
    api.init_app(app, csrf)  # REST API: no cookies (CSRF-exempt), rate-limited per API key (portal.ratelimit)
    limited = {"agency_admin.login": settings.login_rate_limit, "agency_admin.signup": settings.login_rate_limit,
               # Credentials and server addresses typed by clients: every client shares the portal's IP at
               # Bluesky, so unbounded attempts could get an account's sign-ins throttled there.
               "connect.app_password_connect": settings.credential_rate_limit,
               "connect.instance_start": settings.credential_rate_limit}
    for endpoint, limit in limited.items():
        # Flask-Limiter enforces a decorated limit inside the wrapper, so the wrapper must replace the view.
        app.view_functions[endpoint] = limiter.limit(limit, methods=["POST"])(app.view_functions[endpoint])
    _limit_widget(app, limiter)
    _no_limiter_hook(app, limiter)
    if settings.sandbox_enabled:
        from portal.sandbox import SandboxServer
        from portal.views import sandbox

        app.extensions["sandbox"] = SandboxServer(
            settings.sandbox_database_url, settings.sandbox_client_id, settings.sandbox_client_secret,
            settings.sandbox_redirect_allowed_prefix(), settings.sandbox_access_lifetime,
            settings.sandbox_refresh_lifetime)
        csrf.exempt(sandbox.bp)  # it stands in for a remote platform, which has its own rules
        app.register_blueprint(sandbox.bp)


# The widget's public entry points, per address: embedded link pages (the link page itself only with ``?embed=``),
# the host pages' status polls (one every 1.5 s per open widget) and new hand-off codes. Read per request from
# app.config, so an operator (or a test) can change them.
WIDGET_RATE_LIMITS = {"connect.link_page": ("WIDGET_EMBED_RATE_LIMIT", "120 per minute"),
                      "widget.status": ("WIDGET_STATUS_RATE_LIMIT", "300 per minute"),
                      "widget.handoff_code": ("WIDGET_HANDOFF_RATE_LIMIT", "20 per minute"),
                      "widget.handoff": ("WIDGET_HANDOFF_RATE_LIMIT", "20 per minute")}


def _limit_widget(app: Flask, limiter: Limiter) -> None:
    csrf.exempt(app.view_functions["widget.handoff_code"])  # no cookies: the link token is the capability
    for endpoint, (key, default) in WIDGET_RATE_LIMITS.items():
        app.config.setdefault(key, default)
        view = app.view_functions[endpoint]
        limited = limiter.limit(lambda key=key: str(app.config[key]))(view)
        if endpoint == "connect.link_page":
            limited = _only_embedded(view, limited)
        app.view_functions[endpoint] = limited


def _only_embedded(view: Any, limited: Any) -> Any:
    """The link page counts against the widget's limit only when embedded: plain visits are not the widget's to
    count, and skip the limiter's work altogether (tests/benchmarks/bench_link_page.py)."""
    @wraps(view)
    def link_page(*args: Any, **kwargs: Any) -> Any:
        return limited(*args, **kwargs) if request.args.get("embed") else view(*args, **kwargs)

    return link_page


def _no_limiter_hook(app: Flask, limiter: Limiter) -> None:
    """flask-limiter checks default, application and blueprint limits in a hook on every request, and adds its
    headers in another. The portal has none of those limits (each limit decorates its view and is checked there;
    the API has its own, portal.ratelimit) and sends no such headers (Retry-After is set on refusals), so the
    hooks would only cost every request their work."""
    limits = limiter.limit_manager
    if limits.default_limits or limits.application_limits or limits._blueprint_limits:
        raise RuntimeError("a default, application or blueprint limit needs flask-limiter's request hook")
    if app.config["RATELIMIT_HEADERS_ENABLED"]:
        raise RuntimeError("rate limit headers need flask-limiter's response hook")
    app.before_request_funcs[None].remove(limiter._check_request_limit)
    app.after_request_funcs[None] = [hook for hook in app.after_request_funcs[None]
                                     if getattr(hook, "func", None) is not Limiter._Limiter__inject_headers]


def _register_error_handlers(app: Flask) -> None:
    from portal.views import connect

    @app.errorhandler(PortalError)
    def _portal_error(exc: PortalError) -> Any:
        if request.blueprint == "connect":
            return connect.render_error(exc)
        return _error_page(exc.status, exc.public_message)

    @app.before_request
    def _refuse_control_characters() -> Any:
        if request.blueprint == "api":
            return None  # the API's own guard checks the same and answers with a problem document
        values = [request.path]
        if request.query_string:
            values.extend(request.args.values())
        if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            values.extend(request.form.values())
        if any("\x00" in value for value in values):
            return _error_page(400, "The request contained characters that are not allowed.")
        return None

    @app.errorhandler(OperationalError)
    @app.errorhandler(DBAPIError)
    def _database_down(exc: Exception) -> Any:
        log.error("database unavailable on %s %s: %s", request.method, logsafe.redact(request.path),
                  exc.__class__.__name__)
        if request.blueprint == "connect":
            return connect.render_error(ServiceUnavailable())
        return _error_page(503, ServiceUnavailable.public_message)

    @app.errorhandler(DecryptionError)
    def _undecryptable(exc: DecryptionError) -> Any:
        log.error("a stored secret could not be decrypted on %s %s (key removed before rotation?)",
                  request.method, logsafe.redact(request.path))
        return _error_page(500, "A stored credential could not be read. The operator has been told.")

    @app.errorhandler(CSRFError)
    def _csrf_error(exc: CSRFError) -> Any:
        return _error_page(400, "This form has expired or was not sent from this site. Go back, reload and try again.")

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        messages = {404: "We could not find that page.", 405: "That action is not allowed here.",
                    413: "What you sent is too large.", 429: "Too many attempts. Please wait a minute and retry."}
        response = _error_page(exc.code or 500, messages.get(exc.code or 500, exc.description or "Request failed."))
        if isinstance(exc, RateLimitExceeded):
            response.headers["Retry-After"] = str(exc.limit.limit.get_expiry())
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        log.exception("unhandled error on %s %s", request.method, logsafe.redact(request.path))
        return _error_page(500, "Something went wrong on our side. Please try again in a moment.")


def _error_page(status: int, message: str) -> Response:
    response = Response(render_template("errors/error.html", status=status, message=message), status=status)
    response.headers["Cache-Control"] = "no-store"
    return response


def create_platform_app(config: Settings | Mapping[str, Any] | None = None) -> Flask:
    """The sandbox platform on its own, without the portal's database, runtime and request hooks: what a remote
    platform is to the portal. Benchmarks serve it in processes of their own, so that the platform's CPU is a
    platform's, not the portal's."""
    from portal.sandbox import SandboxServer
    from portal.views import sandbox

    settings = config if isinstance(config, Settings) else load_settings(**dict(config or {}))
    if not settings.sandbox_enabled:
        raise RuntimeError("the sandbox is not enabled in these settings")
    app = Flask("sandbox", template_folder=str(ROOT / "templates"), static_folder=str(ROOT / "portal" / "static"),
                instance_path=str(settings.instance_path))
    app.config.update(SECRET_KEY=settings.secret_keys[0], EASYCONNECT_SETTINGS=settings)
    web.init_security_headers(app, settings.secure_cookies, _sandbox_origin(settings))
    i18n.init_app(app, str(ROOT / "portal" / "translations"))
    app.extensions["sandbox"] = SandboxServer(
        settings.sandbox_database_url, settings.sandbox_client_id, settings.sandbox_client_secret,
        settings.sandbox_redirect_allowed_prefix(), settings.sandbox_access_lifetime, settings.sandbox_refresh_lifetime)
    app.register_blueprint(sandbox.bp)
    return app

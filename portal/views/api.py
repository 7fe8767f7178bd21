"""Blueprint "api": the agency REST API under /api/v1, authenticated by API key.

The key comes only from ``Authorization: Bearer <key>`` (never the query string or the body), so
the API uses no cookies and is exempt from CSRF. Every object is reached through the key's agency:
another agency's id is a 404. Writes need a read_write key. Every error, routing ones included, is
an RFC 9457 problem document; bodies are small, strict JSON objects.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Flask, current_app, g, render_template, request
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from portal import logsafe, queue
from portal.errors import PortalError, ValidationFailed
from portal.ratelimit import RateLimit
from portal.security.crypto import DecryptionError
from portal.services import (
    agencies,
    api_keys,
    api_lists,
    connections,
    idempotency,
    links,
    offboarding,
    platforms,
    token_access,
)
from portal.views import api_spec
from portal.views.api_common import (
    MAX_BODY,
    PREFIX,
    Caller,
    bool_arg,
    caller,
    connection_json,
    json_body,
    link_json,
    ok,
    page_body,
    paging,
    problem,
    query_args,
    workspace_json,
)
from portal.web import client_ip, db, deps, runtime, write_link_views

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__, url_prefix=PREFIX)
PUBLIC = ("api.openapi", "api.docs")
DEFAULT_LINK_HOURS = 168


def init_app(app: Flask, csrf: CSRFProtect) -> None:
    """Register the blueprint: no CSRF (no cookies), rate-limited per API key."""
    csrf.exempt(bp)
    app.extensions["api_rate_limit"] = RateLimit(app.config["EASYCONNECT_SETTINGS"].api_rate_limit,
                                                 app.config["RATELIMIT_STORAGE_URI"], "api")
    app.register_blueprint(bp)


def _rate_key() -> str:
    """Requests count per presented key (by its hash), or per address when they carry none."""
    digest = api_keys.presented_digest(request.headers.get("Authorization"))
    return f"key:{digest}" if digest else f"ip:{client_ip()}"


# Guards ------------------------------------------------------------------------------------------------

@bp.before_app_request
def _api_guard() -> Any:
    """For every /api/v1 path, matched or not: a small body cap, and routing errors as problems."""
    if not (request.path == PREFIX or request.path.startswith(PREFIX + "/")):
        return None
    request.max_content_length = MAX_BODY
    if any("\x00" in value for value in (request.path, *request.args.values())):
        return problem(400, "invalid_input", "The request contained characters that are not allowed.")
    exc = request.routing_exception
    if isinstance(exc, HTTPException) and (exc.code or 500) >= 400:
        return _http_problem(exc)
    wait = current_app.extensions["api_rate_limit"].retry_after(_rate_key())
    if wait is not None:
        return problem(429, "rate_limited", "Too many requests for this API key.", {"Retry-After": str(wait)})
    return None


@bp.before_request
def _authenticate() -> Any:
    if request.endpoint in PUBLIC or request.endpoint == "api.access_token":  # that view authenticates itself
        return None
    now = deps().now()
    key = api_keys.authenticate(db(), request.headers.get("Authorization"), now)
    if key is None:
        return _unauthorized()
    g.api_caller = Caller(key.id, key.agency_id, key.scope)
    if key.last_used_at == now:
        db().commit()  # the last-used stamp (at most once a minute); otherwise the view's transaction goes on
        # (a view that calls a platform ends its transaction first: see tokens.plan_refreshes)
    if request.method not in ("GET", "HEAD") and not api_keys.may_write(key):
        return _read_only()
    return None


def _unauthorized() -> Any:
    return problem(401, "unauthorized", "Send a valid API key as 'Authorization: Bearer <key>'.",
                   {"WWW-Authenticate": 'Bearer realm="easyconnect"'})


def _read_only() -> Any:
    return problem(403, "insufficient_scope", "This API key is read-only; this request needs a read_write key.")


@bp.after_request
def _no_store(response: Any) -> Any:
    response.headers["Cache-Control"] = "no-store"  # link URLs and tokens must not sit in caches
    return response


@bp.errorhandler(PortalError)
def _portal_error(exc: PortalError) -> Any:
    db().rollback()
    extra: dict[str, Any] = {}
    headers: dict[str, str] = {}
    if isinstance(exc, token_access.ReconnectRequired):
        extra["reconnect_url"] = exc.reconnect_url
    if isinstance(exc, token_access.PlatformUnavailable):
        headers["Retry-After"] = str(exc.retry_after)
    return problem(exc.status, exc.code, exc.public_message, headers, **extra)


def _http_problem(exc: HTTPException) -> Any:
    status = exc.code or 500
    codes = {400: "invalid_input", 404: "not_found", 405: "method_not_allowed", 413: "body_too_large",
             415: "unsupported_media_type", 429: "rate_limited"}
    details = {404: "There is no such resource.", 405: "This method is not allowed on this resource.",
               413: f"The body is larger than {MAX_BODY // 1024} KB.", 429: "Too many requests for this API key."}
    headers = {"Allow": ", ".join(sorted(exc.valid_methods or []))} if isinstance(exc, MethodNotAllowed) else {}
    return problem(status, codes.get(status, "http_error"), details.get(status, "The request could not be handled."),
                   headers)


bp.register_error_handler(HTTPException, _http_problem)


@bp.errorhandler(DBAPIError)
def _database_down(exc: DBAPIError) -> Any:
    log.error("database unavailable on %s %s: %s", request.method, logsafe.redact(request.path),
              exc.__class__.__name__)
    return problem(503, "unavailable", "The service is briefly unavailable. Please retry in a minute.",
                   {"Retry-After": "30"})


@bp.errorhandler(DecryptionError)
@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> Any:
    log.exception("unhandled API error on %s %s", request.method, logsafe.redact(request.path))
    return problem(500, "internal_error", "Something went wrong on our side. Please retry in a moment.")


# Workspaces --------------------------------------------------------------------------------------------

@bp.get("/workspaces")
def list_workspaces() -> Any:
    args = query_args(("limit", "cursor", "archived"))
    page = api_lists.workspaces(db(), caller().agency_id, archived=args.get("archived") or "false", **paging(args))
    return ok(page_body(page, workspace_json))


@bp.post("/workspaces")
def create_workspace() -> Any:
    body = json_body({"name": str}, required=("name",))
    workspace = agencies.create_workspace(db(), caller().agency_id, body["name"], caller().actor())
    db().commit()
    return ok(workspace_json(workspace), 201)


@bp.get("/workspaces/<workspace_id>")
def get_workspace(workspace_id: str) -> Any:
    query_args(())
    return ok(workspace_json(agencies.get_workspace(db(), caller().agency_id, workspace_id)))


@bp.patch("/workspaces/<workspace_id>")
def rename_workspace(workspace_id: str) -> Any:
    body = json_body({"name": str}, required=("name",))
    workspace = agencies.rename_workspace(db(), caller().agency_id, workspace_id, body["name"], caller().actor())
    db().commit()
    return ok(workspace_json(workspace))


@bp.post("/workspaces/<workspace_id>/archive")
def archive_workspace(workspace_id: str) -> Any:
    json_body({})
    workspace = agencies.archive_workspace(db(), caller().agency_id, workspace_id, caller().actor(), deps().now())
    db().commit()
    return ok(workspace_json(workspace))


@bp.delete("/workspaces/<workspace_id>")
def delete_workspace(workspace_id: str) -> Any:
    """Offboard a workspace: its connections and tokens go now (revoked at the platforms by a worker),
    its links stop, the rest is purged after the retention period."""
    query_args(())
    result = offboarding.delete_workspace(db(), deps(), caller().agency_id, workspace_id, "", caller().actor(),
                                          confirmed=True)
    db().commit()
    if result.sealed is not None and not queue.enqueue_sealed(runtime(), "workers.jobs.revoke_offboarded",
                                                              result.seal_id, result.sealed):
        offboarding.revoke_sealed(db(), deps(), result.seal_id, result.sealed)  # no Redis: after the commit
    return ok({"id": workspace_id, "object": "workspace", "deleted": True,
               "connections_deleted": result.connections_deleted,
               "purge_after_days": deps().settings.offboarding_retention_days})


# Links -------------------------------------------------------------------------------------------------

LINK_FIELDS = {"workspace_id": str, "platforms": "str_list", "expires_in_hours": int, "max_uses": (int, type(None)),
               "label": str, "expected_accounts": "str_list", "language": (str, type(None))}


@bp.post("/links")
def create_link() -> Any:
    body = json_body(LINK_FIELDS, required=("workspace_id", "platforms"))
    session, d, who = db(), deps(), caller()

    def create() -> Any:
        return links.create_link(
            session, d, who.agency_id, who.actor(), workspace_id=body["workspace_id"], platforms=body["platforms"],
            available=platforms.offered(session, d, who.agency_id),
            lifetime=links.lifetime_in_hours(body.get("expires_in_hours", DEFAULT_LINK_HOURS)),
            max_uses=body.get("max_uses"), label=body.get("label", ""),
            expected_accounts=body.get("expected_accounts", ()), language=body.get("language"))

    key = request.headers.get("Idempotency-Key")
    if key is None:
        link = create()
    else:
        link, _ = idempotency.run_once(session, who.agency_id, key, idempotency.fingerprint("POST", request.path, body),
                                       d.now(), "link", create, lambda i: links.get_link(session, who.agency_id, i))
    session.commit()
    return ok(link_json(d, link), 201)


@bp.get("/links")
def list_links() -> Any:
    args = query_args(("limit", "cursor", "workspace", "state"))
    write_link_views()
    page = api_lists.links(db(), caller().agency_id, deps().now(), workspace_id=args.get("workspace") or None,
                           state=args.get("state") or None, **paging(args))
    return ok(page_body(page, lambda link: link_json(deps(), link)))


@bp.get("/links/<link_id>")
def get_link(link_id: str) -> Any:
    query_args(())
    write_link_views()
    return ok(link_json(deps(), links.get_link(db(), caller().agency_id, link_id)))


@bp.post("/links/<link_id>/revoke")
def revoke_link(link_id: str) -> Any:
    json_body({})
    link = links.revoke_link(db(), deps(), caller().agency_id, link_id, caller().actor())
    db().commit()
    return ok(link_json(deps(), link))


# Connections -------------------------------------------------------------------------------------------

@bp.get("/connections")
def list_connections() -> Any:
    args = query_args(("limit", "cursor", "workspace", "platform", "health", "active", "status"))
    page = api_lists.connections(db(), caller().agency_id, deps().now(), workspace_id=args.get("workspace") or None,
                                 platform=args.get("platform") or None, health=args.get("health") or None,
                                 active=bool_arg(args, "active"), status=args.get("status") or None, **paging(args))
    return ok(page_body(page, lambda connection: connection_json(deps(), connection)))


@bp.get("/connections/<connection_id>")
def get_connection(connection_id: str) -> Any:
    query_args(())
    return ok(connection_json(deps(), connections.get_connection(db(), caller().agency_id, connection_id)))


@bp.patch("/connections/<connection_id>")
def update_connection(connection_id: str) -> Any:
    body = json_body({"active": bool}, required=("active",))
    connection = connections.set_active(db(), caller().agency_id, connection_id, body["active"], caller().actor())
    db().commit()
    return ok(connection_json(deps(), connection))


@bp.delete("/connections/<connection_id>")
def delete_connection(connection_id: str) -> Any:
    args = query_args(("revoke",))
    revoke = bool_arg(args, "revoke")
    result = connections.disconnect(db(), deps(), caller().agency_id, connection_id, caller().actor())
    db().commit()
    if revoke is not False:
        result.revoke()  # best effort at the platform, after the delete is committed
    return ok({"id": connection_id, "object": "connection", "deleted": True, "revoked": revoke is not False})


@bp.post("/connections/<connection_id>/access-token")
def access_token(connection_id: str) -> Any:
    """The hot path authenticates the key and reads the token in one round trip (token_access.read_direct),
    answering as the other endpoints do: 401, then 403 for a read-only key, then the body's problems."""
    body_error: Exception | None = None
    try:
        json_body({})
    except (ValidationFailed, HTTPException) as exc:  # reported once the key is known to be good
        body_error = exc
    read = token_access.read_direct(runtime().direct_engine, deps(), request.headers.get("Authorization"),
                                    connection_id, client_ip(), issue=body_error is None)
    if read.key is None:
        return _unauthorized()
    if not api_keys.may_write(read.key):
        return _read_only()
    if body_error is not None:
        raise body_error
    g.api_caller = Caller(read.key.id, read.key.agency_id, read.key.scope)
    issued = read.issued
    if issued is None:  # expiring, broken or without a token of its own: the full path, in a transaction
        try:
            issued = token_access.fresh_access_token(db(), deps(), caller().agency_id, connection_id,
                                                     caller().actor())
        except token_access.ReconnectRequired:
            db().commit()  # keep the reconnect link the problem document names
            raise
        db().commit()
    return ok({"access_token": issued.access_token, "expires_at": issued.expires_at.isoformat().replace(
        "+00:00", "Z") if issued.expires_at else None, "token_type": issued.token_type})


# Reference ---------------------------------------------------------------------------------------------

@bp.get("/openapi.json")
def openapi() -> Any:
    return ok(api_spec.document(deps().settings.base_url))


@bp.get("/docs")
def docs() -> Any:
    return render_template("api/docs.html", reference=api_spec.reference(), errors=api_spec.ERRORS,
                           spec_url=PREFIX + "/openapi.json")


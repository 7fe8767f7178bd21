"""The REST API's OpenAPI 3.1 document, written by hand as data, and the reference page built from it.

A test compares the paths here with the blueprint's routes, so a route cannot be added without
being documented.
"""

from __future__ import annotations

from typing import Any

from portal.services import api_lists

ID = {"type": "string", "pattern": "^[0-9a-f]{32}$"}
TIME = {"type": "string", "format": "date-time"}
NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}

ERRORS: list[tuple[str, int, str]] = [
    ("invalid_input", 400, "The body or a parameter is malformed: bad JSON, a wrong type, an unknown field or "
                           "query parameter, a bad cursor, or a value the operation refuses."),
    ("unauthorized", 401, "No API key, or an unknown or revoked one. Send 'Authorization: Bearer <key>'."),
    ("insufficient_scope", 403, "The key is read-only and the request changes something (or reads a token)."),
    ("not_found", 404, "No such resource for this agency (ids of other agencies are not found either)."),
    ("method_not_allowed", 405, "The resource exists but not with this method; see the Allow header."),
    ("idempotency_key_reused", 409, "The Idempotency-Key was used before with a different request."),
    ("no_access_token", 409, "The connection has no token of its own (e.g. a chat served by a bot)."),
    ("link_expired", 410, "The link has expired."),
    ("body_too_large", 413, "The body is larger than 64 KB."),
    ("unsupported_media_type", 415, "A body was sent without Content-Type: application/json."),
    ("reconnect_required", 424, "Only the client can repair this connection: send them reconnect_url."),
    ("rate_limited", 429, "Too many requests for this key; wait for Retry-After seconds."),
    ("internal_error", 500, "An unexpected error; it was logged."),
    ("platform_unavailable", 503, "The platform had temporary trouble refreshing the token; retry after "
                                  "Retry-After seconds."),
    ("unavailable", 503, "The service is briefly unavailable; retry after Retry-After seconds."),
]

SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object", "description": "RFC 9457 problem details, served as application/problem+json.",
        "required": ["type", "title", "status", "detail", "code"],
        "properties": {"type": {"type": "string", "format": "uri-reference"}, "title": {"type": "string"},
                       "status": {"type": "integer"}, "detail": {"type": "string"},
                       "code": {"type": "string", "enum": sorted({code for code, _, _ in ERRORS})},
                       "reconnect_url": {"type": "string", "format": "uri",
                                         "description": "Only with code reconnect_required."}},
    },
    "Workspace": {
        "type": "object", "required": ["id", "object", "name", "archived", "archived_at", "created_at"],
        "properties": {"id": ID, "object": {"const": "workspace"}, "name": {"type": "string", "maxLength": 120},
                       "archived": {"type": "boolean"}, "archived_at": NULLABLE_TIME, "created_at": TIME},
    },
    "Link": {
        "type": "object",
        "required": ["id", "object", "workspace_id", "url", "label", "platforms", "state", "uses", "max_uses",
                     "opened_count", "expected_accounts", "reconnect_connection_id", "expires_at", "revoked_at",
                     "created_at"],
        "properties": {"id": ID, "object": {"const": "link"}, "workspace_id": ID,
                       "url": {"type": "string", "format": "uri", "description": "The EasyConnect link to send."},
                       "label": {"type": "string"}, "platforms": {"type": "array", "items": {"type": "string"}},
                       "state": {"type": "string", "enum": list(api_lists.LINK_STATES)},
                       "uses": {"type": "integer"}, "max_uses": {"type": ["integer", "null"]},
                       "opened_count": {"type": "integer"},
                       "expected_accounts": {"type": "array", "items": {"type": "string"}},
                       "language": {"type": ["string", "null"]},
                       "reconnect_connection_id": {"type": ["string", "null"]}, "expires_at": TIME,
                       "revoked_at": NULLABLE_TIME, "created_at": TIME},
    },
    "Connection": {
        "type": "object", "description": "A connected account. Never carries a token.",
        "required": ["id", "object", "workspace_id", "platform", "account", "active", "health", "token_status"],
        "properties": {
            "id": ID, "object": {"const": "connection"}, "workspace_id": ID, "platform": {"type": "string"},
            "account": {"type": "object", "properties": {
                "external_id": {"type": "string"}, "kind": {"type": "string"}, "display_name": {"type": "string"},
                "handle": {"type": "string"}, "avatar_url": {"type": ["string", "null"]}}},
            "active": {"type": "boolean", "description": "Inactive: kept fresh, not offered for new posts."},
            "health": {"type": "string", "enum": list(api_lists.HEALTHS)}, "health_reason": {"type": "string"},
            "token_status": {"type": "string", "enum": ["valid", "expiring_soon", "expired"]},
            "token_expires_at": NULLABLE_TIME, "refresh_expires_at": NULLABLE_TIME,
            "reconnect_by": {**NULLABLE_TIME, "description": "When the client must reconnect at the latest."},
            "scopes": {"type": "array", "items": {"type": "string"}}, "last_refreshed_at": NULLABLE_TIME,
            "last_checked_at": NULLABLE_TIME, "created_at": TIME, "updated_at": TIME},
    },
    "AccessToken": {
        "type": "object", "required": ["access_token", "expires_at", "token_type"],
        "properties": {"access_token": {"type": "string"}, "expires_at": NULLABLE_TIME,
                       "token_type": {"const": "Bearer"}},
    },
    "DeletedWorkspace": {
        "type": "object", "required": ["id", "object", "deleted", "connections_deleted", "purge_after_days"],
        "properties": {"id": ID, "object": {"const": "workspace"}, "deleted": {"const": True},
                       "connections_deleted": {"type": "integer", "minimum": 0},
                       "purge_after_days": {"type": "integer", "minimum": 0}}},
    "Deleted": {"type": "object", "properties": {"id": ID, "object": {"const": "connection"},
                                                 "deleted": {"const": True}, "revoked": {"type": "boolean"}}},
}


def _list_of(name: str) -> dict[str, Any]:
    return {"type": "object", "required": ["object", "data", "next_cursor"],
            "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": _ref(name)},
                           "next_cursor": {"type": ["string", "null"],
                                           "description": "Pass as cursor for the next page; null on the last."}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or {"type": "string"}}


PAGING = [_query("limit", "Page size, 1 to 100 (default 50).", {"type": "integer", "minimum": 1, "maximum": 100}),
          _query("cursor", "next_cursor of the previous page.")]


def _body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "additionalProperties": False, "required": required, "properties": properties}}}}


EMPTY_BODY = {"required": False, "content": {"application/json": {"schema": {
    "type": "object", "additionalProperties": False, "maxProperties": 0}}}}


def _op(summary: str, ok: tuple[int, str | dict[str, Any]], *, scope: str = "read", description: str = "",
        params: list[dict[str, Any]] | None = None, body: dict[str, Any] | None = None,
        errors: tuple[int, ...] = (), headers: dict[str, Any] | None = None) -> dict[str, Any]:
    status, schema = ok
    content = {"application/json": {"schema": schema if isinstance(schema, dict) else _ref(schema)}}
    responses: dict[str, Any] = {str(status): {"description": "Success", "content": content}}
    if headers:
        responses[str(status)]["headers"] = headers
    for code in sorted({400, 401, 429, 500, *errors, *((403,) if scope == "read_write" else ())}):
        responses[str(code)] = {"$ref": f"#/components/responses/Problem{code}"}
    op: dict[str, Any] = {"summary": summary, "description": (description + f" Needs a {scope} key.").strip(),
                          "x-scope": scope, "parameters": params or [], "responses": responses}
    if body is not None:
        op["requestBody"] = body
    return op


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": ID}


WORKSPACE_BODY = _body({"name": {"type": "string", "minLength": 1, "maxLength": 120}}, ["name"])
LINK_BODY = _body({
    "workspace_id": ID, "platforms": {"type": "array", "items": {"type": "string"}, "minItems": 1},
    "expires_in_hours": {"type": "integer", "minimum": 1, "maximum": 720, "default": 168},
    "max_uses": {"type": ["integer", "null"], "minimum": 1, "maximum": 1000, "default": None},
    "label": {"type": "string", "maxLength": 120},
    "expected_accounts": {"type": "array", "items": {"type": "string"}, "maxItems": 50},
    "language": {"type": ["string", "null"], "enum": ["en", "es", "fr", "de", "pt", None],
                 "description": "The client pages' language; null: the agency's default, else the browser's."}},
    ["workspace_id", "platforms"])
IDEMPOTENCY = {"name": "Idempotency-Key", "in": "header", "required": False,
               "schema": {"type": "string", "maxLength": 255},
               "description": "Retrying with the same key and body returns the same link; another body is a 409. "
                              "Keys are kept for 24 hours."}
NO_STORE = {"Cache-Control": {"schema": {"const": "no-store"}}}


def _paths() -> dict[str, Any]:
    ws, link, conn = _path_param("workspace_id"), _path_param("link_id"), _path_param("connection_id")
    return {
        "/workspaces": {
            "get": _op("List workspaces", (200, _list_of("Workspace")), params=[*PAGING, _query(
                "archived", "false (default), true or all.", {"enum": ["false", "true", "all"]})]),
            "post": _op("Create a workspace", (201, "Workspace"), scope="read_write", body=WORKSPACE_BODY)},
        "/workspaces/{workspace_id}": {
            "get": _op("Get a workspace", (200, "Workspace"), params=[ws], errors=(404,)),
            "patch": _op("Rename a workspace", (200, "Workspace"), scope="read_write", params=[ws],
                         body=WORKSPACE_BODY, errors=(404,)),
            "delete": _op("Delete a workspace", (200, "DeletedWorkspace"), scope="read_write", params=[ws],
                          errors=(404,), description=(
                              "Offboarding: its connections and their tokens are deleted at once (and revoked at the "
                              "platforms by a background job), its links stop working, and everything else is "
                              "purged after the retention period (purge_after_days)."))},
        "/workspaces/{workspace_id}/archive": {
            "post": _op("Archive a workspace", (200, "Workspace"), scope="read_write", params=[ws], body=EMPTY_BODY,
                        errors=(404,), description="Its links stop working.")},
        "/links": {
            "get": _op("List links", (200, _list_of("Link")), params=[*PAGING, _query("workspace", "A workspace id."),
                       _query("state", "Link state.", {"enum": list(api_lists.LINK_STATES)})]),
            "post": _op("Create a link", (201, "Link"), scope="read_write", params=[IDEMPOTENCY], body=LINK_BODY,
                        errors=(404, 409), description="The link's url is what the client opens.")},
        "/links/{link_id}": {"get": _op("Get a link", (200, "Link"), params=[link], errors=(404,))},
        "/links/{link_id}/revoke": {
            "post": _op("Revoke a link", (200, "Link"), scope="read_write", params=[link], body=EMPTY_BODY,
                        errors=(404,), description="It stops working at once.")},
        "/connections": {
            "get": _op("List connections", (200, _list_of("Connection")), params=[
                *PAGING, _query("workspace", "A workspace id."), _query("platform", "A platform name."),
                _query("health", "Health as shown in the admin.", {"enum": list(api_lists.HEALTHS)}),
                _query("active", "true or false.", {"enum": ["true", "false"]}),
                _query("status", "Token status: expiring means the client must reconnect within 30 days.",
                       {"enum": list(api_lists.STATUSES)})])},
        "/connections/{connection_id}": {
            "get": _op("Get a connection", (200, "Connection"), params=[conn], errors=(404,)),
            "patch": _op("Activate or deactivate a connection", (200, "Connection"), scope="read_write",
                         params=[conn], body=_body({"active": {"type": "boolean"}}, ["active"]), errors=(404,)),
            "delete": _op("Disconnect a connection", (200, "Deleted"), scope="read_write", params=[conn, _query(
                "revoke", "Also revoke the grant at the platform (default true).", {"enum": ["true", "false"]})],
                errors=(404,), description="Its tokens are deleted at once.")},
        "/connections/{connection_id}/access-token": {
            "post": _op("Get a fresh access token", (200, "AccessToken"), scope="read_write", params=[conn],
                        body=EMPTY_BODY, errors=(404, 409, 424, 503), headers=NO_STORE, description=(
                            "Refreshed first when it expires within 5 minutes. Never a refresh token. Every read is "
                            "audited. 424 with reconnect_url when only the client can repair the connection; 503 "
                            "with Retry-After on temporary platform trouble. Needs read_write because the token acts "
                            "on the client's account."))},
        "/openapi.json": {"get": {"summary": "This document", "security": [], "responses": {"200": {
            "description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
        "/docs": {"get": {"summary": "The reference page", "security": [], "responses": {"200": {
            "description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}}}},
    }


def document(base_url: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document for this deployment."""
    statuses = sorted({status for _, status, _ in ERRORS} | {400})
    return {
        "openapi": "3.1.0",
        "info": {"title": "EasyConnect API", "version": "1.0.0",
                 "description": "Workspaces, EasyConnect links, connections and fresh access tokens of one agency. "
                                "Authenticate with 'Authorization: Bearer <API key>' (admin panel, API keys)."},
        "servers": [{"url": base_url.rstrip("/") + "/api/v1"}],
        "security": [{"apiKey": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer",
                                           "description": "An API key: eck_<prefix>_<secret>. Header only."}},
            "schemas": SCHEMAS,
            "responses": {f"Problem{status}": {"description": f"Error {status}", "content": {
                "application/problem+json": {"schema": _ref("Problem")}}} for status in statuses},
        },
    }


def reference() -> list[dict[str, Any]]:
    """The operations as rows for the reference page."""
    rows = []
    for path, methods in _paths().items():
        for method, op in methods.items():
            rows.append({"method": method.upper(), "path": "/api/v1" + path, "summary": op["summary"],
                         "description": op.get("description", ""), "scope": op.get("x-scope", "none"),
                         "params": [(p["name"], p["in"], p.get("description", "")) for p in op.get("parameters", [])],
                         "body": sorted(op.get("requestBody", {}).get("content", {}).get("application/json", {})
                                        .get("schema", {}).get("properties", {})),
                         "statuses": sorted(op["responses"])})
    return rows

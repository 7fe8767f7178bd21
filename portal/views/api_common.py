"""What every REST API view shares: problem documents, strict JSON and query parsing, the caller's
key, and the JSON shape of each object. Objects never carry a token or a secret."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Response, g, request

from portal.errors import ValidationFailed
from portal.models import Connection, ConnectLink, Workspace
from portal.services import Deps, api_lists, links, representation
from portal.services.audit import Actor
from portal.web import client_ip

PREFIX = "/api/v1"
MAX_BODY = 64 * 1024
MAX_DEPTH = 8
TITLES = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
          409: "Conflict", 410: "Gone", 413: "Request too large", 415: "Unsupported media type",
          422: "Unprocessable content", 424: "Failed dependency", 429: "Too many requests",
          500: "Internal server error", 502: "Bad gateway", 503: "Service unavailable"}


@dataclass(frozen=True)
class Caller:
    """The authenticated API key, as plain values (it outlives the commits a view makes)."""

    key_id: str
    agency_id: str
    scope: str

    def actor(self) -> Actor:
        return Actor("api", self.key_id, client_ip())


def caller() -> Caller:
    return g.api_caller  # type: ignore[no-any-return]


def problem(status: int, code: str, detail: str, headers: dict[str, str] | None = None,
            **extra: Any) -> Response:
    """An RFC 9457 problem document; ``type`` points at the error's entry in the API reference."""
    body = {"type": f"{PREFIX}/docs#error-{code}", "title": TITLES.get(status, "Error"), "status": status,
            "detail": detail, "code": code, **extra}
    response = Response(json.dumps(body), status=status, mimetype="application/problem+json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def ok(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


# Input ------------------------------------------------------------------------------------------------

class UnsupportedMediaType(ValidationFailed):
    status = 415
    code = "unsupported_media_type"
    public_message = "Send the body as JSON with Content-Type: application/json."


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(value, dict):
        return max([_depth(v, level + 1) for v in value.values()] or [level])
    if isinstance(value, list):
        return max([_depth(v, level + 1) for v in value] or [level])
    return level


def json_body(fields: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON object body, checked: only the named fields, each of its type (``fields`` maps a name to
    a type, a tuple of types or "str_list"); an empty body counts as {} when nothing is required."""
    raw = request.get_data(cache=True)  # bounded by the blueprint's max_content_length: 413 beyond
    if not raw.strip() and not required:
        return {}
    if request.mimetype != "application/json":
        raise UnsupportedMediaType()
    try:
        data = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        raise ValidationFailed("The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ValidationFailed("The body must be a JSON object.")
    if _depth(data) > MAX_DEPTH:
        raise ValidationFailed("The body is nested too deeply.")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValidationFailed(f"Unknown fields: {', '.join(unknown)[:200]}.")
    missing = [name for name in required if name not in data]
    if missing:
        raise ValidationFailed(f"Missing fields: {', '.join(missing)}.")
    for name, value in list(data.items()):
        data[name] = _check_type(name, value, fields[name])
    return data


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_type(name: str, value: Any, kind: Any) -> Any:
    """The value if it has the field's type (raises otherwise). JSON does not tell 5 from 5.0: an
    integral number is an integer, as JSON Schema says, so 5.0 is accepted as 5."""
    if kind == "str_list":
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value) or len(value) > 100:
            raise ValidationFailed(f"{name} must be a list of strings.")
        return value
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if int in kinds and isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        value = int(value)
    # bool is an int in Python; JSON true is never a number here
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        names = " or ".join("null" if k is type(None) else {str: "a string", int: "an integer",
                                                               bool: "a boolean"}.get(k, k.__name__) for k in kinds)
        raise ValidationFailed(f"{name} must be {names}.")
    if isinstance(value, str) and "\x00" in value:
        raise ValidationFailed(f"{name} contains characters that are not allowed.")
    return value


def query_args(allowed: tuple[str, ...]) -> dict[str, str]:
    """The query string, refusing names the endpoint does not know (a typo must not widen a list)."""
    unknown = sorted(set(request.args) - set(allowed))
    if unknown:
        raise ValidationFailed(f"Unknown query parameters: {', '.join(unknown)[:200]}.")
    return {name: request.args.get(name, "") for name in allowed if name in request.args}


def int_arg(args: dict[str, str], name: str, default: int) -> int:
    value = args.get(name)
    if value is None:
        return default
    if not value.isdigit() or len(value) > 6:
        raise ValidationFailed(f"{name} must be a whole number.")
    return int(value)


def bool_arg(args: dict[str, str], name: str) -> bool | None:
    value = args.get(name)
    if value is None or value == "":
        return None
    if value not in ("true", "false"):
        raise ValidationFailed(f"{name} must be true or false.")
    return value == "true"


def paging(args: dict[str, str]) -> dict[str, Any]:
    return {"limit": api_lists.check_limit(int_arg(args, "limit", api_lists.DEFAULT_LIMIT)),
            "cursor": args.get("cursor") or None}


def page_body(page: api_lists.Page[Any], render: Any) -> dict[str, Any]:
    return {"object": "list", "data": [render(item) for item in page.items], "next_cursor": page.next_cursor}


# Output ------------------------------------------------------------------------------------------------

def _time(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def workspace_json(workspace: Workspace) -> dict[str, Any]:
    return {"id": workspace.id, "object": "workspace", "name": workspace.name,
            "archived": workspace.archived_at is not None, "archived_at": _time(workspace.archived_at),
            "created_at": _time(workspace.created_at)}


def link_json(deps: Deps, link: ConnectLink) -> dict[str, Any]:
    return {"id": link.id, "object": "link", "workspace_id": link.workspace_id, "url": links.link_url(deps, link),
            "label": link.label, "platforms": list(link.allowed_platforms),
            "state": link.state(deps.now()).replace(" ", "_"), "uses": link.uses, "max_uses": link.max_uses,
            "opened_count": link.opened_count, "expected_accounts": list(link.expected_accounts or []),
            "language": link.language,
            "reconnect_connection_id": link.reconnect_connection_id, "expires_at": _time(link.expires_at),
            "revoked_at": _time(link.revoked_at), "created_at": _time(link.created_at)}


def connection_json(deps: Deps, connection: Connection) -> dict[str, Any]:
    return representation.connection_summary(connection, deps.now())

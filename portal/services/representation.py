"""How objects look outside: the one connection summary shared by the REST API and webhooks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from portal.models import Connection, ConnectLink


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def connection_summary(connection: Connection, now: datetime) -> dict[str, Any]:
    """A connection as the API returns it: account, health, token status and dates, never a token."""
    from portal.services.tokens import health_view  # tokens imports connections, which records webhooks

    view = health_view(connection, now)
    return {"id": connection.id, "object": "connection", "workspace_id": connection.workspace_id,
            "platform": connection.platform,
            "account": {"external_id": connection.external_id, "kind": connection.account_kind,
                        "display_name": connection.display_name, "handle": connection.handle,
                        "avatar_url": connection.avatar_url},
            "active": connection.active, "health": str(view.health), "health_reason": view.reason,
            "token_status": view.token_status.lower().replace(" ", "_"),
            "token_expires_at": iso(connection.token_expires_at),
            "refresh_expires_at": iso(connection.refresh_expires_at), "reconnect_by": iso(view.reconnect_by),
            "scopes": connection.scopes.split(), "last_refreshed_at": iso(connection.last_refreshed_at),
            "last_checked_at": iso(connection.last_checked_at), "created_at": iso(connection.created_at),
            "updated_at": iso(connection.updated_at)}


def link_summary(link: ConnectLink, now: datetime) -> dict[str, Any]:
    """A link without its URL: the URL is a bearer credential and never leaves in an event."""
    return {"id": link.id, "object": "link", "workspace_id": link.workspace_id, "label": link.label,
            "platforms": list(link.allowed_platforms), "state": link.state(now).replace(" ", "_"),
            "uses": link.uses, "max_uses": link.max_uses, "opened_count": link.opened_count,
            "reconnect_connection_id": link.reconnect_connection_id, "expires_at": iso(link.expires_at),
            "created_at": iso(link.created_at)}

"""The client's own view of a link: what they connected through it, its health, and removing it.

Only connections made through this very link (``connected_via_link_id``), in its workspace and
agency, are shown or removable: a link is a capability for what it created, nothing more. Removing
is the agency's own disconnect (tokens deleted, revoked at the platform after commit, the
``connection.deleted`` webhook event) plus a notification telling the agency the client did it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.errors import NotFound
from portal.models import Connection, ConnectLink
from portal.services import Deps, connections, notifications, platforms, tokens
from portal.services.audit import Actor


@dataclass(frozen=True)
class ClientConnection:
    """What the client sees of one of its connections (no token, no internal reason codes)."""

    id: str
    platform: str
    name: str
    handle: str
    health: str
    reconnect_by: datetime | None


def _through_link(link: ConnectLink):  # type: ignore[no-untyped-def]
    return select(Connection).where(Connection.agency_id == link.agency_id,
                                    Connection.workspace_id == link.workspace_id,
                                    Connection.connected_via_link_id == link.id)


def list_for_link(db: Session, link: ConnectLink, now: datetime) -> list[ClientConnection]:
    rows = db.scalars(_through_link(link).order_by(Connection.platform, Connection.display_name))
    result = []
    for row in rows:
        view = tokens.health_view(row, now)
        result.append(ClientConnection(row.id, row.platform, row.display_name or row.external_id, row.handle,
                                       str(view.health), view.reconnect_by))
    return result


def remove(db: Session, deps: Deps, link: ConnectLink, connection_id: str, ip: str | None) -> connections.Disconnected:
    """Disconnect one connection made through this link. The caller commits, then calls ``revoke()``."""
    row = db.scalar(_through_link(link).where(Connection.id == connection_id))
    if row is None:
        raise NotFound("No such connection on this link.")
    removed = connections.disconnect(db, deps, link.agency_id, row.id, Actor("client", link.id, ip))
    gone = removed.connection
    name = f"@{gone.handle}" if gone.handle else (gone.display_name or gone.external_id)
    notifications.notify(db, deps, gone, "client_removed", str(gone.token_version),
                         f"Your client removed {name} on {gone.platform}",
                         f"{gone.display_name or name} ({gone.platform}) was disconnected by the client from the "
                         "link's self-service page. Its tokens were deleted and revoked at the platform.")
    return removed


def link_page_content(db: Session, deps: Deps, link: ConnectLink) -> tuple[list[Any], list[Connection]]:
    """What the link page lists: the link's platforms this agency offers (catalog order) and the workspace's
    connections on them. The client page and the admin's preview both use this."""
    offered = platforms.offered(db, deps, link.agency_id)
    allowed = set(link.allowed_platforms)
    choices = [spec for name, spec in offered.items() if name in allowed]
    connected = [c for c in connections.list_connections(db, link.agency_id, link.workspace_id)
                 if c.platform in allowed]
    return choices, connected

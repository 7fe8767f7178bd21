"""Filtered, cursor-paginated lists of an agency's workspaces, links and connections (the REST API's).

Order is always (created_at, id), oldest first, so pages are stable while rows are added. A cursor
is the last row's sort key, base64url-encoded; it is opaque to callers and harmless if forged: it
only moves the start of a query that is still filtered by the caller's agency, and every value in
it is validated and bound as a parameter. Filter values are bound parameters too, never SQL text.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, and_, case, or_, select
from sqlalchemy.orm import Session

from portal.errors import ValidationFailed
from portal.models import Connection, ConnectLink, Health, Workspace
from portal.services.tokens import EXPIRING_SOON

T = TypeVar("T", Workspace, ConnectLink, Connection)
MAX_LIMIT = 100
DEFAULT_LIMIT = 50
EXPIRING_WITHIN = timedelta(days=30)  # the "expiring" status filter, as in the admin's list
_ID = re.compile(r"^[0-9a-f]{32}$")
LINK_STATES = ("active", "expired", "revoked", "used_up")
HEALTHS = ("healthy", "warning", "error", "refreshing")
STATUSES = ("valid", "expiring", "expired")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_cursor(row: Workspace | ConnectLink | Connection) -> str:
    raw = json.dumps([row.created_at.isoformat(), row.id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (created_at, id) a cursor names; anything else is a 400, never an exception."""
    try:
        if len(cursor) > 200:
            raise ValueError("too long")
        created, row_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        when = datetime.fromisoformat(created)
        if when.tzinfo is None or not isinstance(row_id, str) or not _ID.match(row_id):
            raise ValueError("bad cursor")
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise ValidationFailed("The cursor is not valid. Use next_cursor from the previous page.") from None
    return when, row_id


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationFailed(f"limit must be between 1 and {MAX_LIMIT}.")
    return limit


def _page(db: Session, model: type[T], query: Select[T], limit: int, cursor: str | None) -> Page[T]:
    check_limit(limit)
    if cursor:
        created, row_id = decode_cursor(cursor)
        query = query.where(or_(model.created_at > created, and_(model.created_at == created, model.id > row_id)))
    rows = list(db.scalars(query.order_by(model.created_at, model.id).limit(limit + 1)))
    return Page(rows[:limit], encode_cursor(rows[limit - 1]) if len(rows) > limit else None)


def workspaces(db: Session, agency_id: str, *, archived: str = "false", limit: int = DEFAULT_LIMIT,
               cursor: str | None = None) -> Page[Workspace]:
    """``archived``: "false" (default, live ones), "true" (archived ones) or "all"."""
    query = select(Workspace).where(Workspace.agency_id == agency_id, Workspace.deleted_at.is_(None))
    if archived == "false":
        query = query.where(Workspace.archived_at.is_(None))
    elif archived == "true":
        query = query.where(Workspace.archived_at.is_not(None))
    elif archived != "all":
        raise ValidationFailed("archived must be true, false or all.")
    return _page(db, Workspace, query, limit, cursor)


def link_state_clause(state: str, now: datetime) -> ColumnElement[bool]:
    """The SQL form of ``ConnectLink.state``; ``used_up`` is the API's name for "used up"."""
    revoked = ConnectLink.revoked_at.is_not(None)
    expired = and_(~revoked, ConnectLink.expires_at <= now)
    used_up = and_(~revoked, ConnectLink.expires_at > now, ConnectLink.max_uses.is_not(None),
                   ConnectLink.uses >= ConnectLink.max_uses)
    clauses: dict[str, ColumnElement[bool]] = {
        "revoked": revoked, "expired": expired, "used_up": used_up,
        "active": and_(~revoked, ConnectLink.expires_at > now,
                       or_(ConnectLink.max_uses.is_(None), ConnectLink.uses < ConnectLink.max_uses)),
    }
    if state not in clauses:
        raise ValidationFailed(f"state must be one of {', '.join(LINK_STATES)}.")
    return clauses[state]


def links(db: Session, agency_id: str, now: datetime, *, workspace_id: str | None = None, state: str | None = None,
          limit: int = DEFAULT_LIMIT, cursor: str | None = None) -> Page[ConnectLink]:
    query = select(ConnectLink).where(ConnectLink.agency_id == agency_id)
    if workspace_id:
        query = query.where(ConnectLink.workspace_id == workspace_id)
    if state:
        query = query.where(link_state_clause(state, now))
    return _page(db, ConnectLink, query, limit, cursor)


def _lapse() -> Any:
    # When the client must reconnect: the refresh token's end if there is one, else the access token's.
    return case((Connection.refresh_token_enc.is_not(None), Connection.refresh_expires_at),
                else_=Connection.token_expires_at)


def _expired(now: datetime) -> ColumnElement[bool]:
    lapse = _lapse()  # NULL (no known end) counts as not expired: every comparison is guarded
    return or_(Connection.health == Health.ERROR, and_(lapse.is_not(None), lapse <= now))


def status_clause(status: str, now: datetime) -> ColumnElement[bool]:
    """Token status as the admin's connection list filters it (expiring: within 30 days)."""
    lapse, expired = _lapse(), _expired(now)
    if status == "expired":
        return expired
    if status == "expiring":
        return and_(~expired, lapse.is_not(None), lapse <= now + EXPIRING_WITHIN)
    if status == "valid":
        return ~expired
    raise ValidationFailed(f"status must be one of {', '.join(STATUSES)}.")


def health_clause(health: str, now: datetime) -> ColumnElement[bool]:
    """The SQL form of ``tokens.health_view(...).health``: stored health, worsened by the token's lapse."""
    lapse, expired = _lapse(), _expired(now)
    soon = and_(lapse.is_not(None), lapse <= now + EXPIRING_SOON)
    clauses: dict[str, ColumnElement[bool]] = {
        "error": expired,
        "warning": and_(~expired, or_(Connection.health == Health.WARNING,
                                      and_(Connection.health == Health.HEALTHY, soon))),
        "healthy": and_(~expired, Connection.health == Health.HEALTHY, ~soon),
        "refreshing": and_(~expired, Connection.health == Health.REFRESHING),
    }
    if health not in clauses:
        raise ValidationFailed(f"health must be one of {', '.join(HEALTHS)}.")
    return clauses[health]


def connections(db: Session, agency_id: str, now: datetime, *, workspace_id: str | None = None,
                platform: str | None = None, health: str | None = None, active: bool | None = None,
                status: str | None = None, limit: int = DEFAULT_LIMIT,
                cursor: str | None = None) -> Page[Connection]:
    query = select(Connection).where(Connection.agency_id == agency_id)
    if workspace_id:
        query = query.where(Connection.workspace_id == workspace_id)
    if platform:
        query = query.where(Connection.platform == platform)
    if active is not None:
        query = query.where(Connection.active.is_(True) if active else Connection.active.is_(False))
    if status:
        query = query.where(status_clause(status, now))
    if health:
        query = query.where(health_clause(health, now))
    return _page(db, Connection, query, limit, cursor)


"""The audit log: who did what to which object. Never a secret."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select
from sqlalchemy.orm import Session

from portal.db import utcnow
from portal.models import AuditEvent

_FORBIDDEN_KEY_PARTS = ("token", "secret", "password", "code", "verifier", "state")


@dataclass(frozen=True)
class Actor:
    type: str  # member | client | worker | system | api
    id: str | None = None
    ip: str | None = None


SYSTEM = Actor("system")
WORKER = Actor("worker")


def record(db: Session, agency_id: str, actor: Actor, action: str, object_type: str | None = None,
           object_id: str | None = None, **details: Any) -> AuditEvent:
    """Add an audit event to the current transaction. Detail keys that could hold a secret are refused."""
    _check(details)
    event = AuditEvent(agency_id=agency_id, actor_type=actor.type, actor_id=actor.id, action=action,
                       object_type=object_type, object_id=object_id, ip=actor.ip, details=details)
    db.add(event)
    return event


def record_now(db: Session | Connection, agency_id: str, actor: Actor, action: str, object_type: str | None = None,
               object_id: str | None = None, **details: Any) -> None:
    """``record`` as one INSERT sent at once, without an ORM object: for hot paths (a refresh, a token
    read) whose agency row already exists. On an autocommit connection the row is committed at once."""
    _check(details)
    db.execute(_INSERT, {"v_agency_id": agency_id, "v_actor_type": actor.type, "v_actor_id": actor.id,
                         "v_action": action, "v_object_type": object_type, "v_object_id": object_id,
                         "v_ip": actor.ip, "v_details": details, "v_created_at": utcnow()})


_INSERT = insert(AuditEvent.__table__).values(  # built once: the hot paths only bind values
    {name: bindparam(f"v_{name}") for name in ("agency_id", "actor_type", "actor_id", "action", "object_type",
                                                 "object_id", "ip", "details", "created_at")})


def _check(details: dict[str, Any]) -> None:
    for key in details:
        if any(part in key.lower() for part in _FORBIDDEN_KEY_PARTS):
            raise ValueError(f"audit detail {key!r} looks like a secret")


# What the audit page filters by: a name and the actions it covers.
CATEGORIES: dict[str, tuple[str, ...]] = {
    "connects": ("connection.created",),
    "reconnects": ("connection.reconnected",),
    "disconnects": ("connection.disconnected",),
    "refreshes": ("connection.refreshed", "connection.refresh_interrupted"),
    "health": ("connection.health_changed", "connection.recovered", "connection.activated",
               "connection.deactivated", "provider_app.rejected"),
    "token reads": ("connection.token_read",),
    "links": ("link.created", "link.revoked"),
    "logins": ("member.login", "member.logout"),
    "api keys": ("api_key.created", "api_key.revoked"),
    "team": ("member.invited", "member.invite_revoked", "member.joined", "member.role_changed", "member.removed"),
    "offboarding": ("workspace.deleted", "agency.deleted", "offboarding.revoked"),
    "settings": ("agency.branding_updated", "provider_app.saved", "provider_app.removed",
                 "custom_platform.created", "custom_platform.deleted", "workspace.created", "workspace.renamed",
                 "workspace.archived"),
}


def recent(db: Session, agency_id: str, limit: int = 100, category: str | None = None) -> list[AuditEvent]:
    query = (select(AuditEvent).where(AuditEvent.agency_id == agency_id)
             .order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc()).limit(limit))
    if category:
        query = query.where(AuditEvent.action.in_(CATEGORIES.get(category, ())))
    return list(db.scalars(query))

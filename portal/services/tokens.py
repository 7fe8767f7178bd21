"""Token lifecycle: refresh under a per-connection lock, and health as users see it.

Refresh is the dangerous operation: platforms like X and TikTok rotate refresh tokens, so
two refreshers at once, or a crash between the platform's answer and the commit, lose the
connection. Hence: one refresher per connection (lock with an owner token), re-read after
locking, compare-and-swap on ``token_version`` when saving, new tokens committed before
anything else, and ``invalid_grant`` confirmed by re-reading before declaring the
connection broken.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, lazyload

from portal.errors import NotFound, PlatformError, RefreshBusy
from portal.models import Connection, Health
from portal.oauth import AppCredentials, TokenGrant
from portal.providers import ProviderSpec
from portal.services import Deps, audit, notifications, platforms, schedule, webhooks
from portal.services.audit import WORKER, Actor
from portal.services.connections import read_tokens, spec_and_app, token_context

log = logging.getLogger(__name__)
EXPIRING_SOON = timedelta(days=7)


class RefreshResult(enum.StrEnum):
    REFRESHED = "refreshed"
    ADOPTED = "adopted"  # another refresher saved new tokens while we waited
    NOT_DUE = "not_due"
    NOT_REFRESHABLE = "not_refreshable"
    GONE = "gone"  # disconnected meanwhile


def is_due(connection: Connection, now: datetime, margin: timedelta) -> bool:
    """Due by the sweep's schedule, or close to expiry whatever the schedule says."""
    if connection.refresh_due_at is not None and connection.refresh_due_at <= now:
        return True
    return connection.token_expires_at is not None and connection.token_expires_at <= now + margin


def refresh_connection(db: Session, deps: Deps, connection_id: str, *, agency_id: str | None = None,
                       force: bool = False, actor: Actor = WORKER, lock_wait: float = 10.0) -> RefreshResult:
    """Refresh one connection's tokens. Commits: the refresh marker, then the new tokens."""
    connection = _load(db, connection_id, agency_id)
    if connection is None:
        if agency_id is not None:
            raise NotFound("No such connection.")
        return RefreshResult.GONE
    # The spec and app are looked up once per refresh and passed down (each lookup is a query).
    spec, app = spec_and_app(db, deps, connection.agency_id, connection.platform, connection.instance)
    if not platforms.adapter_for(deps, spec).can_refresh(spec, connection.refresh_token_enc is not None):
        return RefreshResult.NOT_REFRESHABLE
    seen_version = connection.token_version
    # One lock per grant: connections made from one authorization share its (rotating) refresh token.
    lock_name = f"refresh:{connection.grant_id or connection_id}"
    db.commit()  # hold no transaction while waiting for the lock or the platform
    with deps.locks.hold(lock_name, ttl=deps.settings.refresh_lock_seconds,
                         wait=lock_wait) as owned:
        if not owned:
            raise RefreshBusy()
        return _refresh_locked(db, deps, connection_id, seen_version, force, actor, spec, app)


def _load(db: Session, connection_id: str, agency_id: str | None) -> Connection | None:
    # No workspace join here: the refresh path never needs it.
    query = (select(Connection).options(lazyload(Connection.workspace)).where(Connection.id == connection_id)
             .execution_options(populate_existing=True))
    if agency_id is not None:
        query = query.where(Connection.agency_id == agency_id)
    return db.scalar(query)


def _refresh_locked(db: Session, deps: Deps, connection_id: str, seen_version: int, force: bool,
                    actor: Actor, spec: ProviderSpec, app: AppCredentials) -> RefreshResult:
    connection = _load(db, connection_id, None)
    if connection is None:
        return RefreshResult.GONE
    if connection.token_version != seen_version:
        return RefreshResult.ADOPTED
    margin = timedelta(seconds=deps.settings.refresh_margin_seconds)
    if not force and not is_due(connection, deps.now(), margin):
        return RefreshResult.NOT_DUE
    previous_health = connection.health if connection.health != Health.REFRESHING else Health.HEALTHY
    was_error = connection.health == Health.ERROR
    connection.health = Health.REFRESHING
    connection.refresh_started_at = deps.now()
    access_token, refresh_token = read_tokens(deps, connection)
    db.commit()  # a crash from here on is visible as a connection stuck in Refreshing
    try:
        grant = platforms.adapter_for(deps, spec).refresh(spec, app, access_token, refresh_token, deps.now())
    except PlatformError as exc:
        return _record_failure(db, deps, connection_id, seen_version, previous_health, exc, actor)
    return _save(db, deps, connection, seen_version, grant, actor, spec, recovered_from_error=was_error)


def _save(db: Session, deps: Deps, connection: Connection, seen_version: int, grant: TokenGrant,
          actor: Actor, spec: ProviderSpec, recovered_from_error: bool = False) -> RefreshResult:
    cipher, now = deps.cipher, deps.now()
    lifetime = (connection.token_expires_at - connection.last_refreshed_at
                if connection.token_expires_at and connection.last_refreshed_at else None)
    values = {
        "access_token_enc": cipher.encrypt(grant.access_token, token_context(connection, "access")),
        # A refresh response without a refresh token keeps the old one (TokenGrant carries it over).
        "refresh_token_enc": (cipher.encrypt(grant.refresh_token, token_context(connection, "refresh"))
                              if grant.refresh_token else connection.refresh_token_enc),
        "token_expires_at": grant.expires_at,
        "refresh_expires_at": grant.refresh_expires_at or connection.refresh_expires_at,
        "scopes": " ".join(grant.scopes) or connection.scopes,
        "token_version": seen_version + 1,
        "health": Health.HEALTHY,
        "health_reason": "",
        "refresh_started_at": None,
        "last_refreshed_at": now,
        "last_checked_at": now,
        "updated_at": now,
        "refresh_due_at": schedule.next_refresh(True, spec.refresh, grant.expires_at, now, lifetime),
        "refresh_failures": 0,
    }
    saved = db.execute(update(Connection)
                       .where(Connection.id == connection.id, Connection.token_version == seen_version)
                       .values(**values).execution_options(synchronize_session=False))
    if saved.rowcount != 1:  # type: ignore[attr-defined]
        # Deleted meanwhile (a disconnect wins) or, impossibly under the lock, saved by another.
        db.rollback()
        return RefreshResult.GONE
    _share_with_siblings(db, deps, connection, grant, values)
    audit.record(db, connection.agency_id, actor, "connection.refreshed", "connection", connection.id,
                 platform=connection.platform, expires_at=grant.expires_at.isoformat() if grant.expires_at else None)
    if recovered_from_error:
        db.refresh(connection)
        audit.record(db, connection.agency_id, actor, "connection.recovered", "connection", connection.id)
        notifications.recovered(db, deps, connection)
    db.commit()
    return RefreshResult.REFRESHED


def _siblings(db: Session, connection: Connection) -> list[Connection]:
    if connection.grant_id is None:
        return []
    return list(db.scalars(select(Connection).where(
        Connection.grant_id == connection.grant_id, Connection.agency_id == connection.agency_id,
        Connection.id != connection.id).execution_options(populate_existing=True)))


def _share_with_siblings(db: Session, deps: Deps, connection: Connection, grant: TokenGrant,
                         values: dict[str, object]) -> None:
    """The same new tokens for every connection of the grant, each encrypted for its own row, in the
    refresher's transaction: the old (rotated) refresh token is dead for all of them."""
    for sibling in _siblings(db, connection):
        access = deps.cipher.encrypt(grant.access_token, token_context(sibling, "access")) \
            if grant.access_token else None
        refresh = (deps.cipher.encrypt(grant.refresh_token, token_context(sibling, "refresh"))
                   if grant.refresh_token else sibling.refresh_token_enc)
        db.execute(update(Connection).where(Connection.id == sibling.id).values(
            **{**values, "access_token_enc": access, "refresh_token_enc": refresh,
               "token_version": Connection.token_version + 1}).execution_options(synchronize_session=False))


def _record_failure(db: Session, deps: Deps, connection_id: str, seen_version: int, previous_health: str,
                    exc: PlatformError, actor: Actor) -> RefreshResult:
    db.rollback()
    connection = _load(db, connection_id, None)
    if connection is None:
        return RefreshResult.GONE
    if connection.token_version != seen_version:
        return RefreshResult.ADOPTED  # another refresher won; its tokens stand
    connection.refresh_started_at = None
    if exc.permanent:
        connection.refresh_due_at = None  # nothing to retry until the client reconnects or the app is fixed
    else:
        connection.refresh_failures += 1
        connection.refresh_due_at = schedule.retry_at(connection.refresh_failures, deps.now(), exc.retry_after)
    if exc.kind == PlatformError.TOKEN_INVALID:
        connection.health = Health.ERROR
        connection.health_reason = "The platform no longer accepts this connection. The client needs to reconnect."
    elif exc.kind == PlatformError.PERMISSION_LOST:
        connection.health = Health.ERROR
        connection.health_reason = "A permission this connection needs was removed. The client needs to reconnect."
    else:
        connection.health = previous_health
        connection.health_reason = {
            PlatformError.RATE_LIMITED: "The platform asked us to slow down; the refresh will be retried.",
            PlatformError.APP_MISCONFIGURED: "The platform rejected the app's credentials; check the app settings.",
        }.get(exc.kind, "The platform had a temporary problem; the refresh will be retried.")
    if exc.kind == PlatformError.APP_MISCONFIGURED:
        platforms.mark_app_invalid(db, connection.agency_id, connection.platform, deps.now())
    if connection.health == Health.ERROR:
        for row in [connection, *_siblings(db, connection)]:  # the shared grant is dead for all of them
            was_error = row.health == Health.ERROR and row is not connection
            row.health, row.health_reason, row.refresh_started_at = Health.ERROR, connection.health_reason, None
            row.refresh_due_at = None
            audit.record(db, row.agency_id, actor, "connection.health_changed", "connection", row.id,
                         health=row.health, reason=exc.kind)
            webhooks.health_changed(db, deps, row, Health.ERROR if was_error else previous_health, exc.kind)
            if not was_error:
                notifications.health_error(db, deps, row)
    db.commit()
    raise exc


# The daily health check ------------------------------------------------------------------------------

DEGRADED = "The platform is having trouble; posting may be delayed. Checked again within the hour."


def check_connection(db: Session, deps: Deps, connection_id: str) -> str:
    """Ask the platform, with its cheapest call, whether the connection still works.

    A dead access token of a refreshable connection is left to a refresh (scheduled now); a lost
    permission, or a dead token that cannot be refreshed, makes the connection Error (told once);
    temporary trouble shows as Warning ("degraded") and is checked again soon. A check never turns
    an Error back to Healthy: only a successful refresh or a reconnect proves the grant is alive."""
    connection = _load(db, connection_id, None)
    if connection is None or connection.health == Health.REFRESHING:
        return "skipped"
    spec, app = spec_and_app(db, deps, connection.agency_id, connection.platform, connection.instance)
    adapter = platforms.adapter_for(deps, spec)
    access, _ = read_tokens(deps, connection)
    seen_version, external_id = connection.token_version, connection.external_id
    db.commit()
    try:
        adapter.check(spec, access, app=app, external_id=external_id)
    except PlatformError as exc:
        return _record_check_failure(db, deps, connection_id, seen_version, adapter.can_refresh(
            spec, connection.refresh_token_enc is not None), exc)
    connection = _load(db, connection_id, None)
    if connection is not None:
        connection.last_checked_at = deps.now()
        if connection.health == Health.WARNING and connection.health_reason == DEGRADED:
            connection.health, connection.health_reason = Health.HEALTHY, ""
            webhooks.health_changed(db, deps, connection, Health.WARNING, "check_ok")
        db.commit()
    return "ok"


def _record_check_failure(db: Session, deps: Deps, connection_id: str, seen_version: int, refreshable: bool,
                          exc: PlatformError) -> str:
    now = deps.now()
    connection = _load(db, connection_id, None)
    if connection is None or connection.token_version != seen_version:
        return "changed"  # refreshed or reconnected meanwhile: the next check looks again
    if exc.kind == PlatformError.TOKEN_INVALID and refreshable:
        connection.refresh_due_at, connection.last_checked_at = now, now
        db.commit()
        return "refresh_due"
    if exc.kind in (PlatformError.TOKEN_INVALID, PlatformError.PERMISSION_LOST):
        connection.last_checked_at = now
        if connection.health != Health.ERROR:
            connection.health = Health.ERROR
            connection.health_reason = ("A permission this connection needs was removed. The client needs to "
                                        "reconnect." if exc.kind == PlatformError.PERMISSION_LOST else
                                        "The platform no longer accepts this connection. The client needs to "
                                        "reconnect.")
            connection.refresh_due_at = None
            audit.record(db, connection.agency_id, WORKER, "connection.health_changed", "connection", connection.id,
                         health=connection.health, reason=exc.kind)
            webhooks.health_changed(db, deps, connection, None, exc.kind)
            notifications.health_error(db, deps, connection)
        db.commit()
        return f"error:{exc.kind}"
    if exc.kind == PlatformError.APP_MISCONFIGURED:
        platforms.mark_app_invalid(db, connection.agency_id, connection.platform, now)
    elif connection.health == Health.HEALTHY:
        connection.health, connection.health_reason = Health.WARNING, DEGRADED
        webhooks.health_changed(db, deps, connection, Health.HEALTHY, exc.kind)
    connection.last_checked_at = now - timedelta(hours=23)  # look again within the hour
    db.commit()
    return f"retry:{exc.kind}"


# Health as users see it ------------------------------------------------------------------------------

@dataclass(frozen=True)
class HealthView:
    health: str
    label: str
    token_status: str  # Valid | Expiring soon | Expired
    reconnect_by: datetime | None
    reason: str


def health_view(connection: Connection, now: datetime) -> HealthView:
    """Health, token status and reconnect-by date, computed the same way everywhere."""
    refreshable = connection.refresh_token_enc is not None
    lapse = connection.refresh_expires_at if refreshable else connection.token_expires_at
    if connection.health == Health.ERROR or (lapse is not None and lapse <= now):
        token_status = "Expired"
    elif lapse is not None and lapse <= now + EXPIRING_SOON:
        token_status = "Expiring soon"
    else:
        token_status = "Valid"
    health = connection.health
    if health == Health.HEALTHY and token_status == "Expiring soon":
        health = Health.WARNING
    if health != Health.ERROR and token_status == "Expired":
        health = Health.ERROR
    return HealthView(health=health, label=str(health).capitalize(), token_status=token_status,
                      reconnect_by=lapse, reason=connection.health_reason)

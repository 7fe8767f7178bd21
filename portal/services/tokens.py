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
from typing import Any

from sqlalchemy import Row, bindparam, func, select, update
from sqlalchemy.orm import Session, lazyload

from portal.errors import NotFound, PlatformError, PortalError, RefreshBusy
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


@dataclass(frozen=True)
class RefreshPlan:
    """What a refresh needs before it takes the lock: which lock, the version seen, the platform's spec and app."""

    connection_id: str
    lock_name: str
    seen_version: int
    spec: ProviderSpec
    app: AppCredentials
    has_siblings: bool


def refresh_connection(db: Session, deps: Deps, connection_id: str, *, agency_id: str | None = None,
                       force: bool = False, actor: Actor = WORKER, lock_wait: float = 10.0) -> RefreshResult:
    """Refresh one connection's tokens. Commits: the refresh marker, then the new tokens."""
    plans, skipped = plan_refreshes(db, deps, [connection_id], agency_id=agency_id, raise_errors=True)
    if not plans:
        outcome = skipped[connection_id]
        if outcome == RefreshResult.GONE and agency_id is not None:
            raise NotFound("No such connection.")
        return outcome
    return refresh_planned(db, deps, plans[0], force=force, actor=actor, lock_wait=lock_wait)


def plan_refreshes(db: Session, deps: Deps, connection_ids: list[str], *, agency_id: str | None = None,
                   raise_errors: bool = False) -> tuple[list[RefreshPlan], dict[str, RefreshResult | str]]:
    """Plans for the refreshable connections among ``connection_ids``, read in one query; the others'
    outcomes (gone, not refreshable, or a PortalError's code) by id. Ends its transaction."""
    query = select(Connection.id, Connection.agency_id, Connection.platform, Connection.instance,
                   Connection.grant_id, Connection.token_version,
                   Connection.refresh_token_enc.is_not(None).label("has_refresh")).where(
        Connection.id.in_(connection_ids))
    if agency_id is not None:
        query = query.where(Connection.agency_id == agency_id)
    rows = db.execute(query).all()
    grants = [row.grant_id for row in rows if row.grant_id]
    shared = set(db.scalars(select(Connection.grant_id).where(Connection.grant_id.in_(grants))
                            .group_by(Connection.grant_id).having(func.count() > 1))) if grants else set()
    skipped: dict[str, RefreshResult | str] = {cid: RefreshResult.GONE for cid in connection_ids}
    plans, platform_of = [], {}
    for row in rows:
        key = (row.agency_id, row.platform, row.instance)
        try:
            if key not in platform_of:  # each lookup is a query or two: once per agency and platform
                platform_of[key] = spec_and_app(db, deps, row.agency_id, row.platform, row.instance)
            spec, app = platform_of[key]
        except PortalError as exc:
            if raise_errors:
                db.rollback()
                raise
            skipped[row.id] = f"failed:{exc.code}"
            continue
        if not platforms.adapter_for(deps, spec).can_refresh(spec, row.has_refresh):
            skipped[row.id] = RefreshResult.NOT_REFRESHABLE
            continue
        del skipped[row.id]
        # One lock per grant: connections made from one authorization share its (rotating) refresh token.
        plans.append(RefreshPlan(row.id, f"refresh:{row.grant_id or row.id}", row.token_version, spec, app,
                                 row.grant_id in shared))
    db.rollback()  # hold no transaction while waiting for a lock or the platform
    return plans, skipped


def refresh_planned(db: Session, deps: Deps, plan: RefreshPlan, *, force: bool = False, actor: Actor = WORKER,
                    lock_wait: float = 10.0) -> RefreshResult:
    with deps.locks.hold(plan.lock_name, ttl=deps.settings.refresh_lock_seconds, wait=lock_wait) as owned:
        if not owned:
            raise RefreshBusy()
        return _refresh_locked(db, deps, plan, force, actor)


def _load(db: Session, connection_id: str, agency_id: str | None) -> Connection | None:
    # No workspace join here: the refresh path never needs it.
    query = (select(Connection).options(lazyload(Connection.workspace)).where(Connection.id == connection_id)
             .execution_options(populate_existing=True))
    if agency_id is not None:
        query = query.where(Connection.agency_id == agency_id)
    return db.scalar(query)


# A refresh runs hundreds of times a second: its statements are built once, on the table (no ORM unit of
# work), with bound parameters, so each run only binds values.
_table = Connection.__table__
_c = _table.c
_READ = select(_c.id, _c.agency_id, _c.platform, _c.grant_id, _c.token_version, _c.health, _c.access_token_enc,
               _c.refresh_token_enc, _c.token_expires_at, _c.refresh_expires_at, _c.last_refreshed_at,
               _c.refresh_due_at, _c.scopes).where(_c.id == bindparam("connection_id"))
_THIS_VERSION = (_c.id == bindparam("connection_id")) & (_c.token_version == bindparam("seen_version"))
_MARK_REFRESHING = update(_table).where(_THIS_VERSION).values(health=Health.REFRESHING.value,
                                                               refresh_started_at=bindparam("v_now"))
_SAVED_FIELDS = ("access_token_enc", "refresh_token_enc", "token_expires_at", "refresh_expires_at", "scopes",
                 "token_version", "health", "health_reason", "refresh_started_at", "last_refreshed_at",
                 "last_checked_at", "updated_at", "refresh_due_at", "refresh_failures")
_SAVE = update(_table).where(_THIS_VERSION).values({name: bindparam(f"v_{name}") for name in _SAVED_FIELDS})


def _refresh_locked(db: Session, deps: Deps, plan: RefreshPlan, force: bool, actor: Actor) -> RefreshResult:
    key = {"connection_id": plan.connection_id, "seen_version": plan.seen_version}
    connection = db.execute(_READ, key).one_or_none()
    if connection is None:
        db.rollback()
        return RefreshResult.GONE
    if connection.token_version != plan.seen_version:
        db.rollback()
        return RefreshResult.ADOPTED
    margin = timedelta(seconds=deps.settings.refresh_margin_seconds)
    if not force and not is_due(connection, deps.now(), margin):  # type: ignore[arg-type]
        db.rollback()
        return RefreshResult.NOT_DUE
    previous_health = connection.health if connection.health != Health.REFRESHING else Health.HEALTHY
    was_error = connection.health == Health.ERROR
    db.execute(_MARK_REFRESHING, {**key, "v_now": deps.now()})
    access_token, refresh_token = read_tokens(deps, connection)  # type: ignore[arg-type]
    db.commit()  # a crash from here on is visible as a connection stuck in Refreshing
    try:
        grant = platforms.adapter_for(deps, plan.spec).refresh(plan.spec, plan.app, access_token, refresh_token,
                                                               deps.now())
    except PlatformError as exc:
        return _record_failure(db, deps, plan.connection_id, plan.seen_version, previous_health, exc, actor)
    return _save(db, deps, connection, plan, grant, actor, recovered_from_error=was_error)


def _save(db: Session, deps: Deps, connection: Row[Any], plan: RefreshPlan, grant: TokenGrant, actor: Actor,
          recovered_from_error: bool = False) -> RefreshResult:
    cipher, now, seen_version = deps.cipher, deps.now(), plan.seen_version
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
        "health": Health.HEALTHY.value,
        "health_reason": "",
        "refresh_started_at": None,
        "last_refreshed_at": now,
        "last_checked_at": now,
        "updated_at": now,
        "refresh_due_at": schedule.next_refresh(True, plan.spec.refresh, grant.expires_at, now, lifetime),
        "refresh_failures": 0,
    }
    saved = db.execute(_SAVE, {"connection_id": connection.id, "seen_version": seen_version,
                               **{f"v_{name}": value for name, value in values.items()}})
    if saved.rowcount != 1:  # type: ignore[attr-defined]
        # Deleted meanwhile (a disconnect wins) or, impossibly under the lock, saved by another.
        db.rollback()
        return RefreshResult.GONE
    if plan.has_siblings:
        _share_with_siblings(db, deps, connection, grant, values)
    audit.record_now(db, connection.agency_id, actor, "connection.refreshed", "connection", connection.id,
                     platform=connection.platform,
                     expires_at=grant.expires_at.isoformat() if grant.expires_at else None)
    if recovered_from_error:
        audit.record_now(db, connection.agency_id, actor, "connection.recovered", "connection", connection.id)
        recovered = _load(db, connection.id, None)
        if recovered is not None:
            notifications.recovered(db, deps, recovered)
    db.commit()
    return RefreshResult.REFRESHED


def _siblings(db: Session, connection: Connection | Row[Any]) -> list[Connection]:
    if connection.grant_id is None:
        return []
    return list(db.scalars(select(Connection).where(
        Connection.grant_id == connection.grant_id, Connection.agency_id == connection.agency_id,
        Connection.id != connection.id).execution_options(populate_existing=True)))


def _share_with_siblings(db: Session, deps: Deps, connection: Row[Any], grant: TokenGrant,
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

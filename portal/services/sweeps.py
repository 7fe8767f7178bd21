"""What the scheduled sweeps find. They only find work: the jobs they enqueue do it.

The database is the source of truth: if Redis loses every queued job, the next sweep finds the
same connections again, because a connection leaves the due range only when a refresh wrote a new
``refresh_due_at``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import DateTime, bindparam, select, tuple_, type_coerce, update
from sqlalchemy.orm import Session

from portal.models import Connection, Health
from portal.services import Deps, audit
from portal.services.audit import WORKER

STUCK_AFTER = timedelta(minutes=10)
Cursor = tuple[datetime, str]
Due = tuple[datetime, str, str]  # (sort key, connection id, platform)


# Sweep pages are built once, with bound parameters: each page only binds its cursor.
# The cursor's due time comes back as the driver gives it and goes back the same way: a thousand rows a
# page need no conversion to aware UTC datetimes just to be handed back.
_c = Connection.__table__.c
_raw_due = type_coerce(_c.refresh_due_at, DateTime(timezone=True))
_DUE = (select(_raw_due, _c.id, _c.platform).where(_c.refresh_due_at <= bindparam("now"))
        .order_by(_c.refresh_due_at, _c.id).limit(bindparam("limit")))
_DUE_AFTER = _DUE.where(tuple_(_c.refresh_due_at, _c.id) > tuple_(
    bindparam("after_due", type_=DateTime(timezone=True)), bindparam("after_id", type_=_c.id.type)))


def due_batch(db: Session, now: datetime, limit: int = 1000, after: Cursor | None = None) -> list[Due]:
    """The next ``limit`` connections due for refresh, oldest first, as keyset cursors (due_at, id):
    one index-only range scan (ix_connections_refresh_sweep), flat in cost however many rows the table holds."""
    if after is None:
        rows = db.execute(_DUE, {"now": now, "limit": limit})
    else:
        rows = db.execute(_DUE_AFTER, {"now": now, "limit": limit, "after_due": after[0], "after_id": after[1]})
    return [tuple(row) for row in rows]  # type: ignore[misc]


CHECK_EVERY = timedelta(days=1)


def check_batch(db: Session, now: datetime, limit: int = 1000, after: Cursor | None = None) -> list[Due]:
    """Connections not checked for a day, oldest check first, keyset-paged on the last_checked_at index
    (every connection gets last_checked_at when it is stored)."""
    checked = Connection.last_checked_at
    query = (select(checked, Connection.id, Connection.platform)
             .where(checked < now - CHECK_EVERY, Connection.health != Health.REFRESHING)
             .order_by(checked, Connection.id).limit(limit))
    if after is not None:
        query = query.where(tuple_(checked, Connection.id) > after)
    return [(when, cid, platform) for when, cid, platform in db.execute(query)]


def recover_stuck(db: Session, now: datetime) -> list[str]:
    """Connections left Refreshing by a killed worker. Their tokens may or may not have been used, so
    they are shown as Warning (never Healthy) and refreshed again at once: the refresh either works
    or finds the grant dead and says so."""
    stuck = list(db.scalars(select(Connection).where(Connection.health == Health.REFRESHING,
                                                     Connection.refresh_started_at < now - STUCK_AFTER)))
    for connection in stuck:
        db.execute(update(Connection).where(Connection.id == connection.id, Connection.health == Health.REFRESHING)
                   .values(health=Health.WARNING, refresh_started_at=None, refresh_due_at=now,
                           health_reason="A refresh was interrupted; it is being retried."))
        audit.record(db, connection.agency_id, WORKER, "connection.refresh_interrupted", "connection", connection.id,
                     platform=connection.platform)
    return [c.id for c in stuck]


WARN_DAYS = (1, 7, 14)


def warn_expiring(db: Session, deps: Deps, now: datetime, limit: int = 5000) -> int:
    """Tell the agency, at 14, 7 and 1 days, about connections that will lapse and cannot be refreshed
    (fixed-lifetime refresh tokens, tokens without refresh). Each threshold is told once."""
    from sqlalchemy import and_, or_

    from portal.services import notifications

    horizon = now + timedelta(days=max(WARN_DAYS))
    rows = db.scalars(select(Connection).where(
        Connection.refresh_due_at.is_(None), Connection.health != Health.ERROR,
        or_(and_(Connection.refresh_token_enc.is_(None), Connection.token_expires_at > now,
                 Connection.token_expires_at <= horizon),
            and_(Connection.refresh_token_enc.is_not(None), Connection.refresh_expires_at > now,
                 Connection.refresh_expires_at <= horizon))).limit(limit))
    told = 0
    for connection in rows:
        lapse = connection.refresh_expires_at if connection.refresh_token_enc else connection.token_expires_at
        assert lapse is not None
        days = next(d for d in WARN_DAYS if lapse <= now + timedelta(days=d))
        told += notifications.expiring(db, deps, connection, days, lapse)
    return told

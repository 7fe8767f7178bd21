"""Fresh access tokens for the agency's own software (the REST API's access-token endpoint).

A token that expires within five minutes is refreshed first, through ``tokens.refresh_connection``
under the same per-grant lock the workers use. The refresh token never leaves this module's
callers. Every token handed out is audited (without the token). When only the client can fix
the connection, the error carries a reconnect link to send them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, case, select
from sqlalchemy.orm import Session

from portal.errors import NotFound, PlatformError, PortalError, RefreshBusy, ServiceUnavailable
from portal.models import Connection, ConnectLink, Health
from portal.services import Deps, audit, connections, links, tokens
from portal.services.audit import Actor

REFRESH_WITHIN = timedelta(minutes=5)
RECONNECT_REUSE_MIN_LEFT = timedelta(days=1)


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_at: datetime | None
    token_type: str = "Bearer"

    def __repr__(self) -> str:  # the token never reaches a log or a traceback
        return f"IssuedToken(expires_at={self.expires_at!r})"


class ReconnectRequired(PortalError):
    """Only the client can repair this connection: send them ``reconnect_url``."""

    status = 424
    code = "reconnect_required"
    public_message = "The platform no longer accepts this connection. Send the client the reconnect link."

    def __init__(self, reconnect_url: str, reason: str) -> None:
        super().__init__(reason or self.public_message)
        self.reconnect_url = reconnect_url


class PlatformUnavailable(PortalError):
    status = 503
    code = "platform_unavailable"
    public_message = "The platform is having temporary trouble; the token could not be refreshed. Retry later."

    def __init__(self, retry_after: float, message: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))


class NoAccessToken(PortalError):
    status = 409
    code = "no_access_token"
    public_message = "This connection has no access token of its own (it works through the platform's bot)."


@dataclass(frozen=True)
class _TokenRow:
    """The columns the common case reads (``health_view`` reads these same names)."""

    id: str
    platform: str
    health: str
    health_reason: str
    token_expires_at: datetime | None
    refresh_expires_at: datetime | None
    access_token_enc: str | None
    refresh_token_enc: bool | None  # only whether there is one: the refresh token is never decrypted here


_TOKEN_ROW = select(Connection.id, Connection.platform, Connection.health, Connection.health_reason,
                    Connection.token_expires_at, Connection.refresh_expires_at, Connection.access_token_enc,
                    case((Connection.refresh_token_enc.is_not(None), True), else_=None).label("refresh_token_enc"),
                    ).where(Connection.id == bindparam("connection_id"), Connection.agency_id == bindparam("agency_id"))


def fresh_access_token(db: Session, deps: Deps, agency_id: str, connection_id: str, actor: Actor) -> IssuedToken:
    """The connection's access token, refreshed first when it expires within five minutes.

    The common case (healthy, not expiring) is the API's hot path (tests/benchmarks/bench_access_token.py):
    one indexed select of the needed columns, one decryption and the audit insert, all in the caller's
    transaction. Anything else takes the full path below."""
    now = deps.now()
    found = db.execute(_TOKEN_ROW, {"connection_id": connection_id, "agency_id": agency_id}).first()
    if found is None:
        raise NotFound("No such connection.")
    row = _TokenRow(*found)
    expires = row.token_expires_at
    needs_work = (tokens.health_view(row, now).health == Health.ERROR  # type: ignore[arg-type]
                  or expires is not None and expires <= now + REFRESH_WITHIN)
    if needs_work or not row.access_token_enc:
        return _full_path(db, deps, agency_id, connection_id, actor)
    access = deps.cipher.decrypt(row.access_token_enc, connections.token_context(row, "access"))  # type: ignore[arg-type]
    _audit_read(db, agency_id, actor, row.id, row.platform, expires, refreshed=False)
    return IssuedToken(access, expires)


def _audit_read(db: Session, agency_id: str, actor: Actor, connection_id: str, platform: str,
                expires: datetime | None, refreshed: bool) -> None:
    audit.record_now(db, agency_id, actor, "connection.token_read", "connection", connection_id,
                     platform=platform, refreshed=refreshed, expires_at=expires.isoformat() if expires else None)


def _full_path(db: Session, deps: Deps, agency_id: str, connection_id: str, actor: Actor) -> IssuedToken:
    """Error health (a reconnect link), an expiring token (refreshed first), or no access token."""
    connection = connections.get_connection(db, agency_id, connection_id)
    if tokens.health_view(connection, deps.now()).health == Health.ERROR:
        raise _reconnect(db, deps, connection, actor)
    refreshed = False
    expires = connection.token_expires_at
    if expires is not None and expires <= deps.now() + REFRESH_WITHIN:
        refreshed = _refresh(db, deps, connection, actor)
        connection = connections.get_connection(db, agency_id, connection_id)
        db.refresh(connection)
        if connection.token_expires_at is not None and connection.token_expires_at <= deps.now():
            raise _reconnect(db, deps, connection, actor)  # expired and nothing could refresh it
    access, _ = connections.read_tokens(deps, connection)
    if not access:
        raise NoAccessToken()
    _audit_read(db, agency_id, actor, connection.id, connection.platform, connection.token_expires_at, refreshed)
    return IssuedToken(access, connection.token_expires_at)


def _refresh(db: Session, deps: Deps, connection: Connection, actor: Actor) -> bool:
    try:
        result = tokens.refresh_connection(db, deps, connection.id, agency_id=connection.agency_id, force=True,
                                           actor=actor)
    except PlatformError as exc:
        if exc.kind in (PlatformError.TOKEN_INVALID, PlatformError.PERMISSION_LOST):
            raise _reconnect(db, deps, connections.get_connection(db, connection.agency_id, connection.id),
                             actor) from None
        if exc.kind == PlatformError.APP_MISCONFIGURED:
            raise PlatformUnavailable(300, "The platform rejected the app's credentials; check the app settings "
                                           "in the admin panel.") from None
        raise PlatformUnavailable(exc.retry_after or 30) from None
    except (RefreshBusy, ServiceUnavailable):
        raise PlatformUnavailable(5, "A refresh of this connection is in progress or cannot be locked; "
                                     "retry in a few seconds.") from None
    return result in (tokens.RefreshResult.REFRESHED, tokens.RefreshResult.ADOPTED)


def _reconnect(db: Session, deps: Deps, connection: Connection, actor: Actor) -> ReconnectRequired:
    """The error to raise, with a usable reconnect link: an open one is reused, else a new one is made
    (flushed; the caller commits so the link in the error exists)."""
    now = deps.now()
    link = db.scalar(select(ConnectLink).where(
        ConnectLink.agency_id == connection.agency_id, ConnectLink.reconnect_connection_id == connection.id,
        ConnectLink.revoked_at.is_(None), ConnectLink.expires_at > now + RECONNECT_REUSE_MIN_LEFT,
        ConnectLink.uses == 0).order_by(ConnectLink.created_at.desc()).limit(1))
    if link is None:
        link = links.create_reconnect_link(db, deps, connection.agency_id, connection.id, actor)
    reason = connection.health_reason if connection.health == Health.ERROR else ""
    return ReconnectRequired(links.link_url(deps, link), reason)

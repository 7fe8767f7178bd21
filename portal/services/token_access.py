"""Fresh access tokens for the agency's own software (the REST API's access-token endpoint).

A token that expires within five minutes is refreshed first, through ``tokens.refresh_connection``
under the same per-grant lock the workers use. The refresh token never leaves this module's
callers. Every token handed out is audited (without the token). When only the client can fix
the connection, the error carries a reconnect link to send them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection as DbConnection
from sqlalchemy import (
    Engine,
    String,
    and_,
    bindparam,
    case,
    false,
    func,
    insert,
    literal_column,
    null,
    or_,
    select,
    true,
)
from sqlalchemy.orm import Session

from portal.db import DirectSelect, run_direct
from portal.errors import NotFound, PlatformError, PortalError, RefreshBusy, ServiceUnavailable
from portal.models import ApiKey, AuditEvent, Connection, ConnectLink, Health
from portal.services import Deps, api_keys, audit, connections, links, tokens
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


_TOKEN_COLUMNS = (Connection.id, Connection.platform, Connection.health, Connection.health_reason,
                  Connection.token_expires_at, Connection.refresh_expires_at, Connection.access_token_enc,
                  case((Connection.refresh_token_enc.is_not(None), true()), else_=null()).label("refresh_token_enc"))
_TOKEN_ROW = select(*_TOKEN_COLUMNS).where(Connection.id == bindparam("connection_id"),
                                          Connection.agency_id == bindparam("agency_id"))
# The API key and, when it belongs to the key's agency, the connection: authentication and the read in one
# round trip (another agency's connection reads as absent).
_KEY_AND_TOKEN = (select(*api_keys.KEY_COLUMNS, *_TOKEN_COLUMNS)
                  .select_from(ApiKey).outerjoin(Connection, and_(Connection.id == bindparam("connection_id"),
                                                                  Connection.agency_id == ApiKey.agency_id))
                  .where(ApiKey.key_hash == bindparam("digest")))
_KEY_WIDTH = len(api_keys.KEY_COLUMNS)


def _key_token_and_audit() -> Any:
    """PostgreSQL: ``_KEY_AND_TOKEN`` and, in the same statement, the audit row of the read when the read can be
    served as it is (the key live and read_write, the connection healthy, with an access token that is not about
    to expire): one round trip and one commit a request. The result's last column tells whether the row was
    written; when it was not, the caller decides with ``_needs_full_path`` as for any other read. The condition
    here may only be narrower than ``_needs_full_path``, never wider (a test holds the two together)."""
    key = select(*api_keys.KEY_COLUMNS).where(ApiKey.key_hash == bindparam("digest")).cte("live_key")
    token = (select(*_TOKEN_COLUMNS).join_from(Connection, key, Connection.agency_id == key.c.agency_id)
             .where(Connection.id == bindparam("connection_id")).cte("token"))
    now = bindparam("now", type_=Connection.token_expires_at.type)
    lapse = case((token.c.refresh_token_enc.is_(True), token.c.refresh_expires_at), else_=token.c.token_expires_at)
    expires_text = func.to_char(func.timezone(_sql("UTC"), token.c.token_expires_at),
                                _sql('YYYY-MM-DD"T"HH24:MI:SS.US'))
    details = func.json_build_object(_sql("platform"), token.c.platform, _sql("refreshed"), false(),
                                     _sql("expires_at"), expires_text.concat(_sql("+00:00")))
    audited = (insert(AuditEvent).from_select(
        ["agency_id", "actor_type", "actor_id", "action", "object_type", "object_id", "ip", "details", "created_at"],
        select(key.c.agency_id, _sql("api"), key.c.id, _sql("connection.token_read"), _sql("connection"),
               token.c.id, bindparam("ip", type_=String), details, now)
        .join_from(key, token, true())
        .where(key.c.revoked_at.is_(None), key.c.scope == _sql("read_write"), token.c.access_token_enc.is_not(None),
               token.c.health != _sql(Health.ERROR.value), or_(lapse.is_(None), lapse > now),
               or_(token.c.token_expires_at.is_(None),
                   token.c.token_expires_at > bindparam("refresh_before", type_=Connection.token_expires_at.type))))
        .returning(AuditEvent.id).cte("audited"))
    return DirectSelect(select(*key.c, *token.c, select(func.count()).select_from(audited).scalar_subquery())
                        .select_from(key).outerjoin(token, true()))


def _sql(constant: str) -> Any:
    """A constant written into the statement's text (no parameter to bind on every execution)."""
    if "'" in constant:
        raise ValueError("a quote in a constant")
    return literal_column(f"'{constant}'", String)


_KEY_TOKEN_AND_AUDIT = _key_token_and_audit()


@dataclass(frozen=True)
class DirectRead:
    """What ``read_direct`` found: the live key (None: no valid key) and the token it issued (None: the key
    may not have it, or the connection needs the full path of ``fresh_access_token``)."""

    key: api_keys.LiveKey | None
    issued: IssuedToken | None


def read_direct(engine: Engine, deps: Deps, authorization: str | None, connection_id: str, ip: str | None,
                issue: bool = True) -> DirectRead:
    """The REST API's hot path (tests/benchmarks/bench_access_token.py): the key and the connection in one
    indexed select, one decryption and the durable audit row, on the autocommit engine (no BEGIN, no COMMIT
    round trips); on PostgreSQL the select writes the audit row itself (``_key_token_and_audit``). Only a
    read_write key is issued a token, and only when the connection is healthy and not expiring (else the
    caller takes ``fresh_access_token``); ``issue=False`` authenticates only."""
    digest = api_keys.presented_digest(authorization)
    if digest is None:
        return DirectRead(None, None)
    now = deps.now()

    def work(connection: DbConnection) -> DirectRead:
        one_statement = issue and connection.dialect.name == "postgresql"
        if one_statement:
            row = _KEY_TOKEN_AND_AUDIT.first(connection, {
                "digest": digest, "connection_id": connection_id, "ip": ip, "now": now,
                "refresh_before": now + REFRESH_WITHIN})
        else:
            row = connection.execute(_KEY_AND_TOKEN, {"digest": digest, "connection_id": connection_id}).first()
        key = api_keys.live_key(connection, row, digest, now)
        if key is None or not issue or not api_keys.may_write(key):
            return DirectRead(key, None)
        token = _TokenRow(*row[_KEY_WIDTH:_KEY_WIDTH + len(_TOKEN_COLUMNS)])  # type: ignore[index]
        if token.id is None:
            raise NotFound("No such connection.")
        audited = bool(row[-1]) if one_statement else False  # type: ignore[index]
        if not audited:
            if _needs_full_path(token, now):
                return DirectRead(key, None)
            _audit_read(connection, key.agency_id, Actor("api", key.id, ip), token.id, token.platform,
                        token.token_expires_at, refreshed=False)
        access = deps.cipher.decrypt(token.access_token_enc,  # type: ignore[arg-type]
                                     connections.token_context(token, "access"))  # type: ignore[arg-type]
        return DirectRead(key, IssuedToken(access, token.token_expires_at))

    return run_direct(engine, work)


def _needs_full_path(row: _TokenRow, now: datetime) -> bool:
    expires = row.token_expires_at
    return (not row.access_token_enc or tokens.health_view(row, now).health == Health.ERROR  # type: ignore[arg-type]
            or expires is not None and expires <= now + REFRESH_WITHIN)


def fresh_access_token(db: Session, deps: Deps, agency_id: str, connection_id: str, actor: Actor) -> IssuedToken:
    """The connection's access token, refreshed first when it expires within five minutes, in the caller's
    transaction. The common case (healthy, not expiring) is one indexed select of the needed columns, one
    decryption and the audit insert (the API serves it with ``read_direct``); anything else takes the full
    path below."""
    now = deps.now()
    found = db.execute(_TOKEN_ROW, {"connection_id": connection_id, "agency_id": agency_id}).first()
    if found is None:
        raise NotFound("No such connection.")
    row = _TokenRow(*found)
    if _needs_full_path(row, now):
        return _full_path(db, deps, agency_id, connection_id, actor)
    access = deps.cipher.decrypt(row.access_token_enc, connections.token_context(row, "access"))  # type: ignore[arg-type]
    _audit_read(db, agency_id, actor, row.id, row.platform, row.token_expires_at, refreshed=False)
    return IssuedToken(access, row.token_expires_at)


def _audit_read(db: Session | DbConnection, agency_id: str, actor: Actor, connection_id: str, platform: str,
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

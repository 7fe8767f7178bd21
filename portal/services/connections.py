"""The connect flow (begin an attempt, complete the callback) and connection management."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.errors import AttemptInvalid, ConsentDenied, NotFound, OAuthFailed, PlatformError, PortalError
from portal.models import AttemptStage, ConnectAttempt, Connection, Health, new_id
from portal.oauth import AccountInfo, TokenGrant
from portal.security.crypto import column_context
from portal.security.signing import hash_secret, random_id
from portal.services import Deps, audit, links, platforms
from portal.services.audit import Actor

log = logging.getLogger(__name__)
MAX_STATE_LENGTH = 200


@dataclass(frozen=True)
class StartedAttempt:
    attempt: ConnectAttempt
    authorize_url: str


def begin_attempt(db: Session, deps: Deps, resolved: links.ResolvedLink, platform: str) -> StartedAttempt:
    """Start one platform authorization for a link: server-side state and PKCE verifier."""
    link = resolved.link
    if platform not in link.allowed_platforms:
        raise links.PlatformNotAllowed()
    spec = platforms.resolved(deps.settings, platform)
    app = platforms.app_for(deps.settings, platform)
    now = deps.now()
    state, verifier = random_id(32), random_id(64)
    attempt = ConnectAttempt(agency_id=link.agency_id, link_id=link.id, platform=platform,
                             state_hash=hash_secret(state), stage=AttemptStage.STARTED,
                             expires_at=now + timedelta(seconds=deps.settings.attempt_lifetime), created_at=now)
    attempt.id = new_id()  # known before insert: the verifier's ciphertext is bound to it
    attempt.verifier_enc = deps.cipher.encrypt(verifier, column_context("connect_attempts", attempt.id, "verifier"))
    db.add(attempt)
    url = deps.oauth.authorization_url(spec, app, platforms.redirect_uri(deps.settings, platform), state,
                                       verifier if spec.pkce else None)
    return StartedAttempt(attempt, url)


def claim_callback(db: Session, deps: Deps, platform: str, state: str | None) -> ConnectAttempt:
    """Validate `state` before anything else and claim the attempt (single use, atomically)."""
    if not state or len(state) > MAX_STATE_LENGTH:
        raise AttemptInvalid()
    now = deps.now()
    attempt = attempt_by_state(db, state)
    if attempt is None or attempt.platform != platform:
        raise AttemptInvalid()
    if attempt.expires_at <= now:
        raise AttemptInvalid("This sign-in took too long and has expired. Please start again from your link.")
    claimed = db.execute(update(ConnectAttempt)
                         .where(ConnectAttempt.id == attempt.id, ConnectAttempt.callback_at.is_(None))
                         .values(callback_at=now).execution_options(synchronize_session=False))
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise AttemptInvalid()
    db.refresh(attempt)
    return attempt


def complete_callback(db: Session, deps: Deps, platform: str, state: str | None, code: str | None,
                      error: str | None, ip: str | None) -> ConnectAttempt:
    """Handle the platform's redirect back. Commits twice, because platform HTTP calls sit in
    the middle and no transaction may be held across them: once to claim the attempt, once
    to store the connection together with the link's use."""
    attempt = claim_callback(db, deps, platform, state)
    link = links.get_link(db, attempt.agency_id, attempt.link_id)
    try:
        links.check_usable(link, deps.now())
        if error:
            raise ConsentDenied() if error == "access_denied" else OAuthFailed()
        if not code or len(code) > 2000:
            raise OAuthFailed("The platform did not send an authorization code. Please try again.")
        verifier = _verifier(deps, attempt)
        db.commit()
        grant, account = _authorize(deps, platform, code, verifier)
        links.reserve_use(db, link.id, deps.now())
        connection = store_connection(db, deps, attempt, grant, account, Actor("client", link.id, ip))
    except PortalError as exc:
        db.rollback()
        _mark_failed(db, attempt.id, exc.code)
        db.commit()
        raise
    attempt.stage = AttemptStage.CONNECTED
    attempt.connection_id = connection.id
    attempt.verifier_enc = None
    db.commit()
    return attempt


def _verifier(deps: Deps, attempt: ConnectAttempt) -> str | None:
    if attempt.verifier_enc is None:
        return None
    return deps.cipher.decrypt(attempt.verifier_enc, column_context("connect_attempts", attempt.id, "verifier"))


def _authorize(deps: Deps, platform: str, code: str, verifier: str | None) -> tuple[TokenGrant, AccountInfo]:
    spec = platforms.resolved(deps.settings, platform)
    app = platforms.app_for(deps.settings, platform)
    try:
        grant = deps.oauth.exchange_code(spec, app, platforms.redirect_uri(deps.settings, platform), code,
                                         verifier, deps.now())
        account = deps.oauth.fetch_account(spec, grant.access_token)
    except PlatformError as exc:
        log.warning("connect to %s failed: %s (%s)", platform, exc.kind, exc.platform_code or "-")
        raise OAuthFailed() from exc
    return grant, account


def _mark_failed(db: Session, attempt_id: str, code: str) -> None:
    db.execute(update(ConnectAttempt).where(ConnectAttempt.id == attempt_id)
               .values(stage=AttemptStage.FAILED, error_code=code[:40], verifier_enc=None))


def store_connection(db: Session, deps: Deps, attempt: ConnectAttempt, grant: TokenGrant, account: AccountInfo,
                     actor: Actor) -> Connection:
    """Insert or update the connection for (workspace, platform, account): one row per account."""
    link = links.get_link(db, attempt.agency_id, attempt.link_id)
    key = (link.workspace_id, attempt.platform, account.external_id)
    connection = _find(db, *key)
    created = connection is None
    if connection is None:
        connection = Connection(agency_id=link.agency_id, workspace_id=link.workspace_id, platform=attempt.platform,
                                external_id=account.external_id, token_version=0)
        try:
            with db.begin_nested():
                db.add(connection)
                db.flush()
        except IntegrityError:  # a concurrent completion created it first: update that one
            connection = _find(db, *key)
            created = False
            if connection is None:
                raise
    _apply_grant(deps, connection, grant, account)
    connection.connected_via_link_id = link.id
    db.flush()
    action = "connection.created" if created else "connection.reconnected"
    audit.record(db, link.agency_id, actor, action, "connection", connection.id, platform=attempt.platform,
                 account=account.handle or account.display_name, via_link=link.id)
    return connection


def _find(db: Session, workspace_id: str, platform: str, external_id: str) -> Connection | None:
    return db.scalar(select(Connection).where(Connection.workspace_id == workspace_id,
                                              Connection.platform == platform,
                                              Connection.external_id == external_id))


def _apply_grant(deps: Deps, connection: Connection, grant: TokenGrant, account: AccountInfo) -> None:
    now = deps.now()
    connection.display_name = account.display_name
    connection.handle = account.handle
    connection.avatar_url = account.avatar_url
    write_tokens(deps, connection, grant)
    connection.health = Health.HEALTHY
    connection.health_reason = ""
    connection.refresh_started_at = None
    connection.last_checked_at = now


def write_tokens(deps: Deps, connection: Connection, grant: TokenGrant) -> None:
    """Encrypt a grant's tokens into the row (bound to it) and bump the token version."""
    connection.access_token_enc = deps.cipher.encrypt(grant.access_token, token_context(connection, "access"))
    connection.refresh_token_enc = (deps.cipher.encrypt(grant.refresh_token, token_context(connection, "refresh"))
                                    if grant.refresh_token else None)
    connection.token_expires_at = grant.expires_at
    connection.refresh_expires_at = grant.refresh_expires_at
    connection.scopes = " ".join(grant.scopes)
    connection.token_version = (connection.token_version or 0) + 1


def token_context(connection: Connection, which: str) -> str:
    return column_context("connections", connection.id, f"{which}_token")


# Reading and managing connections ----------------------------------------------------------------

def list_connections(db: Session, agency_id: str, workspace_id: str | None = None) -> list[Connection]:
    query = select(Connection).where(Connection.agency_id == agency_id).order_by(Connection.created_at)
    if workspace_id:
        query = query.where(Connection.workspace_id == workspace_id)
    return list(db.scalars(query))


def get_connection(db: Session, agency_id: str, connection_id: str) -> Connection:
    connection = db.scalar(select(Connection).where(Connection.id == connection_id,
                                                    Connection.agency_id == agency_id))
    if connection is None:
        raise NotFound("No such connection.")
    return connection


@dataclass(frozen=True)
class Disconnected:
    """A deleted connection, and the revocation to attempt at the platform once the delete is committed."""

    connection: Connection
    revoke: Callable[[], None]


def disconnect(db: Session, deps: Deps, agency_id: str, connection_id: str, actor: Actor) -> Disconnected:
    """Delete the connection and its tokens at once. The caller commits, then calls ``revoke()``:
    revoking at the platform is best effort and must not hold the transaction open."""
    connection = get_connection(db, agency_id, connection_id)
    revoke = _revocation(deps, connection)
    db.execute(delete(Connection).where(Connection.id == connection.id, Connection.agency_id == agency_id))
    audit.record(db, agency_id, actor, "connection.disconnected", "connection", connection.id,
                 platform=connection.platform, account=connection.handle or connection.display_name)
    return Disconnected(connection, revoke)


def _revocation(deps: Deps, connection: Connection) -> Callable[[], None]:
    which, value = (("refresh", connection.refresh_token_enc) if connection.refresh_token_enc
                    else ("access", connection.access_token_enc))
    if value is None:
        return lambda: None
    token = deps.cipher.decrypt(value, token_context(connection, which))
    platform, connection_id = connection.platform, connection.id

    def revoke() -> None:
        try:
            spec = platforms.resolved(deps.settings, platform)
            deps.oauth.revoke(spec, platforms.app_for(deps.settings, platform), token)
        except PortalError as exc:
            log.warning("revoking connection %s at %s failed: %s", connection_id, platform, exc.code)

    return revoke


def attempt_for(db: Session, link_id: str, attempt_id: str) -> ConnectAttempt:
    attempt = db.scalar(select(ConnectAttempt).where(ConnectAttempt.id == attempt_id,
                                                     ConnectAttempt.link_id == link_id))
    if attempt is None:
        raise NotFound()
    return attempt


def attempt_by_state(db: Session, state: str | None) -> ConnectAttempt | None:
    if not state or len(state) > MAX_STATE_LENGTH:
        return None
    return db.scalar(select(ConnectAttempt).where(ConnectAttempt.state_hash == hash_secret(state)))


def purge_expired_attempts(db: Session, now: datetime) -> int:
    result = db.execute(delete(ConnectAttempt).where(ConnectAttempt.expires_at < now - timedelta(days=1)))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]

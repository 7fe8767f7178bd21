"""The connect flow (begin an attempt, complete the callback, pick sub-accounts) and connections.

Stages of a ConnectAttempt: started → (callback) → selecting → connected, or failed. Nothing
becomes a Connection before the client's choice is complete: the grant and sub-account tokens of
a selecting attempt are held encrypted on the attempt itself and expire with it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.errors import (
    AccountNotExpected,
    AttemptInvalid,
    ConsentDenied,
    IdentityMismatch,
    NoSubAccounts,
    NotFound,
    OAuthFailed,
    PlatformError,
    PortalError,
    ScopesMissing,
    SelectionExpired,
    ValidationFailed,
)
from portal.models import AttemptStage, ConnectAttempt, Connection, ConnectLink, Health, new_id
from portal.oauth import AccountInfo, AppCredentials, TokenGrant
from portal.providers import ProviderSpec
from portal.providers.adapters import Authorized, SubAccount
from portal.security.crypto import column_context
from portal.security.signing import constant_time_equals, hash_secret, random_id
from portal.services import Deps, audit, links, notifications, platforms, schedule, webhooks
from portal.services.audit import Actor

log = logging.getLogger(__name__)
MAX_STATE_LENGTH = 200
SELECTION_LIFETIME = timedelta(minutes=30)


@dataclass(frozen=True)
class StartedAttempt:
    attempt: ConnectAttempt
    authorize_url: str


def create_attempt(db: Session, deps: Deps, link: ConnectLink, platform: str,
                   instance: str | None = None) -> tuple[ConnectAttempt, str]:
    """A new attempt row keyed by a fresh `state` (returned; only its hash is stored)."""
    now = deps.now()
    state = random_id(32)
    attempt = ConnectAttempt(id=new_id(), agency_id=link.agency_id, link_id=link.id, platform=platform,
                             state_hash=hash_secret(state), stage=AttemptStage.STARTED, instance=instance,
                             expires_at=now + timedelta(seconds=deps.settings.attempt_lifetime), created_at=now)
    db.add(attempt)
    return attempt, state


def offered_spec(db: Session, deps: Deps, link: ConnectLink, platform: str) -> ProviderSpec:
    if platform not in link.allowed_platforms:
        raise links.PlatformNotAllowed()
    spec = platforms.offered(db, deps, link.agency_id).get(platform)
    if spec is None:
        raise links.PlatformNotAllowed("This platform is not available right now. Please contact the sender.")
    return spec


def begin_attempt(db: Session, deps: Deps, resolved: links.ResolvedLink, platform: str,
                  reconsent: bool = False, browser_secret: str | None = None) -> StartedAttempt:
    """Start one OAuth authorization for a link: server-side state and PKCE verifier, bound to the
    starting browser by ``browser_secret`` (a cookie the edge sets; only its hash is stored)."""
    link = resolved.link
    spec = offered_spec(db, deps, link, platform)
    if spec.auth_kind != "oauth2":
        raise links.PlatformNotAllowed()
    app = platforms.app_for(db, deps, link.agency_id, spec)
    attempt, state = create_attempt(db, deps, link, platform)
    attempt.browser_hash = hash_secret(browser_secret) if browser_secret else None
    verifier = random_id(64) if spec.pkce else None
    if verifier:
        attempt.verifier_enc = deps.cipher.encrypt(verifier, _attempt_context(attempt, "verifier"))
    url = platforms.adapter_for(deps, spec).authorization_url(
        spec, app, platforms.redirect_uri(deps.settings, platform), state, verifier, reconsent)
    return StartedAttempt(attempt, url)


def _attempt_context(attempt: ConnectAttempt, what: str) -> str:
    return column_context("connect_attempts", attempt.id, what)


def attempt_by_state(db: Session, state: str | None) -> ConnectAttempt | None:
    if not state or len(state) > MAX_STATE_LENGTH:
        return None
    return db.scalar(select(ConnectAttempt).where(ConnectAttempt.state_hash == hash_secret(state)))


def claim_callback(db: Session, deps: Deps, platform: str, state: str | None) -> ConnectAttempt:
    """Validate `state` before anything else and claim the attempt (single use, atomically)."""
    attempt = attempt_by_state(db, state)
    if attempt is None or attempt.platform != platform:
        raise AttemptInvalid()
    if attempt.expires_at <= deps.now():
        raise AttemptInvalid("This sign-in took too long and has expired. Please start again from your link.")
    claimed = db.execute(update(ConnectAttempt)
                         .where(ConnectAttempt.id == attempt.id, ConnectAttempt.callback_at.is_(None),
                                ConnectAttempt.stage == AttemptStage.STARTED)
                         .values(callback_at=deps.now()).execution_options(synchronize_session=False))
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise AttemptInvalid()
    db.commit()  # the claim stands whatever happens next: a state is used once, failures included
    db.refresh(attempt)
    return attempt


def complete_callback(db: Session, deps: Deps, platform: str, state: str | None, code: str | None,
                      error: str | None, ip: str | None, browser_secret: str | None = None) -> ConnectAttempt:
    """Handle the platform's redirect back. Commits, because platform HTTP calls sit in the middle
    and no transaction may be held across them: once to claim the attempt, once to finish it."""
    attempt = claim_callback(db, deps, platform, state)
    link = links.get_link(db, attempt.agency_id, attempt.link_id)
    with failing_attempt(db, attempt):
        links.check_usable(link, deps.now())
        if error:
            raise ConsentDenied() if error == "access_denied" else OAuthFailed()
        if not code or len(code) > 2000:
            raise OAuthFailed("The platform did not send an authorization code. Please try again.")
        verifier = (deps.cipher.decrypt(attempt.verifier_enc, _attempt_context(attempt, "verifier"))
                    if attempt.verifier_enc else None)
        spec, app = spec_and_app(db, deps, link.agency_id, platform, attempt.instance)
        if spec.pkce and not verifier:
            raise AttemptInvalid()  # never exchange without the verifier the attempt was started with
        same_browser = same_browser_as(attempt, browser_secret)
        db.commit()
        authorized = authorize_with_platform(
            lambda: platforms.adapter_for(deps, spec).authorize(
                spec, app, platforms.redirect_uri(deps.settings, platform), code, verifier, deps.now()), platform)
        finish_authorization(db, deps, attempt, link, spec, authorized, Actor("client", link.id, ip),
                             confirm=not same_browser)
    return attempt


def same_browser_as(attempt: ConnectAttempt, browser_secret: str | None) -> bool:
    """Whether the callback arrives in the browser that started the attempt (its cookie matches)."""
    return bool(attempt.browser_hash and browser_secret) and constant_time_equals(
        attempt.browser_hash or "", hash_secret(browser_secret or ""))


class failing_attempt:  # noqa: N801 - used as a statement: `with failing_attempt(db, attempt):`
    """On a PortalError: roll back, mark the attempt failed (with the error's code), commit, re-raise."""

    def __init__(self, db: Session, attempt: ConnectAttempt) -> None:
        self.db, self.attempt_id = db, attempt.id

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _tb: object) -> bool:
        if isinstance(exc, PortalError):
            self.db.rollback()
            self.db.execute(update(ConnectAttempt).where(
                ConnectAttempt.id == self.attempt_id, ConnectAttempt.stage != AttemptStage.CONNECTED).values(
                stage=AttemptStage.FAILED, error_code=exc.code[:40], verifier_enc=None, pending_enc=None))
            self.db.commit()
        return False


def spec_and_app(db: Session, deps: Deps, agency_id: str, platform: str,
                 instance: str | None) -> tuple[ProviderSpec, AppCredentials]:
    """The platform's spec and app; for multi-instance platforms, bound to the attempt's server
    and using the portal's app registered there (so token and identity come from that server)."""
    spec = platforms.spec_of(db, deps, agency_id, platform)
    if instance:
        from portal.services import instances

        spec = spec.for_instance(instance, deps.settings.sandbox_url)
        return spec, instances.registered_app(db, deps, spec, instance)
    return spec, platforms.app_for(db, deps, agency_id, spec)


def authorize_with_platform(operation: Callable[[], Authorized], platform: str) -> Authorized:
    try:
        return operation()
    except PlatformError as exc:
        log.warning("connect to %s failed: %s (%s)", platform, exc.kind, exc.platform_code or "-")
        raise OAuthFailed() from exc


def finish_authorization(db: Session, deps: Deps, attempt: ConnectAttempt, link: ConnectLink, spec: ProviderSpec,
                         authorized: Authorized, actor: Actor, confirm: bool = False) -> None:
    """After any platform's authorization: check scopes, then either ask the client to pick
    sub-accounts (or, with ``confirm``, to confirm the account by hand) or store it. Commits."""
    missing = [scope for scope in spec.required_scopes if scope not in authorized.scopes]
    if missing:
        raise ScopesMissing(missing, spec.label)
    if authorized.sub_accounts is not None or confirm:
        _start_selection(db, deps, attempt, link, spec, authorized, confirm)
        return
    _guard_identity(db, link, spec, [(authorized.account.external_id, authorized.account.handle)])
    _connect(db, deps, attempt, link, [(authorized.account, authorized.grant, None, None)], actor)


def _start_selection(db: Session, deps: Deps, attempt: ConnectAttempt, link: ConnectLink, spec: ProviderSpec,
                     authorized: Authorized, confirm: bool = False) -> None:
    subs = authorized.sub_accounts
    if subs is None:  # a confirmation: the signed-in account is the only candidate
        account = authorized.account
        subs = [SubAccount(account.external_id, account.display_name, spec.account_kind, account.handle,
                           account.avatar_url, extra={"self": True})]
        authorized = Authorized(authorized.grant, account, authorized.scopes, subs)
    if not subs:
        raise NoSubAccounts(f"We could not find any {spec.account_kind} you manage on {spec.label}. Check that your "
                            "account has the right role there, then try again.")
    expected = _expected(link)
    attempt.candidates = [{"id": s.external_id, "name": s.display_name, "handle": s.handle, "avatar": s.avatar_url,
                           "kind": s.kind, "detail": s.detail, "confirm": confirm,
                           "allowed": not expected or _matches(expected, s.external_id, s.handle)} for s in subs]
    attempt.pending_enc = deps.cipher.encrypt(_pending_json(authorized), _attempt_context(attempt, "pending"))
    attempt.stage = AttemptStage.SELECTING
    attempt.selection_expires_at = deps.now() + SELECTION_LIFETIME
    attempt.verifier_enc = None
    db.commit()


def _pending_json(authorized: Authorized) -> str:
    grant, account = authorized.grant, authorized.account
    return json.dumps({
        "grant": {"access_token": grant.access_token, "refresh_token": grant.refresh_token,
                  "expires_at": grant.expires_at.isoformat() if grant.expires_at else None,
                  "refresh_expires_at": grant.refresh_expires_at.isoformat() if grant.refresh_expires_at else None,
                  "scopes": list(grant.scopes)},
        "account": account.__dict__,
        "subs": {s.external_id: {**s.__dict__} for s in authorized.sub_accounts or []},
    })


def _load_pending(deps: Deps, attempt: ConnectAttempt) -> tuple[TokenGrant, AccountInfo, dict[str, SubAccount]]:
    assert attempt.pending_enc is not None
    data = json.loads(deps.cipher.decrypt(attempt.pending_enc, _attempt_context(attempt, "pending")))
    raw = data["grant"]
    grant = TokenGrant(raw["access_token"], raw["refresh_token"], _dt(raw["expires_at"]),
                       _dt(raw["refresh_expires_at"]), tuple(raw["scopes"]))
    return grant, AccountInfo(**data["account"]), {k: SubAccount(**v) for k, v in data["subs"].items()}


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def select_accounts(db: Session, deps: Deps, link: ConnectLink, attempt_id: str, chosen: Iterable[str],
                    ip: str | None) -> ConnectAttempt:
    """The client's pick: each chosen sub-account becomes its own connection with the right token."""
    attempt = selecting_attempt(db, deps, link, attempt_id)
    chosen_ids = list(dict.fromkeys(chosen))
    candidates = {c["id"]: c for c in attempt.candidates or []}
    if not chosen_ids:
        raise ValidationFailed("Choose at least one account to connect.")
    if not set(chosen_ids) <= set(candidates):
        raise ValidationFailed("That choice is not one of the accounts offered.")
    spec = platforms.spec_of(db, deps, link.agency_id, attempt.platform)
    claimed = db.execute(update(ConnectAttempt).where(ConnectAttempt.id == attempt.id,
                                                      ConnectAttempt.stage == AttemptStage.SELECTING)
                         .values(stage=AttemptStage.STORING).execution_options(synchronize_session=False))
    if claimed.rowcount != 1:  # type: ignore[attr-defined]  # a concurrent submit of the same choice won
        raise AttemptInvalid("This choice was already made. Please start again from your link.")
    with failing_attempt(db, attempt):
        _guard_identity(db, link, spec, [(cid, candidates[cid].get("handle") or "") for cid in chosen_ids])
        grant, account, subs = _load_pending(deps, attempt)
        picks = [(_sub_account_info(subs[cid]), _sub_grant(subs[cid], grant),
                  None if subs[cid].extra.get("self") else subs[cid],
                  None if subs[cid].extra.get("self") else account.external_id) for cid in chosen_ids]
        _connect(db, deps, attempt, link, picks, Actor("client", link.id, ip))
    return attempt


def selecting_attempt(db: Session, deps: Deps, link: ConnectLink, attempt_id: str) -> ConnectAttempt:
    attempt = attempt_for(db, link.id, attempt_id)
    if attempt.stage != AttemptStage.SELECTING or attempt.pending_enc is None:
        raise AttemptInvalid("This choice was already made or is no longer open. Please start again from your link.")
    if attempt.selection_expires_at is None or attempt.selection_expires_at <= deps.now():
        raise SelectionExpired()
    links.check_usable(link, deps.now())
    return attempt


def _sub_account_info(sub: SubAccount) -> AccountInfo:
    return AccountInfo(sub.external_id, sub.display_name, sub.handle, sub.avatar_url)


def _sub_grant(sub: SubAccount, user_grant: TokenGrant) -> TokenGrant:
    if sub.access_token:  # e.g. a Meta Page token: its own, non-expiring, no refresh token
        return TokenGrant(sub.access_token, None, None, None, user_grant.scopes)
    return user_grant


def _expected(link: ConnectLink) -> set[str]:
    return {value.strip().lstrip("@").lower() for value in link.expected_accounts or [] if value.strip()}


def _matches(expected: set[str], external_id: str, handle: str) -> bool:
    return external_id.lower() in expected or (bool(handle) and handle.lstrip("@").lower() in expected)


def _guard_identity(db: Session, link: ConnectLink, spec: ProviderSpec, accounts: list[tuple[str, str]]) -> None:
    """A link may expect given accounts; a reconnect link expects exactly its connection's account."""
    expected = _expected(link)
    for external_id, handle in accounts:
        if expected and not _matches(expected, external_id, handle):
            raise AccountNotExpected(f"The account {_name(external_id, handle)} is not one this link is for, so it "
                                     "was not connected. Sign in with the account the sender asked for.")
    if link.reconnect_connection_id:
        target = db.get(Connection, link.reconnect_connection_id)
        if target is None:
            raise IdentityMismatch("The connection this link was made to repair no longer exists.")
        if target.platform != spec.name or any(eid != target.external_id for eid, _ in accounts):
            signed_in = ", ".join(_name(eid, h) for eid, h in accounts)
            raise IdentityMismatch(f"This link reconnects {_name(target.external_id, target.handle)}, but you signed "
                                   f"in as {signed_in}. Nothing was changed. Sign out of that account on "
                                   f"{spec.label}, sign in as {_name(target.external_id, target.handle)} and "
                                   "try again.")


def _name(external_id: str, handle: str) -> str:
    return f"@{handle.lstrip('@')}" if handle else external_id


def _connect(db: Session, deps: Deps, attempt: ConnectAttempt, link: ConnectLink,
             picks: list[tuple[AccountInfo, TokenGrant, SubAccount | None, str | None]], actor: Actor) -> None:
    """Reserve the link's use and store every picked account, in one transaction."""
    links.reserve_use(db, link.id, deps.now())
    shared_grant = new_id()
    stored = [store_connection(db, deps, attempt, link, account, grant, sub, parent, actor,
                               grant_id=new_id() if sub is not None and sub.access_token else shared_grant)
              for account, grant, sub, parent in picks]
    attempt.stage = AttemptStage.CONNECTED
    attempt.connection_id = stored[0].id
    attempt.connection_ids = [c.id for c in stored]
    webhooks.link_completed(db, deps, link, stored)
    attempt.pending_enc = None
    attempt.verifier_enc = None
    db.commit()


def store_connection(db: Session, deps: Deps, attempt: ConnectAttempt, link: ConnectLink, account: AccountInfo,
                     grant: TokenGrant, sub: SubAccount | None, parent_id: str | None, actor: Actor,
                     grant_id: str | None = None) -> Connection:
    """Insert or update the connection for (workspace, platform, account): one row per account."""
    key = (link.workspace_id, attempt.platform, account.external_id)
    spec = platforms.spec_of(db, deps, link.agency_id, attempt.platform)
    connection = _find(db, *key)
    created = connection is None
    was_error = connection is not None and connection.health == Health.ERROR
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
    connection.account_kind = sub.kind if sub else spec.account_kind
    connection.parent_external_id = parent_id
    connection.instance = attempt.instance
    connection.extra = sub.extra if sub and sub.extra else connection.extra
    connection.grant_id = grant_id or new_id()
    _apply_grant(deps, connection, grant, account)
    connection.refresh_due_at = schedule.next_refresh(
        platforms.adapter_for(deps, spec).can_refresh(spec, grant.refresh_token is not None), spec.refresh,
        grant.expires_at, deps.now())
    connection.connected_via_link_id = link.id
    db.flush()
    action = "connection.created" if created else "connection.reconnected"
    audit.record(db, link.agency_id, actor, action, "connection", connection.id, platform=attempt.platform,
                 account=account.handle or account.display_name, via_link=link.id)
    webhooks.connection_changed(db, deps, connection, action)
    if was_error:
        audit.record(db, link.agency_id, actor, "connection.recovered", "connection", connection.id)
        notifications.recovered(db, deps, connection)
    return connection


def _find(db: Session, workspace_id: str, platform: str, external_id: str) -> Connection | None:
    return db.scalar(select(Connection).where(Connection.workspace_id == workspace_id,
                                              Connection.platform == platform,
                                              Connection.external_id == external_id))


def _apply_grant(deps: Deps, connection: Connection, grant: TokenGrant, account: AccountInfo) -> None:
    connection.display_name = account.display_name
    connection.handle = account.handle
    connection.avatar_url = account.avatar_url
    write_tokens(deps, connection, grant)
    connection.health = Health.HEALTHY
    connection.health_reason = ""
    connection.refresh_started_at = None
    connection.last_checked_at = deps.now()


def write_tokens(deps: Deps, connection: Connection, grant: TokenGrant) -> None:
    """Encrypt a grant's tokens into the row (bound to it) and bump the token version. An empty
    access token (Telegram: the bot token is the app's, a chat has none) leaves the column empty."""
    connection.access_token_enc = (deps.cipher.encrypt(grant.access_token, token_context(connection, "access"))
                                   if grant.access_token else None)
    connection.refresh_token_enc = (deps.cipher.encrypt(grant.refresh_token, token_context(connection, "refresh"))
                                    if grant.refresh_token else None)
    connection.token_expires_at = grant.expires_at
    connection.refresh_expires_at = grant.refresh_expires_at
    connection.scopes = " ".join(grant.scopes)
    connection.token_version = (connection.token_version or 0) + 1


def token_context(connection: Connection, which: str) -> str:
    return column_context("connections", connection.id, f"{which}_token")


def read_tokens(deps: Deps, connection: Connection) -> tuple[str | None, str | None]:
    """(access, refresh) in clear, for a platform call. Callers never log or return them."""
    cipher = deps.cipher
    access = (cipher.decrypt(connection.access_token_enc, token_context(connection, "access"))
              if connection.access_token_enc else None)
    refresh = (cipher.decrypt(connection.refresh_token_enc, token_context(connection, "refresh"))
               if connection.refresh_token_enc else None)
    return access, refresh


# Reading and managing connections ----------------------------------------------------------------

def list_connections(db: Session, agency_id: str, workspace_id: str | None = None) -> list[Connection]:
    query = select(Connection).where(Connection.agency_id == agency_id).order_by(Connection.created_at)
    if workspace_id:
        query = query.where(Connection.workspace_id == workspace_id)
    return list(db.scalars(query))


STATUS_FILTERS = ("all", "valid", "expiring", "expired")


def search(db: Session, agency_id: str, now: datetime, *, status: str = "all", platform: str | None = None,
           workspace_id: str | None = None, limit: int = 500) -> list[Connection]:
    """The agency's connections filtered like the admin's list: token status (valid, expiring within 30
    days, expired), platform, workspace. Filter values are bound parameters, never SQL."""
    from sqlalchemy import and_, case, or_

    # When the client must reconnect: the refresh token's end if there is one, else the access token's.
    # NULL (no known end) must count as "not expired", so every comparison is guarded (SQL NULL logic).
    lapse = case((Connection.refresh_token_enc.is_not(None), Connection.refresh_expires_at),
                 else_=Connection.token_expires_at)
    expired = or_(Connection.health == Health.ERROR, and_(lapse.is_not(None), lapse <= now))
    query = select(Connection).where(Connection.agency_id == agency_id)
    if status == "expired":
        query = query.where(expired)
    elif status == "expiring":
        query = query.where(~expired, lapse.is_not(None), lapse <= now + timedelta(days=30))
    elif status == "valid":
        query = query.where(~expired)
    elif status != "all":
        raise ValidationFailed("Unknown status filter.")
    if platform:
        query = query.where(Connection.platform == platform)
    if workspace_id:
        query = query.where(Connection.workspace_id == workspace_id)
    return list(db.scalars(query.order_by(Connection.created_at.desc()).limit(limit)))


def set_active(db: Session, agency_id: str, connection_id: str, active: bool, actor: Actor) -> Connection:
    """Inactive connections stay connected and fresh but are not offered for new posts."""
    connection = get_connection(db, agency_id, connection_id)
    if connection.active != active:
        connection.active = active
        audit.record(db, agency_id, actor, "connection.activated" if active else "connection.deactivated",
                     "connection", connection.id, platform=connection.platform)
    return connection


def get_connection(db: Session, agency_id: str, connection_id: str) -> Connection:
    connection = db.scalar(select(Connection).where(Connection.id == connection_id,
                                                    Connection.agency_id == agency_id))
    if connection is None:
        raise NotFound("No such connection.")
    return connection


def connections_by_ids(db: Session, agency_id: str, ids: Iterable[str]) -> list[Connection]:
    wanted = list(ids)
    rows = {c.id: c for c in db.scalars(select(Connection).where(Connection.agency_id == agency_id,
                                                                  Connection.id.in_(wanted)))}
    return [rows[i] for i in wanted if i in rows]


@dataclass(frozen=True)
class Disconnected:
    """A deleted connection, and the revocation to attempt at the platform once the delete is committed."""

    connection: Connection
    revoke: Callable[[], None]


def disconnect(db: Session, deps: Deps, agency_id: str, connection_id: str, actor: Actor) -> Disconnected:
    """Delete the connection and its tokens at once. The caller commits, then calls ``revoke()``:
    revoking at the platform is best effort and must not hold the transaction open."""
    connection = get_connection(db, agency_id, connection_id)
    revoke = _revocation(db, deps, connection)
    db.execute(delete(Connection).where(Connection.id == connection.id, Connection.agency_id == agency_id))
    audit.record(db, agency_id, actor, "connection.disconnected", "connection", connection.id,
                 platform=connection.platform, account=connection.handle or connection.display_name)
    webhooks.connection_changed(db, deps, connection, "connection.deleted")
    return Disconnected(connection, revoke)


def _revocation(db: Session, deps: Deps, connection: Connection) -> Callable[[], None]:
    access, refresh = read_tokens(deps, connection)
    if access is None and refresh is None or _grant_still_used(db, connection):
        return lambda: None  # revoking would cut off the other connections of the same grant
    platform, connection_id = connection.platform, connection.id
    try:
        spec, app = spec_and_app(db, deps, connection.agency_id, platform, connection.instance)
    except PortalError:
        return lambda: None

    def revoke() -> None:
        try:
            platforms.adapter_for(deps, spec).revoke(spec, app, access, refresh)
        except PortalError as exc:
            log.warning("revoking connection %s at %s failed: %s", connection_id, platform, exc.code)

    return revoke


def _grant_still_used(db: Session, connection: Connection) -> bool:
    if connection.grant_id is None:
        return False
    return db.scalar(select(Connection.id).where(Connection.grant_id == connection.grant_id,
                                                 Connection.agency_id == connection.agency_id,
                                                 Connection.id != connection.id).limit(1)) is not None


def attempt_for(db: Session, link_id: str, attempt_id: str) -> ConnectAttempt:
    attempt = db.scalar(select(ConnectAttempt).where(ConnectAttempt.id == attempt_id,
                                                     ConnectAttempt.link_id == link_id))
    if attempt is None:
        raise NotFound()
    return attempt


def purge_expired_attempts(db: Session, now: datetime) -> int:
    """Expired attempts go, and with them any unfinished selection's encrypted tokens."""
    result = db.execute(delete(ConnectAttempt).where(ConnectAttempt.expires_at < now - timedelta(days=1)))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]

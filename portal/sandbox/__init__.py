"""The sandbox platform: a real OAuth 2.0 authorization server served by the project itself.

It powers the demo and the tests. It keeps its own state in its own database (by default
a SQLite file next to the portal's), created on first use: it is a stand-in for a remote
platform, not part of EasyConnect's data, so it needs no migrations. Codes are single use
and bound to client, redirect URI and PKCE challenge; refresh tokens rotate (the old one
dies); reusing a spent code revokes what it issued. Failure switches let tests and the
demo make the platform misbehave on purpose.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import JSON, Engine, Integer, String, Text, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from portal.db import UTCDateTime, make_engine, make_session_factory, utcnow


@dataclass(frozen=True)
class DemoAccount:
    id: str
    name: str
    handle: str
    color: str


DEMO_ACCOUNTS = (
    DemoAccount("sbx-1001", "Blue Bottle Bakery", "bluebottlebakery", "#2563eb"),
    DemoAccount("sbx-1002", "Northwind Outfitters", "northwind", "#059669"),
    DemoAccount("sbx-1003", "Casa Aurora Studio", "casa.aurora", "#db2777"),
)
ACCOUNTS_BY_ID = {account.id: account for account in DEMO_ACCOUNTS}
CODE_LIFETIME = timedelta(minutes=5)
FAILURE_MODES = ("none", "invalid_grant", "invalid_client", "server_error", "rate_limited", "slow", "revoked")


class SandboxBase(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime()}


SCHEMA_VERSION = 3


class SandboxMeta(SandboxBase):
    __tablename__ = "sandbox_meta"

    key: Mapped[str] = mapped_column(String(20), primary_key=True)
    value: Mapped[int] = mapped_column(Integer)


class SandboxCode(SandboxBase):
    __tablename__ = "sandbox_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    platform: Mapped[str] = mapped_column(String(40), default="sandbox")
    extra: Mapped[dict[str, str] | None] = mapped_column(JSON)
    client_id: Mapped[str] = mapped_column(String(200))
    redirect_uri: Mapped[str] = mapped_column(Text)
    account_id: Mapped[str] = mapped_column(String(40))
    scope: Mapped[str] = mapped_column(Text)
    code_challenge: Mapped[str | None] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column()
    family: Mapped[str] = mapped_column(String(32))


class SandboxToken(SandboxBase):
    __tablename__ = "sandbox_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    platform: Mapped[str] = mapped_column(String(40), default="sandbox")
    kind: Mapped[str] = mapped_column(String(8))  # access | refresh
    subject: Mapped[str | None] = mapped_column(String(80))  # a Page token's Page id
    family: Mapped[str] = mapped_column(String(32), index=True)
    client_id: Mapped[str] = mapped_column(String(200))
    account_id: Mapped[str] = mapped_column(String(40))
    scope: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()


class SandboxCounter(SandboxBase):
    __tablename__ = "sandbox_counters"

    name: Mapped[str] = mapped_column(String(60), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


class SandboxSwitch(SandboxBase):
    """A failure switch: the next ``remaining`` calls to ``endpoint`` fail with ``mode``; every call to it
    first waits ``latency_ms`` (a platform far away, for benchmarks)."""

    __tablename__ = "sandbox_switches"

    endpoint: Mapped[str] = mapped_column(String(20), primary_key=True)
    mode: Mapped[str] = mapped_column(String(20))
    remaining: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)


class SandboxError(Exception):
    """An OAuth error response: ``error`` code, HTTP status, optional Retry-After."""

    def __init__(self, error: str, status: int = 400, retry_after: int | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class IssuedTokens:
    access_token: str
    refresh_token: str
    expires_in: int
    scope: str
    account_id: str


def _ensure_schema(engine: Engine) -> None:
    """The sandbox's data is disposable: an older schema is dropped and created anew."""
    SandboxBase.metadata.create_all(engine)
    with sessionmaker(bind=engine).begin() as db:
        row = db.get(SandboxMeta, "schema")
        if row is not None and row.value == SCHEMA_VERSION:
            return
    SandboxBase.metadata.drop_all(engine)
    SandboxBase.metadata.create_all(engine)
    with sessionmaker(bind=engine).begin() as db:
        db.add(SandboxMeta(key="schema", value=SCHEMA_VERSION))


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


# The token endpoint's statements, built once (benchmarks send it hundreds of requests a second).
_tokens, _switches, _counters = SandboxToken.__table__.c, SandboxSwitch.__table__.c, SandboxCounter.__table__.c
_LIVE_REFRESH = ((_tokens.token_hash == bindparam("hash")) & (_tokens.kind == "refresh")
                 & (_tokens.client_id == bindparam("client")) & (_tokens.platform == bindparam("on_platform"))
                 & _tokens.revoked_at.is_(None) & (_tokens.expires_at > bindparam("now")))
_SPEND_REFRESH = (update(SandboxToken.__table__).where(_LIVE_REFRESH).values(revoked_at=bindparam("v_revoked_at"))
                  .returning(_tokens.account_id, _tokens.scope, _tokens.family))
_FIND_REFRESH = select(_tokens.account_id, _tokens.scope, _tokens.family).where(_LIVE_REFRESH)
_READ_SWITCH = select(_switches.latency_ms, _switches.mode, _switches.remaining).where(
    _switches.endpoint == bindparam("endpoint"))
_TAKE_FAILURE = update(SandboxSwitch.__table__).where(_switches.endpoint == bindparam("switch"),
                                                     _switches.remaining > 0).values(remaining=_switches.remaining - 1)
_BUMP_COUNTER = update(SandboxCounter.__table__).where(_counters.name == bindparam("counter")).values(
    value=_counters.value + 1)


class SandboxServer:
    """The authorization server's logic; the blueprint in portal.views.sandbox speaks HTTP for it."""

    def __init__(self, database_url: str, client_id: str, client_secret: str, redirect_prefix: str,
                 access_lifetime: int, refresh_lifetime: int) -> None:
        self.engine: Engine = make_engine(database_url)
        _ensure_schema(self.engine)
        self.sessions: sessionmaker[Session] = make_session_factory(self.engine)
        self.client_id = client_id
        self._client_secret = client_secret
        self.redirect_prefix = redirect_prefix
        self.access_lifetime = access_lifetime
        self.refresh_lifetime = refresh_lifetime

    def __repr__(self) -> str:
        return f"SandboxServer(client_id={self.client_id!r})"

    # Authorization --------------------------------------------------------------------------------

    def check_authorize_request(self, client_id: str, redirect_uri: str, response_type: str,
                                code_challenge_method: str | None) -> None:
        if client_id != self.client_id:
            raise SandboxError("invalid_client")
        if not redirect_uri.startswith(self.redirect_prefix) or len(redirect_uri) > 500:
            raise SandboxError("invalid_redirect_uri")
        if response_type != "code":
            raise SandboxError("unsupported_response_type")
        if code_challenge_method not in (None, "", "S256"):
            raise SandboxError("invalid_request")

    def issue_code(self, client_id: str, redirect_uri: str, account_id: str, scope: str,
                   code_challenge: str | None, platform: str = "sandbox", extra: dict[str, str] | None = None) -> str:
        if account_id not in ACCOUNTS_BY_ID:
            raise SandboxError("invalid_request")
        code = secrets.token_urlsafe(24)
        with self.sessions.begin() as db:
            db.add(SandboxCode(code_hash=_hash(code), client_id=client_id, redirect_uri=redirect_uri,
                               account_id=account_id, scope=scope, code_challenge=code_challenge or None,
                               expires_at=utcnow() + CODE_LIFETIME, family=secrets.token_hex(16),
                               platform=platform, extra=extra or {}))
        return code

    def code_platform(self, code: str) -> str:
        with self.sessions() as db:
            row = db.get(SandboxCode, _hash(code))
            return row.platform if row is not None else ""

    def check_secret(self, client_secret: str | None) -> None:
        if not secrets.compare_digest(client_secret or "", self._client_secret):
            raise SandboxError("invalid_client", status=401)

    def code_extra(self, code: str) -> dict[str, str]:
        """What the consent page recorded with a code (Google's offline access, Discord's guild ...)."""
        with self.sessions() as db:
            row = db.get(SandboxCode, _hash(code))
            return dict(row.extra or {}) if row is not None else {}

    # Token endpoint --------------------------------------------------------------------------------

    def authenticate_client(self, client_id: str | None, client_secret: str | None) -> str:
        if client_id != self.client_id or not secrets.compare_digest(client_secret or "", self._client_secret):
            raise SandboxError("invalid_client", status=401)
        return client_id

    def exchange_code(self, client_id: str, code: str, redirect_uri: str, verifier: str | None,
                      platform: str = "sandbox", access_lifetime: int | None = None,
                      refresh: bool = True) -> IssuedTokens:
        self._maybe_fail("token")
        with self.sessions.begin() as db:
            row = db.get(SandboxCode, _hash(code))
            if row is None or row.client_id != client_id or row.platform != platform:
                raise SandboxError("invalid_grant")
            if row.used_at is not None:
                # RFC 6749 §4.1.2: a replayed code revokes what it already issued.
                self._revoke_family(db, row.family)
                failed = True
            else:
                row.used_at = utcnow()  # spent even when the checks below fail
                failed = (row.expires_at <= utcnow() or row.redirect_uri != redirect_uri
                          or bool(row.code_challenge and (not verifier or s256(verifier) != row.code_challenge)))
            issued = None if failed else self._issue(db, client_id, row.account_id, row.scope, row.family, platform,
                                                     access_lifetime, refresh)
        if issued is None:
            raise SandboxError("invalid_grant")
        self.count("code_exchanges")
        return issued

    def refresh(self, client_id: str, refresh_token: str, platform: str = "sandbox", rotate: bool = True,
                access_lifetime: int | None = None) -> IssuedTokens:
        self._maybe_fail("token")
        with self.sessions.begin() as db:
            # Rotation: the update succeeds once per refresh token; a second use finds it revoked.
            now = utcnow()
            found = db.execute(_SPEND_REFRESH if rotate else _FIND_REFRESH, {
                "hash": _hash(refresh_token), "client": client_id, "on_platform": platform, "now": now,
                "v_revoked_at": now}).one_or_none()
            if found is None:
                raise SandboxError("invalid_grant")
            issued = self._issue(db, client_id, found.account_id, found.scope, found.family, platform,
                                 access_lifetime, refresh=rotate)
            if not rotate:
                issued = IssuedTokens(issued.access_token, refresh_token, issued.expires_in, issued.scope,
                                      issued.account_id)
            self.count("refreshes", db)
        return issued

    def _issue(self, db: Session, client_id: str, account_id: str, scope: str, family: str,
               platform: str = "sandbox", access_lifetime: int | None = None, refresh: bool = True,
               subject: str | None = None) -> IssuedTokens:
        lifetime = access_lifetime or self.access_lifetime
        access, refresh_token = "sbx_at_" + secrets.token_urlsafe(24), "sbx_rt_" + secrets.token_urlsafe(24)
        now = utcnow()
        common = {"family": family, "client_id": client_id, "account_id": account_id, "scope": scope,
                  "platform": platform, "revoked_at": None}
        rows = [{**common, "token_hash": _hash(access), "kind": "access", "subject": subject,
                 "expires_at": now + timedelta(seconds=lifetime)}]
        if refresh:
            rows.append({**common, "token_hash": _hash(refresh_token), "kind": "refresh", "subject": None,
                         "expires_at": now + timedelta(seconds=self.refresh_lifetime)})
        db.execute(insert(SandboxToken.__table__), rows)  # plain INSERTs: the token endpoint is hot in benchmarks
        return IssuedTokens(access, refresh_token if refresh else "", lifetime, scope, account_id)

    def exchange_access(self, platform: str, access_token: str, lifetime: int, client_id: str | None = None,
                        subject: str | None = None, count_as: str = "exchanges") -> IssuedTokens:
        """A new access token from a live one: Meta's long-lived exchange and refresh, and Page tokens."""
        self._maybe_fail("token")
        with self.sessions.begin() as db:
            row = self._live(db, platform, access_token)
            issued = self._issue(db, client_id or row.client_id, row.account_id, row.scope, row.family, platform,
                                 lifetime, refresh=False, subject=subject)
        self.count(count_as)
        return issued

    def _live(self, db: Session, platform: str, token: str) -> SandboxToken:
        row = db.get(SandboxToken, _hash(token))
        if (row is None or row.kind != "access" or row.platform != platform or row.revoked_at is not None
                or row.expires_at <= utcnow()):
            raise SandboxError("invalid_token", status=401)
        return row

    def lookup(self, platform: str, token: str) -> SandboxToken:
        """The live access token's row (account, scope, subject) or an invalid_token error."""
        self._maybe_fail("userinfo")
        with self.sessions() as db:
            row = self._live(db, platform, token)
            db.expunge(row)
            return row

    def _revoke_family(self, db: Session, family: str) -> None:
        db.execute(update(SandboxToken).where(SandboxToken.family == family, SandboxToken.revoked_at.is_(None))
                   .values(revoked_at=utcnow()))

    def revoke(self, client_id: str, token: str) -> None:
        with self.sessions.begin() as db:
            row = db.get(SandboxToken, _hash(token))
            if row is not None and row.client_id == client_id:
                self._revoke_family(db, row.family)
        self.count("revocations")

    # Resource endpoint ----------------------------------------------------------------------------

    def account_for_access_token(self, token: str, platform: str = "sandbox") -> DemoAccount:
        return ACCOUNTS_BY_ID[self.lookup(platform, token).account_id]

    # Counters and failure switches ----------------------------------------------------------------

    def count(self, name: str, db: Session | None = None) -> None:
        """Add one to a counter, atomically (gunicorn's processes count into the same row)."""
        if db is None:
            with self.sessions.begin() as own:
                self.count(name, own)
            return
        if db.execute(_BUMP_COUNTER, {"counter": name}).rowcount == 0:  # type: ignore[attr-defined]
            try:
                with db.begin_nested():
                    db.execute(insert(SandboxCounter.__table__).values(name=name, value=1))
            except IntegrityError:  # another process created it first
                db.execute(_BUMP_COUNTER, {"counter": name})

    def counters(self) -> dict[str, int]:
        with self.sessions() as db:
            return {row.name: row.value for row in db.scalars(select(SandboxCounter))}

    def set_switch(self, endpoint: str, mode: str, times: int) -> None:
        if endpoint not in ("token", "userinfo") or mode not in FAILURE_MODES or not 0 <= times <= 1000:
            raise SandboxError("invalid_request")
        with self.sessions.begin() as db:
            db.merge(SandboxSwitch(endpoint=endpoint, mode=mode, remaining=times))

    def set_latency(self, endpoint: str, latency_ms: int) -> None:
        """Added latency for every call to ``endpoint``, kept apart from its failure switch."""
        if endpoint not in ("token", "userinfo") or not 0 <= latency_ms <= 10_000:
            raise SandboxError("invalid_request")
        with self.sessions.begin() as db:
            switch = db.get(SandboxSwitch, endpoint)
            if switch is None:
                db.add(SandboxSwitch(endpoint=endpoint, mode="none", remaining=0, latency_ms=latency_ms))
            else:
                switch.latency_ms = latency_ms

    def _maybe_fail(self, endpoint: str) -> None:
        with self.sessions.begin() as db:
            switch = db.execute(_READ_SWITCH, {"endpoint": endpoint}).one_or_none()
            if switch is None:
                return
            delay, mode = switch.latency_ms / 1000, "none"
            if switch.remaining > 0 and switch.mode != "none":
                taken = db.execute(_TAKE_FAILURE, {"switch": endpoint})
                if taken.rowcount == 1:  # type: ignore[attr-defined]  # each failure is served once, across processes
                    mode = switch.mode
        if delay:
            threading.Event().wait(delay)  # outside the transaction: SQLite must not stay locked meanwhile
        if mode == "none":
            return
        if mode == "slow":
            threading.Event().wait(2.0)
            return
        raise {
            "invalid_grant": SandboxError("invalid_grant"),
            "invalid_client": SandboxError("invalid_client", status=401),
            "server_error": SandboxError("server_error", status=500),
            "rate_limited": SandboxError("rate_limited", status=429, retry_after=30),
            "revoked": SandboxError("invalid_token", status=401),
        }[mode]


def avatar_svg(account: DemoAccount) -> str:
    initials = "".join(word[0] for word in account.name.split()[:2]).upper()
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="96" height="96" viewBox="0 0 96 96">'
            f'<rect width="96" height="96" rx="48" fill="{account.color}"/>'
            f'<text x="48" y="60" font-family="sans-serif" font-size="34" font-weight="700" fill="#fff" '
            f'text-anchor="middle">{initials}</text></svg>')



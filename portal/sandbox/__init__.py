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

from sqlalchemy import Engine, Integer, String, Text, select, update
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
FAILURE_MODES = ("none", "invalid_grant", "invalid_client", "server_error", "rate_limited", "slow")


class SandboxBase(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime()}


class SandboxCode(SandboxBase):
    __tablename__ = "sandbox_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
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
    kind: Mapped[str] = mapped_column(String(8))  # access | refresh
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
    """A failure switch: the next ``remaining`` calls to ``endpoint`` fail with ``mode``."""

    __tablename__ = "sandbox_switches"

    endpoint: Mapped[str] = mapped_column(String(20), primary_key=True)
    mode: Mapped[str] = mapped_column(String(20))
    remaining: Mapped[int] = mapped_column(Integer)


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


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


class SandboxServer:
    """The authorization server's logic; the blueprint in portal.views.sandbox speaks HTTP for it."""

    def __init__(self, database_url: str, client_id: str, client_secret: str, redirect_prefix: str,
                 access_lifetime: int, refresh_lifetime: int) -> None:
        self.engine: Engine = make_engine(database_url)
        SandboxBase.metadata.create_all(self.engine)
        self.sessions: sessionmaker[Session] = make_session_factory(self.engine)
        self.client_id = client_id
        self._client_secret = client_secret
        self.redirect_prefix = redirect_prefix
        self.access_lifetime = access_lifetime
        self.refresh_lifetime = refresh_lifetime
        self._lock = threading.Lock()

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
                   code_challenge: str | None) -> str:
        if account_id not in ACCOUNTS_BY_ID:
            raise SandboxError("invalid_request")
        code = secrets.token_urlsafe(24)
        with self.sessions.begin() as db:
            db.add(SandboxCode(code_hash=_hash(code), client_id=client_id, redirect_uri=redirect_uri,
                               account_id=account_id, scope=scope, code_challenge=code_challenge or None,
                               expires_at=utcnow() + CODE_LIFETIME, family=secrets.token_hex(16)))
        return code

    # Token endpoint --------------------------------------------------------------------------------

    def authenticate_client(self, client_id: str | None, client_secret: str | None) -> str:
        if client_id != self.client_id or not secrets.compare_digest(client_secret or "", self._client_secret):
            raise SandboxError("invalid_client", status=401)
        return client_id

    def exchange_code(self, client_id: str, code: str, redirect_uri: str, verifier: str | None) -> IssuedTokens:
        self._maybe_fail("token")
        with self.sessions.begin() as db:
            row = db.get(SandboxCode, _hash(code))
            if row is None or row.client_id != client_id:
                raise SandboxError("invalid_grant")
            if row.used_at is not None:
                # RFC 6749 §4.1.2: a replayed code revokes what it already issued.
                self._revoke_family(db, row.family)
                failed = True
            else:
                row.used_at = utcnow()  # spent even when the checks below fail
                failed = (row.expires_at <= utcnow() or row.redirect_uri != redirect_uri
                          or bool(row.code_challenge and (not verifier or s256(verifier) != row.code_challenge)))
            issued = None if failed else self._issue(db, client_id, row.account_id, row.scope, row.family)
        if issued is None:
            raise SandboxError("invalid_grant")
        self.count("code_exchanges")
        return issued

    def refresh(self, client_id: str, refresh_token: str) -> IssuedTokens:
        self._maybe_fail("token")
        with self.sessions.begin() as db:
            # Rotation: the update succeeds once per refresh token; a second use finds it revoked.
            spent = db.execute(update(SandboxToken)
                               .where(SandboxToken.token_hash == _hash(refresh_token), SandboxToken.kind == "refresh",
                                      SandboxToken.client_id == client_id, SandboxToken.revoked_at.is_(None),
                                      SandboxToken.expires_at > utcnow())
                               .values(revoked_at=utcnow()))
            if spent.rowcount != 1:  # type: ignore[attr-defined]
                raise SandboxError("invalid_grant")
            row = db.get(SandboxToken, _hash(refresh_token))
            assert row is not None
            issued = self._issue(db, client_id, row.account_id, row.scope, row.family)
        self.count("refreshes")
        return issued

    def _issue(self, db: Session, client_id: str, account_id: str, scope: str, family: str) -> IssuedTokens:
        access, refresh = "sbx_at_" + secrets.token_urlsafe(24), "sbx_rt_" + secrets.token_urlsafe(24)
        now = utcnow()
        db.add_all([
            SandboxToken(token_hash=_hash(access), kind="access", family=family, client_id=client_id,
                         account_id=account_id, scope=scope, expires_at=now + timedelta(seconds=self.access_lifetime)),
            SandboxToken(token_hash=_hash(refresh), kind="refresh", family=family, client_id=client_id,
                         account_id=account_id, scope=scope,
                         expires_at=now + timedelta(seconds=self.refresh_lifetime)),
        ])
        return IssuedTokens(access, refresh, self.access_lifetime, scope, account_id)

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

    def account_for_access_token(self, token: str) -> DemoAccount:
        self._maybe_fail("userinfo")
        with self.sessions() as db:
            row = db.get(SandboxToken, _hash(token))
            if row is None or row.kind != "access" or row.revoked_at is not None or row.expires_at <= utcnow():
                raise SandboxError("invalid_token", status=401)
            return ACCOUNTS_BY_ID[row.account_id]

    # Counters and failure switches ----------------------------------------------------------------

    def count(self, name: str) -> None:
        with self._lock, self.sessions.begin() as db:
            row = db.get(SandboxCounter, name)
            if row is None:
                db.add(SandboxCounter(name=name, value=1))
            else:
                row.value += 1

    def counters(self) -> dict[str, int]:
        with self.sessions() as db:
            return {row.name: row.value for row in db.scalars(select(SandboxCounter))}

    def set_switch(self, endpoint: str, mode: str, times: int) -> None:
        if endpoint not in ("token", "userinfo") or mode not in FAILURE_MODES or not 0 <= times <= 1000:
            raise SandboxError("invalid_request")
        with self.sessions.begin() as db:
            db.merge(SandboxSwitch(endpoint=endpoint, mode=mode, remaining=times))

    def _maybe_fail(self, endpoint: str) -> None:
        with self.sessions.begin() as db:
            switch = db.get(SandboxSwitch, endpoint)
            if switch is None or switch.remaining <= 0 or switch.mode == "none":
                return
            switch.remaining -= 1
            mode = switch.mode
        if mode == "slow":
            threading.Event().wait(2.0)
            return
        raise {
            "invalid_grant": SandboxError("invalid_grant"),
            "invalid_client": SandboxError("invalid_client", status=401),
            "server_error": SandboxError("server_error", status=500),
            "rate_limited": SandboxError("rate_limited", status=429, retry_after=30),
        }[mode]


def avatar_svg(account: DemoAccount) -> str:
    initials = "".join(word[0] for word in account.name.split()[:2]).upper()
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="96" height="96" viewBox="0 0 96 96">'
            f'<rect width="96" height="96" rx="48" fill="{account.color}"/>'
            f'<text x="48" y="60" font-family="sans-serif" font-size="34" font-weight="700" fill="#fff" '
            f'text-anchor="middle">{initials}</text></svg>')



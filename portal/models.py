"""The data model (SQLAlchemy 2.0 typed style). Schema changes go through Alembic migrations.

Ids of public objects are random (uuid4 hex): they appear in URLs, must not be guessable or
enumerable, and are known before insert so encrypted columns can be bound to their row.
Tokens are encrypted columns; expiries, health and counters are plain columns so sweeps
never decrypt.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import text as sa_text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.db import Base, utcnow


def new_id() -> str:
    return uuid.uuid4().hex


class Health(enum.StrEnum):
    HEALTHY = "healthy"
    WARNING = "warning"
    ERROR = "error"
    REFRESHING = "refreshing"


class AttemptStage(enum.StrEnum):
    STARTED = "started"
    AUTHORIZED = "authorized"
    SELECTING = "selecting"  # the client picks sub-accounts (pages, channels, boards ...) or confirms
    STORING = "storing"  # a choice was claimed; the connections are being written
    CONNECTED = "connected"
    FAILED = "failed"


class Agency(Base):
    __tablename__ = "agencies"
    __table_args__ = (
        # One agency per domain, among proven claims only: an unproven claim blocks nobody (no squatting a domain
        # its owner has not added yet) and is never served (portal.services.domains).
        Index("uq_agencies_verified_domain", "custom_domain", unique=True,
              sqlite_where=sa_text("custom_domain_verified_at IS NOT NULL"),
              postgresql_where=sa_text("custom_domain_verified_at IS NOT NULL")),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(120))
    brand_color: Mapped[str] = mapped_column(String(7), default="#4f46e5")
    logo: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    logo_type: Mapped[str | None] = mapped_column(String(32))
    logo_version: Mapped[int] = mapped_column(Integer, default=0)
    support_url: Mapped[str | None] = mapped_column(String(500))
    # White-label texts for client pages (empty = the translated defaults) and look.
    headline: Mapped[str] = mapped_column(String(120), default="", server_default="")
    instructions: Mapped[str] = mapped_column(Text, default="", server_default="")
    success_text: Mapped[str] = mapped_column(String(500), default="", server_default="")
    theme: Mapped[str] = mapped_column(String(8), default="light", server_default="light")
    show_powered_by: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    # One email a day with every notice instead of one email per notice.
    notify_digest: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    digest_sent_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Origins (scheme://host[:port]) of the agency's own sites: the only pages allowed to frame the
    # client pages, receive widget messages and be returned to after a redirect-mode connect.
    embed_origins: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    favicon: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    favicon_type: Mapped[str | None] = mapped_column(String(32))
    favicon_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The agency's own host (connect.agency.example) mapped to the portal; client pages and OAuth
    # callbacks on it carry the agency's brand, once the agency has proven it controls the domain: a DNS TXT
    # record holding this token (portal.services.domains).
    custom_domain: Mapped[str | None] = mapped_column(String(253), index=True)
    custom_domain_token: Mapped[str | None] = mapped_column(String(64))
    custom_domain_verified_at: Mapped[datetime | None] = mapped_column()
    # Client pages' language when neither the link nor the browser picks one.
    default_language: Mapped[str | None] = mapped_column(String(8))
    # Offboarding: tokens are deleted at once; the rows after the retention period.
    deleted_at: Mapped[datetime | None] = mapped_column()


class Member(Base):
    __tablename__ = "members"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="owner")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    agency: Mapped[Agency] = relationship(lazy="joined")

    def __repr__(self) -> str:
        return f"Member(id={self.id!r})"


class MemberInvite(Base):
    """An invitation to join an agency with a role. The emailed link carries a random token whose
    SHA-256 is stored here; it is single-use and expires."""

    __tablename__ = "member_invites"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(254))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    invited_by: Mapped[str | None] = mapped_column(String(32))
    expires_at: Mapped[datetime] = mapped_column()
    accepted_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AdminSession(Base):
    """A server-side admin login: the cookie holds a random id whose hash is stored here,
    so logout (or revoking the row) ends the session even if the cookie is kept."""

    __tablename__ = "admin_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    member_id: Mapped[str] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()


class Workspace(Base):
    __tablename__ = "workspaces"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    archived_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # White-label overrides of the agency's settings for this client (same keys as the link's).
    branding: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Offboarding: tokens are deleted at once; the rows after the retention period.
    deleted_at: Mapped[datetime | None] = mapped_column()


class ConnectLink(Base):
    __tablename__ = "connect_links"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id", ondelete="CASCADE"), index=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    # The opaque random id carried (signed) in the URL; distinct from the row id so the
    # admin's URLs never reveal a usable link.
    token_id: Mapped[str] = mapped_column(String(43), unique=True)
    label: Mapped[str] = mapped_column(String(120), default="")
    allowed_platforms: Mapped[list[str]] = mapped_column(JSON)
    expires_at: Mapped[datetime] = mapped_column(index=True)  # the link.expired sweep pages on it
    max_uses: Mapped[int | None] = mapped_column(Integer)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    opened_count: Mapped[int] = mapped_column(Integer, default=0)
    revoked_at: Mapped[datetime | None] = mapped_column()
    created_by: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Account ids or handles the agency expects; others are refused. Empty = any account.
    expected_accounts: Mapped[list[str] | None] = mapped_column(JSON)
    # A reconnect link belongs to one connection: a different account is refused, never swapped in.
    reconnect_connection_id: Mapped[str | None] = mapped_column(String(32))
    # White-label overrides for this link (over the workspace's, over the agency's) and its language.
    branding: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    language: Mapped[str | None] = mapped_column(String(8))
    emailed_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # When `link.expired` was emitted (once per link); the expiry sweep scans links where it is null.
    expired_event_at: Mapped[datetime | None] = mapped_column()

    workspace: Mapped[Workspace] = relationship(lazy="joined")

    def state(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at <= now:
            return "expired"
        if self.max_uses is not None and self.uses >= self.max_uses:
            return "used up"
        return "active"


class BrandAsset(Base):
    """An uploaded image (logo or favicon) used by a workspace's or a link's branding override;
    checked for type and size at upload and served by the portal, never hot-linked."""

    __tablename__ = "brand_assets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # logo | favicon
    content_type: Mapped[str] = mapped_column(String(32))
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ConnectAttempt(Base):
    """One client's run through one platform's authorization. Keyed by the hash of `state`."""

    __tablename__ = "connect_attempts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id", ondelete="CASCADE"), index=True)
    link_id: Mapped[str] = mapped_column(ForeignKey("connect_links.id", ondelete="CASCADE"), index=True)
    platform: Mapped[str] = mapped_column(String(40))
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    verifier_enc: Mapped[str | None] = mapped_column(Text)
    stage: Mapped[str] = mapped_column(String(16), default=AttemptStage.STARTED)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    callback_at: Mapped[datetime | None] = mapped_column()
    error_code: Mapped[str | None] = mapped_column(String(40))
    connection_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Multi-instance platforms: the server the attempt started with (Mastodon instance, Bluesky PDS).
    instance: Mapped[str | None] = mapped_column(String(255))
    # Selecting stage: the grant and sub-account tokens, encrypted and bound to this attempt, and
    # the candidates shown to the client (no secrets). Nothing is a Connection until chosen.
    pending_enc: Mapped[str | None] = mapped_column(Text)
    candidates: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    selection_expires_at: Mapped[datetime | None] = mapped_column()
    connection_ids: Mapped[list[str] | None] = mapped_column(JSON)
    # Hash of a cookie set in the browser that started the attempt: the callback in another browser
    # (an attacker's authorize URL opened by a victim) must be confirmed by hand before anything is stored.
    browser_hash: Mapped[str | None] = mapped_column(String(64))
    # Telegram: hash of the one-time /connect code the client posts in the chat.
    connect_code_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    # Widget: the host page's origin (one of the agency's embed origins) and, in redirect mode, the
    # validated URL on it to return to once the attempt ends.
    widget_origin: Mapped[str | None] = mapped_column(String(255))
    return_url: Mapped[str | None] = mapped_column(String(2048))


class Connection(Base):
    __tablename__ = "connections"
    __table_args__ = (
        UniqueConstraint("workspace_id", "platform", "external_id"),
        # What the refresh sweep asks: active tokens due before a time, oldest first.
        Index("ix_connections_due", "token_expires_at"),
        Index("ix_connections_health", "health", "agency_id"),
        # The sweeps page through these in key order and read nothing else: on PostgreSQL the scans are
        # index-only (no heap visit per row), so a page costs the same at ten thousand rows or a million.
        Index("ix_connections_refresh_sweep", "refresh_due_at", "id", postgresql_include=["platform"]),
        Index("ix_connections_check_sweep", "last_checked_at", "id", postgresql_include=["platform", "health"]),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id", ondelete="CASCADE"), index=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    platform: Mapped[str] = mapped_column(String(40))
    external_id: Mapped[str] = mapped_column(String(255))
    account_kind: Mapped[str] = mapped_column(String(20), default="profile")
    display_name: Mapped[str] = mapped_column(String(255), default="")
    handle: Mapped[str] = mapped_column(String(255), default="")
    avatar_url: Mapped[str | None] = mapped_column(String(1000))
    access_token_enc: Mapped[str | None] = mapped_column(Text)
    refresh_token_enc: Mapped[str | None] = mapped_column(Text)
    token_expires_at: Mapped[datetime | None] = mapped_column()
    refresh_expires_at: Mapped[datetime | None] = mapped_column()
    scopes: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    health: Mapped[str] = mapped_column(String(16), default=Health.HEALTHY)
    health_reason: Mapped[str] = mapped_column(String(500), default="")
    # Bumped on every token write; saves are compare-and-swap on it.
    token_version: Mapped[int] = mapped_column(Integer, default=1)
    refresh_started_at: Mapped[datetime | None] = mapped_column()
    last_refreshed_at: Mapped[datetime | None] = mapped_column()
    last_checked_at: Mapped[datetime | None] = mapped_column()  # the daily check sweep pages on it
    connected_via_link_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # The signed-in user behind a page/channel/board (for Meta, the user whose token made the page token).
    parent_external_id: Mapped[str | None] = mapped_column(String(255))
    # Multi-instance platforms: which server issued the tokens (Mastodon instance, Bluesky PDS).
    instance: Mapped[str | None] = mapped_column(String(255))
    # Non-secret platform facts (Discord channels, Google account path, Telegram chat type ...).
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Connections made from one authorization share its tokens (Pinterest boards, YouTube channels,
    # LinkedIn pages): one grant, refreshed once for all of them under one lock. A sub-account with a
    # token of its own (a Meta Page) has a grant of its own.
    grant_id: Mapped[str | None] = mapped_column(String(32), index=True)
    # When the refresh sweep should next pick this connection up (None: nothing to refresh). Computed
    # when tokens are written, so the sweep is one indexed range scan, whatever the platform's rules.
    refresh_due_at: Mapped[datetime | None] = mapped_column()
    refresh_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # in a row, for backoff

    workspace: Mapped[Workspace] = relationship(lazy="joined")

    def __repr__(self) -> str:
        return f"Connection(id={self.id!r}, platform={self.platform!r})"


class ProviderApp(Base):
    """An agency's own OAuth app for a platform (white-label consent screens). Secret encrypted."""

    __tablename__ = "provider_apps"
    __table_args__ = (UniqueConstraint("agency_id", "platform"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id", ondelete="CASCADE"), index=True)
    platform: Mapped[str] = mapped_column(String(40))
    client_id: Mapped[str] = mapped_column(String(500))
    client_secret_enc: Mapped[str] = mapped_column(Text)
    bot_token_enc: Mapped[str | None] = mapped_column(Text)  # Discord: the app's bot token
    # Set when a platform answered invalid_client: the app, not each connection, needs fixing.
    invalid_since: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class InstanceApp(Base):
    """The portal's app registered at one Mastodon (or compatible) instance, cached per host."""

    __tablename__ = "instance_apps"
    __table_args__ = (UniqueConstraint("platform", "host", "redirect_uri"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    platform: Mapped[str] = mapped_column(String(40))
    host: Mapped[str] = mapped_column(String(255))
    redirect_uri: Mapped[str] = mapped_column(String(500))
    client_id: Mapped[str] = mapped_column(String(500))
    client_secret_enc: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CustomPlatform(Base):
    """An agency's own OAuth 2.0 / OpenID Connect platform; offered on its links like any other."""

    __tablename__ = "custom_platforms"
    __table_args__ = (UniqueConstraint("agency_id", "slug"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id", ondelete="CASCADE"), index=True)
    slug: Mapped[str] = mapped_column(String(40))
    display_name: Mapped[str] = mapped_column(String(80))
    discovery_url: Mapped[str | None] = mapped_column(String(2048))
    authorize_url: Mapped[str] = mapped_column(String(2048))
    token_url: Mapped[str] = mapped_column(String(2048))
    userinfo_url: Mapped[str] = mapped_column(String(2048))
    scopes: Mapped[str] = mapped_column(String(1000))
    field_map: Mapped[dict[str, str]] = mapped_column(JSON)
    client_id: Mapped[str] = mapped_column(String(500))
    client_secret_enc: Mapped[str] = mapped_column(Text)
    pkce: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEvent(Base):
    """Who did what to which object. Details never hold a secret (checked by tests)."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_agency_created", "agency_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id", ondelete="CASCADE"))
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str | None] = mapped_column(String(32))
    object_id: Mapped[str | None] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Notification(Base):
    """Told to the agency once per state change of a connection (never per failed attempt)."""

    __tablename__ = "notifications"
    __table_args__ = (UniqueConstraint("agency_id", "dedupe_key"), Index("ix_notifications_unread", "agency_id",
                                                                         "read_at"))

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id", ondelete="CASCADE"))
    connection_id: Mapped[str | None] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32))
    # e.g. "health_error:<connection>:<token version>": the same state change is told once
    dedupe_key: Mapped[str] = mapped_column(String(120))
    title: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    reconnect_link_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column()


class OutboxEmail(Base):
    """Mail waiting to be sent (SMTP when configured; in the embedded default it stays here and the
    admin panel shows it)."""

    __tablename__ = "outbox_emails"
    __table_args__ = (Index("ix_outbox_emails_unsent", "sent_at", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id", ondelete="CASCADE"), index=True)
    to_address: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(255))
    body_text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column()
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(String(255))


class ApiKey(Base):
    """An agency's REST API key. Only the SHA-256 of the full key is stored; the key is shown once."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    prefix: Mapped[str] = mapped_column(String(16))  # shown in lists to tell keys apart; not a secret
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(16))  # read | read_write
    created_by: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()

    def __repr__(self) -> str:
        return f"ApiKey(id={self.id!r}, prefix={self.prefix!r})"


class IdempotencyRecord(Base):
    """An API write made with an ``Idempotency-Key``: a retry with the same key and body gets the same
    answer (rendered again from the object it made, so no link URL is stored twice)."""

    __tablename__ = "api_idempotency"
    __table_args__ = (UniqueConstraint("agency_id", "key"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class WebhookEndpoint(Base):
    """An agency's URL that receives signed events. The signing secret is encrypted and bound to the row;
    after a rotation the previous secret keeps signing too until ``previous_secret_until``."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str] = mapped_column(String(200), default="")
    secret_enc: Mapped[str] = mapped_column(Text)
    previous_secret_enc: Mapped[str | None] = mapped_column(Text)
    previous_secret_until: Mapped[datetime | None] = mapped_column()
    event_types: Mapped[list[str]] = mapped_column(JSON, default=list)  # empty = every event type
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(255))
    failing_since: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"WebhookEndpoint(id={self.id!r})"


class WebhookEvent(Base):
    """The outbox: one row per event, written in the transaction of the change it reports."""

    __tablename__ = "webhook_events"
    __table_args__ = (Index("ix_webhook_events_agency_created", "agency_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # evt_<random>
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)  # the whole versioned envelope, never a secret
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """One event to one endpoint: its attempts and the time of the next one (what the sweeper scans)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("event_id", "endpoint_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    event_id: Mapped[str] = mapped_column(ForeignKey("webhook_events.id", ondelete="CASCADE"), index=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | delivered | failed
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(255))
    last_attempt_at: Mapped[datetime | None] = mapped_column()
    delivered_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

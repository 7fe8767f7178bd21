"""REST API keys: created per agency, shown once, stored as a SHA-256 hash, revocable at once.

A key looks like ``eck_<prefix>_<secret>``: the prefix (8 hex characters) tells keys apart in
lists; the secret is 32 random bytes. Only the hash of the whole key is stored, so a database
leak gives no usable key, and lookup is one indexed equality on the hash.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, or_, select, update
from sqlalchemy.orm import Session

from portal.errors import NotFound, ValidationFailed
from portal.models import ApiKey
from portal.security.signing import constant_time_equals, hash_secret
from portal.services import audit
from portal.services.agencies import clean_name
from portal.services.audit import Actor

SCOPES = ("read", "read_write")
KEY_PREFIX = "eck_"
MAX_KEY_LENGTH = 200
# Record use at most this often: a write per request would turn every read into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)
MAX_KEYS_PER_AGENCY = 50


def create_key(db: Session, agency_id: str, name: str, scope: str, actor: Actor,
               now: datetime, creator_role: str | None = None) -> tuple[ApiKey, str]:
    """A new key; returns the row and the full key, which is never stored and cannot be shown again.
    ``creator_role``: the creating member's role; a viewer creates no key (see portal.services.team)."""
    if creator_role == "viewer":
        raise ValidationFailed("Viewers cannot create API keys.")
    if scope not in SCOPES:
        raise ValidationFailed("Scope must be read or read_write.")
    if len(list_keys(db, agency_id)) >= MAX_KEYS_PER_AGENCY:
        raise ValidationFailed(f"At most {MAX_KEYS_PER_AGENCY} active keys; revoke one first.")
    prefix = secrets.token_hex(4)
    secret = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey(agency_id=agency_id, name=clean_name(name, "Key name"), prefix=prefix, key_hash=hash_secret(secret),
                 scope=scope, created_by=actor.id, created_at=now)
    db.add(key)
    db.flush()
    audit.record(db, agency_id, actor, "api_key.created", "api_key", key.id, name=key.name, scope=scope,
                 prefix=prefix)
    return key, secret


def bearer_value(header: str | None) -> str | None:
    """The key from an ``Authorization: Bearer <key>`` header value, or None."""
    scheme, _, value = (header or "").strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value.startswith(KEY_PREFIX) or len(value) > MAX_KEY_LENGTH:
        return None
    return value


@dataclass(frozen=True)
class LiveKey:
    """What a request needs of its key, as plain values (no ORM object on the API's hot path)."""

    id: str
    agency_id: str
    scope: str
    last_used_at: datetime | None


# What authentication reads of a key, in this order (the API's token read selects them with its own columns).
KEY_COLUMNS = (ApiKey.id, ApiKey.agency_id, ApiKey.scope, ApiKey.key_hash, ApiKey.revoked_at, ApiKey.last_used_at)
_LOOKUP = select(*KEY_COLUMNS).where(ApiKey.key_hash == bindparam("digest"))


def presented_digest(header: str | None) -> str | None:
    """The lookup hash of the key in an Authorization header value, or None when it names no key."""
    value = bearer_value(header)
    return hash_secret(value) if value is not None else None


def authenticate(db: Session | Connection, header: str | None, now: datetime) -> LiveKey | None:
    """The live key named by an Authorization header value, or None (missing, unknown, revoked).

    One indexed lookup by the key's hash (only the columns needed), then ``live_key``."""
    digest = presented_digest(header)
    if digest is None:
        return None
    return live_key(db, db.execute(_LOOKUP, {"digest": digest}).first(), digest, now)


def live_key(db: Session | Connection, row: Sequence[Any] | None, digest: str, now: datetime) -> LiveKey | None:
    """The key whose ``KEY_COLUMNS`` are ``row`` (looked up by ``digest``), if it is live: a constant-time
    comparison of the hashes, not revoked. Its last-used time is written at most once a minute (a Session's
    caller commits it; on an autocommit connection it is written at once)."""
    if row is None or row[0] is None:
        return None
    key_id, agency_id, scope, key_hash, revoked_at, last_used = row[:6]
    if not constant_time_equals(key_hash, digest) or revoked_at is not None:
        return None
    if last_used is None or last_used <= now - LAST_USED_RESOLUTION:
        db.execute(update(ApiKey).where(ApiKey.id == key_id, or_(
            ApiKey.last_used_at.is_(None), ApiKey.last_used_at <= now - LAST_USED_RESOLUTION))
            .values(last_used_at=now).execution_options(synchronize_session=False))
        last_used = now
    return LiveKey(key_id, agency_id, scope, last_used)


def may_write(key: LiveKey | ApiKey) -> bool:
    return key.scope == "read_write"


def list_keys(db: Session, agency_id: str, include_revoked: bool = False) -> list[ApiKey]:
    query = select(ApiKey).where(ApiKey.agency_id == agency_id).order_by(ApiKey.created_at.desc(), ApiKey.id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return list(db.scalars(query))


def revoke_key(db: Session, agency_id: str, key_id: str, actor: Actor, now: datetime) -> ApiKey:
    """Revoke a key: the next request made with it is refused."""
    key = db.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.agency_id == agency_id))
    if key is None:
        raise NotFound("No such API key.")
    if key.revoked_at is None:
        key.revoked_at = now
        audit.record(db, agency_id, actor, "api_key.revoked", "api_key", key.id, name=key.name)
    return key

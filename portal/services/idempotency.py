"""Idempotent API writes: a retried request with the same ``Idempotency-Key`` gets the same answer.

The record holds a hash of the request (method, path, canonical body) and the id of the object the
first request made; a replay renders that object again, a different request under the same key is
a 409. Records are kept for a day. The record is written in the same transaction as the object, so
of two concurrent first requests one wins and the other replays it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.errors import PortalError, ValidationFailed
from portal.models import IdempotencyRecord

RETENTION = timedelta(hours=24)
MAX_KEY_LENGTH = 255


class HasId(Protocol):
    id: str


T = TypeVar("T", bound=HasId)


class IdempotencyConflict(PortalError):
    status = 409
    code = "idempotency_key_reused"
    public_message = "This Idempotency-Key was already used with a different request. Use a new key."


def check_key(key: str) -> str:
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not all(33 <= ord(ch) <= 126 for ch in key):
        raise ValidationFailed(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} visible ASCII characters.")
    return key


def fingerprint(method: str, path: str, body: Any) -> str:
    """A hash of the request as parsed: the same JSON in another key order or spacing is the same request."""
    canonical = json.dumps([method.upper(), path, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _find(db: Session, agency_id: str, key: str, now: datetime) -> IdempotencyRecord | None:
    record = db.scalar(select(IdempotencyRecord).where(IdempotencyRecord.agency_id == agency_id,
                                                       IdempotencyRecord.key == key))
    if record is not None and record.created_at <= now - RETENTION:
        db.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id == record.id))
        return None
    return record


def _replay(record: IdempotencyRecord, request_hash: str, object_type: str, load: Callable[[str], T]) -> T:
    if record.request_hash != request_hash or record.object_type != object_type:
        raise IdempotencyConflict()
    return load(record.object_id)


def run_once(db: Session, agency_id: str, key: str, request_hash: str, now: datetime, object_type: str,
             create: Callable[[], T], load: Callable[[str], T]) -> tuple[T, bool]:
    """``create()`` once per (agency, key); returns the object and whether this was a replay."""
    record = _find(db, agency_id, check_key(key), now)
    if record is not None:
        return _replay(record, request_hash, object_type, load), True
    created = create()
    db.add(IdempotencyRecord(agency_id=agency_id, key=key, request_hash=request_hash, status=201,
                             object_type=object_type, object_id=created.id, created_at=now))
    try:
        db.flush()
    except IntegrityError:
        db.rollback()  # a concurrent request with the same key won: undo ours and answer with its object
        record = _find(db, agency_id, key, now)
        if record is None:
            raise
        return _replay(record, request_hash, object_type, load), True
    return created, False


def purge(db: Session, now: datetime) -> int:
    result = db.execute(delete(IdempotencyRecord).where(IdempotencyRecord.created_at <= now - RETENTION))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]

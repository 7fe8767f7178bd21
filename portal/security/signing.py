"""The only itsdangerous user. One serializer per purpose, each with its own salt and keys.

Keys come newest first from the settings; itsdangerous wants them oldest first (it signs
with the last one and verifies with all of them).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from functools import lru_cache

from itsdangerous import BadSignature, URLSafeSerializer

LINK_SALT = "easyconnect.connect-link.v1"
WEBHOOK_SECRET_PREFIX = "whsec_"
RANDOM_ID_BYTES = 32


class LinkSigner:
    """Signs the opaque random id carried in an EasyConnect link URL."""

    def __init__(self, keys_newest_first: Sequence[str]) -> None:
        if not keys_newest_first:
            raise ValueError("no link signing keys")
        self._serializer = URLSafeSerializer(list(reversed(keys_newest_first)), salt=LINK_SALT)
        # The same link is opened again and again (its page, its polls): a verdict, which depends only on the
        # token and these keys, is kept for the most recent tokens (bounded, so a flood of forgeries only
        # evicts). Revocation is not a signature matter: the link's row says it.
        self._verdicts = lru_cache(maxsize=4096)(self._verify)

    def sign(self, token_id: str) -> str:
        return str(self._serializer.dumps(token_id))

    def unsign(self, token: str) -> str | None:
        """The token id, or None when the signature is wrong or the payload is not ours."""
        if len(token) > 200:
            return None
        return self._verdicts(token)  # type: ignore[no-any-return]

    def _verify(self, token: str) -> str | None:
        try:
            value = self._serializer.loads(token)
        except BadSignature:
            return None
        return value if isinstance(value, str) else None


def random_id(nbytes: int = RANDOM_ID_BYTES) -> str:
    """A url-safe random id (256 bits by default)."""
    return secrets.token_urlsafe(nbytes)


def hash_secret(value: str) -> str:
    """Lookup hash of a high-entropy bearer value (OAuth state, session ids): no salt needed."""
    return hashlib.sha256(value.encode()).hexdigest()


def constant_time_equals(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def new_webhook_secret() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` and 32 random bytes in base64."""
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign_webhook(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256>`` of ``{id}.{timestamp}.{body}`` keyed with the secret's bytes
    (Standard Webhooks; the key is its own purpose, shared with no other signer)."""
    key = base64.b64decode(secret.removeprefix(WEBHOOK_SECRET_PREFIX))
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


HANDOFF_SALT = "easyconnect.widget-handoff.v1"
HANDOFF_KEY_INFO = b"easyconnect widget hand-off signing key v1"
HANDOFF_MAX_CLOCK_SKEW = 5 * 60  # seconds a hand-off may seem to come from the future (another server's clock)


def derive_key(key_material: str, info: bytes) -> bytes:
    """A key of its own purpose from a configured key (HKDF-SHA256, RFC 5869): a leak of one derived key
    reveals neither the configured key nor any other purpose's key."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(key_material.encode())


class HandoffSigner:
    """Signs the short-lived "continue on your phone" URL of a widget session.

    Its keys are derived from the link keys (HKDF, its own info string), so it shares no key with the link
    signer and follows the link keys' rotation: the newest signs, every configured one verifies. Its age is
    checked against an ``iat`` taken from the caller's clock rather than itsdangerous' own timestamp, which
    refuses any negative age: a hand-off signed by a server whose clock runs a little ahead must still work."""

    def __init__(self, keys_newest_first: Sequence[str]) -> None:
        if not keys_newest_first:
            raise ValueError("no link signing keys")
        derived = [derive_key(key, HANDOFF_KEY_INFO) for key in reversed(keys_newest_first)]
        self._serializer = URLSafeSerializer(derived, salt=HANDOFF_SALT)

    def sign(self, payload: dict[str, str], issued_at: int) -> str:
        return str(self._serializer.dumps({**payload, "iat": issued_at}))

    def unsign(self, token: str, now: int, max_age_seconds: int) -> dict[str, str] | None:
        """The payload (without ``iat``), or None when the signature is wrong, the token too old, too far
        in the future, or not ours."""
        if len(token) > 400:
            return None
        try:
            value = self._serializer.loads(token)
        except BadSignature:
            return None
        if not isinstance(value, dict):
            return None
        issued_at = value.pop("iat", None)
        if not isinstance(issued_at, int) or isinstance(issued_at, bool):
            return None
        if not -HANDOFF_MAX_CLOCK_SKEW <= now - issued_at <= max_age_seconds:
            return None
        if not all(isinstance(v, str) for v in value.values()):
            return None
        return value

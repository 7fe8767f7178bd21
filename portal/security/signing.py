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

    def sign(self, token_id: str) -> str:
        return str(self._serializer.dumps(token_id))

    def unsign(self, token: str) -> str | None:
        """The token id, or None when the signature is wrong or the payload is not ours."""
        if len(token) > 200:
            return None
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

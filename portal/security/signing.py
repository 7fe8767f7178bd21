"""The only itsdangerous user. One serializer per purpose, each with its own salt and keys.

Keys come newest first from the settings; itsdangerous wants them oldest first (it signs
with the last one and verifies with all of them).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence

from itsdangerous import BadSignature, URLSafeSerializer

LINK_SALT = "easyconnect.connect-link.v1"
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

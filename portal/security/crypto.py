"""The only cryptography user: authenticated encryption of tokens and client secrets.

Format: ``v1.<kid>.<base64url(nonce || ciphertext)>`` with AES-256-GCM. The associated data
binds each value to its row and column (``connections:<id>:access_token``), so a value copied
into another row or column fails to decrypt. Keys are a list, newest first: the newest
encrypts, all decrypt; ``rotate`` re-encrypts under the newest key.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = "v1"


class DecryptionError(Exception):
    """The value is malformed, was encrypted under an unknown key, or belongs elsewhere."""


class TokenCipher:
    def __init__(self, keys_newest_first: Sequence[tuple[str, bytes]]) -> None:
        if not keys_newest_first:
            raise ValueError("no token encryption keys")
        self._keys = {kid: AESGCM(key) for kid, key in keys_newest_first}
        self.current_kid = keys_newest_first[0][0]

    def __repr__(self) -> str:
        return f"TokenCipher(current_kid={self.current_kid!r}, keys={len(self._keys)})"

    def encrypt(self, plaintext: str, context: str) -> str:
        nonce = os.urandom(12)
        sealed = self._keys[self.current_kid].encrypt(nonce, plaintext.encode(), context.encode())
        return f"{VERSION}.{self.current_kid}.{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def decrypt(self, value: str, context: str) -> str:
        try:
            version, kid, payload = value.split(".", 2)
        except ValueError as exc:
            raise DecryptionError("malformed encrypted value") from exc
        key = self._keys.get(kid)
        if version != VERSION or key is None:
            raise DecryptionError(f"unknown key id {kid!r}")
        try:
            raw = base64.urlsafe_b64decode(payload)
            return key.decrypt(raw[:12], raw[12:], context.encode()).decode()
        except (InvalidTag, ValueError) as exc:
            raise DecryptionError("value does not decrypt in this context") from exc

    def key_id(self, value: str) -> str:
        return value.split(".", 2)[1] if value.count(".") >= 2 else ""

    def needs_rotation(self, value: str) -> bool:
        return self.key_id(value) != self.current_kid

    def rotate(self, value: str, context: str) -> str:
        """Re-encrypt under the newest key (a no-op for values already under it)."""
        if not self.needs_rotation(value):
            return value
        return self.encrypt(self.decrypt(value, context), context)


def column_context(table: str, row_id: str, column: str) -> str:
    return f"{table}:{row_id}:{column}"

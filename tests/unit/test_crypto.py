"""Token encryption: authenticated, bound to its row, rotatable."""

from __future__ import annotations

import pytest

from portal.config import new_token_key, parse_token_keys
from portal.security.crypto import DecryptionError, TokenCipher


def _keys(*entries):
    return parse_token_keys(",".join(entries))


def test_round_trip_and_randomised():
    cipher = TokenCipher(_keys(new_token_key()))
    a, b = cipher.encrypt("secret-token", "connections:1:access_token"), cipher.encrypt(
        "secret-token", "connections:1:access_token")
    assert a != b and "secret-token" not in a
    assert cipher.decrypt(a, "connections:1:access_token") == "secret-token"


def test_a_value_copied_to_another_row_or_column_fails():
    cipher = TokenCipher(_keys(new_token_key()))
    value = cipher.encrypt("secret-token", "connections:1:access_token")
    for context in ("connections:2:access_token", "connections:1:refresh_token"):
        with pytest.raises(DecryptionError):
            cipher.decrypt(value, context)


def test_tampering_is_detected():
    cipher = TokenCipher(_keys(new_token_key()))
    import base64

    value = cipher.encrypt("secret-token", "c")
    prefix, payload = value.rsplit(".", 1)
    raw = bytearray(base64.urlsafe_b64decode(payload))
    raw[20] ^= 0x01  # one bit of the ciphertext
    flipped = f"{prefix}.{base64.urlsafe_b64encode(bytes(raw)).decode()}"
    for bad in (flipped, "garbage", "v1.nokid.AAAA", "v2." + value[3:]):
        with pytest.raises(DecryptionError):
            cipher.decrypt(bad, "c")


def test_rotation_old_keys_read_newest_writes():
    old_key, new_key = new_token_key(), new_token_key()
    old = TokenCipher(_keys(old_key))
    value = old.encrypt("secret-token", "c")
    rotated_cipher = TokenCipher(_keys(new_key, old_key))
    assert rotated_cipher.decrypt(value, "c") == "secret-token"
    assert rotated_cipher.needs_rotation(value)
    rotated = rotated_cipher.rotate(value, "c")
    assert rotated_cipher.key_id(rotated) == rotated_cipher.current_kid != old.current_kid
    assert TokenCipher(_keys(new_key)).decrypt(rotated, "c") == "secret-token"
    with pytest.raises(DecryptionError):
        TokenCipher(_keys(new_key)).decrypt(value, "c")  # the old key is gone: old values are unreadable

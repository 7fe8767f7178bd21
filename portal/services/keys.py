"""Key rotation: re-encrypt every stored secret under the newest token key.

Every encrypted column is covered (connection tokens, agency and instance app secrets, custom
platform secrets, attempts' verifiers and pending grants). Rows are rewritten in small batches
with a compare-and-swap on the old ciphertext: a refresh that commits meanwhile wins, and its
row is simply picked up by the next pass, so rotation never overwrites a newer token.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from portal.models import Base, ConnectAttempt, Connection, CustomPlatform, InstanceApp, ProviderApp
from portal.security.crypto import TokenCipher, column_context

BATCH = 500


@dataclass(frozen=True)
class EncryptedColumn:
    model: type[Base]
    column: str
    table: str
    purpose: str  # the row-binding context's last part


ENCRYPTED_COLUMNS = (
    EncryptedColumn(Connection, "access_token_enc", "connections", "access_token"),
    EncryptedColumn(Connection, "refresh_token_enc", "connections", "refresh_token"),
    EncryptedColumn(ProviderApp, "client_secret_enc", "provider_apps", "client_secret"),
    EncryptedColumn(ProviderApp, "bot_token_enc", "provider_apps", "bot_token"),
    EncryptedColumn(CustomPlatform, "client_secret_enc", "custom_platforms", "client_secret"),
    EncryptedColumn(InstanceApp, "client_secret_enc", "instance_apps", "client_secret"),
    EncryptedColumn(ConnectAttempt, "verifier_enc", "connect_attempts", "verifier"),
    EncryptedColumn(ConnectAttempt, "pending_enc", "connect_attempts", "pending"),
)


def rotate_all(factory: sessionmaker[Session], cipher: TokenCipher) -> int:
    """Re-encrypt every value not yet under the newest key; returns how many were rewritten."""
    return sum(_rotate_column(factory, cipher, column) for column in ENCRYPTED_COLUMNS)


def _rotate_column(factory: sessionmaker[Session], cipher: TokenCipher, spec: EncryptedColumn) -> int:
    model, column = spec.model, getattr(spec.model, spec.column)
    current_prefix = f"v1.{cipher.current_kid}."
    rotated, after = 0, ""
    while True:
        with factory() as db:
            rows = db.execute(select(model.id, column).where(  # type: ignore[attr-defined]
                column.is_not(None), ~column.startswith(current_prefix), model.id > after)  # type: ignore[attr-defined]
                .order_by(model.id).limit(BATCH)).all()  # type: ignore[attr-defined]
            if not rows:
                return rotated
            for row_id, value in rows:
                context = column_context(spec.table, row_id, spec.purpose)
                result = db.execute(update(model).where(model.id == row_id, column == value)  # type: ignore[attr-defined]
                                    .values({spec.column: cipher.rotate(value, context)}))
                rotated += int(result.rowcount or 0)  # type: ignore[attr-defined]
            db.commit()
            after = rows[-1][0]

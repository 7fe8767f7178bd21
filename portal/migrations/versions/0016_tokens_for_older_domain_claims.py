"""custom-domain claims saved before proofs existed get their DNS challenge token

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-22 14:10:00

Without a token such a claim showed no record to publish until the agency saved its domain again.
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    connection = op.get_bind()
    unproven = connection.execute(sa.text(
        "SELECT id FROM agencies WHERE custom_domain IS NOT NULL AND custom_domain_token IS NULL")).scalars().all()
    for agency_id in unproven:  # a token of its own for each (domains.new_token: the same randomness)
        connection.execute(sa.text("UPDATE agencies SET custom_domain_token = :token WHERE id = :id"),
                           {"token": secrets.token_urlsafe(24), "id": agency_id})


def downgrade() -> None:
    pass  # a token on a claim is valid at 0015 too

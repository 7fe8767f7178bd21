"""custom domains proven by a DNS TXT record; one agency per proven domain

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-22 10:10:00

Claims made before this revision stay claims: they are served again once verified.
"""

import sqlalchemy as sa
from alembic import op

import portal.db

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

VERIFIED = sa.text("custom_domain_verified_at IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table('agencies', schema=None) as batch_op:
        batch_op.add_column(sa.Column('custom_domain_token', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('custom_domain_verified_at', portal.db.UTCDateTime(timezone=True),
                                      nullable=True))
        batch_op.drop_constraint(batch_op.f('uq_agencies_custom_domain'), type_='unique')
        batch_op.create_index(batch_op.f('ix_agencies_custom_domain'), ['custom_domain'], unique=False)
        batch_op.create_index('uq_agencies_verified_domain', ['custom_domain'], unique=True,
                              sqlite_where=VERIFIED, postgresql_where=VERIFIED)


def downgrade() -> None:
    with op.batch_alter_table('agencies', schema=None) as batch_op:
        batch_op.drop_index('uq_agencies_verified_domain', sqlite_where=VERIFIED, postgresql_where=VERIFIED)
        batch_op.drop_index(batch_op.f('ix_agencies_custom_domain'))
    # Back to one claim per domain: unproven duplicates are dropped, the proven (or oldest) claim stays.
    op.execute("UPDATE agencies SET custom_domain = NULL WHERE custom_domain IS NOT NULL AND "
               "custom_domain_verified_at IS NULL AND EXISTS (SELECT 1 FROM agencies other WHERE "
               "other.custom_domain = agencies.custom_domain AND other.id <> agencies.id AND "
               "(other.custom_domain_verified_at IS NOT NULL OR other.created_at < agencies.created_at))")
    with op.batch_alter_table('agencies', schema=None) as batch_op:
        batch_op.create_unique_constraint(batch_op.f('uq_agencies_custom_domain'), ['custom_domain'])
        batch_op.drop_column('custom_domain_verified_at')
        batch_op.drop_column('custom_domain_token')

"""covering indexes for the sweeps

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-22 05:45:00
"""

from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('connections', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_connections_last_checked_at'))
        batch_op.drop_index(batch_op.f('ix_connections_refresh_due_at'))
        batch_op.create_index('ix_connections_check_sweep', ['last_checked_at', 'id'], unique=False,
                              postgresql_include=['platform', 'health'])
        batch_op.create_index('ix_connections_refresh_sweep', ['refresh_due_at', 'id'], unique=False,
                              postgresql_include=['platform'])


def downgrade() -> None:
    with op.batch_alter_table('connections', schema=None) as batch_op:
        batch_op.drop_index('ix_connections_refresh_sweep', postgresql_include=['platform'])
        batch_op.drop_index('ix_connections_check_sweep', postgresql_include=['platform', 'health'])
        batch_op.create_index(batch_op.f('ix_connections_refresh_due_at'), ['refresh_due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_connections_last_checked_at'), ['last_checked_at'], unique=False)

"""deliveries: ix_deliveries_queue, a run's queued rows in id order (the claim's scan)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 22:40:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

QUEUED = sa.text("status = 'queued'")


def upgrade() -> None:
    op.create_index('ix_deliveries_queue', 'deliveries', ['run_id', 'id'], unique=False,
                    sqlite_where=QUEUED, postgresql_where=QUEUED)


def downgrade() -> None:
    op.drop_index('ix_deliveries_queue', table_name='deliveries')

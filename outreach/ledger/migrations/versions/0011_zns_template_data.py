"""deliveries.template_data: ZNS template data personalised per recipient

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-02 07:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a nullable column: ADD COLUMN on both dialects, no table rebuild
    op.add_column('deliveries', sa.Column('template_data', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_column('template_data')

"""shared rate limit as GCRA: rate_limits (gateway, tat_us) replaces per-second rate_windows

Fixed one-second windows let up to twice the rate through in a second that straddles a window
boundary (issue #15); the theoretical arrival time of the next free slot per gateway (GCRA)
holds the limit in every sliding second. The windows only served inspection: not carried over.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 23:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('rate_limits',
                    sa.Column('gateway', sa.String(length=32), nullable=False),
                    sa.Column('tat_us', sa.BigInteger(), nullable=False),
                    sa.PrimaryKeyConstraint('gateway', name=op.f('pk_rate_limits')))
    op.drop_table('rate_windows')


def downgrade() -> None:
    op.create_table('rate_windows',
                    sa.Column('gateway', sa.String(length=32), nullable=False),
                    sa.Column('second', sa.BigInteger(), nullable=False),
                    sa.Column('used', sa.Integer(), nullable=False),
                    sa.PrimaryKeyConstraint('gateway', 'second', name=op.f('pk_rate_windows')))
    op.drop_table('rate_limits')

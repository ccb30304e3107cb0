"""list_members: drop ix_list_members_list_name, which the unique (list_name, recipient_id)
constraint already provides (its index leads with list_name): one index fewer to write for
every member an import adds (benchmarks/city_1m.py)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 20:00:00
"""
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('ix_list_members_list_name', table_name='list_members')


def downgrade() -> None:
    op.create_index('ix_list_members_list_name', 'list_members', ['list_name'], unique=False)

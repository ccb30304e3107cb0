"""administrative units before and after the 2025 reform on recipients; sheet on import issues

Since 1 July 2025 Vietnam has 34 provinces and no district level (Resolution 202/2025/QH15 and
the National Assembly Standing Committee's resolutions on the communal units). A recipient keeps
the units of its list as written then (district, ward) with the official pre-2025 province name
and codes, and the current province and commune with its code, so a 2024 campaign still reports
by the 2024 districts and a later one by the new communes. A rejected row of a workbook names its
sheet.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 23:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

COLUMNS = ('province', 'district_code', 'ward_code', 'new_province', 'new_ward', 'new_ward_code')


def upgrade() -> None:
    with op.batch_alter_table('recipients', schema=None) as batch_op:
        for name in COLUMNS:
            batch_op.add_column(sa.Column(name, sa.String(length=255), nullable=True))
    with op.batch_alter_table('import_issues', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sheet', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('import_issues', schema=None) as batch_op:
        batch_op.drop_column('sheet')
    with op.batch_alter_table('recipients', schema=None) as batch_op:
        for name in reversed(COLUMNS):
            batch_op.drop_column(name)

"""web users, approvals and settings (issue #23)

Accounts of the web application, maker–checker approvals of campaigns (text hash, recipient
lists and counts), and the audited settings table (the approval requirement).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 22:50:00
"""
import sqlalchemy as sa
from alembic import op

from outreach.ledger.models import UTCDateTime

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def _id() -> sa.Column:
    return sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True,
                     nullable=False)


def upgrade() -> None:
    op.create_table(
        'users', _id(),
        sa.Column('username', sa.String(length=64), nullable=False),
        sa.Column('display_name', sa.String(length=255), nullable=True),
        sa.Column('role', sa.String(length=16), nullable=False),
        sa.Column('password_hash', sa.Text(), nullable=True),
        sa.Column('active', sa.Boolean(), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('updated_at', UTCDateTime(), nullable=False),
        sa.Column('last_login_at', UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
        sa.UniqueConstraint('username', name=op.f('uq_users_username')))
    op.create_table(
        'approvals', _id(),
        sa.Column('campaign_id', sa.String(length=64), nullable=False),
        sa.Column('text_sha256', sa.String(length=64), nullable=False),
        sa.Column('lists', sa.JSON(), nullable=False),
        sa.Column('lists_sha256', sa.String(length=64), nullable=False),
        sa.Column('rows', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('prepared_by', sa.String(length=128), nullable=False),
        sa.Column('prepared_at', UTCDateTime(), nullable=False),
        sa.Column('approved_by', sa.String(length=128), nullable=True),
        sa.Column('approved_at', UTCDateTime(), nullable=True),
        sa.Column('note', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'],
                                name=op.f('fk_approvals_campaign_id_campaigns')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_approvals')))
    op.create_index(op.f('ix_approvals_campaign_id'), 'approvals', ['campaign_id'], unique=False)
    op.create_table(
        'settings',
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.Column('value', sa.JSON(), nullable=False),
        sa.Column('updated_by', sa.String(length=128), nullable=False),
        sa.Column('updated_at', UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('key', name=op.f('pk_settings')))


def downgrade() -> None:
    op.drop_table('settings')
    op.drop_index(op.f('ix_approvals_campaign_id'), table_name='approvals')
    op.drop_table('approvals')
    op.drop_table('users')

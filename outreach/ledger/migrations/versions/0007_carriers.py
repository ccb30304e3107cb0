"""carriers: requests to the mobile operators and the figures they report

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 23:00:00
"""
from alembic import op
import sqlalchemy as sa
import outreach.ledger.models


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('carrier_requests',
    sa.Column('id', ID, autoincrement=True, nullable=False),
    sa.Column('campaign_id', sa.String(length=64), nullable=False),
    sa.Column('carrier', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('letter_number', sa.String(length=64), nullable=True),
    sa.Column('letter_date', sa.Date(), nullable=True),
    sa.Column('text_sha256', sa.String(length=64), nullable=False),
    sa.Column('short_sha256', sa.String(length=64), nullable=True),
    sa.Column('drafted_on', sa.Date(), nullable=True),
    sa.Column('requested_on', sa.Date(), nullable=True),
    sa.Column('requested_by', sa.String(length=16), nullable=True),
    sa.Column('confirmed_on', sa.Date(), nullable=True),
    sa.Column('broadcast_on', sa.Date(), nullable=True),
    sa.Column('results_on', sa.Date(), nullable=True),
    sa.Column('declined_on', sa.Date(), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('created_at', outreach.ledger.models.UTCDateTime(), nullable=False),
    sa.Column('updated_at', outreach.ledger.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'],
                            name=op.f('fk_carrier_requests_campaign_id_campaigns')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_carrier_requests')),
    sa.UniqueConstraint('campaign_id', 'carrier', name=op.f('uq_carrier_requests_campaign_id_carrier'))
    )
    with op.batch_alter_table('carrier_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_carrier_requests_campaign_id'), ['campaign_id'],
                              unique=False)

    op.create_table('carrier_results',
    sa.Column('id', ID, autoincrement=True, nullable=False),
    sa.Column('campaign_id', sa.String(length=64), nullable=False),
    sa.Column('carrier', sa.String(length=32), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('area_code', sa.String(length=16), nullable=False),
    sa.Column('area_name', sa.String(length=255), nullable=False),
    sa.Column('sent', sa.BigInteger(), nullable=False),
    sa.Column('delivered', sa.BigInteger(), nullable=True),
    sa.Column('source', sa.String(length=255), nullable=False),
    sa.Column('recorded_at', outreach.ledger.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'],
                            name=op.f('fk_carrier_results_campaign_id_campaigns')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_carrier_results')),
    sa.UniqueConstraint('campaign_id', 'carrier', 'day', 'area_code',
                        name=op.f('uq_carrier_results_campaign_id_carrier_day_area_code'))
    )
    with op.batch_alter_table('carrier_results', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_carrier_results_campaign_id'), ['campaign_id'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('carrier_results', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_carrier_results_campaign_id'))
    op.drop_table('carrier_results')
    with op.batch_alter_table('carrier_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_carrier_requests_campaign_id'))
    op.drop_table('carrier_requests')

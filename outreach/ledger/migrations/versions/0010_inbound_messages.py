"""inbound: citizens' replies on every channel, opt-outs by channel with their evidence

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 06:40:00
"""
import sqlalchemy as sa
from alembic import op

from outreach.ledger.models import UTCDateTime

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'inbound_messages',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True,
                  nullable=False),
        sa.Column('channel', sa.String(length=16), nullable=False),
        sa.Column('gateway', sa.String(length=32), nullable=False),
        sa.Column('provider_message_id', sa.String(length=160), nullable=False),
        sa.Column('sender', sa.String(length=80), nullable=False),
        sa.Column('zalo_user_id', sa.String(length=64), nullable=True),
        sa.Column('recipient_id', sa.Integer(), nullable=True),
        sa.Column('destination', sa.String(length=64), nullable=True),
        sa.Column('text', sa.Text(), nullable=True),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('keyword', sa.String(length=64), nullable=True),
        sa.Column('campaign_id', sa.String(length=64), nullable=True),
        sa.Column('delivery_id', sa.Integer(), nullable=True),
        sa.Column('received_at', UTCDateTime(), nullable=False),
        sa.Column('confirmation', sa.String(length=16), nullable=True),
        sa.Column('confirmation_text', sa.Text(), nullable=True),
        sa.Column('confirmation_id', sa.String(length=128), nullable=True),
        sa.Column('confirmation_detail', sa.String(length=255), nullable=True),
        sa.Column('confirmed_at', UTCDateTime(), nullable=True),
        sa.Column('purged_at', UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_inbound_messages')),
        sa.UniqueConstraint('gateway', 'provider_message_id',
                            name=op.f('uq_inbound_messages_gateway_provider_message_id')))
    op.create_index(op.f('ix_inbound_messages_sender'), 'inbound_messages', ['sender'])
    op.create_index(op.f('ix_inbound_messages_campaign_id'), 'inbound_messages', ['campaign_id'])
    op.create_index('ix_inbound_messages_received_at', 'inbound_messages', ['received_at'])
    with op.batch_alter_table('suppressions') as batch:
        batch.add_column(sa.Column('channel', sa.String(length=16), nullable=True))
        batch.add_column(sa.Column('evidence', sa.Text(), nullable=True))
        batch.add_column(sa.Column('inbound_id', sa.Integer(), nullable=True))
    with op.batch_alter_table('smpp_inbound') as batch:
        batch.add_column(sa.Column('inbound_id', sa.Integer(), nullable=True))
    op.create_index(op.f('ix_smpp_inbound_inbound_id'), 'smpp_inbound', ['inbound_id'])


def downgrade() -> None:
    op.drop_index(op.f('ix_smpp_inbound_inbound_id'), table_name='smpp_inbound')
    with op.batch_alter_table('smpp_inbound') as batch:
        batch.drop_column('inbound_id')
    with op.batch_alter_table('suppressions') as batch:
        batch.drop_column('inbound_id')
        batch.drop_column('evidence')
        batch.drop_column('channel')
    op.drop_index('ix_inbound_messages_received_at', table_name='inbound_messages')
    op.drop_index(op.f('ix_inbound_messages_campaign_id'), table_name='inbound_messages')
    op.drop_index(op.f('ix_inbound_messages_sender'), table_name='inbound_messages')
    op.drop_table('inbound_messages')

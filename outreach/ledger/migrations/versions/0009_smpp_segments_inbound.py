"""smpp: segments of concatenated SMS with their receipts, and mobile-originated messages

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 00:10:00
"""
import sqlalchemy as sa
from alembic import op

from outreach.ledger.models import UTCDateTime

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def _pk() -> sa.Column:
    return sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True,
                     nullable=False)


def upgrade() -> None:
    op.create_table('smpp_segments', _pk(),
                    sa.Column('account', sa.String(length=64), nullable=False),
                    sa.Column('message_id', sa.String(length=65), nullable=False),
                    sa.Column('delivery_id', sa.Integer(), nullable=True),
                    sa.Column('first_message_id', sa.String(length=65), nullable=True),
                    sa.Column('part', sa.Integer(), nullable=True),
                    sa.Column('parts', sa.Integer(), nullable=True),
                    sa.Column('stat', sa.String(length=16), nullable=True),
                    sa.Column('error_code', sa.String(length=16), nullable=True),
                    sa.Column('created_at', UTCDateTime(), nullable=False),
                    sa.Column('receipt_at', UTCDateTime(), nullable=True),
                    sa.PrimaryKeyConstraint('id', name=op.f('pk_smpp_segments')),
                    sa.UniqueConstraint('account', 'message_id',
                                        name=op.f('uq_smpp_segments_account_message_id')))
    op.create_index(op.f('ix_smpp_segments_delivery_id'), 'smpp_segments', ['delivery_id'])
    op.create_table('smpp_inbound', _pk(),
                    sa.Column('account', sa.String(length=64), nullable=False),
                    sa.Column('source', sa.String(length=32), nullable=False),
                    sa.Column('destination', sa.String(length=32), nullable=False),
                    sa.Column('text', sa.Text(), nullable=False),
                    sa.Column('data_coding', sa.Integer(), nullable=False),
                    sa.Column('ref', sa.Integer(), nullable=True),
                    sa.Column('part', sa.Integer(), nullable=True),
                    sa.Column('parts', sa.Integer(), nullable=True),
                    sa.Column('received_at', UTCDateTime(), nullable=False),
                    sa.PrimaryKeyConstraint('id', name=op.f('pk_smpp_inbound')))
    op.create_index(op.f('ix_smpp_inbound_source'), 'smpp_inbound', ['source'])


def downgrade() -> None:
    op.drop_index(op.f('ix_smpp_inbound_source'), table_name='smpp_inbound')
    op.drop_table('smpp_inbound')
    op.drop_index(op.f('ix_smpp_segments_delivery_id'), table_name='smpp_segments')
    op.drop_table('smpp_segments')

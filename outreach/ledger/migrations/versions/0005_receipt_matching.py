"""receipt matching: a per-delivery receipt token, rejected receipts, seen webhook events

deliveries.receipt_token (random, set at the first claim) goes into the status-callback URL so
a receipt can only attach to the delivery it was created for; rejected_receipts keeps signed
receipts that named another message (counted, never applied); webhook_events remembers the
signed Zalo events already received so a replay is refused (issues #15 and #17).
Existing deliveries keep a NULL token: their callbacks were issued without one.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 22:50:00
"""
from alembic import op
import sqlalchemy as sa
import outreach.ledger.models

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a plain ADD COLUMN (no batch copy of the deliveries table on SQLite)
    op.add_column('deliveries', sa.Column('receipt_token', sa.String(length=32), nullable=True))
    op.create_table(
        'rejected_receipts',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True,
                  nullable=False),
        sa.Column('gateway', sa.String(length=32), nullable=False),
        sa.Column('reason', sa.String(length=32), nullable=False),
        sa.Column('delivery_id', sa.Integer(), nullable=True),
        sa.Column('provider_message_id', sa.String(length=128), nullable=True),
        sa.Column('payload', sa.JSON(), nullable=False),
        sa.Column('received_at', outreach.ledger.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_rejected_receipts')))
    with op.batch_alter_table('rejected_receipts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rejected_receipts_delivery_id'), ['delivery_id'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_rejected_receipts_reason'), ['reason'], unique=False)
    op.create_table(
        'webhook_events',
        sa.Column('gateway', sa.String(length=32), nullable=False),
        sa.Column('event_id', sa.String(length=128), nullable=False),
        sa.Column('received_at', outreach.ledger.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('gateway', 'event_id', name=op.f('pk_webhook_events')))
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhook_events_received_at'), ['received_at'],
                              unique=False)


def downgrade() -> None:
    op.drop_table('webhook_events')
    op.drop_table('rejected_receipts')
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_column('receipt_token')

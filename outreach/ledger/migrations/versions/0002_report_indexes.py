"""report indexes: covering indexes in GROUP BY order replace the campaign/status prefixes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 18:09:32
"""
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

# name -> columns, as declared on outreach.ledger.models.Delivery
NEW = {
    'ix_deliveries_campaign_status_reason': ['campaign_id', 'status', 'gateway', 'error_code',
                                             'error_reason'],
    'ix_deliveries_campaign_status_recipient': ['campaign_id', 'status', 'recipient_id'],
    'ix_deliveries_campaign_status_time': ['campaign_id', 'status', 'sending_at', 'queued_at'],
    'ix_deliveries_report': ['campaign_id', 'district', 'ward', 'carrier', 'channel', 'gateway',
                             'status', 'segments', 'cost_vnd'],
}
OLD = {
    'ix_deliveries_campaign_status': ['campaign_id', 'status'],
    'ix_deliveries_campaign_district': ['campaign_id', 'district', 'status'],
}


def upgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        for name in OLD:
            batch_op.drop_index(name)
        for name, columns in NEW.items():
            batch_op.create_index(name, columns, unique=False)


def downgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        for name in NEW:
            batch_op.drop_index(name)
        for name, columns in OLD.items():
            batch_op.create_index(name, columns, unique=False)

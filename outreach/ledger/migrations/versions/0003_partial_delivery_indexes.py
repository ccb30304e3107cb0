"""partial delivery indexes: report indexes cover settled deliveries only

The dispatcher moves every delivery queued -> sending -> sent; with full indexes each move
rewrote an entry in every report index. The report indexes now cover only deliveries that have
left the queue (neither queued nor sending), the reached index only delivered ones, the
provider-id index only rows with a provider id. Queued and in-flight rows are counted through
ix_deliveries_run_status (outreach/reports.py).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 20:20:00
"""
from alembic import op
from sqlalchemy import text

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

# the same text as outreach.ledger.models (SQLite matches partial-index terms word for word)
SETTLED = "status <> 'queued' AND status <> 'sending'"
REASON = SETTLED + " AND status <> 'sent' AND status <> 'delivered'"
REACHED = "status = 'delivered'"
HAS_ID = "provider_message_id IS NOT NULL"

# name -> (columns, predicate)
NEW = {
    'ix_deliveries_report': (['campaign_id', 'district', 'ward', 'carrier', 'channel', 'gateway',
                              'status', 'segments', 'cost_vnd'], SETTLED),
    'ix_deliveries_reached': (['campaign_id', 'recipient_id'], REACHED),
    'ix_deliveries_campaign_status_time': (['campaign_id', 'status', 'sending_at', 'queued_at'],
                                           SETTLED),
    'ix_deliveries_campaign_status_reason': (['campaign_id', 'status', 'gateway', 'error_code',
                                              'error_reason'], REASON),
    'ix_deliveries_provider_message_id': (['provider_message_id'], HAS_ID),
}
# name -> columns, as in 0002 (full indexes)
OLD = {
    'ix_deliveries_report': ['campaign_id', 'district', 'ward', 'carrier', 'channel', 'gateway',
                             'status', 'segments', 'cost_vnd'],
    'ix_deliveries_campaign_status_recipient': ['campaign_id', 'status', 'recipient_id'],
    'ix_deliveries_campaign_status_time': ['campaign_id', 'status', 'sending_at', 'queued_at'],
    'ix_deliveries_campaign_status_reason': ['campaign_id', 'status', 'gateway', 'error_code',
                                             'error_reason'],
    'ix_deliveries_provider_message_id': ['provider_message_id'],
}


def upgrade() -> None:
    for name in OLD:
        op.drop_index(name, table_name='deliveries')
    for name, (columns, where) in NEW.items():
        op.create_index(name, 'deliveries', columns, unique=False,
                        sqlite_where=text(where), postgresql_where=text(where))


def downgrade() -> None:
    for name in NEW:
        op.drop_index(name, table_name='deliveries')
    for name, columns in OLD.items():
        op.create_index(name, 'deliveries', columns, unique=False)

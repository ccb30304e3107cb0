"""delivery_events: no foreign key to deliveries. The history is append-only and written only
by the state functions (outreach.ledger.states), each event's delivery id taken from the
statement that moved that very row; no delivery is ever deleted. On PostgreSQL the key's check
locked the delivery row again for every event (a row lock is a write of the row's header and a
WAL record): two per message sent (benchmarks/city_1m.py, four workers on the mock: 17,234-19,120
msg/s with the key, 19,267-22,430 without, same session).
``outreach db check`` finds an event without its delivery.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 23:30:00
"""
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

FK = 'fk_delivery_events_delivery_id_deliveries'


def upgrade() -> None:
    # SQLite: batch mode copies the table (nothing refers to delivery_events, so the copy
    # touches no other table); PostgreSQL: one ALTER TABLE
    with op.batch_alter_table('delivery_events', schema=None) as batch_op:
        batch_op.drop_constraint(FK, type_='foreignkey')


def downgrade() -> None:
    with op.batch_alter_table('delivery_events', schema=None) as batch_op:
        batch_op.create_foreign_key(FK, 'deliveries', ['delivery_id'], ['id'])

"""The turnover summary (issue 16, reports): daily sales per station, pump and product and per account and
product, the rollup's watermarks and time zones, and two indexes on transactions (a card's sales, a
station's sales of a period).

Revision ID: r0010
Revises: r0009
The summary starts empty with its watermark at 0: until the rollup (registry.turnover_rollup) has read the
existing sales, a report reads them straight from transactions, so nothing is missing meanwhile.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = 'r0010'
down_revision = 'r0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sales_daily',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('station_id', sa.String(length=64), nullable=False),
    sa.Column('pump', sa.Integer(), nullable=False),
    sa.Column('product', sa.String(length=64), nullable=False),
    sa.Column('sales', sa.BigInteger(), nullable=False),
    sa.Column('volume_cl', sa.BigInteger(), nullable=False),
    sa.Column('amount_cents', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('day', 'station_id', 'pump', 'product')
    )
    op.create_table('sales_daily_accounts',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('product', sa.String(length=64), nullable=False),
    sa.Column('sales', sa.BigInteger(), nullable=False),
    sa.Column('volume_cl', sa.BigInteger(), nullable=False),
    sa.Column('amount_cents', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('day', 'account_id', 'product')
    )
    op.create_index('ix_sales_daily_accounts_account', 'sales_daily_accounts', ['account_id', 'day'])
    op.create_table('sales_rollup',
    sa.Column('name', sa.String(length=16), nullable=False),
    sa.Column('sale_id', sa.BigInteger(), nullable=False),
    sa.Column('audit_id', sa.BigInteger(), nullable=False),
    sa.Column('rolled_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('sales_rollup_zones',
    sa.Column('station_id', sa.String(length=64), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('station_id')
    )
    op.create_index('ix_transactions_card_finished', 'transactions', ['card_id', 'finished_at'])
    op.create_index('ix_transactions_station_finished', 'transactions', ['station_id', 'finished_at'])


def downgrade() -> None:
    op.drop_index('ix_transactions_station_finished', 'transactions')
    op.drop_index('ix_transactions_card_finished', 'transactions')
    op.drop_table('sales_rollup_zones')
    op.drop_table('sales_rollup')
    op.drop_index('ix_sales_daily_accounts_account', 'sales_daily_accounts')
    op.drop_table('sales_daily_accounts')
    op.drop_table('sales_daily')

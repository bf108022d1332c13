"""Wallet usage by month from indexes: a range of a wallet's sales and open holds, never the history.

Revision ID: r0004
Revises: r0003
Indexes, not a usage table: the index is the sales themselves, so it cannot drift from them and needs no
backfill; and no upsert races between sale writers on PostgreSQL. Reading a month costs a range of that
wallet's sales of the month (registry.service.wallet_usage_cl).
"""

from __future__ import annotations

from alembic import op

revision = "r0004"
down_revision = "r0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_authorizations_wallet_hold", "authorizations",
                    ["wallet_id", "status", "expires_at", "allowed_cl"], if_not_exists=True)
    op.create_index("ix_transactions_wallet_usage", "transactions",
                    ["wallet_id", "finished_at", "volume_cl"], if_not_exists=True)


def downgrade() -> None:
    op.drop_index("ix_transactions_wallet_usage", "transactions")
    op.drop_index("ix_authorizations_wallet_hold", "authorizations")

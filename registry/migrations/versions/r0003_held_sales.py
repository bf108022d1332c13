"""Registry checks: held sales, sale conflicts, the request-id index and 32-character kinds.

Revision ID: r0003
Revises: r0002
A database from before migrations is stamped at r0002 when it lacks any of these, so each step looks first.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r0003"
down_revision = "r0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    found = sa.inspect(op.get_bind())
    columns = {c["name"]: c for c in found.get_columns("transactions")}
    with op.batch_alter_table("transactions") as batch:
        if "held" not in columns:       # none held before
            batch.add_column(sa.Column("held", sa.Boolean, nullable=False, server_default=sa.false()))
        if (getattr(columns["kind"]["type"], "length", None) or 32) < 32:     # the first kinds: VARCHAR(8)
            batch.alter_column("kind", type_=sa.String(32), existing_type=columns["kind"]["type"],
                               existing_nullable=False, existing_server_default="fleet")
    op.create_index("ix_transactions_auth_id", "transactions", ["auth_id"], if_not_exists=True)
    if "sale_conflicts" not in found.get_table_names():
        op.create_table(
            "sale_conflicts",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("sale_id", sa.String(36), nullable=False),
            sa.Column("device_id", sa.String(64), nullable=False),
            sa.Column("received_at", sa.DateTime, nullable=False),
            sa.Column("payload", sa.Text, nullable=False),
        )
        op.create_index("ix_sale_conflicts_sale_id", "sale_conflicts", ["sale_id"])


def downgrade() -> None:
    op.drop_index("ix_sale_conflicts_sale_id", "sale_conflicts")
    op.drop_table("sale_conflicts")
    op.drop_index("ix_transactions_auth_id", "transactions")
    with op.batch_alter_table("transactions") as batch:
        batch.drop_column("held")

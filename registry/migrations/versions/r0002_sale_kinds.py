"""Sale kinds: transactions.kind, the card program (every earlier sale is a fleet sale).

Revision ID: r0002
Revises: r0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r0002"
down_revision = "r0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("transactions") as batch:
        batch.add_column(sa.Column("kind", sa.String(32), nullable=False, server_default="fleet"))


def downgrade() -> None:
    with op.batch_alter_table("transactions") as batch:
        batch.drop_column("kind")

"""The registry's first release: its tables before sale kinds, held sales and sale conflicts.

Revision ID: r0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stations",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
    )
    op.create_table(
        "products",
        sa.Column("code", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
    )
    op.create_table(
        "nozzles",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("station_id", sa.String(64), sa.ForeignKey("stations.id"), nullable=False),
        sa.Column("pump", sa.Integer, nullable=False),
        sa.Column("nozzle", sa.Integer, nullable=False),
        sa.Column("product_code", sa.String(32), sa.ForeignKey("products.code"), nullable=False),
        sa.Column("price_milli", sa.Integer, nullable=False),
        sa.UniqueConstraint("station_id", "pump", "nozzle"),
    )
    op.create_table(
        "devices",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("station_id", sa.String(64), sa.ForeignKey("stations.id"), nullable=False),
        sa.Column("pin_key_hex", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
    )
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
    )
    op.create_table(
        "wallets",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("allowed_products", sa.String(500), nullable=False),
        sa.Column("monthly_limit_cl", sa.Integer, nullable=False),
    )
    op.create_table(
        "cards",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("token", sa.String(64), nullable=False, unique=True),
        sa.Column("masked", sa.String(19), nullable=False),
        sa.Column("wallet_id", sa.Integer, sa.ForeignKey("wallets.id"), nullable=False),
        sa.Column("expiry", sa.String(4), nullable=False),
        sa.Column("pin_verifier", sa.String(64), nullable=False),
        sa.Column("pin_tries", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
    )
    op.create_table(
        "authorizations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("card_id", sa.Integer, sa.ForeignKey("cards.id"), nullable=False),
        sa.Column("wallet_id", sa.Integer, sa.ForeignKey("wallets.id"), nullable=False),
        sa.Column("device_id", sa.String(64), sa.ForeignKey("devices.id"), nullable=False),
        sa.Column("pump", sa.Integer, nullable=False),
        sa.Column("allowed_cl", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "transactions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sale_id", sa.String(36), nullable=False, unique=True),
        sa.Column("auth_id", sa.String(36), nullable=True),
        sa.Column("card_id", sa.Integer, sa.ForeignKey("cards.id"), nullable=True),
        sa.Column("wallet_id", sa.Integer, sa.ForeignKey("wallets.id"), nullable=True),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("station_id", sa.String(64), nullable=False),
        sa.Column("pump", sa.Integer, nullable=False),
        sa.Column("nozzle", sa.Integer, nullable=False),
        sa.Column("product", sa.String(64), nullable=True),
        sa.Column("volume_cl", sa.Integer, nullable=False),
        sa.Column("amount_cents", sa.BigInteger, nullable=False),
        sa.Column("price_milli", sa.Integer, nullable=False),
        sa.Column("card_masked", sa.String(19), nullable=False),
        sa.Column("finished_at", sa.DateTime, nullable=False),
        sa.Column("received_at", sa.DateTime, nullable=False),
        sa.Column("recovered", sa.Boolean, nullable=False),
        sa.Column("flags", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for table in ("transactions", "authorizations", "cards", "wallets", "accounts", "devices", "nozzles",
                  "products", "stations"):
        op.drop_table(table)

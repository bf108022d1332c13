"""Fleet accounts: customers, accounts with prompts and a time zone, vehicles and drivers, wallets in money
or volume with a balance kept by an append-only ledger, limits and time windows on a card or an account,
offline limits per card class, usage per period, holds per wallet, per-product allowances of an
authorization, and an audit of operators.

Revision ID: r0007
Revises: r0006
What was there keeps its meaning: a card belongs to its wallet's account; a wallet's monthly litre limit
becomes a monthly volume limit on its account (the sum when an account had several wallets); each wallet is
a post-paid volume wallet without a credit ceiling to speak of (10^12 cl), so the limit alone bounds it, as
before; a card keeps its wallet and spends only from it; an open authorization holds its litres on its
wallet; past sales count in the usage of their account's periods (UTC, the time zone accounts start with).
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = "r0007"
down_revision = "r0006"
branch_labels = None
depends_on = None

_BIG = sa.BigInteger


def _fk(table: str, target: str, column: str | None = None) -> sa.ForeignKey:
    """A named foreign key (a batch needs names): fk_TABLE_COLUMN."""
    column = column or target.split(".")[0].rstrip("s") + "_id"
    return sa.ForeignKey(target, name=f"fk_{table}_{column}")


def _columns() -> None:
    # Columns with a foreign key, and the one-wallet columns made optional, go through a batch: on SQLite it
    # copies the table (registry.db turns SQLite's foreign keys off while it migrates, as Alembic's batch
    # mode asks); elsewhere it is plain ALTER TABLE.
    op.add_column("products", sa.Column("code3", sa.String(3), nullable=True))
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("customer_id", sa.Integer, _fk("accounts", "customers.id"), nullable=True))
        batch.add_column(sa.Column("status", sa.String(16), nullable=False, server_default="active"))
        batch.add_column(sa.Column("prompts", sa.String(100), nullable=False, server_default=sa.text("''")))
        batch.add_column(sa.Column("timezone", sa.String(64), nullable=False, server_default="UTC"))
        batch.add_column(sa.Column("auth_seq", _BIG, nullable=False, server_default="0"))
    with op.batch_alter_table("wallets") as batch:
        empty = sa.text("''")
        for name, kind, default in (("name", sa.String(100), empty), ("unit", sa.String(8), "volume"),
                                    ("mode", sa.String(8), "prepaid"), ("credit_limit", _BIG, "0"),
                                    ("balance", _BIG, "0"), ("priority", sa.Integer, "0"),
                                    ("stations", sa.String(500), empty), ("status", sa.String(16), "active")):
            batch.add_column(sa.Column(name, kind, nullable=False, server_default=default))
        batch.add_column(sa.Column("expires_on", sa.Date, nullable=True))
        batch.create_index("ix_wallets_account", ["account_id"])
        batch.alter_column("monthly_limit_cl", existing_type=sa.Integer, nullable=True)
    with op.batch_alter_table("cards") as batch:
        for name, target in (("account_id", "accounts.id"), ("vehicle_id", "vehicles.id"),
                             ("driver_id", "drivers.id"), ("replaced_by", "cards.id")):
            batch.add_column(sa.Column(name, sa.Integer, _fk("cards", target, name), nullable=True))
        batch.add_column(sa.Column("medium", sa.String(8), nullable=False, server_default="chip"))
        batch.add_column(sa.Column("number_sealed", sa.Text, nullable=True))
        batch.add_column(sa.Column("status_changed_at", sa.DateTime, nullable=True))
        batch.alter_column("wallet_id", existing_type=sa.Integer, nullable=True)
        batch.create_index("ix_cards_account", ["account_id"])
        batch.create_index("ix_cards_status", ["status"])
    for table in ("authorizations", "transactions"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("account_id", sa.Integer, _fk(table, "accounts.id"), nullable=True))
            batch.add_column(sa.Column("odometer_km", _BIG, nullable=True))
            batch.add_column(sa.Column("vehicle_id", sa.Integer, _fk(table, "vehicles.id"), nullable=True))
            batch.add_column(sa.Column("driver_id", sa.Integer, _fk(table, "drivers.id"), nullable=True))
            if table == "authorizations":
                batch.add_column(sa.Column("allowed_cents", _BIG, nullable=False, server_default="0"))
                batch.alter_column("wallet_id", existing_type=sa.Integer, nullable=True)
                batch.create_index("ix_authorizations_card_open", ["card_id", "status", "expires_at"])
                batch.create_index("ix_authorizations_account_open", ["account_id", "status", "expires_at"])
            else:
                batch.create_index("ix_transactions_account_finished", ["account_id", "finished_at"])


def _tables() -> None:
    op.create_table(
        "station_group_members",
        sa.Column("group", sa.String(64), primary_key=True),
        sa.Column("station_id", sa.String(64), sa.ForeignKey("stations.id"), primary_key=True))
    op.create_index("ix_station_group_members_station", "station_group_members", ["station_id"])
    op.create_table(
        "customers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("tax_id", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=True))
    op.create_table(
        "vehicles",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("number", sa.String(16), nullable=False),
        sa.Column("odometer_km", _BIG, nullable=True),
        sa.Column("odometer_at", sa.DateTime, nullable=True),
        sa.UniqueConstraint("account_id", "number"))
    op.create_table(
        "drivers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("code", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.UniqueConstraint("account_id", "code"))
    op.create_table(
        "limits",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("scope_id", sa.Integer, nullable=False),
        sa.Column("period", sa.String(8), nullable=False),
        sa.Column("unit", sa.String(8), nullable=False),
        sa.Column("maximum", _BIG, nullable=False),
        sa.UniqueConstraint("scope", "scope_id", "period", "unit"))
    op.create_table(
        "time_windows",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("scope_id", sa.Integer, nullable=False),
        sa.Column("weekdays", sa.Integer, nullable=False),
        sa.Column("start_minute", sa.Integer, nullable=False),
        sa.Column("end_minute", sa.Integer, nullable=False))
    op.create_index("ix_time_windows_scope_id", "time_windows", ["scope_id"])
    op.create_table(
        "usage",
        sa.Column("scope", sa.String(8), primary_key=True),
        sa.Column("scope_id", sa.Integer, primary_key=True),
        sa.Column("period_key", sa.String(12), primary_key=True),
        sa.Column("amount_cents", _BIG, nullable=False),
        sa.Column("volume_cl", _BIG, nullable=False),
        sa.Column("count", sa.Integer, nullable=False))
    op.create_table(
        "movements",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key", sa.String(100), nullable=False, unique=True),
        sa.Column("wallet_id", sa.Integer, sa.ForeignKey("wallets.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount", _BIG, nullable=False),
        sa.Column("balance_after", _BIG, nullable=False),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("sale_id", sa.String(36), nullable=True),
        sa.Column("auth_id", sa.String(36), nullable=True),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False))
    op.create_index("ix_movements_wallet", "movements", ["wallet_id", "id"])
    op.create_index("ix_movements_sale_id", "movements", ["sale_id"])
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(48), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("detail", sa.Text, nullable=False))
    op.create_table(
        "offline_limits",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("amount_cents", _BIG, nullable=False),
        sa.Column("volume_cl", _BIG, nullable=False))
    op.create_table(
        "auth_allowances",
        sa.Column("auth_id", sa.String(36), sa.ForeignKey("authorizations.id"), primary_key=True),
        sa.Column("product", sa.String(32), primary_key=True),
        sa.Column("wallet_id", sa.Integer, sa.ForeignKey("wallets.id"), nullable=False),
        sa.Column("volume_cl", sa.Integer, nullable=False),
        sa.Column("amount_cents", _BIG, nullable=False))
    op.create_table(
        "holds",
        sa.Column("auth_id", sa.String(36), sa.ForeignKey("authorizations.id"), primary_key=True),
        sa.Column("wallet_id", sa.Integer, sa.ForeignKey("wallets.id"), primary_key=True),
        sa.Column("amount", _BIG, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
        sa.Column("released", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_index("ix_holds_wallet_open", "holds", ["wallet_id", "released", "expires_at", "amount"])


def _period_keys(at: dt.datetime) -> tuple[str, ...]:
    """The usage periods a sale at `at` (UTC) counts in, as registry.fleet.rules.period_keys names them."""
    year, week, _ = at.isocalendar()
    return (f"D{at:%Y-%m-%d}", f"W{year:04d}-{week:02d}", f"M{at:%Y-%m}", f"Y{at:%Y}", "L")


def _data() -> None:
    conn = op.get_bind()
    conn.execute(sa.text("UPDATE cards SET account_id = (SELECT account_id FROM wallets "
                         "WHERE wallets.id = cards.wallet_id)"))
    conn.execute(sa.text("UPDATE authorizations SET account_id = (SELECT account_id FROM wallets "
                         "WHERE wallets.id = authorizations.wallet_id)"))
    conn.execute(sa.text("UPDATE transactions SET account_id = (SELECT account_id FROM wallets "
                         "WHERE wallets.id = transactions.wallet_id) WHERE wallet_id IS NOT NULL"))
    wallets = conn.execute(sa.text("SELECT id, account_id, monthly_limit_cl FROM wallets")).all()
    monthly: dict[int, int] = {}
    for wallet, account, limit in wallets:
        monthly[account] = monthly.get(account, 0) + int(limit or 0)
        conn.execute(sa.text("UPDATE wallets SET mode = 'postpaid', unit = 'volume', credit_limit = :c "
                             "WHERE id = :w"), {"c": 10**12, "w": wallet})
    for account, limit in monthly.items():
        conn.execute(sa.text("INSERT INTO limits (scope, scope_id, period, unit, maximum) "
                             "VALUES ('account', :a, 'month', 'volume', :m)"), {"a": account, "m": limit})
    conn.execute(sa.text("INSERT INTO holds (auth_id, wallet_id, amount, expires_at, released) "
                         "SELECT id, wallet_id, allowed_cl, expires_at, :f FROM authorizations "
                         "WHERE status = 'open' AND wallet_id IS NOT NULL"), {"f": False})
    usage: dict[tuple[str, int, str], list[int]] = {}
    sales = conn.execute(sa.text("SELECT account_id, card_id, finished_at, volume_cl, amount_cents "
                                 "FROM transactions WHERE account_id IS NOT NULL AND held = :f"),
                         {"f": False}).all()
    for account, card, finished, volume, amount in sales:
        at = finished if isinstance(finished, dt.datetime) else dt.datetime.fromisoformat(str(finished))
        for scope, scope_id in (("account", account), ("card", card)):
            if scope_id is None:
                continue
            for key in _period_keys(at):
                row = usage.setdefault((scope, scope_id, key), [0, 0, 0])
                row[0] += amount
                row[1] += volume
                row[2] += 1
    for (scope, scope_id, key), (amount, volume, count) in usage.items():
        conn.execute(sa.text("INSERT INTO usage (scope, scope_id, period_key, amount_cents, volume_cl, "
                             "count) VALUES (:s, :i, :k, :a, :v, :c)"),
                     {"s": scope, "i": scope_id, "k": key, "a": amount, "v": volume, "c": count})


def upgrade() -> None:
    _tables()
    _columns()
    _data()


def downgrade() -> None:
    raise NotImplementedError("r0007 is not undone: restore the backup taken before the upgrade")

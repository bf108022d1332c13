"""Device identity and operations: certificates, desired and reported state, enrollment, signed
configurations, events, commands, software rollouts, and each sale's sequence number.

Revision ID: r0005
Revises: r0004
Devices already registered stay active; their new columns start empty (never seen, nothing reported).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r0005"
down_revision = "r0004"
branch_labels = None
depends_on = None

_DEVICE_COLUMNS = (
    ("serial", sa.String(64)), ("cert_fingerprint", sa.String(64)), ("cert_expires_at", sa.DateTime),
    ("dukpt_key_id", sa.String(16)), ("first_seen_at", sa.DateTime), ("last_seen_at", sa.DateTime),
    ("desired_config_version", sa.Integer), ("desired_software_version", sa.String(32)),
    ("reported_config_version", sa.Integer), ("reported_software_version", sa.String(32)),
)


def upgrade() -> None:
    # plain ADD COLUMN, not a batch: SQLite would copy the devices table, which other tables reference
    for name, kind in _DEVICE_COLUMNS:
        op.add_column("devices", sa.Column(name, kind, nullable=True))
    op.add_column("devices", sa.Column("online", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("devices", sa.Column("backlog", sa.Integer, nullable=False, server_default="0"))
    op.add_column("devices", sa.Column("backlog_oldest_s", sa.Integer, nullable=False, server_default="0"))
    op.create_index("ix_devices_serial", "devices", ["serial"], unique=True)
    op.add_column("transactions", sa.Column("seq", sa.BigInteger, nullable=True))
    op.create_index("ix_transactions_device_seq", "transactions", ["device_id", "seq"])
    op.create_table(
        "expected_devices",
        sa.Column("serial", sa.String(64), primary_key=True),
        sa.Column("station_id", sa.String(64), sa.ForeignKey("stations.id"), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=True),
        sa.Column("imported_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "enrollment_tokens",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("station_id", sa.String(64), sa.ForeignKey("stations.id"), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
        sa.Column("used_at", sa.DateTime, nullable=True),
        sa.Column("used_by", sa.String(64), nullable=True),
    )
    op.create_table(
        "config_releases",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("device_id", sa.String(64), sa.ForeignKey("devices.id"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("issued_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
        sa.Column("envelope", sa.Text, nullable=False),
        sa.UniqueConstraint("device_id", "version"),
    )
    op.create_table(
        "device_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("event_id", sa.String(36), nullable=False, unique=True),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("received_at", sa.DateTime, nullable=False),
        sa.Column("severity", sa.String(8), nullable=False),
        sa.Column("code", sa.String(48), nullable=False),
        sa.Column("detail", sa.String(200), nullable=False),
    )
    op.create_index("ix_device_events_device_at", "device_events", ["device_id", "at"])
    op.create_table(
        "device_commands",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("device_id", sa.String(64), sa.ForeignKey("devices.id"), nullable=False),
        sa.Column("name", sa.String(48), nullable=False),
        sa.Column("args", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detail", sa.String(200), nullable=False),
        sa.Column("finished_at", sa.DateTime, nullable=True),
    )
    op.create_table(
        "software_releases",
        sa.Column("version", sa.String(32), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "rollouts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version", sa.String(32), sa.ForeignKey("software_releases.version"), nullable=False),
        sa.Column("percent", sa.Integer, nullable=False),
        sa.Column("failure_threshold", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("detail", sa.String(200), nullable=False),
    )
    op.create_table(
        "rollout_devices",
        sa.Column("rollout_id", sa.Integer, sa.ForeignKey("rollouts.id"), primary_key=True),
        sa.Column("device_id", sa.String(64), sa.ForeignKey("devices.id"), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("detail", sa.String(200), nullable=False),
    )


def downgrade() -> None:
    for table in ("rollout_devices", "rollouts", "software_releases", "device_commands"):
        op.drop_table(table)
    op.drop_index("ix_device_events_device_at", "device_events")
    for table in ("device_events", "config_releases", "enrollment_tokens", "expected_devices"):
        op.drop_table(table)
    op.drop_index("ix_transactions_device_seq", "transactions")
    with op.batch_alter_table("transactions") as batch:
        batch.drop_column("seq")
    op.drop_index("ix_devices_serial", "devices")
    with op.batch_alter_table("devices") as batch:
        for name in ("backlog_oldest_s", "backlog", "online", *(n for n, _ in reversed(_DEVICE_COLUMNS))):
            batch.drop_column(name)

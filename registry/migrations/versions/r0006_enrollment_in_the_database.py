"""Enrollment state in the database instead of files beside the CA: each device's certificate (what revocation
lists) and the enrollment requests waiting for an operator or whose retained reply is still to clear.

Revision ID: r0006
Revises: r0005
Devices already registered keep an empty cert_pem. Nothing is imported from the authority's directory
(issued/<id>.pem, pending/, replied/): only unreleased code of the same issue kept state there, so no
installation has such files.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r0006"
down_revision = "r0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ADD COLUMN, not a batch: SQLite would copy the devices table, which other tables reference
    op.add_column("devices", sa.Column("cert_pem", sa.Text, nullable=True))
    op.create_table(
        "enrollment_requests",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(36), nullable=False),
        sa.Column("device_id", sa.String(64), sa.ForeignKey("devices.id"), nullable=True),
        sa.Column("csr_pem", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("reply_status", sa.String(16), nullable=False),
        sa.Column("answers", sa.Integer, nullable=False, server_default="0"),
        sa.Column("prepared_at", sa.DateTime, nullable=True),
        sa.Column("replied_at", sa.DateTime, nullable=True),
        sa.Column("reply_cleared_at", sa.DateTime, nullable=True),
    )
    op.create_index("ix_enrollment_requests_owed", "enrollment_requests", ["replied_at", "reply_cleared_at"])
    op.create_index("ix_enrollment_requests_client", "enrollment_requests", ["client"])
    op.create_index("ix_enrollment_requests_device", "enrollment_requests", ["device_id"])


def downgrade() -> None:
    for index in ("device", "client", "owed"):
        op.drop_index(f"ix_enrollment_requests_{index}", "enrollment_requests")
    op.drop_table("enrollment_requests")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("cert_pem")

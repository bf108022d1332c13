"""The back office (issue 16): web users and their sessions, and scheduled price changes.

Revision ID: r0009
Revises: r0008
No existing row changes; the web application's first operator is made with `forecourt web user add`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = 'r0009'
down_revision = 'r0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('price_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('station_id', sa.String(length=64), nullable=False),
    sa.Column('product_code', sa.String(length=32), nullable=False),
    sa.Column('price_milli', sa.BigInteger(), nullable=False),
    sa.Column('effective_at', sa.DateTime(), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('applied_at', sa.DateTime(), nullable=True),
    sa.Column('cancelled_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['product_code'], ['products.code'], ),
    sa.ForeignKeyConstraint(['station_id'], ['stations.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('price_changes', schema=None) as batch_op:
        batch_op.create_index('ix_price_changes_due', ['applied_at', 'cancelled_at', 'effective_at'],
                              unique=False)

    op.create_table('web_users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('login', sa.String(length=200), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('station_ids', sa.String(length=1000), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=True),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('language', sa.String(length=8), nullable=False),
    sa.Column('password_hash', sa.String(length=200), nullable=False),
    sa.Column('failed_tries', sa.Integer(), server_default='0', nullable=False),
    sa.Column('locked_until', sa.DateTime(), nullable=True),
    sa.Column('disabled', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('last_sign_in', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('login')
    )
    op.create_table('web_sessions',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('csrf', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('seen_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['web_users.id'], ),
    sa.PrimaryKeyConstraint('token_hash')
    )
    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.create_index('ix_web_sessions_user', ['user_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.drop_index('ix_web_sessions_user')

    op.drop_table('web_sessions')
    op.drop_table('web_users')
    with op.batch_alter_table('price_changes', schema=None) as batch_op:
        batch_op.drop_index('ix_price_changes_due')

    op.drop_table('price_changes')

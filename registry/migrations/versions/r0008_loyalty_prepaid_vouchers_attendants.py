"""Loyalty, prepaid and gift cards, vouchers and attendants (issue 15): loyalty members and the cards linked
to them, earn rules, promotions and tiers, point awards and what each spend used of them, rewards with
stock and orders, the conversion table, station point values and settlements, flags for review, top-up
bonuses, vouchers, attendants and terminals' shift reports; accounts.kind and products.group.

Revision ID: r0008
Revises: r0007
Every existing account stays a fleet account; every existing product is in the group "fuel"; every
station keeps UTC until an operator sets its time zone. The audit gains an index by action, subject and time.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = 'r0008'
down_revision = 'r0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('attendants',
    sa.Column('id', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('card_token', sa.String(length=64), nullable=True),
    sa.Column('card_sealed', sa.Text(), nullable=True),
    sa.Column('pin_verifier', sa.String(length=200), nullable=False),
    sa.Column('failed_tries', sa.Integer(), server_default='0', nullable=False),
    sa.Column('status', sa.String(length=16), server_default='active', nullable=False),
    sa.Column('stations', sa.String(length=500), server_default=sa.text("''"), nullable=False),
    sa.Column('role', sa.String(length=16), server_default='attendant', nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('card_token')
    )
    op.create_table('earn_rules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('product', sa.String(length=32), nullable=False),
    sa.Column('basis', sa.String(length=8), nullable=False),
    sa.Column('milli_points', sa.BigInteger(), nullable=False),
    sa.Column('starts_on', sa.Date(), nullable=True),
    sa.Column('ends_on', sa.Date(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('loyalty_settings',
    sa.Column('key', sa.String(length=32), nullable=False),
    sa.Column('value', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('point_conversions',
    sa.Column('min_points', sa.BigInteger(), nullable=False),
    sa.Column('milli_cents', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('min_points')
    )
    op.create_table('promotions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('product', sa.String(length=32), server_default='*', nullable=False),
    sa.Column('stations', sa.String(length=500), server_default=sa.text("''"), nullable=False),
    sa.Column('starts_on', sa.Date(), nullable=False),
    sa.Column('ends_on', sa.Date(), nullable=False),
    sa.Column('multiplier_pct', sa.Integer(), server_default='100', nullable=False),
    sa.Column('bonus_points', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('stop', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('status', sa.String(length=16), server_default='active', nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('rewards',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), server_default='active', nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('shift_reports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('terminal', sa.String(length=64), nullable=False),
    sa.Column('shift', sa.BigInteger(), nullable=False),
    sa.Column('opened_at', sa.DateTime(), nullable=False),
    sa.Column('closed_at', sa.DateTime(), nullable=False),
    sa.Column('attendant_id', sa.String(length=16), nullable=False),
    sa.Column('totals', sa.Text(), nullable=False),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('terminal', 'shift')
    )
    op.create_table('tiers',
    sa.Column('name', sa.String(length=16), nullable=False),
    sa.Column('rank', sa.Integer(), nullable=False),
    sa.Column('multiplier_pct', sa.Integer(), nullable=False),
    sa.Column('min_spend_cents', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('name'),
    sa.UniqueConstraint('rank')
    )
    op.create_table('topup_bonuses',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_kind', sa.String(length=16), nullable=False),
    sa.Column('min_cents', sa.BigInteger(), nullable=False),
    sa.Column('bonus_pct', sa.Integer(), server_default='0', nullable=False),
    sa.Column('bonus_cents', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('starts_on', sa.Date(), nullable=True),
    sa.Column('ends_on', sa.Date(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('loyalty_settlements',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('station_id', sa.String(length=64), nullable=False),
    sa.Column('period_start', sa.Date(), nullable=False),
    sa.Column('period_end', sa.Date(), nullable=False),
    sa.Column('product_group', sa.String(length=16), nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.Column('milli_cents', sa.Integer(), nullable=False),
    sa.Column('amount_cents', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['station_id'], ['stations.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('station_id', 'period_start', 'period_end', 'product_group', 'milli_cents')
    )
    op.create_table('reward_stock',
    sa.Column('reward_id', sa.Integer(), nullable=False),
    sa.Column('station_id', sa.String(length=64), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['reward_id'], ['rewards.id'], ),
    sa.ForeignKeyConstraint(['station_id'], ['stations.id'], ),
    sa.PrimaryKeyConstraint('reward_id', 'station_id')
    )
    op.create_table('station_point_values',
    sa.Column('station_id', sa.String(length=64), nullable=False),
    sa.Column('product_group', sa.String(length=16), nullable=False),
    sa.Column('valid_from', sa.Date(), nullable=False),
    sa.Column('milli_cents', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['station_id'], ['stations.id'], ),
    sa.PrimaryKeyConstraint('station_id', 'product_group', 'valid_from')
    )
    op.create_table('vouchers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code_digest', sa.String(length=64), nullable=False),
    sa.Column('code_hint', sa.String(length=4), nullable=False),
    sa.Column('product', sa.String(length=32), nullable=False),
    sa.Column('volume_cl', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('batch', sa.String(length=32), server_default=sa.text("''"), nullable=False),
    sa.Column('issued_at', sa.DateTime(), nullable=False),
    sa.Column('expires_on', sa.Date(), nullable=True),
    sa.Column('redeemed_at', sa.DateTime(), nullable=True),
    sa.Column('terminal', sa.String(length=64), nullable=True),
    sa.Column('auth_id', sa.String(length=36), nullable=True),
    sa.Column('sale_id', sa.String(length=36), nullable=True),
    sa.ForeignKeyConstraint(['product'], ['products.code'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('code_digest')
    )
    op.create_table('loyalty_flags',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('sale_id', sa.String(length=36), nullable=True),
    sa.Column('attendant_id', sa.String(length=16), server_default=sa.text("''"), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('detail', sa.String(length=200), server_default=sa.text("''"), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('loyalty_links',
    sa.Column('token', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('masked', sa.String(length=19), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('token')
    )
    with op.batch_alter_table('loyalty_links', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_loyalty_links_account_id'), ['account_id'], unique=False)

    op.create_table('loyalty_members',
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('tier', sa.String(length=16), server_default='base', nullable=False),
    sa.Column('tier_since', sa.Date(), nullable=True),
    sa.Column('issued_on', sa.Date(), nullable=False),
    sa.Column('first_used_at', sa.DateTime(), nullable=True),
    sa.Column('pool_account_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.ForeignKeyConstraint(['pool_account_id'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('account_id')
    )
    op.create_table('point_awards',
    sa.Column('movement_id', sa.Integer(), nullable=False),
    sa.Column('wallet_id', sa.Integer(), nullable=False),
    sa.Column('station_id', sa.String(length=64), nullable=True),
    sa.Column('product_group', sa.String(length=16), server_default=sa.text("''"), nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.Column('remaining', sa.BigInteger(), nullable=False),
    sa.Column('earned_at', sa.DateTime(), nullable=False),
    sa.Column('settlement_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['movement_id'], ['movements.id'], ),
    sa.ForeignKeyConstraint(['settlement_id'], ['loyalty_settlements.id'], ),
    sa.ForeignKeyConstraint(['wallet_id'], ['wallets.id'], ),
    sa.PrimaryKeyConstraint('movement_id')
    )
    with op.batch_alter_table('point_awards', schema=None) as batch_op:
        batch_op.create_index('ix_point_awards_station', ['station_id', 'earned_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_point_awards_settlement_id'), ['settlement_id'], unique=False)
        batch_op.create_index('ix_point_awards_wallet_open', ['wallet_id', 'remaining', 'movement_id'],
                              unique=False)

    op.create_table('reward_orders',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('reward_id', sa.Integer(), nullable=False),
    sa.Column('station_id', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('movement_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('batch', sa.String(length=16), nullable=True),
    sa.Column('attendant_id', sa.String(length=16), server_default=sa.text("''"), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.ForeignKeyConstraint(['movement_id'], ['movements.id'], ),
    sa.ForeignKeyConstraint(['reward_id'], ['rewards.id'], ),
    sa.ForeignKeyConstraint(['station_id'], ['stations.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('movement_id')
    )
    with op.batch_alter_table('reward_orders', schema=None) as batch_op:
        batch_op.create_index('ix_reward_orders_status', ['status', 'station_id'], unique=False)

    op.create_table('point_allocations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('spend_id', sa.Integer(), nullable=False),
    sa.Column('award_id', sa.Integer(), nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['award_id'], ['point_awards.movement_id'], ),
    sa.ForeignKeyConstraint(['spend_id'], ['movements.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('spend_id', 'award_id')
    )
    with op.batch_alter_table('point_allocations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_point_allocations_award_id'), ['award_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_point_allocations_spend_id'), ['spend_id'], unique=False)

    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=16), server_default='fleet', nullable=False))

    with op.batch_alter_table('products', schema=None) as batch_op:
        batch_op.add_column(sa.Column('group', sa.String(length=16), server_default='fuel', nullable=False))

    with op.batch_alter_table('stations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('timezone', sa.String(length=64), server_default='UTC', nullable=False))

    op.create_index('ix_audit_action_subject_at', 'audit', ['action', 'subject', 'at'])



def downgrade() -> None:
    op.drop_index('ix_audit_action_subject_at', 'audit')
    with op.batch_alter_table('stations', schema=None) as batch_op:
        batch_op.drop_column('timezone')

    with op.batch_alter_table('products', schema=None) as batch_op:
        batch_op.drop_column('group')

    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_column('kind')

    with op.batch_alter_table('point_allocations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_point_allocations_spend_id'))
        batch_op.drop_index(batch_op.f('ix_point_allocations_award_id'))

    op.drop_table('point_allocations')
    with op.batch_alter_table('reward_orders', schema=None) as batch_op:
        batch_op.drop_index('ix_reward_orders_status')

    op.drop_table('reward_orders')
    with op.batch_alter_table('point_awards', schema=None) as batch_op:
        batch_op.drop_index('ix_point_awards_wallet_open')
        batch_op.drop_index('ix_point_awards_station')

    op.drop_table('point_awards')
    op.drop_table('loyalty_members')
    with op.batch_alter_table('loyalty_links', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_loyalty_links_account_id'))

    op.drop_table('loyalty_links')
    op.drop_table('loyalty_flags')
    op.drop_table('vouchers')
    op.drop_table('station_point_values')
    op.drop_table('reward_stock')
    op.drop_table('loyalty_settlements')
    op.drop_table('topup_bonuses')
    op.drop_table('tiers')
    op.drop_table('shift_reports')
    op.drop_table('rewards')
    op.drop_table('promotions')
    op.drop_table('point_conversions')
    op.drop_table('loyalty_settings')
    op.drop_table('earn_rules')
    op.drop_table('attendants')

"""Wallets on the chip (issue 18): the issuer's sealed purse keys, a chip purse per card and its chip wallets
(each a registry wallet: the shadow balance), the purchase records received and the flags they raised, loads,
SAMs and issuer scripts (docs/chip-wallet-registry.md).

Revision ID: r0011
Revises: r0010
New tables only: nothing existing changes, and downgrade drops them (with the records they hold).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = 'r0011'
down_revision = 'r0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('purse_issuer_keys',
    sa.Column('purpose', sa.String(length=8), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('sealed', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('retired_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('purpose', 'version')
    )
    op.create_table('purse_records',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.Column('source', sa.String(length=100), nullable=False),
    sa.Column('purse_id', sa.String(length=16), nullable=True),
    sa.Column('counter', sa.BigInteger(), nullable=True),
    sa.Column('kind', sa.Integer(), nullable=True),
    sa.Column('wallet', sa.Integer(), nullable=True),
    sa.Column('amount', sa.BigInteger(), nullable=True),
    sa.Column('unit', sa.Integer(), nullable=True),
    sa.Column('product', sa.Integer(), nullable=True),
    sa.Column('terminal', sa.String(length=16), nullable=True),
    sa.Column('time', sa.DateTime(), nullable=True),
    sa.Column('previous_balance', sa.BigInteger(), nullable=True),
    sa.Column('new_balance', sa.BigInteger(), nullable=True),
    sa.Column('key_version', sa.Integer(), nullable=True),
    sa.Column('sam_id', sa.String(length=16), nullable=True),
    sa.Column('sam_seq', sa.BigInteger(), nullable=True),
    sa.Column('sam_mac', sa.String(length=32), nullable=True),
    sa.Column('flags', sa.String(length=200), nullable=False),
    sa.Column('counted', sa.Boolean(), nullable=False),
    sa.Column('counted_key', sa.String(length=32), nullable=True),
    sa.Column('movement_key', sa.String(length=100), nullable=True),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('counted_key'),
    sa.UniqueConstraint('digest')
    )
    op.create_index('ix_purse_records_purse_counter', 'purse_records', ['purse_id', 'counter'], unique=False)
    op.create_table('purse_sams',
    sa.Column('sam_id', sa.String(length=16), nullable=False),
    sa.Column('terminal', sa.String(length=64), nullable=False),
    sa.Column('key_version', sa.Integer(), nullable=False),
    sa.Column('last_seq', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('public_key', sa.String(length=66), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('sam_id')
    )
    op.create_index(op.f('ix_purse_sams_terminal'), 'purse_sams', ['terminal'], unique=False)
    op.create_table('purse_flags',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('purse_id', sa.String(length=16), nullable=True),
    sa.Column('record_id', sa.Integer(), nullable=True),
    sa.Column('flag', sa.String(length=32), nullable=False),
    sa.Column('detail', sa.String(length=200), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['record_id'], ['purse_records.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_purse_flags_purse', 'purse_flags', ['purse_id', 'id'], unique=False)
    op.create_table('chip_purses',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('card_id', sa.Integer(), nullable=False),
    sa.Column('purse_id', sa.String(length=16), nullable=False),
    sa.Column('auth_version', sa.Integer(), nullable=False),
    sa.Column('record_version', sa.Integer(), nullable=False),
    sa.Column('load_version', sa.Integer(), nullable=False),
    sa.Column('admin_version', sa.Integer(), nullable=False),
    sa.Column('chip_status', sa.String(length=16), nullable=False),
    sa.Column('last_counter', sa.BigInteger(), nullable=False),
    sa.Column('last_record_counter', sa.BigInteger(), nullable=False),
    sa.Column('last_contact_at', sa.DateTime(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['card_id'], ['cards.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('card_id'),
    sa.UniqueConstraint('purse_id')
    )
    op.create_table('chip_wallets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('purse_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('wallet_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['purse_id'], ['chip_purses.id'], ),
    sa.ForeignKeyConstraint(['wallet_id'], ['wallets.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('purse_id', 'number'),
    sa.UniqueConstraint('wallet_id')
    )
    op.create_table('purse_scripts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('purse_id', sa.Integer(), nullable=False),
    sa.Column('op', sa.String(length=24), nullable=False),
    sa.Column('payload', sa.String(length=140), nullable=False),
    sa.Column('pending_counter', sa.BigInteger(), nullable=True),
    sa.Column('sam_id', sa.String(length=16), nullable=True),
    sa.Column('sale_id', sa.String(length=36), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('requested_at', sa.DateTime(), nullable=False),
    sa.Column('issued_counter', sa.BigInteger(), nullable=True),
    sa.Column('issued_at', sa.DateTime(), nullable=True),
    sa.Column('issued_to', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['purse_id'], ['chip_purses.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_purse_scripts_purse_status', 'purse_scripts', ['purse_id', 'status'], unique=False)
    once = sa.text("op IN ('complete_pending', 'refund') AND pending_counter IS NOT NULL")
    op.create_index('ux_purse_scripts_pending', 'purse_scripts', ['purse_id', 'op', 'pending_counter'],
                    unique=True, sqlite_where=once, postgresql_where=once)
    op.create_table('purse_loads',
    sa.Column('load_id', sa.String(length=32), nullable=False),
    sa.Column('purse_id', sa.Integer(), nullable=False),
    sa.Column('wallet', sa.Integer(), nullable=False),
    sa.Column('wallet_id', sa.Integer(), nullable=False),
    sa.Column('source_wallet_id', sa.Integer(), nullable=True),
    sa.Column('purpose', sa.String(length=8), nullable=False),
    sa.Column('script_id', sa.Integer(), nullable=True),
    sa.Column('counter', sa.BigInteger(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('unit', sa.Integer(), nullable=False),
    sa.Column('key_version', sa.Integer(), nullable=False),
    sa.Column('mac', sa.String(length=32), nullable=False),
    sa.Column('terminal', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('requested_at', sa.DateTime(), nullable=False),
    sa.Column('settled_at', sa.DateTime(), nullable=True),
    sa.Column('record_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['purse_id'], ['chip_purses.id'], ),
    sa.ForeignKeyConstraint(['record_id'], ['purse_records.id'], ),
    sa.ForeignKeyConstraint(['script_id'], ['purse_scripts.id'], ),
    sa.ForeignKeyConstraint(['source_wallet_id'], ['wallets.id'], ),
    sa.ForeignKeyConstraint(['wallet_id'], ['wallets.id'], ),
    sa.PrimaryKeyConstraint('load_id')
    )
    op.create_index('ix_purse_loads_purse_counter', 'purse_loads', ['purse_id', 'counter'], unique=False)
    op.create_index('ix_purse_loads_status', 'purse_loads', ['status', 'requested_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_purse_loads_status', table_name='purse_loads')
    op.drop_index('ix_purse_loads_purse_counter', table_name='purse_loads')
    op.drop_table('purse_loads')
    op.drop_index('ux_purse_scripts_pending', table_name='purse_scripts')
    op.drop_index('ix_purse_scripts_purse_status', table_name='purse_scripts')
    op.drop_table('purse_scripts')
    op.drop_table('chip_wallets')
    op.drop_table('chip_purses')
    op.drop_index('ix_purse_flags_purse', table_name='purse_flags')
    op.drop_table('purse_flags')
    op.drop_index(op.f('ix_purse_sams_terminal'), table_name='purse_sams')
    op.drop_table('purse_sams')
    op.drop_index('ix_purse_records_purse_counter', table_name='purse_records')
    op.drop_table('purse_records')
    op.drop_table('purse_issuer_keys')

"""Clearing: partners and their Ed25519 keys, programs and their values per point.

Rates are stored as exact decimal text (ledger.types.ExactDecimal), never as float.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('clearing_partners',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('industry', sa.String(length=20), nullable=False),
    sa.Column('is_issuer', sa.Boolean(), nullable=False),
    sa.Column('is_redeemer', sa.Boolean(), nullable=False),
    sa.Column('settlement_currency', sa.String(length=3), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("industry IN ('bank', 'airline', 'telecom', 'retail', 'ecommerce', 'other')", name=op.f('ck_clearing_partners_industry_known')),
    sa.CheckConstraint("status IN ('active', 'suspended')", name=op.f('ck_clearing_partners_status_known')),
    sa.CheckConstraint('is_issuer OR is_redeemer', name=op.f('ck_clearing_partners_has_a_role')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_clearing_partners'))
    )
    op.create_table('clearing_partner_keys',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('partner_id', sa.String(length=40), nullable=False),
    sa.Column('public_key', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['partner_id'], ['clearing_partners.id'], name=op.f('fk_clearing_partner_keys_partner_id_clearing_partners')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_clearing_partner_keys'))
    )
    with op.batch_alter_table('clearing_partner_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_clearing_partner_keys_partner_id'), ['partner_id'], unique=False)

    op.create_table('clearing_programs',
    sa.Column('code', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('owner_id', sa.String(length=40), nullable=True),
    sa.Column('expiry_months', sa.SmallInteger(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('expiry_months IS NULL OR expiry_months BETWEEN 1 AND 120', name=op.f('ck_clearing_programs_expiry_range')),
    sa.ForeignKeyConstraint(['owner_id'], ['clearing_partners.id'], name=op.f('fk_clearing_programs_owner_id_clearing_partners')),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_clearing_programs'))
    )
    with op.batch_alter_table('clearing_programs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_clearing_programs_owner_id'), ['owner_id'], unique=False)

    op.create_table('clearing_program_values',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('program_code', sa.String(length=16), nullable=False),
    sa.Column('effective_from', sa.DateTime(timezone=True), nullable=False),
    sa.Column('value_per_point', sa.String(length=40), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['program_code'], ['clearing_programs.code'], name=op.f('fk_clearing_program_values_program_code_clearing_programs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_clearing_program_values')),
    sa.UniqueConstraint('program_code', 'effective_from', name=op.f('uq_clearing_program_values_program_code'))
    )


def downgrade() -> None:
    op.drop_table('clearing_program_values')
    with op.batch_alter_table('clearing_programs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_clearing_programs_owner_id'))

    op.drop_table('clearing_programs')
    with op.batch_alter_table('clearing_partner_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_clearing_partner_keys_partner_id'))

    op.drop_table('clearing_partner_keys')
    op.drop_table('clearing_partners')

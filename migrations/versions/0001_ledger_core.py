"""Ledger core: accounts, balances (shards), transactions, postings, idempotency, seals.

Besides the tables and their named CHECK constraints, this installs the second line of
defence of the double-entry rules: on PostgreSQL, deferred constraint triggers that refuse
to commit a transaction that does not balance per unit (or has too few postings), and on
both databases triggers that refuse UPDATE and DELETE of booked rows.

Revision ID: 0001
Revises: 
Create Date: 2026-11-22
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None

# Booked rows: never updated, never deleted. (Running totals in ledger_balances and the
# frozen/closed flags of accounts are state, not records, and do change.)
APPEND_ONLY = (
    "ledger_transactions", "ledger_postings", "ledger_idempotency",
    "ledger_blocks", "ledger_block_entries",
)

POSTGRES_TRIGGERS = [
    """
    CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'ledger rows are append-only: % on % refused', TG_OP, TG_TABLE_NAME
            USING ERRCODE = 'restrict_violation';
    END $$
    """,
    """
    CREATE FUNCTION ledger_check_transaction() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        txn uuid;
        txn_status text;
        lines integer;
        bad_unit text;
    BEGIN
        IF TG_TABLE_NAME = 'ledger_postings' THEN
            txn := NEW.transaction_id;
        ELSE
            txn := NEW.id;
        END IF;
        SELECT status INTO txn_status FROM ledger_transactions WHERE id = txn;
        SELECT count(*) INTO lines FROM ledger_postings WHERE transaction_id = txn;
        IF txn_status = 'voided' AND lines > 0 THEN
            RAISE EXCEPTION 'voided transaction % has postings', txn
                USING ERRCODE = 'check_violation';
        ELSIF txn_status <> 'voided' AND lines < 2 THEN
            RAISE EXCEPTION 'transaction % has % postings, needs at least 2', txn, lines
                USING ERRCODE = 'check_violation';
        END IF;
        SELECT unit INTO bad_unit FROM ledger_postings WHERE transaction_id = txn
            GROUP BY unit HAVING sum(CASE WHEN side = 'D' THEN amount ELSE -amount END) <> 0
            LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'transaction % does not balance in %', txn, bad_unit
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE CONSTRAINT TRIGGER ledger_transactions_balanced
        AFTER INSERT ON ledger_transactions DEFERRABLE INITIALLY DEFERRED
        FOR EACH ROW EXECUTE FUNCTION ledger_check_transaction()
    """,
    """
    CREATE CONSTRAINT TRIGGER ledger_postings_balanced
        AFTER INSERT ON ledger_postings DEFERRABLE INITIALLY DEFERRED
        FOR EACH ROW EXECUTE FUNCTION ledger_check_transaction()
    """,
    *(
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()"
        for table in APPEND_ONLY
    ),
    *(
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()"
        for table in APPEND_ONLY
    ),
]


def upgrade() -> None:
    op.create_table('ledger_accounts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('code', sa.String(length=200), nullable=False),
    sa.Column('unit', sa.String(length=16), nullable=False),
    sa.Column('no_overdraft', sa.Boolean(), nullable=False),
    sa.Column('frozen', sa.Boolean(), nullable=False),
    sa.Column('closed', sa.Boolean(), nullable=False),
    sa.Column('shards', sa.SmallInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('NOT (no_overdraft AND shards <> 1)', name=op.f('ck_ledger_accounts_guarded_single_shard')),
    sa.CheckConstraint('length(code) BETWEEN 1 AND 200', name=op.f('ck_ledger_accounts_code_length')),
    sa.CheckConstraint('shards BETWEEN 1 AND 64', name=op.f('ck_ledger_accounts_shards_range')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_accounts')),
    sa.UniqueConstraint('code', name=op.f('uq_ledger_accounts_code'))
    )
    op.create_table('ledger_blocks',
    sa.Column('height', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('signature', sa.String(length=128), nullable=False),
    sa.Column('key_id', sa.String(length=64), nullable=False),
    sa.Column('tx_count', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('height >= 1', name=op.f('ck_ledger_blocks_height_positive')),
    sa.PrimaryKeyConstraint('height', name=op.f('pk_ledger_blocks')),
    sa.UniqueConstraint('hash', name=op.f('uq_ledger_blocks_hash'))
    )
    op.create_table('ledger_transactions',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('reference', sa.String(length=200), nullable=True),
    sa.Column('meta', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolves_id', sa.Uuid(), nullable=True),
    sa.Column('reverses_id', sa.Uuid(), nullable=True),
    sa.CheckConstraint("status <> 'pending' OR resolves_id IS NULL", name=op.f('ck_ledger_transactions_pending_resolves_nothing')),
    sa.CheckConstraint("status <> 'voided' OR resolves_id IS NOT NULL", name=op.f('ck_ledger_transactions_voided_resolves_pending')),
    sa.CheckConstraint("status = 'pending' OR expires_at IS NULL", name=op.f('ck_ledger_transactions_expiry_only_pending')),
    sa.CheckConstraint("status IN ('pending', 'posted', 'voided')", name=op.f('ck_ledger_transactions_status_known')),
    sa.CheckConstraint('length(kind) BETWEEN 1 AND 40', name=op.f('ck_ledger_transactions_kind_length')),
    sa.CheckConstraint('resolves_id IS NULL OR reverses_id IS NULL', name=op.f('ck_ledger_transactions_resolves_or_reverses')),
    sa.ForeignKeyConstraint(['resolves_id'], ['ledger_transactions.id'], name=op.f('fk_ledger_transactions_resolves_id_ledger_transactions')),
    sa.ForeignKeyConstraint(['reverses_id'], ['ledger_transactions.id'], name=op.f('fk_ledger_transactions_reverses_id_ledger_transactions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_transactions')),
    sa.UniqueConstraint('resolves_id', name=op.f('uq_ledger_transactions_resolves_id'))
    )
    with op.batch_alter_table('ledger_transactions', schema=None) as batch_op:
        batch_op.create_index('ix_ledger_transactions_created_at', ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_ledger_transactions_reverses_id'), ['reverses_id'], unique=False)

    op.create_table('ledger_balances',
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('shard', sa.SmallInteger(), nullable=False),
    sa.Column('guarded', sa.Boolean(), nullable=False),
    sa.Column('frozen', sa.Boolean(), nullable=False),
    sa.Column('closed', sa.Boolean(), nullable=False),
    sa.Column('debits_posted', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('credits_posted', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('debits_pending', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('credits_pending', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.CheckConstraint('NOT guarded OR credits_posted - debits_posted - debits_pending >= 0', name=op.f('ck_ledger_balances_no_overdraft')),
    sa.CheckConstraint('credits_pending >= 0', name=op.f('ck_ledger_balances_credits_pending_nonnegative')),
    sa.CheckConstraint('credits_posted >= 0', name=op.f('ck_ledger_balances_credits_posted_nonnegative')),
    sa.CheckConstraint('debits_pending >= 0', name=op.f('ck_ledger_balances_debits_pending_nonnegative')),
    sa.CheckConstraint('debits_posted >= 0', name=op.f('ck_ledger_balances_debits_posted_nonnegative')),
    sa.ForeignKeyConstraint(['account_id'], ['ledger_accounts.id'], name=op.f('fk_ledger_balances_account_id_ledger_accounts')),
    sa.PrimaryKeyConstraint('account_id', 'shard', name=op.f('pk_ledger_balances'))
    )
    op.create_table('ledger_block_entries',
    sa.Column('transaction_id', sa.Uuid(), nullable=False),
    sa.Column('height', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['height'], ['ledger_blocks.height'], name=op.f('fk_ledger_block_entries_height_ledger_blocks')),
    sa.ForeignKeyConstraint(['transaction_id'], ['ledger_transactions.id'], name=op.f('fk_ledger_block_entries_transaction_id_ledger_transactions')),
    sa.PrimaryKeyConstraint('transaction_id', name=op.f('pk_ledger_block_entries'))
    )
    with op.batch_alter_table('ledger_block_entries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ledger_block_entries_height'), ['height'], unique=False)

    op.create_table('ledger_idempotency',
    sa.Column('scope', sa.String(length=100), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('transaction_id', sa.Uuid(), nullable=True),
    sa.Column('error_code', sa.String(length=60), nullable=True),
    sa.Column('error', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('(transaction_id IS NULL) <> (error_code IS NULL)', name=op.f('ck_ledger_idempotency_one_outcome')),
    sa.ForeignKeyConstraint(['transaction_id'], ['ledger_transactions.id'], name=op.f('fk_ledger_idempotency_transaction_id_ledger_transactions'), initially='DEFERRED', deferrable=True),
    sa.PrimaryKeyConstraint('scope', 'key', name=op.f('pk_ledger_idempotency'))
    )
    op.create_table('ledger_postings',
    sa.Column('transaction_id', sa.Uuid(), nullable=False),
    sa.Column('line', sa.SmallInteger(), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('side', sa.String(length=1), nullable=False),
    sa.Column('amount', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('unit', sa.String(length=16), nullable=False),
    sa.CheckConstraint("side IN ('D', 'C')", name=op.f('ck_ledger_postings_side_known')),
    sa.CheckConstraint('amount > 0', name=op.f('ck_ledger_postings_amount_positive')),
    sa.ForeignKeyConstraint(['account_id'], ['ledger_accounts.id'], name=op.f('fk_ledger_postings_account_id_ledger_accounts')),
    sa.ForeignKeyConstraint(['transaction_id'], ['ledger_transactions.id'], name=op.f('fk_ledger_postings_transaction_id_ledger_transactions')),
    sa.PrimaryKeyConstraint('transaction_id', 'line', name=op.f('pk_ledger_postings'))
    )
    with op.batch_alter_table('ledger_postings', schema=None) as batch_op:
        batch_op.create_index('ix_ledger_postings_account_id', ['account_id'], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        for statement in POSTGRES_TRIGGERS:
            op.execute(statement)
    else:
        for table in APPEND_ONLY:
            for verb in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, 'ledger rows are append-only: {verb} on "
                    f"{table} refused'); END"
                )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute("DROP TRIGGER IF EXISTS ledger_transactions_balanced ON ledger_transactions")
        op.execute("DROP TRIGGER IF EXISTS ledger_postings_balanced ON ledger_postings")
        op.execute("DROP FUNCTION IF EXISTS ledger_refuse_change()")
        op.execute("DROP FUNCTION IF EXISTS ledger_check_transaction()")
    else:
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
    with op.batch_alter_table('ledger_postings', schema=None) as batch_op:
        batch_op.drop_index('ix_ledger_postings_account_id')

    op.drop_table('ledger_postings')
    op.drop_table('ledger_idempotency')
    with op.batch_alter_table('ledger_block_entries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ledger_block_entries_height'))

    op.drop_table('ledger_block_entries')
    op.drop_table('ledger_balances')
    with op.batch_alter_table('ledger_transactions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ledger_transactions_reverses_id'))
        batch_op.drop_index('ix_ledger_transactions_created_at')

    op.drop_table('ledger_transactions')
    op.drop_table('ledger_blocks')
    op.drop_table('ledger_accounts')

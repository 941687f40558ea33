"""reconciliation with Microsoft: runs, each customer's last check, drifts

Revision ID: 0016_reconciliation
Revises: 0015_operations_recovery
Create Date: 2026-12-01 08:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0016_reconciliation'
down_revision = '0015_operations_recovery'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'reconciliation_run',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('started_at', sa.DateTime(), nullable=False),
        sa.Column('finished_at', sa.DateTime(), nullable=True),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('trigger', sa.String(length=80), nullable=False),
        sa.Column('scope_account_id', sa.Integer(), nullable=True),
        sa.Column('repair', sa.Boolean(), nullable=False),
        sa.Column('customers_checked', sa.Integer(), nullable=False),
        sa.Column('customers_differing', sa.Integer(), nullable=False),
        sa.Column('customers_unreadable', sa.Integer(), nullable=False),
        sa.Column('customers_skipped', sa.Integer(), nullable=False),
        sa.Column('differences', sa.Integer(), nullable=False),
        sa.Column('repaired', sa.Integer(), nullable=False),
        sa.Column('error', sa.String(length=1000), nullable=True),
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.CheckConstraint("state IN ('running', 'finished', 'failed')", name='ck_reconciliation_run_state'),
        sa.ForeignKeyConstraint(['account_id'], ['account.id'], ondelete='RESTRICT'),
        sa.ForeignKeyConstraint(['scope_account_id'], ['account.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_reconciliation_run_started', 'reconciliation_run', ['started_at'])
    op.create_index(op.f('ix_reconciliation_run_account_id'), 'reconciliation_run', ['account_id'])
    op.create_table(
        'reconciliation_status',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('run_id', sa.Integer(), nullable=True),
        sa.Column('checked_at', sa.DateTime(), nullable=False),
        sa.Column('outcome', sa.String(length=16), nullable=False),
        sa.Column('differences', sa.Integer(), nullable=False),
        sa.Column('detail', sa.String(length=500), nullable=True),
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "outcome IN ('matched', 'differs', 'unreadable', 'skipped')", name='ck_reconciliation_status_outcome'
        ),
        sa.ForeignKeyConstraint(['account_id'], ['account.id'], ondelete='RESTRICT'),
        sa.ForeignKeyConstraint(['run_id'], ['reconciliation_run.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('account_id', name='uq_reconciliation_status_account'),
    )
    op.create_table(
        'reconciliation_drift',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('key', sa.String(length=200), nullable=False),
        sa.Column('kind', sa.String(length=40), nullable=False),
        sa.Column('subject', sa.String(length=320), nullable=False),
        sa.Column('portal_value', sa.String(length=200), nullable=False),
        sa.Column('microsoft_value', sa.String(length=200), nullable=False),
        sa.Column('first_seen_at', sa.DateTime(), nullable=False),
        sa.Column('last_seen_at', sa.DateTime(), nullable=False),
        sa.Column('last_run_id', sa.Integer(), nullable=True),
        sa.Column('resolved_at', sa.DateTime(), nullable=True),
        sa.Column('repaired_at', sa.DateTime(), nullable=True),
        sa.Column('repair_summary', sa.String(length=500), nullable=True),
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['account_id'], ['account.id'], ondelete='RESTRICT'),
        sa.ForeignKeyConstraint(['last_run_id'], ['reconciliation_run.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_reconciliation_drift_account_open', 'reconciliation_drift', ['account_id', 'resolved_at'])
    op.create_index('ix_reconciliation_drift_open', 'reconciliation_drift', ['resolved_at', 'first_seen_at'])


def downgrade():
    op.drop_index('ix_reconciliation_drift_open', table_name='reconciliation_drift')
    op.drop_index('ix_reconciliation_drift_account_open', table_name='reconciliation_drift')
    op.drop_table('reconciliation_drift')
    op.drop_table('reconciliation_status')
    op.drop_index(op.f('ix_reconciliation_run_account_id'), table_name='reconciliation_run')
    op.drop_index('ix_reconciliation_run_started', table_name='reconciliation_run')
    op.drop_table('reconciliation_run')

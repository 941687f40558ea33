"""the provider operation log; order idempotency in the sandbox

Revision ID: 0013_provider_operations
Revises: 0012_tenant_provisioning_since
Create Date: 2026-12-01 05:20:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0013_provider_operations'
down_revision = '0012_tenant_provisioning_since'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'provider_operation',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=40), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('submission_key', sa.String(length=64), nullable=True),
        sa.Column('request_id', sa.String(length=36), nullable=False),
        sa.Column('correlation_id', sa.String(length=64), nullable=True),
        sa.Column('params', sa.Text(), nullable=False),
        sa.Column('result', sa.Text(), nullable=True),
        sa.Column('error', sa.String(length=1000), nullable=True),
        sa.Column('requested_by_id', sa.Integer(), nullable=True),
        sa.Column('created_on', sa.DateTime(), nullable=False),
        sa.Column('attempted_on', sa.DateTime(), nullable=False),
        sa.Column('finished_on', sa.DateTime(), nullable=True),
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.CheckConstraint("state IN ('pending', 'succeeded', 'failed')", name='ck_provider_operation_state'),
        sa.ForeignKeyConstraint(['account_id'], ['account.id'], ondelete='RESTRICT'),
        sa.ForeignKeyConstraint(['requested_by_id'], ['ab_user.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('request_id'),
        sa.UniqueConstraint('submission_key'),
    )
    op.create_index('ix_provider_operation_account_id', 'provider_operation', ['account_id'], unique=False)
    op.create_index('ix_provider_operation_state_since', 'provider_operation', ['state', 'attempted_on'], unique=False)
    with op.batch_alter_table('sandbox_subscription') as batch_op:
        batch_op.add_column(sa.Column('request_id', sa.String(length=36), nullable=True))
        batch_op.create_unique_constraint('uq_sandbox_subscription_request_id', ['request_id'])


def downgrade():
    with op.batch_alter_table('sandbox_subscription') as batch_op:
        batch_op.drop_constraint('uq_sandbox_subscription_request_id', type_='unique')
        batch_op.drop_column('request_id')
    op.drop_index('ix_provider_operation_state_since', table_name='provider_operation')
    op.drop_index('ix_provider_operation_account_id', table_name='provider_operation')
    op.drop_table('provider_operation')

"""provider operations for every change of Microsoft's state

Revision ID: 0015_operations_recovery
Revises: 0014_mail_outbox
Create Date: 2026-12-01 08:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0015_operations_recovery'
down_revision = '0014_mail_outbox'
branch_labels = None
depends_on = None


def upgrade():
    # What an operation changes ("subscription:12"): reconciliation skips what has one in flight.
    with op.batch_alter_table('provider_operation') as batch_op:
        batch_op.add_column(sa.Column('target', sa.String(length=80), nullable=True))
        batch_op.create_index('ix_provider_operation_target', ['target'], unique=False)
    # The sandbox's users can be disabled (and their passwords reset); a deleted one's row is removed.
    with op.batch_alter_table('sandbox_user') as batch_op:
        batch_op.add_column(sa.Column('enabled', sa.Boolean(), server_default=sa.true(), nullable=False))
        batch_op.add_column(sa.Column('password_reset_on', sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table('sandbox_user') as batch_op:
        batch_op.drop_column('password_reset_on')
        batch_op.drop_column('enabled')
    with op.batch_alter_table('provider_operation') as batch_op:
        batch_op.drop_index('ix_provider_operation_target')
        batch_op.drop_column('target')

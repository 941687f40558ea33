"""two-factor authentication (TOTP, recovery codes)

Revision ID: 0007_mfa
Revises: 0006_event_log
Create Date: 2026-11-30 22:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0007_mfa'
down_revision = '0006_event_log'
branch_labels = None
depends_on = None


def upgrade():
    # A login's authenticator app (the TOTP secret encrypted at rest) and its one-time recovery codes (hashed).
    op.create_table('mfa_credential',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('secret', sa.String(length=255), nullable=False),
    sa.Column('enrolled_at', sa.DateTime(), nullable=False),
    sa.Column('last_step', sa.Integer(), nullable=True),
    sa.Column('last_used_at', sa.DateTime(), nullable=True),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['user_id'], ['ab_user.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('user_id')
    )
    with op.batch_alter_table('mfa_credential', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mfa_credential_account_id'), ['account_id'], unique=False)

    op.create_table('mfa_recovery_code',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('credential_id', sa.Integer(), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('used_at', sa.DateTime(), nullable=True),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['credential_id'], ['mfa_credential.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('credential_id', 'code_hash', name='uq_mfa_recovery_code_hash')
    )
    with op.batch_alter_table('mfa_recovery_code', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mfa_recovery_code_credential_id'), ['credential_id'], unique=False)


def downgrade():
    with op.batch_alter_table('mfa_recovery_code', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mfa_recovery_code_credential_id'))

    op.drop_table('mfa_recovery_code')
    with op.batch_alter_table('mfa_credential', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mfa_credential_account_id'))

    op.drop_table('mfa_credential')

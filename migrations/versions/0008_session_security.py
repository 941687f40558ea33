"""sessions that end for good; sign-in throttle

Revision ID: 0008_session_security
Revises: 0007_mfa
Create Date: 2026-11-30 22:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008_session_security'
down_revision = '0007_mfa'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'sign_in_throttle',
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('delay', sa.Integer(), nullable=False),
        sa.Column('locked_until', sa.BigInteger(), nullable=False),
        sa.Column('last_attempt', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('key'),
    )
    op.create_index('ix_sign_in_throttle_last_attempt', 'sign_in_throttle', ['last_attempt'], unique=False)
    with op.batch_alter_table('ab_user') as batch_op:
        batch_op.add_column(sa.Column('sessions_revoked_at', sa.DateTime(), nullable=True))
    with op.batch_alter_table('account') as batch_op:
        batch_op.add_column(sa.Column('sessions_revoked_at', sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table('account') as batch_op:
        batch_op.drop_column('sessions_revoked_at')
    with op.batch_alter_table('ab_user') as batch_op:
        batch_op.drop_column('sessions_revoked_at')
    op.drop_index('ix_sign_in_throttle_last_attempt', table_name='sign_in_throttle')
    op.drop_table('sign_in_throttle')

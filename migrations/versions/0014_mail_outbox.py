"""the mail outbox

Revision ID: 0014_mail_outbox
Revises: 0013_provider_operations
Create Date: 2026-12-01 08:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0014_mail_outbox'
down_revision = '0013_provider_operations'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'outbox_mail',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=40), nullable=False),
        sa.Column('recipient', sa.String(length=320), nullable=False),
        sa.Column('subject', sa.String(length=300), nullable=False),
        sa.Column('text_body', sa.Text(), nullable=True),
        sa.Column('html_body', sa.Text(), nullable=True),
        sa.Column('user_id', sa.Integer(), nullable=True),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(), nullable=False),
        sa.Column('claimed_until', sa.DateTime(), nullable=True),
        sa.Column('claim_token', sa.String(length=32), nullable=True),
        sa.Column('last_error', sa.String(length=500), nullable=True),
        sa.Column('sent_at', sa.DateTime(), nullable=True),
        sa.Column('created_on', sa.DateTime(), nullable=False),
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.CheckConstraint("state IN ('queued', 'sent', 'failed')", name='ck_outbox_mail_state'),
        sa.ForeignKeyConstraint(['account_id'], ['account.id'], ondelete='RESTRICT'),
        sa.ForeignKeyConstraint(['user_id'], ['ab_user.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_outbox_mail_account_id', 'outbox_mail', ['account_id'], unique=False)
    op.create_index('ix_outbox_mail_state_due', 'outbox_mail', ['state', 'next_attempt_at'], unique=False)
    op.create_index('ix_outbox_mail_user', 'outbox_mail', ['user_id'], unique=False)


def downgrade():
    op.drop_index('ix_outbox_mail_user', table_name='outbox_mail')
    op.drop_index('ix_outbox_mail_state_due', table_name='outbox_mail')
    op.drop_index('ix_outbox_mail_account_id', table_name='outbox_mail')
    op.drop_table('outbox_mail')

"""activation links

Revision ID: 0002_activation_links
Revises: 0001_initial
Create Date: 2026-11-24 00:51:40.197482

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0002_activation_links'
down_revision = '0001_initial'
branch_labels = None
depends_on = None


def upgrade():
    # The single-use "set your password" link of portal users.
    with op.batch_alter_table('ab_user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('activation_nonce', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('activation_sent_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('activation_error', sa.String(length=300), nullable=True))



def downgrade():
    # The single-use "set your password" link of portal users.
    with op.batch_alter_table('ab_user', schema=None) as batch_op:
        batch_op.drop_column('activation_error')
        batch_op.drop_column('activation_sent_at')
        batch_op.drop_column('activation_nonce')


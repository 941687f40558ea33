"""account name index

Revision ID: 0004_account_name_index
Revises: 0003_csp_provisioning
Create Date: 2026-11-24 03:23:45.448983

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0004_account_name_index'
down_revision = '0003_csp_provisioning'
branch_labels = None
depends_on = None


def upgrade():
    # Accounts ▸ List all sorts by name: an index lets a page of 100,000 accounts come from it.
    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.create_index('ix_account_name', ['name'], unique=False)



def downgrade():
    # Accounts ▸ List all sorts by name: an index lets a page of 100,000 accounts come from it.
    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.drop_index('ix_account_name')


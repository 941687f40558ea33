"""one licence change at a time per subscription: a lease

Revision ID: 0010_licence_lease
Revises: 0009_memberships
Create Date: 2026-12-01 04:45:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0010_licence_lease'
down_revision = '0009_memberships'
branch_labels = None
depends_on = None


def upgrade():
    # Plain ADD COLUMN on both databases (no rebuild of subscription on SQLite).
    op.add_column('subscription', sa.Column('licence_lease', sa.String(length=36), nullable=True))
    op.add_column('subscription', sa.Column('licence_lease_until', sa.DateTime(), nullable=True))


def downgrade():
    op.execute("ALTER TABLE subscription DROP COLUMN licence_lease_until")
    op.execute("ALTER TABLE subscription DROP COLUMN licence_lease")

"""issue 13 (ordering): schema changes of this part, if any

Revision ID: 0020_ordering
Revises: 0019_pricing
Create Date: 2026-12-01 12:00:00.000000

"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401


# revision identifiers, used by Alembic.
revision = '0020_ordering'
down_revision = '0019_pricing'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass

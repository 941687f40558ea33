"""issue 13 (windows): schema changes of this part, if any

Revision ID: 0021_windows
Revises: 0020_ordering
Create Date: 2026-12-01 12:00:00.000000

"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401


# revision identifiers, used by Alembic.
revision = '0021_windows'
down_revision = '0020_ordering'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass

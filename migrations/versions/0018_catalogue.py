"""issue 13 (catalogue): schema changes of this part, if any

Revision ID: 0018_catalogue
Revises: 0017_new_commerce
Create Date: 2026-12-01 12:00:00.000000

"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401


# revision identifiers, used by Alembic.
revision = '0018_catalogue'
down_revision = '0017_new_commerce'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass

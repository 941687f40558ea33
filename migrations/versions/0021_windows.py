"""issue 13 (windows): no schema change — the seat batches (seat_batch, sandbox_seat_batch) and
subscription.cancelled_at came with 0017_new_commerce; this revision keeps the chain

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

"""issue 13 (renewals): no schema change — a change scheduled for renewal uses Subscription.next_* and
SandboxSubscription.next_* (0017); a renewal is a SeatBatch of kind "renewal" (0017)

Revision ID: 0022_renewals
Revises: 0021_windows
Create Date: 2026-12-01 12:00:00.000000

"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401


# revision identifiers, used by Alembic.
revision = '0022_renewals'
down_revision = '0021_windows'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass

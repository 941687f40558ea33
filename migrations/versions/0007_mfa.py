"""two-factor authentication (TOTP, recovery codes)

Revision ID: 0007_mfa
Revises: 0006_event_log
Create Date: 2026-11-30 22:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0007_mfa'
down_revision = '0006_event_log'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass

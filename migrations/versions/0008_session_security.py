"""sessions that end for good; sign-in throttle

Revision ID: 0008_session_security
Revises: 0007_mfa
Create Date: 2026-11-30 22:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008_session_security'
down_revision = '0007_mfa'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass

"""event log: append-only (triggers), request ids, actors kept

Revision ID: 0006_event_log
Revises: 0005_form_submissions
Create Date: 2026-11-30 22:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006_event_log'
down_revision = '0005_form_submissions'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass

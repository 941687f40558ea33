"""durable background jobs: a heartbeat

Revision ID: 0011_job_heartbeat
Revises: 0010_licence_lease
Create Date: 2026-12-01 05:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0011_job_heartbeat'
down_revision = '0010_licence_lease'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('background_job', sa.Column('heartbeat_at', sa.DateTime(), nullable=True))


def downgrade():
    op.execute("ALTER TABLE background_job DROP COLUMN heartbeat_at")

"""tenants never stuck: when provisioning began

Revision ID: 0012_tenant_provisioning_since
Revises: 0011_job_heartbeat
Create Date: 2026-12-01 05:10:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0012_tenant_provisioning_since'
down_revision = '0011_job_heartbeat'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('microsoft_tenant', sa.Column('provisioning_since', sa.DateTime(), nullable=True))
    # A tenant provisioning now has been at it since it was asked for, as far as anyone knows.
    op.execute("UPDATE microsoft_tenant SET provisioning_since = created_on WHERE status = 'provisioning'")


def downgrade():
    op.execute("ALTER TABLE microsoft_tenant DROP COLUMN provisioning_since")

"""issue 15: a new tenant's admin credentials handed over through a one-time link (``credential_handover``, the
password stored only encrypted under a key the link's token is part of); Microsoft 365 users' first and last names
and usage location, in the portal and in the sandbox; the sandbox's first global admin of a tenant

Revision ID: 0024_handover_m365
Revises: 0023_billing
Create Date: 2026-12-01 17:20:00.000000

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0024_handover_m365"
down_revision = "0023_billing"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "credential_handover",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=True),
        sa.Column("user_name", sa.String(length=320), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("secret", sa.Text(), nullable=True),
        sa.Column("recipient_email", sa.String(length=320), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_on", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("opened_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["tenant_id"], ["microsoft_tenant.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["created_by_id"], ["ab_user.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index("ix_credential_handover_account_id", "credential_handover", ["account_id"])
    with op.batch_alter_table("m365_user") as batch:
        batch.add_column(sa.Column("first_name", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("last_name", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("usage_location", sa.String(length=2), nullable=True))
    with op.batch_alter_table("sandbox_user") as batch:
        batch.add_column(sa.Column("first_name", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("last_name", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("usage_location", sa.String(length=2), nullable=True))
        batch.add_column(sa.Column("is_global_admin", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade():
    with op.batch_alter_table("sandbox_user") as batch:
        batch.drop_column("is_global_admin")
        batch.drop_column("usage_location")
        batch.drop_column("last_name")
        batch.drop_column("first_name")
    with op.batch_alter_table("m365_user") as batch:
        batch.drop_column("usage_location")
        batch.drop_column("last_name")
        batch.drop_column("first_name")
    op.drop_index("ix_credential_handover_account_id", table_name="credential_handover")
    op.drop_table("credential_handover")

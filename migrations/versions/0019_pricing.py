"""issue 13 (pricing): at most one price rule per owner, level and reach

A unique index over (account_id, level, subscription_id, product_id, ms_product_id) would let duplicates through on
both databases (NULLs never clash), so the reach is spelt out in one column, ``reach``, and indexed with the owner
and level.

Revision ID: 0019_pricing
Revises: 0018_catalogue
Create Date: 2026-12-01 12:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0019_pricing'
down_revision = '0018_catalogue'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('price_rule') as batch:
        batch.add_column(sa.Column('reach', sa.String(length=80), nullable=False, server_default=''))
    op.execute(
        "UPDATE price_rule SET reach = 's:' || COALESCE(CAST(subscription_id AS VARCHAR(12)), '')"
        " || '|p:' || COALESCE(CAST(product_id AS VARCHAR(12)), '') || '|m:' || COALESCE(ms_product_id, '')"
    )
    with op.batch_alter_table('price_rule') as batch:
        batch.alter_column('reach', existing_type=sa.String(length=80), server_default=None)
        batch.create_index('uq_price_rule_reach', ['account_id', 'level', 'reach'], unique=True)


def downgrade():
    with op.batch_alter_table('price_rule') as batch:
        batch.drop_index('uq_price_rule_reach')
        batch.drop_column('reach')

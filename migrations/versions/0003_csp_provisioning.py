"""csp provisioning

Revision ID: 0003_csp_provisioning
Revises: 0002_activation_links
Create Date: 2026-11-24 01:17:50.997577

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0003_csp_provisioning'
down_revision = '0002_activation_links'
branch_labels = None
depends_on = None


def upgrade():
    # The sandbox CSP provider's own state, and the new-tenant request kept for Retry.
    op.create_table('sandbox_customer',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('domain_prefix', sa.String(length=27), nullable=False),
    sa.Column('company_name', sa.String(length=160), nullable=False),
    sa.Column('agreement_accepted_on', sa.Date(), nullable=True),
    sa.Column('created_on', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('domain_prefix'),
    sa.UniqueConstraint('tenant_id')
    )
    op.create_table('sandbox_subscription',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('subscription_id', sa.String(length=36), nullable=False),
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('offer_id', sa.String(length=64), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('auto_renew', sa.Boolean(), nullable=False),
    sa.Column('billing_cycle', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('purchased_on', sa.Date(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('subscription_id')
    )
    with op.batch_alter_table('sandbox_subscription', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sandbox_subscription_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('sandbox_user',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('user_principal_name', sa.String(length=320), nullable=False),
    sa.Column('display_name', sa.String(length=256), nullable=False),
    sa.Column('sku_ids', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('user_id'),
    sa.UniqueConstraint('user_principal_name')
    )
    with op.batch_alter_table('sandbox_user', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sandbox_user_tenant_id'), ['tenant_id'], unique=False)

    with op.batch_alter_table('microsoft_tenant', schema=None) as batch_op:
        batch_op.add_column(sa.Column('provisioning_request', sa.Text(), nullable=True))



def downgrade():
    # The sandbox CSP provider's own state, and the new-tenant request kept for Retry.
    with op.batch_alter_table('microsoft_tenant', schema=None) as batch_op:
        batch_op.drop_column('provisioning_request')

    with op.batch_alter_table('sandbox_user', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sandbox_user_tenant_id'))

    op.drop_table('sandbox_user')
    with op.batch_alter_table('sandbox_subscription', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sandbox_subscription_tenant_id'))

    op.drop_table('sandbox_subscription')
    op.drop_table('sandbox_customer')

"""one login, many customers: memberships

Every customer-portal login becomes a login owned by its reseller with one membership: in the customer account it
belonged to, with its flags (Admin, Master Admin, CP3 enabled) and its status. Ids stay, so events, sessions,
widgets and jobs that name a login keep naming it; the session's account is chosen again at its next request (the
only one). The flags leave ``ab_user``; so do a customer login's per-user roles (its role is its membership's).

Revision ID: 0009_memberships
Revises: 0008_session_security
Create Date: 2026-12-01 04:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009_memberships'
down_revision = '0008_session_security'
branch_labels = None
depends_on = None

_FLAGS = ('is_admin', 'is_master_admin', 'cp3_enabled')


def upgrade():
    op.create_table(
        'membership',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('is_admin', sa.Boolean(), nullable=False),
        sa.Column('is_master_admin', sa.Boolean(), nullable=False),
        sa.Column('cp3_enabled', sa.Boolean(), nullable=False),
        sa.Column('active', sa.Boolean(), nullable=False),
        sa.Column('created_on', sa.DateTime(), nullable=False),
        sa.Column('deleted_at', sa.DateTime(), nullable=True),
        sa.Column('last_used_at', sa.DateTime(), nullable=True),
        sa.Column('sessions_revoked_at', sa.DateTime(), nullable=True),
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['account_id'], ['account.id'], ondelete='RESTRICT'),
        sa.ForeignKeyConstraint(['user_id'], ['ab_user.id'], ondelete='RESTRICT'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('account_id', 'user_id', name='uq_membership_account_user'),
    )
    op.create_index('ix_membership_user', 'membership', ['user_id', 'last_used_at'], unique=False)

    # One membership per customer-portal login, in the account it belonged to. The login's own "disabled" was the
    # customer's decision: it moves to the membership (a deleted login stays deleted, its membership with it).
    op.execute(
        """
        INSERT INTO membership (user_id, account_id, is_admin, is_master_admin, cp3_enabled, active, created_on,
                                deleted_at, last_used_at, sessions_revoked_at)
        SELECT u.id, u.account_id, u.is_admin OR u.is_master_admin, u.is_master_admin, u.cp3_enabled, u.active,
               COALESCE(u.created_on, CURRENT_TIMESTAMP), u.deleted_at, u.last_login, u.sessions_revoked_at
        FROM ab_user u
        WHERE u.portal = 'customer'
        """
    )
    op.execute(
        sa.text("UPDATE ab_user SET active = :yes WHERE portal = 'customer' AND deleted_at IS NULL").bindparams(
            yes=True
        )
    )
    # The login belongs to the customer's reseller (a reseller's own customer-portal logins: already its own).
    op.execute(
        """
        UPDATE ab_user SET account_id = (SELECT a.parent_id FROM account a WHERE a.id = ab_user.account_id)
        WHERE portal = 'customer'
          AND account_id IN (SELECT a.id FROM account a WHERE a.kind = 'customer')
        """
    )
    op.execute(
        "DELETE FROM ab_user_role WHERE user_id IN (SELECT u.id FROM ab_user u WHERE u.portal = 'customer')"
    )
    # A second factor follows its login (its account column records the login's owner).
    op.execute(
        "UPDATE mfa_credential SET account_id = (SELECT u.account_id FROM ab_user u WHERE u.id = mfa_credential.user_id)"
    )
    op.execute(
        """
        UPDATE mfa_recovery_code SET account_id =
            (SELECT c.account_id FROM mfa_credential c WHERE c.id = mfa_recovery_code.credential_id)
        """
    )
    # Plain ALTER TABLE … DROP COLUMN on both databases (SQLite 3.35+): no table rebuild of ab_user, which every
    # login-naming table references.
    for column in _FLAGS:
        op.execute(f"ALTER TABLE ab_user DROP COLUMN {column}")


def downgrade():
    for column in _FLAGS:
        op.add_column('ab_user', sa.Column(column, sa.Boolean(), nullable=False, server_default=sa.false()))
    # Each login back in the account of its first membership, with that membership's flags and status.
    first = "(SELECT MIN(m.id) FROM membership m WHERE m.user_id = ab_user.id)"
    for column in (*_FLAGS, 'account_id', 'active'):
        op.execute(
            f"UPDATE ab_user SET {column} = (SELECT m.{column} FROM membership m WHERE m.id = {first}) "
            f"WHERE portal = 'customer' AND {first} IS NOT NULL"
        )
    op.execute(
        "UPDATE mfa_credential SET account_id = (SELECT u.account_id FROM ab_user u WHERE u.id = mfa_credential.user_id)"
    )
    op.execute(
        """
        UPDATE mfa_recovery_code SET account_id =
            (SELECT c.account_id FROM mfa_credential c WHERE c.id = mfa_recovery_code.credential_id)
        """
    )
    # Per-user roles again, from the flags.
    for role, condition in (
        ('Customer Master Admin', 'u.is_master_admin'),
        ('Customer Admin', 'u.is_admin AND NOT u.is_master_admin'),
        ('Customer User', 'NOT u.is_admin AND NOT u.is_master_admin'),
    ):
        op.execute(
            f"""
            INSERT INTO ab_user_role (id, user_id, role_id)
            SELECT (SELECT COALESCE(MAX(id), 0) FROM ab_user_role) + ROW_NUMBER() OVER (ORDER BY u.id), u.id, r.id
            FROM ab_user u JOIN ab_role r ON r.name = '{role}'
            WHERE u.portal = 'customer' AND {condition}
            """
        )
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("SELECT setval('ab_user_role_id_seq', (SELECT COALESCE(MAX(id), 1) FROM ab_user_role))")
    op.drop_index('ix_membership_user', table_name='membership')
    op.drop_table('membership')
    # The flags keep a server default of false: removing it would rebuild ab_user on SQLite.

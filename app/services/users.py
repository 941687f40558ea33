"""Portal users: creation with the role their portal and flags give."""

from __future__ import annotations

from app.extensions import appbuilder, db
from app.models.accounts import CUSTOMER, OPERATOR, RESELLER, Account
from app.services.events import record_event
from security.models import CUSTOMER_PORTAL, OPERATOR_PORTAL, PARTNER_PORTAL, PortalUser
from security.permissions import role_for

_PORTAL_OF = {OPERATOR: OPERATOR_PORTAL, RESELLER: PARTNER_PORTAL, CUSTOMER: CUSTOMER_PORTAL}


class UserError(ValueError):
    """A user cannot be created or changed as asked; the message says why, for the form."""


def sync_role(user: PortalUser) -> None:
    """Give ``user`` exactly the role its portal and flags call for."""
    name = role_for(user.portal, csp_admin=user.is_csp_admin, admin=user.is_admin, master_admin=user.is_master_admin)
    role = appbuilder.sm.find_role(name)
    if role is None:
        raise UserError(f"role {name} is missing: run `flask portal sync-roles`")
    user.roles = [role]


def email_taken(email: str) -> bool:
    from security import scoping

    with scoping.bypass("email uniqueness"):
        return db.session.query(PortalUser.id).filter(PortalUser.email == email.strip().lower()).first() is not None


def create_user(
    account: Account,
    email: str,
    first_name: str,
    last_name: str,
    *,
    password: str | None = None,
    hashed_password: str | None = None,
    csp_admin: bool = False,
    admin: bool = False,
    master_admin: bool = False,
    cp3_enabled: bool = False,
    mobile: str | None = None,
) -> PortalUser:
    """A login on ``account``'s portal. Emails are unique among real logins, case-insensitively."""
    if email_taken(email):
        raise UserError(f"{email} is already used by another login")
    portal = _PORTAL_OF[account.kind]
    user = appbuilder.sm.add_user(
        username=email,
        first_name=first_name,
        last_name=last_name,
        email=email,
        password=password or "",
        hashed_password=hashed_password or "",
        commit=False,
        account=account,
        portal=portal,
        is_csp_admin=csp_admin and portal == PARTNER_PORTAL,
        is_admin=(admin or master_admin) and portal == CUSTOMER_PORTAL,
        is_master_admin=master_admin and portal == CUSTOMER_PORTAL,
        cp3_enabled=cp3_enabled and portal == CUSTOMER_PORTAL,
        mobile=mobile,
    )
    if user is False:
        raise UserError(f"could not create {email}")
    sync_role(user)
    record_event("user.created", account_id=account.id, target=user, summary=f"Created {portal} user {user.email}")
    return user

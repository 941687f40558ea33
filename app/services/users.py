"""Portal users: creating, editing, enabling, disabling and (softly) deleting them, with the rules of the guide's
Users tab. Callers load the account and users through the scope; these functions never commit half a change."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from sqlalchemy import select

from app.extensions import appbuilder, db
from app.models.accounts import CUSTOMER, OPERATOR, RESELLER, Account, PlaceholderUser
from app.models.base import utcnow
from app.services.events import record_event
from security import scoping
from security.models import CUSTOMER_PORTAL, DELETED_MARK, OPERATOR_PORTAL, PARTNER_PORTAL, PortalUser
from security.passwords import hash_password, password_problem
from security.permissions import role_for

_PORTAL_OF = {OPERATOR: OPERATOR_PORTAL, RESELLER: PARTNER_PORTAL, CUSTOMER: CUSTOMER_PORTAL}


class UserError(ValueError):
    """A change refused; ``field`` names the form field the message belongs beside (None: the whole form)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def sync_role(user: PortalUser) -> None:
    """Give ``user`` exactly the role its portal and flags call for."""
    name = role_for(user.portal, csp_admin=user.is_csp_admin, admin=user.is_admin, master_admin=user.is_master_admin)
    role = appbuilder.sm.find_role(name)
    if role is None:
        raise UserError(f"Role {name} is missing: run `flask portal sync-roles`.")
    user.roles = [role]


def email_owner_id(email: str) -> int | None:
    """The id of the login using ``email`` in any tenant (deleted ones too): emails are unique case-insensitively.
    Only the id is read, so no other tenant's row enters the session."""
    with scoping.bypass("email uniqueness"):
        return db.session.scalar(select(PortalUser.id).where(PortalUser.email == email.strip().lower()))


def _is_placeholder_address(address: str) -> bool:
    return address == current_app.config["DEFAULT_MASTER_ADMIN_EMAIL"].strip().lower()


def plus_address(address: str, company: str) -> str:
    """``itsupport@reseller.co.nz`` + "Harbour Hops" → ``itsupport+harbourhops@reseller.co.nz``: one mailbox, a
    login address of its own (Microsoft 365, Google and most mail systems deliver plus addresses)."""
    local, _, domain = address.partition("@")
    tag = "".join(ch for ch in company.lower() if ch.isascii() and ch.isalnum())[:30] or "customer"
    return f"{local.split('+')[0]}+{tag}@{domain}"


def login_email_problem(
    email: str, user_id: int | None = None, *, placeholder_id: int | None = None, company: str = ""
) -> str | None:
    """Why ``email`` cannot be (or become) a login's address, or None. Logins are unique case-insensitively; the
    default master admin address is nobody's; a master admin waiting for Activate (CP3) holds its address too, so
    that the second customer set up with the same IT support address hears it now, not at activation."""
    address = email.strip().lower()
    if _is_placeholder_address(address):
        return (
            f"{address} is the portal's stand-in for a master admin, not a person's address: enter the user's own "
            "email."
        )
    owner = email_owner_id(address)
    with scoping.bypass("email uniqueness"):
        waiting = db.session.scalar(
            select(PlaceholderUser.id).where(
                PlaceholderUser.email == address, PlaceholderUser.id != (placeholder_id or 0)
            )
        )
    if (owner is not None and owner != user_id) or waiting is not None:
        hint = ""
        if company:
            hint = f" For a shared mailbox use a plus address, for example {plus_address(address, company)}."
        return f"{address} is already used by another login. Each login needs its own email address.{hint}"
    return None


def _check_email_free(email: str, user_id: int | None = None, **kwargs) -> None:
    problem = login_email_problem(email, user_id, **kwargs)
    if problem:
        raise UserError(problem, "email")


def check_password(password: str, email: str = "") -> None:
    problem = password_problem(password, email=email)
    if problem:
        raise UserError(problem, "password")


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
    placeholder_id: int | None = None,
    portal: str | None = None,
) -> PortalUser:
    """A login on ``account``'s portal (flushed, not committed). ``portal=CUSTOMER_PORTAL`` on a reseller: a login
    to the reseller's own customer portal (the guide's CUSTOMER PORTAL USERS on the reseller's Users tab)."""
    _check_email_free(email, placeholder_id=placeholder_id, company=account.name if account.kind == CUSTOMER else "")
    portal = portal or _PORTAL_OF[account.kind]
    if portal != _PORTAL_OF[account.kind] and not (portal == CUSTOMER_PORTAL and account.kind == RESELLER):
        raise UserError(f"{account.name} has no {portal} portal users.")
    user = appbuilder.sm.add_user(
        username=email,
        first_name=first_name.strip(),
        last_name=last_name.strip(),
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
        mobile=(mobile or "").strip() or None,
    )
    if user is False:  # FAB swallowed a database refusal: most likely the same address, added a moment ago
        if email_owner_id(email) is not None:
            raise UserError(login_email_problem(email) or f"{email} is already used by another login.", "email")
        raise UserError(f"Could not create {email}.")
    sync_role(user)
    record_event("user.created", account_id=account.id, target=user, summary=f"Created {portal} user {user.email}")
    return user


def active_master_admins(customer_id: int, excluding: int | None = None) -> int:
    query = db.session.query(PortalUser.id).filter(
        PortalUser.account_id == customer_id,
        PortalUser.is_master_admin.is_(True),
        PortalUser.active.is_(True),
        PortalUser.deleted_at.is_(None),
    )
    if excluding is not None:
        query = query.filter(PortalUser.id != excluding)
    return query.count()


def _keep_a_master_admin(user: PortalUser, what: str) -> None:
    still_master = user.portal == CUSTOMER_PORTAL and user.is_master_admin and user.active and not user.deleted_at
    if still_master and active_master_admins(user.account_id, excluding=user.id) == 0:
        raise UserError(
            f"{user.email} is the last active Master Admin of {user.account.name}, so it cannot be "
            f"{what}. Make another user Master Admin first."
        )


@dataclass
class UserChanges:
    first_name: str
    last_name: str
    email: str
    mobile: str | None = None
    admin: bool = False
    master_admin: bool = False
    csp_admin: bool = False


def update_user(user: PortalUser, changes: UserChanges) -> None:
    """Edit name, email, mobile and the flags of the guide's tables (flushed, not committed)."""
    email = changes.email.strip().lower()
    _check_email_free(email, user.id)
    if user.portal == CUSTOMER_PORTAL and user.is_master_admin and not changes.master_admin:
        _keep_a_master_admin(user, "demoted")
    before = (user.get_full_name(), user.email, user.mobile, user.is_admin, user.is_master_admin, user.is_csp_admin)
    user.first_name, user.last_name = changes.first_name.strip(), changes.last_name.strip()
    user.email = user.username = email
    user.mobile = (changes.mobile or "").strip() or None
    if user.portal == CUSTOMER_PORTAL:
        user.is_master_admin = changes.master_admin
        user.is_admin = changes.admin or changes.master_admin
    elif user.portal == PARTNER_PORTAL:
        user.is_csp_admin = changes.csp_admin
    sync_role(user)
    after = (user.get_full_name(), user.email, user.mobile, user.is_admin, user.is_master_admin, user.is_csp_admin)
    labels = ("name", "email", "mobile", "admin", "master admin", "CSP admin")
    diff = "; ".join(
        f"{label}: {old!r} → {new!r}" for label, old, new in zip(labels, before, after, strict=True) if old != new
    )
    record_event(
        "user.updated", account_id=user.account_id, target=user, summary=f"{user.email}: {diff or 'no change'}"
    )


def set_enabled(user: PortalUser, enabled: bool) -> None:
    if user.deleted_at is not None:
        raise UserError(f"{user.email} has been deleted.")
    if bool(user.active) == enabled:
        raise UserError(f"{user.email} is already {'enabled' if enabled else 'disabled'}.")  # a repeated click
    if not enabled:
        _keep_a_master_admin(user, "disabled")
        user.sessions_revoked_at = utcnow()  # its sessions end for good: enabling it again revives none
    user.active = enabled
    verb = "enabled" if enabled else "disabled"
    record_event(f"user.{verb}", account_id=user.account_id, target=user, summary=f"{user.email} {verb}")


def soft_delete(user: PortalUser) -> None:
    """The user can no longer sign in; the row, its history and its events stay."""
    _keep_a_master_admin(user, "deleted")
    address = user.email
    user.active = False
    user.deleted_at = user.sessions_revoked_at = utcnow()
    user.activation_nonce = None
    # The row and its history stay; the address is freed, so the person can be added again (here or elsewhere).
    user.email = user.username = f"{address}{DELETED_MARK}{user.id}"
    record_event("user.deleted", account_id=user.account_id, target=user, summary=f"{address} deleted")


def set_password(user: PortalUser, password: str) -> None:
    check_password(password, user.email)
    user.password = hash_password(password)
    user.password_set_at = utcnow()
    user.activation_nonce = None
    record_event("user.password_set", account_id=user.account_id, target=user, summary=f"New password for {user.email}")


def update_placeholder(
    placeholder: PlaceholderUser, first_name: str, last_name: str, email: str, mobile: str | None
) -> None:
    before = f"{placeholder.name} <{placeholder.email}>"
    address = email.strip().lower()
    if address != placeholder.email and not _is_placeholder_address(address):
        _check_email_free(address, placeholder_id=placeholder.id, company=placeholder.account.name)
    placeholder.first_name, placeholder.last_name = first_name.strip(), last_name.strip()
    placeholder.email = email.strip().lower()
    placeholder.mobile = (mobile or "").strip() or None
    record_event(
        "user.placeholder_updated",
        account_id=placeholder.account_id,
        target=placeholder,
        summary=f"{before} → {placeholder.name} <{placeholder.email}>",
    )


def delete_placeholder(placeholder: PlaceholderUser) -> None:
    record_event(
        "user.placeholder_deleted",
        account_id=placeholder.account_id,
        target=placeholder,
        summary=f"Removed {placeholder.name} <{placeholder.email}> (never activated)",
    )
    db.session.delete(placeholder)


def enable_customer_portal(user: PortalUser) -> None:
    """Activate (CP3): the user may enter the customer portal (directly once a password is set, or by Launch)."""
    user.cp3_enabled = True
    record_event(
        "user.cp3_enabled",
        account_id=user.account_id,
        target=user,
        summary=f"{user.email} enabled for the customer portal",
    )


def activate_placeholder(placeholder: PlaceholderUser) -> PortalUser:
    """The placeholder becomes a real, CP3-enabled login with its flags; the placeholder row goes."""
    customer = placeholder.account
    user = create_user(
        customer,
        placeholder.email,
        placeholder.first_name,
        placeholder.last_name,
        mobile=placeholder.mobile,
        admin=placeholder.is_admin,
        master_admin=placeholder.is_master_admin,
        cp3_enabled=True,
        placeholder_id=placeholder.id,
    )
    record_event(
        "user.cp3_enabled",
        account_id=customer.id,
        target=user,
        summary=f"Master admin {user.email} activated for the customer portal",
    )
    db.session.delete(placeholder)
    return user

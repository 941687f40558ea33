"""Portal users: creating, editing, enabling, disabling and (softly) deleting them, with the rules of the guide's
Users tab. Callers load the account and users through the scope; these functions never commit half a change."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from sqlalchemy import func, select

from app.extensions import appbuilder, db
from app.models.accounts import CUSTOMER, OPERATOR, RESELLER, Account, PlaceholderUser
from app.models.base import utcnow
from app.services.events import record_event, record_login_event
from security import scoping
from security.models import CUSTOMER_PORTAL, DELETED_MARK, OPERATOR_PORTAL, PARTNER_PORTAL, Membership, PortalUser
from security.passwords import hash_password, password_problem
from security.permissions import role_for

_PORTAL_OF = {OPERATOR: OPERATOR_PORTAL, RESELLER: PARTNER_PORTAL, CUSTOMER: CUSTOMER_PORTAL}


class UserError(ValueError):
    """A change refused; ``field`` names the form field the message belongs beside (None: the whole form)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def sync_role(user: PortalUser) -> None:
    """Give a staff login exactly the role its portal and flags call for. A customer-portal login holds no role of its
    own: each of its memberships gives one, in its account (``PortalSecurityManager.get_user_roles``)."""
    if user.portal == CUSTOMER_PORTAL:
        user.roles = []
        return
    name = role_for(user.portal, csp_admin=user.is_csp_admin)
    role = appbuilder.sm.find_role(name)
    if role is None:
        raise UserError(f"Role {name} is missing: run `flask portal sync-roles`.")
    user.roles = [role]


def reseller_of(account: Account) -> int | None:
    """The reseller whose tree ``account`` is in: itself (its own customer portal) or its parent."""
    if account.kind == RESELLER:
        return account.id
    if account.kind == CUSTOMER:
        return account.parent_id
    return None


def email_owner_id(email: str) -> int | None:
    """The id of the login using ``email`` in any tenant (deleted ones too): emails are unique case-insensitively.
    Only the id is read, so no other tenant's row enters the session."""
    with scoping.bypass("email uniqueness"):
        return db.session.scalar(select(PortalUser.id).where(PortalUser.email == email.strip().lower()))


def _joinable_login_id(email: str, reseller_id: int | None) -> int | None:
    """The id of the customer-portal login using ``email`` that a customer of ``reseller_id`` may give access to (one
    it owns, enabled, not deleted), else None. Only ids are read."""
    if reseller_id is None:
        return None
    with scoping.bypass("email uniqueness"):
        return db.session.scalar(
            select(PortalUser.id).where(
                PortalUser.email == email.strip().lower(),
                PortalUser.portal == CUSTOMER_PORTAL,
                PortalUser.account_id == reseller_id,
                PortalUser.active.is_(True),
                PortalUser.deleted_at.is_(None),
            )
        )


def _is_placeholder_address(address: str) -> bool:
    return address == current_app.config["DEFAULT_MASTER_ADMIN_EMAIL"].strip().lower()


def plus_address(address: str, company: str) -> str:
    """``itsupport@reseller.co.nz`` + "Harbour Hops" → ``itsupport+harbourhops@reseller.co.nz``: one mailbox, a
    login address of its own (Microsoft 365, Google and most mail systems deliver plus addresses)."""
    local, _, domain = address.partition("@")
    tag = "".join(ch for ch in company.lower() if ch.isascii() and ch.isalnum())[:30] or "customer"
    return f"{local.split('+')[0]}+{tag}@{domain}"


def unavailable(address: str, company: str = "") -> str:
    """THE answer for an address that cannot be used, whoever holds it — another reseller's login, a staff login, one
    of ours that is disabled: nothing in it tells them apart."""
    hint = ""
    if company:
        hint = f" For a shared mailbox use a plus address, for example {plus_address(address, company)}."
    return f"{address} is already used by another login. Each login needs its own email address.{hint}"


def login_email_problem(
    email: str,
    user_id: int | None = None,
    *,
    placeholder_id: int | None = None,
    company: str = "",
    reseller_id: int | None = None,
) -> str | None:
    """Why ``email`` cannot be (or become) a login's address, or None. Logins are unique case-insensitively; the
    default master admin address is nobody's. With ``reseller_id`` (giving a customer of that reseller a user), an
    address of a customer-portal login that reseller owns is fine — the person gets access to one more account — and
    so is one that another of its customers' master admins waits with (the guide's IT-support address, on every new
    customer); anyone else's is unavailable, with the same answer whoever holds it."""
    address = email.strip().lower()
    if _is_placeholder_address(address):
        return (
            f"{address} is the portal's stand-in for a master admin, not a person's address: enter the user's own "
            "email."
        )
    owner = email_owner_id(address)
    if owner is not None and owner != user_id and owner != _joinable_login_id(address, reseller_id):
        return unavailable(address, company)
    with scoping.bypass("email uniqueness"):
        waiting = db.session.scalars(
            select(Account.parent_id)
            .join(PlaceholderUser, PlaceholderUser.account_id == Account.id)
            .where(PlaceholderUser.email == address, PlaceholderUser.id != (placeholder_id or 0))
        ).all()
    if any(parent != reseller_id for parent in waiting) or (waiting and reseller_id is None):
        return unavailable(address, company)
    return None


def _check_email_free(email: str, user_id: int | None = None, **kwargs) -> None:
    problem = login_email_problem(email, user_id, **kwargs)
    if problem:
        raise UserError(problem, "email")


def check_password(password: str, email: str = "") -> None:
    problem = password_problem(password, email=email)
    if problem:
        raise UserError(problem, "password")


@dataclass
class Added:
    """What adding a customer-portal user did: the login (new, or the person's own), and its membership here."""

    login: PortalUser
    membership: Membership
    new_login: bool


def add_member(
    account: Account,
    email: str,
    first_name: str,
    last_name: str,
    *,
    admin: bool = False,
    master_admin: bool = False,
    cp3_enabled: bool = False,
    mobile: str | None = None,
    password: str | None = None,
    hashed_password: str | None = None,
    placeholder_id: int | None = None,
) -> Added:
    """Give a person access to ``account``'s customer portal (flushed, not committed). An address of a login its
    reseller already owns adds a membership to that login (the person keeps one password and one second factor; the
    name typed here does not change theirs); a new address makes a login, owned by the reseller, with its first
    membership. Anyone else's address is refused as unavailable."""
    if account.kind not in (CUSTOMER, RESELLER):
        raise UserError(f"{account.name} has no customer portal users.")
    reseller_id = reseller_of(account)
    address = email.strip().lower()
    _check_email_free(
        address,
        placeholder_id=placeholder_id,
        company=account.name if account.kind == CUSTOMER else "",
        reseller_id=reseller_id,
    )
    login_id = _joinable_login_id(address, reseller_id)
    flags = {
        "is_admin": bool(admin or master_admin),
        "is_master_admin": bool(master_admin),
        "cp3_enabled": bool(cp3_enabled),
    }
    if login_id is not None:
        with scoping.bypass("adding an existing login of this reseller to one of its accounts: ids only"):
            row = db.session.execute(
                select(Membership.id, Membership.deleted_at).where(
                    Membership.account_id == account.id, Membership.user_id == login_id
                )
            ).first()
        if row is not None and row.deleted_at is None:
            raise UserError(f"{address} is already a user of {account.name}.", "email")
        if row is not None:  # removed once: the same membership comes back, its history with it
            with scoping.bypass("a removed membership of this account comes back (its login is not in scope yet)"):
                membership = db.session.get(Membership, row.id)
                membership.deleted_at = None
                membership.active = True
                for key, value in flags.items():
                    setattr(membership, key, value)
                db.session.flush([membership])
        else:
            membership = Membership(account=account, user_id=login_id, **flags)
            db.session.add(membership)
        db.session.flush()
        login = membership.user
        record_event(
            "user.membership_added",
            account_id=account.id,
            target=login,
            summary=f"{login.email} now has access to {account.name} ({membership.role_name})",
        )
        return Added(login, membership, new_login=False)
    with scoping.bypass("a new person for a customer portal: the login belongs to the account's reseller"):
        login = appbuilder.sm.add_user(
            username=address,
            first_name=first_name.strip(),
            last_name=last_name.strip(),
            email=address,
            password=password or "",
            hashed_password=hashed_password or "",
            commit=False,
            account=db.session.get(Account, reseller_id),
            portal=CUSTOMER_PORTAL,
            mobile=(mobile or "").strip() or None,
        )
        if login is False:  # FAB swallowed a database refusal: most likely the same address, added a moment ago
            raise UserError(unavailable(address), "email")
        membership = Membership(account=account, user=login, **flags)
        db.session.add(membership)
        db.session.flush([login, membership])  # here, under the bypass: the login is not the caller's scope's
    record_event(
        "user.created",
        account_id=account.id,
        target=login,
        summary=f"Created customer user {login.email} ({membership.role_name})",
    )
    return Added(login, membership, new_login=True)


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
    """A login on ``account``'s portal (flushed, not committed). ``portal=CUSTOMER_PORTAL`` (a customer's, or a
    reseller's own customer portal): ``add_member``, returning the login."""
    portal = portal or _PORTAL_OF[account.kind]
    if portal == CUSTOMER_PORTAL:
        return add_member(
            account,
            email,
            first_name,
            last_name,
            admin=admin,
            master_admin=master_admin,
            cp3_enabled=cp3_enabled,
            mobile=mobile,
            password=password,
            hashed_password=hashed_password,
            placeholder_id=placeholder_id,
        ).login
    if portal != _PORTAL_OF[account.kind]:
        raise UserError(f"{account.name} has no {portal} portal users.")
    _check_email_free(email, placeholder_id=placeholder_id)
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
        mobile=(mobile or "").strip() or None,
    )
    if user is False:  # FAB swallowed a database refusal: most likely the same address, added a moment ago
        if email_owner_id(email) is not None:
            raise UserError(login_email_problem(email) or unavailable(email.strip().lower()), "email")
        raise UserError(f"Could not create {email}.")
    sync_role(user)
    record_event("user.created", account_id=account.id, target=user, summary=f"Created {portal} user {user.email}")
    return user


def membership_of(account: Account, user_id) -> Membership | None:
    """The (not deleted) membership of login ``user_id`` in ``account``, through the scope."""
    return db.session.scalar(
        select(Membership).where(
            Membership.account_id == account.id, Membership.user_id == user_id, Membership.deleted_at.is_(None)
        )
    )


def members_of(account: Account) -> list[Membership]:
    """``account``'s customer portal users: its memberships (not deleted), by name, each with its login."""
    return list(
        db.session.scalars(
            select(Membership)
            .join(PortalUser, PortalUser.id == Membership.user_id)
            .where(Membership.account_id == account.id, Membership.deleted_at.is_(None))
            .order_by(func.lower(PortalUser.first_name), func.lower(PortalUser.last_name), PortalUser.id)
        ).unique()
    )


def active_master_admins(customer_id: int, excluding: int | None = None) -> int:
    """Enabled Master Admin memberships of ``customer_id`` (``excluding`` a membership id)."""
    query = (
        select(func.count(Membership.id))
        .join(PortalUser, PortalUser.id == Membership.user_id)
        .where(
            Membership.account_id == customer_id,
            Membership.is_master_admin.is_(True),
            Membership.active.is_(True),
            Membership.deleted_at.is_(None),
            PortalUser.active.is_(True),
            PortalUser.deleted_at.is_(None),
        )
    )
    if excluding is not None:
        query = query.where(Membership.id != excluding)
    return db.session.scalar(query) or 0


def _keep_a_master_admin(membership: Membership, what: str) -> None:
    still_master = membership.is_master_admin and membership.active and not membership.deleted_at
    if still_master and active_master_admins(membership.account_id, excluding=membership.id) == 0:
        raise UserError(
            f"{membership.email} is the last active Master Admin of {membership.account.name}, so it cannot be "
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


def _login_fields(user: PortalUser, changes: UserChanges) -> list[str]:
    """Apply name, email and mobile to a login; what changed, for the event."""
    email = changes.email.strip().lower()
    if email != user.email:
        _check_email_free(email, user.id)
    before = (user.get_full_name(), user.email, user.mobile)
    user.first_name, user.last_name = changes.first_name.strip(), changes.last_name.strip()
    user.email = user.username = email
    user.mobile = (changes.mobile or "").strip() or None
    after = (user.get_full_name(), user.email, user.mobile)
    return [
        f"{label}: {old!r} → {new!r}"
        for label, old, new in zip(("name", "email", "mobile"), before, after, strict=True)
        if old != new
    ]


def update_user(user: PortalUser, changes: UserChanges) -> None:
    """Edit a staff login: name, email, mobile and (partner) CSP Admin (flushed, not committed)."""
    if user.portal == CUSTOMER_PORTAL:
        raise UserError("A customer portal user is edited through one of their accounts.")
    before_csp = user.is_csp_admin
    diff = _login_fields(user, changes)
    if user.portal == PARTNER_PORTAL:
        user.is_csp_admin = changes.csp_admin
        if before_csp != user.is_csp_admin:
            diff.append(f"CSP admin: {before_csp!r} → {user.is_csp_admin!r}")
    sync_role(user)
    record_event(
        "user.updated",
        account_id=user.account_id,
        target=user,
        summary=f"{user.email}: {'; '.join(diff) or 'no change'}",
    )


def login_is_theirs_alone(membership: Membership) -> bool:
    """Does the login of ``membership`` work in this account only (no other membership, even a disabled one)? Then
    whoever manages this account's users may correct its name, email and mobile too; a login shared with other
    accounts is changed only by the person, its reseller's CSP Admins and operator staff."""
    with scoping.bypass("does this login work elsewhere: a count"):
        others = db.session.scalar(
            select(func.count(Membership.id)).where(
                Membership.user_id == membership.user_id,
                Membership.id != membership.id,
                Membership.deleted_at.is_(None),
            )
        )
    return not others


def update_member(membership: Membership, changes: UserChanges, *, login_too: bool) -> None:
    """Edit a customer portal user in one account: that membership's Admin and Master Admin, and (``login_too``, the
    caller's policy decided it) the login's name, email and mobile. Flushed, not committed."""
    if membership.is_master_admin and not changes.master_admin:
        _keep_a_master_admin(membership, "demoted")
    diff: list[str] = []
    if login_too:
        with scoping.bypass("the login of a customer portal user, edited by someone allowed to"):
            diff = _login_fields(membership.user, changes)
            db.session.flush([membership.user])  # the login alone, under the bypass
    before = (membership.is_admin, membership.is_master_admin)
    membership.is_master_admin = changes.master_admin
    membership.is_admin = changes.admin or changes.master_admin
    # No session needs ending: a session's role is its membership's, read again on every request.
    for label, old, new in zip(
        ("admin", "master admin"), before, (membership.is_admin, membership.is_master_admin), strict=True
    ):
        if old != new:
            diff.append(f"{label}: {old!r} → {new!r}")
    record_event(
        "user.updated",
        account_id=membership.account_id,
        target=membership.user,
        summary=f"{membership.email} in {membership.account.name}: {'; '.join(diff) or 'no change'}",
    )


def set_enabled(user: PortalUser, enabled: bool) -> None:
    """Enable or disable a staff login."""
    if user.deleted_at is not None:
        raise UserError(f"{user.email} has been deleted.")
    if bool(user.active) == enabled:
        raise UserError(f"{user.email} is already {'enabled' if enabled else 'disabled'}.")  # a repeated click
    if not enabled:
        user.sessions_revoked_at = utcnow()  # its sessions end for good: enabling it again revives none
    user.active = enabled
    verb = "enabled" if enabled else "disabled"
    record_event(f"user.{verb}", account_id=user.account_id, target=user, summary=f"{user.email} {verb}")


def set_member_enabled(membership: Membership, enabled: bool) -> None:
    """Enable or disable one customer portal user in one account: their other accounts are untouched; sessions
    working here end at their next request, and enabling it again revives none of them."""
    if membership.deleted_at is not None:
        raise UserError(f"{membership.email} has been deleted.")
    if bool(membership.active) == enabled:
        raise UserError(f"{membership.email} is already {'enabled' if enabled else 'disabled'}.")  # a repeated click
    if not enabled:
        _keep_a_master_admin(membership, "disabled")
        membership.sessions_revoked_at = utcnow()
    membership.active = enabled
    verb = "enabled" if enabled else "disabled"
    record_event(
        f"user.{verb}",
        account_id=membership.account_id,
        target=membership.user,
        summary=f"{membership.email} {verb} in {membership.account.name}",
    )


def remove_member(membership: Membership) -> None:
    """Delete a customer portal user from one account: the membership goes (its row and history stay); sessions
    working here end. A login left with no account is deleted too, freeing its address."""
    _keep_a_master_admin(membership, "deleted")
    login = membership.user
    address = login.email
    membership.active = False
    membership.deleted_at = membership.sessions_revoked_at = utcnow()
    db.session.flush()
    if login_is_theirs_alone(membership):
        with scoping.bypass("a login left with no account is deleted, freeing its address"):
            _delete_login(login)
            db.session.flush([login])  # the login alone, under the bypass
    record_event(
        "user.deleted",
        account_id=membership.account_id,
        target=login,
        summary=f"{address} deleted from {membership.account.name}",
    )


def _delete_login(user: PortalUser) -> None:
    user.active = False
    user.deleted_at = user.sessions_revoked_at = utcnow()
    user.activation_nonce = None
    # The row and its history stay; the address is freed, so the person can be added again (here or elsewhere).
    user.email = user.username = f"{user.email}{DELETED_MARK}{user.id}"


def soft_delete(user: PortalUser) -> None:
    """A staff login can no longer sign in; the row, its history and its events stay."""
    address = user.email
    _delete_login(user)
    record_event("user.deleted", account_id=user.account_id, target=user, summary=f"{address} deleted")


def set_password(user: PortalUser, password: str) -> None:
    check_password(password, user.email)
    user.password = hash_password(password)
    user.password_set_at = utcnow()
    user.activation_nonce = None
    record_login_event("user.password_set", user, summary=f"New password for {user.email}")


def update_placeholder(
    placeholder: PlaceholderUser, first_name: str, last_name: str, email: str, mobile: str | None
) -> None:
    before = f"{placeholder.name} <{placeholder.email}>"
    address = email.strip().lower()
    if address != placeholder.email and not _is_placeholder_address(address):
        login_id = _joinable_login_id(address, reseller_of(placeholder.account))
        if login_id is not None and membership_of(placeholder.account, login_id) is not None:
            raise UserError(f"{address} is already a user of {placeholder.account.name}.", "email")
        _check_email_free(
            address,
            placeholder_id=placeholder.id,
            company=placeholder.account.name,
            reseller_id=reseller_of(placeholder.account),
        )
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


def enable_customer_portal(membership: Membership) -> None:
    """Activate (CP3): the user may enter this customer portal (directly once a password is set, or by Launch)."""
    membership.cp3_enabled = True
    record_event(
        "user.cp3_enabled",
        account_id=membership.account_id,
        target=membership.user,
        summary=f"{membership.email} enabled for the customer portal of {membership.account.name}",
    )


def activate_placeholder(placeholder: PlaceholderUser) -> Added:
    """The placeholder becomes a CP3-enabled membership with its flags — of a new login, or of the login its reseller
    already has for that address (the guide's IT-support master admin, on every customer); the placeholder goes."""
    customer = placeholder.account
    added = add_member(
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
        target=added.login,
        summary=f"Master admin {added.login.email} activated for the customer portal",
    )
    db.session.delete(placeholder)
    return added

"""Creating accounts in the operator ← reseller ← customer tree."""

from __future__ import annotations

from flask import current_app
from sqlalchemy import func, select

from app.clock import utcnow
from app.extensions import db
from app.models.accounts import CUSTOMER, OPERATOR, RESELLER, Account, PlaceholderUser
from app.services.events import record_event

_PARENT_KIND = {RESELLER: OPERATOR, CUSTOMER: RESELLER}


def operator_account() -> Account | None:
    return db.session.query(Account).filter(Account.kind == OPERATOR).order_by(Account.id).first()


def sibling_name_problem(parent: Account | None, name: str, except_id: int | None = None) -> str | None:
    """Two customers of one reseller (or two resellers) with one name cannot be told apart in lists, searches and
    reports. Only siblings are compared: another reseller's customer list is none of this one's business."""
    if parent is None or not (name or "").strip():
        return None
    clash = db.session.scalar(
        select(Account.id).where(
            Account.parent_id == parent.id,
            func.lower(Account.name) == name.strip().lower(),
            Account.id != (except_id or 0),
        )
    )
    if clash is None:
        return None
    what = "a customer" if parent.kind == RESELLER else "a reseller"
    return f"{parent.name} already has {what} named {name.strip()}: add something that tells them apart."


def create_account(kind: str, name: str, parent: Account | None = None, **details) -> Account:
    """Add an account under ``parent`` (a reseller under the operator, a customer under a reseller)."""
    expected = _PARENT_KIND.get(kind)
    if kind == OPERATOR:
        if parent is not None:
            raise ValueError("the operator account has no parent")
    elif parent is None or parent.kind != expected:
        raise ValueError(f"a {kind} account belongs under a {expected} account")
    account = Account(kind=kind, name=name.strip(), parent=parent, **details)
    db.session.add(account)
    db.session.flush()
    owner = parent.id if parent is not None and kind == CUSTOMER else account.id
    record_event(f"{kind}.created", account_id=account.id, target=account, summary=f"Created {kind} {account.name}")
    if kind == CUSTOMER:
        record_event("customer.created", account_id=owner, target=account, summary=f"Created customer {account.name}")
    return account


def add_default_master_admin(customer: Account, email: str | None = None) -> PlaceholderUser:
    """The guide's default master admin: a placeholder row until it is edited and activated."""
    placeholder = PlaceholderUser(
        account=customer, email=(email or current_app.config["DEFAULT_MASTER_ADMIN_EMAIL"]).lower()
    )
    db.session.add(placeholder)
    db.session.flush()
    record_event(
        "user.placeholder_added",
        account_id=customer.id,
        target=placeholder,
        summary=f"Default master admin {placeholder.email} added (not activated)",
    )
    return placeholder


ACCOUNT_DETAIL_FIELDS = (
    "name",
    "contact_first_name",
    "contact_last_name",
    "contact_email",
    "phone",
    "address_line1",
    "address_line2",
    "city",
    "region",
    "postcode",
    "country",
    "it_support_email",
)


def update_details(account: Account, values: dict) -> None:
    """Edit company details, contact, address and phone; the event says what changed."""
    changes = []
    for field in ACCOUNT_DETAIL_FIELDS:
        if field not in values:
            continue
        new = values[field].strip() if isinstance(values[field], str) else values[field]
        new = new or (None if field != "name" else account.name)
        if field.endswith("email") and new:
            new = new.lower()
        if getattr(account, field) != new:
            changes.append(f"{field}: {getattr(account, field)!r} → {new!r}")
            setattr(account, field, new)
    record_event("account.updated", account_id=account.id, target=account, summary="; ".join(changes) or "No changes")


def sub_account_named(reseller: Account, name: str | None) -> str | None:
    """The name of ``reseller``'s customer called ``name``, if it has one (what a resent Add Sub Account form made)."""
    return db.session.scalar(
        select(Account.name).where(
            Account.parent_id == reseller.id, Account.kind == CUSTOMER, Account.name == (name or "").strip()
        )
    )


def create_sub_account(
    reseller: Account, details: dict, master_admin_name: str | None, master_admin_email: str | None
) -> Account:
    """Add Sub Account: a customer under ``reseller`` with its master admin (the default placeholder when none is
    given). The master admin is a placeholder row until activated, when it becomes a membership: of a new login, or
    of the login the reseller already has for that address (the same IT support address serves many customers)."""
    customer = create_account(CUSTOMER, details.pop("name"), reseller, **details)
    placeholder = add_default_master_admin(customer, master_admin_email or None)
    if master_admin_name:
        first, _, last = master_admin_name.strip().partition(" ")
        placeholder.first_name, placeholder.last_name = first, last or "Admin"
    return customer


def set_account_status(account: Account, active: bool) -> None:
    """Disable (or re-enable) a reseller or customer: its users can no longer sign in; nothing is deleted."""
    account.status = "active" if active else "disabled"
    if not active:
        account.sessions_revoked_at = utcnow()  # its users' sessions end for good: enabling it revives none
    verb = "enabled" if active else "disabled"
    record_event(f"{account.kind}.{verb}", account_id=account.id, target=account, summary=f"{account.name} {verb}")

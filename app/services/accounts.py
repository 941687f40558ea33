"""Creating accounts in the operator ← reseller ← customer tree."""

from __future__ import annotations

from flask import current_app

from app.extensions import db
from app.models.accounts import CUSTOMER, OPERATOR, RESELLER, Account, PlaceholderUser
from app.services.events import record_event

_PARENT_KIND = {RESELLER: OPERATOR, CUSTOMER: RESELLER}


def operator_account() -> Account | None:
    return db.session.query(Account).filter(Account.kind == OPERATOR).order_by(Account.id).first()


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

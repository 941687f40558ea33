"""What Services ▸ Microsoft CSP shows a customer, and the one way its changes are committed.

The customer portal's views read forms and draw pages; the reads are here (a fixed number of statements, whatever
the number of rows) and every change of that page runs through ``commit`` — the service's transaction, committed when
the change is done, rolled back when it is refused — so no view commits on its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import func, select

from app.extensions import db
from app.models.catalog import Product
from app.models.subscriptions import LicenceAssignment, M365User, Subscription

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Overview:
    subscriptions: list[Subscription]
    people: list[M365User]
    held: dict[int, list[str]]  # Microsoft 365 user id -> names of the products whose licences it holds


def overview(customer_id: int) -> Overview:
    """The customer's subscriptions (by product), its Microsoft 365 users (by name) and who holds what: 3 statements."""
    subs = db.session.scalars(
        select(Subscription)
        .join(Subscription.product)
        .where(Subscription.account_id == customer_id)
        .order_by(Product.name, Subscription.id)
    ).all()
    people = db.session.scalars(
        select(M365User).where(M365User.account_id == customer_id).order_by(func.lower(M365User.display_name))
    ).all()
    held: dict[int, list[str]] = {}
    for person_id, name in db.session.execute(
        select(LicenceAssignment.m365_user_id, Product.name)
        .join(LicenceAssignment.subscription)
        .join(Subscription.product)
        .where(LicenceAssignment.account_id == customer_id)
    ):
        held.setdefault(person_id, []).append(name)
    return Overview(list(subs), list(people), held)


def holders(sub: Subscription) -> tuple[list[M365User], list[M365User]]:
    """Who holds a licence of ``sub``, and the customer's other active Microsoft 365 users (who could get one)."""
    holding = db.session.scalars(
        select(M365User)
        .join(LicenceAssignment, LicenceAssignment.m365_user_id == M365User.id)
        .where(LicenceAssignment.subscription_id == sub.id)
        .order_by(func.lower(M365User.display_name))
    ).all()
    ids = {p.id for p in holding}
    others = db.session.scalars(
        select(M365User)
        .where(M365User.account_id == sub.account_id, M365User.status == "active")
        .order_by(func.lower(M365User.display_name))
    ).all()
    return list(holding), [p for p in others if p.id not in ids]


def commit(change: Callable[[], T]) -> T:
    """Run ``change`` and commit what it did; anything it raises (a refusal in words, an outage) rolls it back and
    goes to the caller."""
    try:
        result = change()
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return result

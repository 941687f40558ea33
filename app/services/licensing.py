"""Microsoft CSP services of a customer: orders, quantities, auto-renew, Microsoft 365 users and licences.

Every change goes through the CSP provider, records an event, and — when a subscription's numbers change — a
usage change point. A refusal (``LicenceError``) changes nothing; a provider failure changes nothing here either.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from app import clock
from app.csp import get_provider
from app.csp.base import ProviderError, new_correlation_id
from app.extensions import db
from app.formatting import format_money
from app.models.accounts import Account
from app.models.base import utcnow
from app.models.catalog import Product
from app.models.subscriptions import LicenceAssignment, M365User, Subscription, UsagePoint
from app.services.events import record_event

DECREASE_WINDOW_DAYS = 7  # Microsoft's new-commerce rule: licences can be reduced only this long after buying


class LicenceError(ValueError):
    """A change refused, in words for the page."""


def _tenant_id(customer: Account) -> str:
    tenant = customer.tenant
    if tenant is None or tenant.status != "active" or not tenant.tenant_guid:
        raise LicenceError(f"{customer.name} has no active Microsoft tenant yet.")
    return tenant.tenant_guid


def _provider_call(what: str, call):
    try:
        return call(new_correlation_id())
    except ProviderError as exc:
        db.session.rollback()
        raise LicenceError(
            f"Microsoft did not {what}: {exc} (correlation id {exc.correlation_id}). Nothing was changed; try again."
        ) from exc


def record_usage(sub: Subscription) -> None:
    """A change point: the subscription's numbers now."""
    db.session.add(
        UsagePoint(
            account_id=sub.account_id,
            subscription_id=sub.id,
            recorded_at=utcnow(),
            quantity=sub.quantity,
            assigned=sub.assigned,
            unit_price=sub.unit_price,
        )
    )


def decrease_deadline(sub: Subscription) -> dt.date:
    return sub.term_started_on + dt.timedelta(days=DECREASE_WINDOW_DAYS)


def order(customer: Account, product: Product, quantity: int) -> Subscription:
    if product.is_retired:
        raise LicenceError(f"{product.name} is no longer sold.")
    if not 1 <= quantity <= 10000:
        raise LicenceError("Order between 1 and 10,000 licences.")
    tenant_id = _tenant_id(customer)
    bought = _provider_call(
        "place the order",
        lambda cid: get_provider().create_order(
            tenant_id, product.sku, quantity, product.billing_cycle, correlation_id=cid
        ),
    )
    today = clock.today()
    sub = Subscription(
        account_id=customer.id,
        product_id=product.id,
        quantity=quantity,
        assigned=0,
        billing_cycle=product.billing_cycle,
        unit_price=product.unit_price,
        unit_cost=product.unit_cost,
        auto_renew=bought.auto_renew,
        term_started_on=today,
        renew_on=bought.renew_on or today + dt.timedelta(days=365),
        provider_subscription_id=bought.subscription_id,
    )
    db.session.add(sub)
    db.session.flush()
    record_usage(sub)
    record_event(
        "subscription.ordered",
        account_id=customer.id,
        target=sub,
        summary=f"Ordered {quantity} × {product.name} at {format_money(product.unit_price)} a licence a month",
    )
    return sub


def change_quantity(sub: Subscription, quantity: int, today: dt.date | None = None) -> None:
    today = today or clock.today()
    if quantity == sub.quantity:
        return
    if quantity < 1 or quantity > 10000:
        raise LicenceError("Use a quantity between 1 and 10,000.")
    if quantity < sub.quantity:
        if quantity < sub.assigned:
            raise LicenceError(
                f"{sub.assigned} licences of {sub.product.name} are assigned: unassign some before "
                f"going down to {quantity}."
            )
        if today > decrease_deadline(sub):
            raise LicenceError(
                f"Licences of {sub.product.name} could be reduced only until "
                f"{decrease_deadline(sub):%d/%m/%Y} (7 days after it was bought or renewed); "
                f"you can reduce them at renewal on {sub.renew_on:%d/%m/%Y}."
            )
    tenant_id, before = _tenant_id(sub.account), sub.quantity
    if not sub.provider_subscription_id:
        raise LicenceError("This subscription is not linked to Partner Center.")
    _provider_call(
        "change the quantity",
        lambda cid: get_provider().change_quantity(
            tenant_id, sub.provider_subscription_id, quantity, correlation_id=cid
        ),
    )
    sub.quantity = quantity
    record_usage(sub)
    record_event(
        "subscription.quantity_changed",
        account_id=sub.account_id,
        target=sub,
        summary=f"{sub.product.name}: {before} → {quantity} licences",
    )


def set_auto_renew(sub: Subscription, enabled: bool) -> None:
    if sub.auto_renew == enabled:
        return
    tenant_id = _tenant_id(sub.account)
    if not sub.provider_subscription_id:
        raise LicenceError("This subscription is not linked to Partner Center.")
    _provider_call(
        "change auto-renew",
        lambda cid: get_provider().set_auto_renew(tenant_id, sub.provider_subscription_id, enabled, correlation_id=cid),
    )
    sub.auto_renew = enabled
    record_event(
        "subscription.auto_renew",
        account_id=sub.account_id,
        target=sub,
        summary=f"{sub.product.name}: auto-renew {'on' if enabled else 'off'}",
    )


def assign(sub: Subscription, person: M365User) -> None:
    """Give ``person`` a licence of ``sub``. Microsoft is asked first (no database lock is held across the call);
    then one conditional UPDATE takes the licence, so two requests for the last free one cannot both win (the
    database also refuses assigned > quantity); the loser's assignment at Microsoft is taken back."""
    if person.account_id != sub.account_id:
        raise LicenceError("That user belongs to another customer.")
    if person.status != "active":
        raise LicenceError(f"{person.user_principal_name} is disabled.")
    if db.session.scalar(
        select(LicenceAssignment.id).where(
            LicenceAssignment.subscription_id == sub.id, LicenceAssignment.m365_user_id == person.id
        )
    ):
        raise LicenceError(f"{person.user_principal_name} already has {sub.product.name}.")
    full = LicenceError(f"All {sub.quantity} licences of {sub.product.name} are assigned: raise the quantity first.")
    if sub.assigned >= sub.quantity:
        raise full
    tenant_id, sku = _tenant_id(sub.account), sub.product.sku
    _provider_call(
        "assign the licence",
        lambda cid: get_provider().assign_licences(
            tenant_id, person.provider_user_id or "", add_sku_ids=[sku], remove_sku_ids=[], correlation_id=cid
        ),
    )
    taken = db.session.execute(
        update(Subscription)
        .where(Subscription.id == sub.id, Subscription.assigned < Subscription.quantity)
        .values(assigned=Subscription.assigned + 1)
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount == 1:
        db.session.add(LicenceAssignment(account_id=sub.account_id, subscription_id=sub.id, m365_user_id=person.id))
        try:
            db.session.flush()
        except IntegrityError:
            taken = None  # the same user, assigned by a concurrent request
    if taken is None or taken.rowcount != 1:
        db.session.rollback()
        _provider_call(
            "take the licence back",
            lambda cid: get_provider().assign_licences(
                tenant_id, person.provider_user_id or "", add_sku_ids=[], remove_sku_ids=[sku], correlation_id=cid
            ),
        )
        raise full
    db.session.refresh(sub)
    record_usage(sub)
    record_event(
        "licence.assigned",
        account_id=sub.account_id,
        target=person,
        summary=f"{sub.product.name} assigned to {person.user_principal_name} ({sub.assigned}/{sub.quantity})",
    )


def unassign(sub: Subscription, person: M365User) -> None:
    """Take a licence back: at Microsoft first, then here."""
    assignment = db.session.scalars(
        select(LicenceAssignment).where(
            LicenceAssignment.subscription_id == sub.id, LicenceAssignment.m365_user_id == person.id
        )
    ).first()
    if assignment is None:
        raise LicenceError(f"{person.user_principal_name} does not have {sub.product.name}.")
    tenant_id = _tenant_id(sub.account)
    _provider_call(
        "remove the licence",
        lambda cid: get_provider().assign_licences(
            tenant_id,
            person.provider_user_id or "",
            add_sku_ids=[],
            remove_sku_ids=[sub.product.sku],
            correlation_id=cid,
        ),
    )
    db.session.delete(assignment)
    db.session.execute(
        update(Subscription)
        .where(Subscription.id == sub.id)
        .values(assigned=Subscription.assigned - 1)
        .execution_options(synchronize_session=False)
    )
    db.session.flush()
    db.session.refresh(sub)
    record_usage(sub)
    record_event(
        "licence.unassigned",
        account_id=sub.account_id,
        target=person,
        summary=f"{sub.product.name} removed from {person.user_principal_name} ({sub.assigned}/{sub.quantity})",
    )


def add_m365_user(customer: Account, first_name: str, last_name: str, username: str, password: str) -> M365User:
    tenant = customer.tenant
    tenant_id = _tenant_id(customer)
    upn = f"{username.strip().lower()}@{tenant.primary_domain}"
    if db.session.scalar(
        select(M365User.id).where(M365User.account_id == customer.id, M365User.user_principal_name == upn)
    ):
        raise LicenceError(f"{upn} already exists.")
    user_id = _provider_call(
        "create the user",
        lambda cid: get_provider().create_user(
            tenant_id,
            first_name=first_name.strip(),
            last_name=last_name.strip(),
            user_principal_name=upn,
            password=password,
            usage_location=customer.country or "NZ",
            correlation_id=cid,
        ),
    )
    person = M365User(
        account_id=customer.id,
        display_name=f"{first_name.strip()} {last_name.strip()}",
        user_principal_name=upn,
        provider_user_id=user_id,
    )
    db.session.add(person)
    db.session.flush()
    record_event("m365_user.created", account_id=customer.id, target=person, summary=f"Microsoft 365 user {upn} added")
    return person


def set_m365_user_status(person: M365User, enabled: bool) -> None:
    person.status = "active" if enabled else "disabled"
    verb = "enabled" if enabled else "disabled"
    record_event(
        f"m365_user.{verb}",
        account_id=person.account_id,
        target=person,
        summary=f"Microsoft 365 user {person.user_principal_name} {verb}",
    )

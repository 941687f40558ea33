"""Microsoft CSP services of a customer: orders, quantities, auto-renew, Microsoft 365 users and licences.

Every change goes through the CSP provider, records an event, and — when a subscription's numbers change — a
usage change point. A refusal (``LicenceError``) changes nothing; a provider failure changes nothing here either.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import uuid

from flask import current_app
from sqlalchemy import or_, select, update

from app import clock, faults
from app.csp import get_provider
from app.csp.base import ProviderError, new_correlation_id
from app.extensions import db
from app.formatting import format_money
from app.models.accounts import Account
from app.models.base import utcnow
from app.models.catalog import Product
from app.models.operations import SUCCEEDED, ProviderOperation
from app.models.subscriptions import LicenceAssignment, M365User, Subscription, UsagePoint
from app.services import operations
from app.services.events import record_event

log = logging.getLogger(__name__)

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


class AlreadyPlaced(Exception):
    """The form was sent before and its order is placed: ``subscription`` is what it bought."""

    def __init__(self, subscription: Subscription | None):
        super().__init__("already placed")
        self.subscription = subscription


class StillBeingConfirmed(Exception):
    """The form was sent before and its order is still with Microsoft (another request is sending it)."""


def order(customer: Account, product: Product, quantity: int, key: str | None = None) -> Subscription:
    """Place an order, durably (app/services/operations.py): written as an operation and committed before Microsoft is
    asked, with one MS-RequestId for every try. The same form again (``key``) is answered from its operation:
    placed (``AlreadyPlaced``), still being confirmed (``StillBeingConfirmed``), or — failed before, or left pending
    by a crash — sent again with the same request id, so Microsoft never buys twice."""
    if product.is_retired:
        raise LicenceError(f"{product.name} is no longer sold.")
    if not 1 <= quantity <= 10000:
        raise LicenceError("Order between 1 and 10,000 licences.")
    _tenant_id(customer)
    params = {
        "product_id": product.id,
        "sku": product.sku,
        "quantity": quantity,
        "billing_cycle": product.billing_cycle,
    }
    try:
        operation = operations.begin("order", customer.id, params, key)
    except operations.AlreadySent as sent:
        operation = sent.operation
        if operation is None:
            raise LicenceError("This form is out of date: open it again.") from None
        if operation.state == SUCCEEDED:
            placed = operations.result_of(operation).get("subscription_id")
            raise AlreadyPlaced(db.session.get(Subscription, placed) if placed else None) from None
        if not operations.claim_retry(operation):
            raise StillBeingConfirmed from None
    return send_order(operation, customer)


def send_order(operation: ProviderOperation, customer: Account) -> Subscription:
    """Send ``operation`` (pending, claimed by the caller) to Microsoft and record what it answered; the subscription
    (created once: an answer for a request already recorded finds its subscription)."""
    params = operations.params_of(operation)
    product = db.session.get(Product, params["product_id"])
    tenant_id = _tenant_id(customer)
    correlation_id = new_correlation_id()
    try:
        bought = get_provider().create_order(
            tenant_id,
            params["sku"],
            params["quantity"],
            params["billing_cycle"],
            correlation_id=correlation_id,
            request_id=operation.request_id,
        )
    except ProviderError as exc:
        operations.failed(operation, exc, correlation_id)
        raise LicenceError(
            f"Microsoft did not confirm the order of {params['quantity']} × {product.name}: {exc} (correlation id "
            f"{exc.correlation_id or correlation_id}). Send this form again to retry it: the same request is sent, so "
            "Microsoft will not buy twice."
        ) from exc
    faults.point(faults.AFTER_CREATE_ORDER)
    sub = None
    if not operations.is_first_try(operation):  # an earlier try may have recorded it (its answer came after all)
        sub = db.session.scalars(
            select(Subscription).where(
                Subscription.account_id == customer.id, Subscription.provider_subscription_id == bought.subscription_id
            )
        ).first()
    if sub is None:
        today = clock.today()
        sub = Subscription(
            account_id=customer.id,
            product_id=product.id,
            quantity=params["quantity"],
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
            summary=(
                f"Ordered {params['quantity']} × {product.name} at {format_money(product.unit_price)} a licence a "
                f"month (request id {operation.request_id})"
            ),
        )
    operations.succeeded(
        operation, {"subscription_id": sub.id, "provider_subscription_id": bought.subscription_id}, correlation_id
    )
    return sub


def recover_orders() -> int:
    """Orders left pending by a crash: sent again with their request id (Microsoft answers with what the first send
    made, or places it now); how many were settled. Run under a bypass (CLI, worker start)."""
    settled = 0
    for operation in operations.stale_pending("order"):
        if not operations.claim_retry(operation):
            continue
        customer = db.session.get(Account, operation.account_id)
        try:
            send_order(operation, customer)
            db.session.commit()
        except LicenceError as exc:
            log.warning("Recovering order operation %s: %s", operation.id, exc)
        settled += 1
    return settled


def change_quantity(sub: Subscription, quantity: int, today: dt.date | None = None) -> None:
    today = today or clock.today()
    if quantity == sub.quantity:
        return
    if quantity < 1 or quantity > 10000:
        raise LicenceError("Use a quantity between 1 and 10,000.")
    if quantity < sub.quantity:
        # A decrease must not race a licence being given: it holds the same lease, and checks again under it.
        _check_decrease(sub, quantity, today)
        with _Lease(sub).held():
            db.session.refresh(sub)
            _check_decrease(sub, quantity, today)
            _send_quantity(sub, quantity)
        return
    _send_quantity(sub, quantity)


def _check_decrease(sub: Subscription, quantity: int, today: dt.date) -> None:
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


def _send_quantity(sub: Subscription, quantity: int) -> None:
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


# -- licences: one change at a time per subscription ------------------------------------------------------------
class _Lease:
    """The subscription's licence lease: claimed by a conditional UPDATE and committed BEFORE Microsoft is asked, so
    two requests never change one subscription's licences at once — without a database transaction held open through
    the call (the sandbox writes the same SQLite file on its own connection and would wait out the busy timeout). It
    lapses by itself after ``LICENCE_LEASE_SECONDS``: a crashed holder does not hold it for ever."""

    def __init__(self, sub: Subscription):
        self.sub_id, self.name = sub.id, sub.product.name
        self.token = str(uuid.uuid4())

    def claim(self) -> None:
        now = utcnow()
        until = now + dt.timedelta(seconds=current_app.config["LICENCE_LEASE_SECONDS"])
        won = db.session.execute(
            update(Subscription)
            .where(
                Subscription.id == self.sub_id,
                or_(Subscription.licence_lease_until.is_(None), Subscription.licence_lease_until < now),
            )
            .values(licence_lease=self.token, licence_lease_until=until)
            .execution_options(synchronize_session=False)
        )
        if won.rowcount != 1:
            db.session.rollback()
            raise LicenceError(f"Another licence change of {self.name} is under way: try again in a moment.")
        db.session.commit()

    @contextlib.contextmanager
    def held(self):
        """Claimed (and committed) on entry; on exit released in the caller's transaction (committed with the
        change), or — after a refusal — rolled back, released and committed at once."""
        self.claim()
        try:
            yield self
        except LicenceError:
            db.session.rollback()
            self.release()
            db.session.commit()
            raise
        self.release()

    def release(self) -> None:
        """In the caller's transaction: released when the change it guarded is committed."""
        db.session.execute(
            update(Subscription)
            .where(Subscription.id == self.sub_id, Subscription.licence_lease == self.token)
            .values(licence_lease=None, licence_lease_until=None)
            .execution_options(synchronize_session=False)
        )


def _assignment(sub: Subscription, person: M365User) -> LicenceAssignment | None:
    return db.session.scalars(
        select(LicenceAssignment).where(
            LicenceAssignment.subscription_id == sub.id, LicenceAssignment.m365_user_id == person.id
        )
    ).first()


def _record_assignment(sub: Subscription, person: M365User, held: bool) -> bool:
    """Make the portal's record of ``person`` holding a licence of ``sub`` say ``held``; whether it changed."""
    current = _assignment(sub, person)
    if held and current is None and sub.assigned >= sub.quantity:
        # Microsoft holds more licences than the subscription has: the portal cannot record it; say so loudly.
        log.error("Subscription %s: Microsoft holds more licences than its quantity %s", sub.id, sub.quantity)
        return False
    if held and current is None:
        db.session.add(LicenceAssignment(account_id=sub.account_id, subscription_id=sub.id, m365_user_id=person.id))
        sub.assigned += 1
    elif not held and current is not None:
        db.session.delete(current)
        sub.assigned -= 1
    else:
        return False
    db.session.flush()
    record_usage(sub)
    return True


def _licence_change(sub: Subscription, person: M365User, held: bool) -> None:
    """Give (``held``) or take back one licence: under the subscription's lease, Microsoft first, then the portal's
    record. After a failed or unanswered call nothing is guessed and nothing compensated blindly: Microsoft's own
    record of the user's licences is read and the portal made to match it; the user is told what is now true, and a
    repair is an event."""
    verb = "assign" if held else "remove"
    with _Lease(sub).held():
        db.session.refresh(sub)
        _check_change(sub, person, held)  # again, now that nobody else can change this subscription's licences
        tenant_id, sku, user_id = _tenant_id(sub.account), sub.product.sku, person.provider_user_id or ""
        try:
            get_provider().assign_licences(
                tenant_id,
                user_id,
                add_sku_ids=[sku] if held else [],
                remove_sku_ids=[] if held else [sku],
                correlation_id=new_correlation_id(),
            )
        except ProviderError as exc:
            db.session.rollback()
            outcome = _settle(sub, person, held, exc, verb)
            if outcome is not None:
                db.session.commit()  # what was learnt from Microsoft (a repair, an event) stands
                raise LicenceError(outcome) from exc
        else:
            _record_assignment(sub, person, held)
        done = "assigned to" if held else "removed from"
        record_event(
            "licence.assigned" if held else "licence.unassigned",
            account_id=sub.account_id,
            target=person,
            summary=f"{sub.product.name} {done} {person.user_principal_name} ({sub.assigned}/{sub.quantity})",
        )


def _settle(sub: Subscription, person: M365User, held: bool, exc: ProviderError, verb: str) -> str | None:
    """After ``exc``: ask Microsoft which licences ``person`` holds and make the portal match. None when Microsoft did
    do what was asked (its answer was lost); else what the user must be told, in words that are true."""
    what = f"{verb} {sub.product.name} {'to' if held else 'from'} {person.user_principal_name}"
    try:
        holds = sub.product.sku in get_provider().get_user_licences(
            _tenant_id(sub.account), person.provider_user_id or "", correlation_id=new_correlation_id()
        )
    except ProviderError as read_exc:
        log.warning("Licence change unconfirmed: %s (%s); reading it back failed: %s", what, exc, read_exc)
        record_event(
            "licence.unconfirmed",
            account_id=sub.account_id,
            target=person,
            summary=f"Microsoft did not confirm: {what} ({exc}, correlation id {exc.correlation_id}); not known yet",
        )
        return (
            f"Microsoft did not confirm that it could {what} ({exc}, correlation id {exc.correlation_id}), and could "
            "not be asked what is true now. Whether the licence changed is not known yet: look again in a minute."
        )
    repaired = _record_assignment(sub, person, holds)
    if repaired:
        record_event(
            "licence.repaired",
            account_id=sub.account_id,
            target=person,
            summary=(
                f"Microsoft says {person.user_principal_name} {'holds' if holds else 'does not hold'} "
                f"{sub.product.name} after an unanswered call: the portal now matches ({sub.assigned}/{sub.quantity})"
            ),
        )
    if holds == held:
        return None  # done at Microsoft: the portal records it like any success
    return (
        f"Microsoft did not {what}: {exc} (correlation id {exc.correlation_id}). "
        f"{person.user_principal_name} {'does not hold' if not holds else 'still holds'} it, as Microsoft confirms; "
        "try again."
    )


def _check_change(sub: Subscription, person: M365User, held: bool) -> None:
    if held:
        if person.account_id != sub.account_id:
            raise LicenceError("That user belongs to another customer.")
        if person.status != "active":
            raise LicenceError(f"{person.user_principal_name} is disabled.")
        if _assignment(sub, person) is not None:
            raise LicenceError(f"{person.user_principal_name} already has {sub.product.name}.")
        if sub.assigned >= sub.quantity:
            raise LicenceError(
                f"All {sub.quantity} licences of {sub.product.name} are assigned: raise the quantity first."
            )
    elif _assignment(sub, person) is None:
        raise LicenceError(f"{person.user_principal_name} does not have {sub.product.name}.")


def assign(sub: Subscription, person: M365User) -> None:
    """Give ``person`` a licence of ``sub`` (checked before the lease is taken, and again under it)."""
    _check_change(sub, person, True)
    _licence_change(sub, person, True)


def unassign(sub: Subscription, person: M365User) -> None:
    """Take a licence back: at Microsoft first, then here."""
    _check_change(sub, person, False)
    _licence_change(sub, person, False)


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

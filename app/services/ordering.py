"""Orders (issue 13): what can be ordered, the review of an order, and placing it through Microsoft's cart.

**Review.** ``review`` prices one order with ``pricing.quote`` (the reseller's price list and the operator's behind it)
and says what the Review page shows: the unit price (per licence per billing period), what it is per month and per
term, the first charge, the renewal date, whether the price is locked, and the end of the 168-hour window in which
the purchase can be cancelled or reduced.

- Per month = the period's price ÷ its months; per term = the period's price × the periods in the term (per licence;
  × quantity for the order).
- First charge = one billing period × quantity. **Co-terming** (the term ends on another subscription's renewal date or
  at a month end): the first billing period is shortened so that whole periods end exactly on that date, and its
  charge is prorated by the day: unit price × quantity × (days from today to the first period's end ÷ days of that
  whole period), rounded half up to the cent once.
- Locked: annual and 3-year terms keep their price for the term; a monthly term takes the price in force at each
  renewal.

**Placing.** The order is a durable operation (kind ``order``, app/services/operations.py): written and committed
``pending`` with its form key before Microsoft is asked; then a cart is made (``POST /v1/customers/{id}/carts``) and
checked out (``…/carts/{cartId}/checkout``), each with an MS-RequestId derived from the operation's request id, so a
retry — a resend of the form, or the recoverer after a crash — sends both with the same ids and Microsoft answers with
the cart and the subscriptions the first try made, never buying twice. Placing re-quotes first: a price that changed
since the review is refused with the new review (``PriceChanged``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from decimal import Decimal

from sqlalchemy import exists, or_, select, update
from sqlalchemy.orm import contains_eager

from app import clock, faults
from app.csp import get_provider
from app.csp.base import CartLineItem, ProviderError, new_correlation_id
from app.csp.sandbox_carts import derived_request_id, month_ends
from app.extensions import db
from app.formatting import format_date, format_money, local_time
from app.models.accounts import Account
from app.models.base import utcnow
from app.models.catalog import FREQUENCY_LABELS, TERM_LABELS, Availability, CataloguePrice, Product
from app.models.operations import PENDING, SUCCEEDED, ProviderOperation
from app.models.subscriptions import Subscription
from app.services import operations, pricing, subscriptions
from app.services.events import record_event
from app.services.licensing import LicenceError, _tenant_id, record_usage
from security import capabilities
from security import permissions as P

log = logging.getLogger(__name__)

ORDER = "order"
MAX_QUANTITY = 10000


class AlreadyPlaced(Exception):
    """The form was sent before and its order is placed: ``subscription`` is what it bought."""

    def __init__(self, subscription: Subscription | None):
        super().__init__("already placed")
        self.subscription = subscription


class StillBeingConfirmed(Exception):
    """The form was sent before and its order is still with Microsoft (another request is sending it)."""


class OrderInputError(LicenceError):
    """A choice that cannot be ordered, in words for the field ``field`` of the order form."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class PriceChanged(LicenceError):
    """The price is not the one reviewed: ``review`` is the new one."""

    def __init__(self, review: Review):
        super().__init__(
            f"The price changed since your review: it is now {format_money(review.unit_price)} a licence per "
            "billing period. Review the order again before placing it."
        )
        self.review = review


# -- what can be ordered ---------------------------------------------------------------------------------------------
def offers(on: dt.date | None = None) -> list[Availability]:
    """Every availability on sale (as ``catalogue.for_sale``) that has a price on ``on`` (today), its product loaded:
    one query, however large the catalogue."""
    on = on or clock.today()
    priced = exists().where(
        CataloguePrice.availability_id == Availability.id,
        CataloguePrice.valid_from <= on,
        or_(CataloguePrice.valid_until.is_(None), CataloguePrice.valid_until >= on),
    )
    rows = db.session.scalars(
        select(Availability)
        .join(Availability.product)
        .options(contains_eager(Availability.product))
        .where(Availability.retired_on.is_(None), Product.retired_on.is_(None), priced)
    ).all()
    order = {"P1M": 0, "P1Y": 1, "P3Y": 2, "monthly": 0, "annual": 1, "triennial": 2}
    return sorted(
        rows, key=lambda a: (a.product.product_title, a.product.name, order[a.term], order[a.billing_frequency])
    )


def coterm_choices(customer: Account) -> list[Subscription]:
    """The customer's subscriptions a new one may end with (active, renewing after today)."""
    return list(
        db.session.scalars(
            select(Subscription)
            .join(Subscription.product)
            .options(contains_eager(Subscription.product))
            .where(
                Subscription.account_id == customer.id,
                Subscription.status == "active",
                Subscription.cancelled_at.is_(None),
                Subscription.renew_on > clock.today(),
            )
            .order_by(Subscription.renew_on, Product.name)
        )
    )


def allowed_term_ends(customer: Account, term: str, today: dt.date | None = None) -> list[dt.date]:
    """The dates a new ``term`` may end on (Microsoft's customTermEndDates: an active subscription's term end or a
    calendar month's end, within the term, https://learn.microsoft.com/partner-center/developer/custom-term-end-dates)."""
    today = today or clock.today()
    limit = subscriptions.renewal_date(today, term)
    ends = {s.renew_on for s in coterm_choices(customer) if s.renew_on <= limit}
    return sorted(ends | set(month_ends(today, limit)))


def _coterm_date(customer: Account, availability: Availability, coterm_with) -> dt.date | None:
    if coterm_with is None:
        return None
    if isinstance(coterm_with, Subscription):
        if coterm_with.account_id != customer.id:
            raise OrderInputError("coterm", "Choose one of this customer's subscriptions.")
        end, what = coterm_with.renew_on, f"{coterm_with.product.name} renews on {format_date(coterm_with.renew_on)}"
    else:
        end, what = coterm_with, format_date(coterm_with)
    if end not in allowed_term_ends(customer, availability.term):
        raise OrderInputError(
            "coterm",
            f"{what}: a new {TERM_LABELS[availability.term]} term cannot end then. It can end on an active "
            "subscription's renewal date or at the end of a month, within its term.",
        )
    return end


# -- the review ------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Review:
    """What the Review order page shows (money in NZD excluding GST; times UTC, naive)."""

    availability: Availability
    quantity: int
    quote: pricing.Quote
    per_month: Decimal  # one licence, one month
    per_term: Decimal  # one licence, the whole term
    first_charge: Decimal  # the first billing period (prorated when co-termed), all licences
    first_period_end: dt.date  # when the first billing period ends (the next charge)
    renew_on: dt.date
    coterm_end: dt.date | None
    price_locked: bool
    window_end: dt.datetime

    @property
    def unit_price(self) -> Decimal:
        """Per licence per billing period."""
        return self.quote.sell

    @property
    def term_total(self) -> Decimal:
        return self.per_term * self.quantity

    @property
    def lock_text(self) -> str:
        if self.price_locked:
            return f"The price is locked for the {TERM_LABELS[self.availability.term]} term."
        return "Not locked: a monthly term takes the price in force at each renewal."

    @property
    def window_text(self) -> str:
        """ "can be cancelled or reduced until 08/12/2026 11:30 AM" (the portal's zone)."""
        return f"can be cancelled or reduced until {local_time(self.window_end).strftime('%d/%m/%Y %I:%M %p')}"

    @property
    def label(self) -> str:
        a = self.availability
        return f"{a.product.name}, {TERM_LABELS[a.term]}, billed {FREQUENCY_LABELS[a.billing_frequency].lower()}"


def first_billing_period(today: dt.date, renew_on: dt.date, period_months: int) -> tuple[dt.date, dt.date]:
    """The whole billing period (start, end) that holds ``today``, counted back from ``renew_on`` in whole periods."""
    k = 1
    while True:
        start = subscriptions.add_months(renew_on, -k * period_months)
        if start <= today:
            return start, subscriptions.add_months(renew_on, -(k - 1) * period_months)
        k += 1


def _check_quantity(quantity) -> int:
    if not isinstance(quantity, int) or isinstance(quantity, bool) or not 1 <= quantity <= MAX_QUANTITY:
        raise OrderInputError("quantity", "Order between 1 and 10,000 licences.")
    return quantity


def _check_availability(availability: Availability) -> None:
    product = availability.product
    if product.is_retired or availability.retired_on is not None:
        raise OrderInputError("billing_frequency", f"{product.name} ({availability.label}) is no longer sold.")


def review(customer: Account, availability: Availability, quantity: int, coterm_with=None) -> Review:
    """What ordering ``quantity`` licences of ``availability`` today costs and means (``coterm_with``: a subscription
    of the customer, or a date, the new term ends with). Raises OrderInputError for what cannot be ordered."""
    capabilities.require(P.ORDERS, P.WRITE)
    _check_quantity(quantity)
    _check_availability(availability)
    today = clock.today()
    try:
        quote = pricing.quote(customer, availability, today)
    except pricing.NoPrice:
        raise OrderInputError("billing_frequency", f"{availability} has no price this month.") from None
    coterm_end = _coterm_date(customer, availability, coterm_with)
    renew_on = coterm_end or subscriptions.renewal_date(today, availability.term)
    start, end = first_billing_period(today, renew_on, availability.period_months)
    first = quote.sell * quantity
    if coterm_end is not None:
        first = first * (end - today).days / (end - start).days
    return Review(
        availability=availability,
        quantity=quantity,
        quote=quote,
        per_month=quote.per_month(quote.sell),
        per_term=pricing.cents(quote.sell * availability.term_months / availability.period_months),
        first_charge=pricing.cents(first),
        first_period_end=end,
        renew_on=renew_on,
        coterm_end=coterm_end,
        price_locked=availability.term in ("P1Y", "P3Y"),
        window_end=clock.utcnow().replace(microsecond=0) + subscriptions.WINDOW,
    )


# -- placing ---------------------------------------------------------------------------------------------------------
def order(
    customer: Account,
    availability: Availability,
    quantity: int,
    key: str | None = None,
    *,
    reviewed_price: Decimal | None = None,
    coterm_with=None,
) -> Subscription:
    """Place an order, durably: written as an operation and committed before Microsoft is asked. ``reviewed_price``:
    the unit price the customer reviewed (a different price now: ``PriceChanged``). The same form again (``key``) is
    answered from its operation: placed (``AlreadyPlaced``), still being confirmed (``StillBeingConfirmed``), or —
    failed before, or left pending by a crash — sent again with the same request ids, so Microsoft never buys twice."""
    capabilities.require(P.ORDERS, P.WRITE)
    _tenant_id(customer)
    try:
        if (sent := _sent_before(customer, key)) is not None:
            raise operations.AlreadySent(sent)  # a resend: told from its operation, never re-quoted
        current = review(customer, availability, quantity, coterm_with)
        if reviewed_price is not None and pricing.cents(Decimal(reviewed_price)) != current.unit_price:
            raise PriceChanged(current)
        params = {
            "product_id": availability.product_id,
            "availability_id": availability.id,
            "sku": availability.product.sku,
            "quantity": quantity,
            "term": availability.term,
            "billing_cycle": availability.billing_frequency,
            "custom_term_end": current.coterm_end.isoformat() if current.coterm_end else None,
            "unit_price": str(current.quote.sell),
            "unit_cost": str(current.quote.buy),
            "ms_unit_cost": str(current.quote.ms_cost),
        }
        operation = operations.begin(ORDER, customer.id, params, key, target=f"account:{customer.id}")
    except operations.AlreadySent as sent:
        operation = sent.operation
        if operation is None:
            raise LicenceError("This form is out of date: open it again.") from None
        if operation.state == SUCCEEDED:
            placed = operations.result_of(operation).get("subscription_id")
            raise AlreadyPlaced(db.session.get(Subscription, placed) if placed else None) from None
        if not (operations.claim_retry(operation) or _claim_unconfirmed(operation)):
            raise StillBeingConfirmed from None
    return send_order(operation, customer)


def _sent_before(customer: Account, key: str | None) -> ProviderOperation | None:
    """The order this form (``key``) started before, if any."""
    key = (key or "").strip().lower()
    if not key:
        return None
    return db.session.scalars(
        select(ProviderOperation).where(
            ProviderOperation.submission_key == key,
            ProviderOperation.kind == ORDER,
            ProviderOperation.account_id == customer.id,
        )
    ).first()


def _legacy_order_params(customer: Account, params: dict) -> dict:
    """An order recorded before availabilities existed: its product's 1-year availability of its billing cycle, priced
    as today."""
    availability = db.session.scalars(
        select(Availability).where(
            Availability.product_id == params["product_id"],
            Availability.term == "P1Y",
            Availability.billing_frequency == params.get("billing_cycle", "monthly"),
        )
    ).one()
    price = pricing.quote(customer, availability)
    return {
        **params,
        "availability_id": availability.id,
        "term": "P1Y",
        "unit_price": str(price.sell),
        "unit_cost": str(price.buy),
        "ms_unit_cost": str(price.ms_cost),
    }


def send_order(operation: ProviderOperation, customer: Account) -> Subscription:
    """Send ``operation`` (pending, claimed by the caller) to Microsoft — its cart, then the cart's checkout, each with
    its derived request id — and record what it answered; the subscription (created once)."""
    params = operations.params_of(operation)
    if "availability_id" not in params:  # written before the catalogue had availabilities (migration 0017)
        params = _legacy_order_params(customer, params)
    availability = db.session.get(Availability, params["availability_id"])
    product = availability.product
    tenant_id = _tenant_id(customer)
    correlation_id = new_correlation_id()
    cart_request, checkout_request = (derived_request_id(operation.request_id, s) for s in ("cart", "checkout"))
    end = params.get("custom_term_end")
    line = CartLineItem(
        offer_id=params["sku"],
        quantity=params["quantity"],
        term=params.get("term", availability.term),
        billing_cycle=params["billing_cycle"],
        custom_term_end=dt.date.fromisoformat(end) if end else None,
        availability_id=availability.ms_availability_id,
    )
    provider = get_provider()

    def place():
        cart = provider.create_cart(tenant_id, [line], correlation_id=correlation_id, request_id=cart_request)
        faults.point(faults.AFTER_CREATE_CART)
        bought = provider.checkout_cart(
            tenant_id, cart.cart_id, correlation_id=correlation_id, request_id=checkout_request
        )[0]
        return cart, bought

    try:
        try:
            cart, bought = place()
        except ProviderError as exc:
            if _refusal(exc):
                raise
            # No answer: Microsoft may have made it. Asked again with the same request ids, it answers with what the
            # first requests made (https://learn.microsoft.com/partner-center/developer/headers) — never twice.
            log.warning("Order operation %s unanswered (%s): asking Microsoft again", operation.id, exc)
            cart, bought = place()
    except ProviderError as exc:
        correlation = exc.correlation_id or correlation_id
        what = f"the order of {params['quantity']} × {product.name}: {exc} (correlation id {correlation})"
        if _refusal(exc):
            operations.failed(operation, exc, correlation_id)
            raise LicenceError(
                f"Microsoft did not confirm {what}. Send this form again to retry it: the same request is sent, so "
                "Microsoft will not buy twice."
            ) from exc
        # Unknown: never "not placed". It stays pending; the recoverer (or this form sent again) asks once more.
        db.session.rollback()
        operations.unconfirmed(operation, str(exc), correlation)
        record_event(
            "subscription.unconfirmed",
            account_id=customer.id,
            target=customer,
            summary=f"Microsoft did not confirm {what}; not known yet",
        )
        db.session.commit()
        raise LicenceError(
            f"Microsoft did not confirm {what}. Whether it was placed is not known yet: the portal asks Microsoft "
            "again with the same request (it never buys twice); look again in a minute, or send this form again."
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
        allowed = [r.allowed_until for r in bought.refundable]
        sub = subscriptions.new_subscription(
            customer,
            availability,
            params["quantity"],
            unit_price=Decimal(params["unit_price"]),
            unit_cost=Decimal(params["unit_cost"]),
            ms_unit_cost=Decimal(params["ms_unit_cost"]),
            provider_subscription_id=bought.subscription_id,
            term_started_on=bought.term_started_on,
            renew_on=bought.renew_on,
            auto_renew=bought.auto_renew,
            refundable_until=max(allowed) if allowed else None,
            added_at=max(allowed) - subscriptions.WINDOW if allowed else None,  # Microsoft's moment of purchase
        )
        record_usage(sub)
        record_event(
            "subscription.ordered",
            account_id=customer.id,
            target=sub,
            summary=(
                f"Ordered {params['quantity']} × {product.name} ({availability.label}) at "
                f"{format_money(sub.unit_price)} a licence per billing period, renewing on {format_date(sub.renew_on)} "
                f"(cart {cart.cart_id}, request id {operation.request_id})"
            ),
        )
    operations.succeeded(
        operation,
        {
            "subscription_id": sub.id,
            "provider_subscription_id": bought.subscription_id,
            "cart_id": cart.cart_id,
            "cart_request_id": cart_request,
            "checkout_request_id": checkout_request,
        },
        correlation_id,
    )
    return sub


def _refusal(exc: ProviderError) -> bool:
    """Microsoft answered no (a 4xx other than a timeout or throttling): nothing was placed."""
    return exc.status is not None and 400 <= exc.status < 500 and exc.status not in (408, 429)


def _claim_unconfirmed(operation: ProviderOperation) -> bool:
    """Take an order whose answer never came (its sender gone, having told the user "not known yet") to send it again
    at once — once, however many ask together (one conditional UPDATE, committed)."""
    if operation.state != PENDING or not (operation.error or "").startswith("Not confirmed yet"):
        return False
    won = db.session.execute(
        update(ProviderOperation)
        .where(
            ProviderOperation.id == operation.id,
            ProviderOperation.state == PENDING,
            ProviderOperation.attempted_on == operation.attempted_on,
            ProviderOperation.error == operation.error,
        )
        .values(attempted_on=utcnow(), error=None)
        .execution_options(synchronize_session=False)
    )
    if won.rowcount != 1:
        db.session.rollback()
        return False
    db.session.commit()
    db.session.refresh(operation)
    return True


def recover_orders() -> int:
    """Orders left pending by a crash: sent again with their request ids (Microsoft answers with the cart and the
    subscriptions the first send made, or places it now); how many were settled. Run under a bypass (CLI, worker)."""
    settled = 0
    for operation in operations.stale_pending(ORDER):
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

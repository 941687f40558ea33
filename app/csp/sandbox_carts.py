"""The sandbox's carts and checkout (issue 13): what Partner Center does with an order, mixed into SandboxProvider.

Microsoft's rules, as the sandbox enforces them:

- A cart holds line items (catalogItemId, quantity, billingCycle, termDuration, customTermEndDate) and expires 7 days
  after it is made (https://learn.microsoft.com/partner-center/developer/create-a-cart,
  https://learn.microsoft.com/partner-center/developer/cart-resources). The same MS-RequestId again answers with the
  cart the first request made (https://learn.microsoft.com/partner-center/developer/headers).
- Checkout is idempotent per cart: a cart checked out before answers with what its first checkout made
  (https://learn.microsoft.com/partner-center/developer/checkout-a-cart); an expired cart is refused.
- A customTermEndDate (co-terming, new purchases only) must be one of the dates Microsoft allows: the term end of
  one of the customer's active subscriptions, or the end of a calendar month, within the new term
  (https://learn.microsoft.com/partner-center/developer/custom-term-end-dates).
- Each purchase is a seat batch that can be cancelled or reduced for 168 hours (its refundable quantity and
  ``allowedUntilDateTime``).

Dates: like the rest of the sandbox, a subscription's ``term_end`` is the day its term renews (what it reports as
``renew_on`` and ``commitment_end``); a co-termed purchase's term ends on the date asked for.
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
import json
import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app import clock
from app.csp.base import Cart, CartLineItem, ProviderError, ProviderSubscription, RefundableQuantity
from app.models.catalog import TERM_MONTHS, valid_combination
from app.models.csp import SandboxCart, SandboxSeatBatch, SandboxSubscription
from app.services.subscriptions import WINDOW, renewal_date

CART_LIFETIME = dt.timedelta(days=7)
_NAMESPACE = uuid.UUID("0b6f3c52-2f8e-4d7a-9d0e-7c3b1e5a9f21")


def derived_request_id(request_id: str, step: str) -> str:
    """A request id for one step (``cart``, ``checkout``) of an order whose operation has ``request_id``: the same
    every time, so a retry of the order sends each step with its first request id."""
    return str(uuid.uuid5(_NAMESPACE, f"{request_id}:{step}"))


def month_ends(after: dt.date, until: dt.date) -> list[dt.date]:
    """The last days of calendar months after ``after`` up to ``until`` (inclusive)."""
    ends, year, month = [], after.year, after.month
    while True:
        end = dt.date(year, month, calendar.monthrange(year, month)[1])
        if end > until:
            return ends
        if end > after:
            ends.append(end)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


class SandboxCarts:
    """Carts, checkout and custom term end dates of the sandbox (mixed into SandboxProvider: uses its ``_call``,
    ``_answer_lost``, ``_session`` and ``_customer``)."""

    # -- what Microsoft allows as a customTermEndDate ------------------------------------------------------------------
    def _term_ends(self, session, tenant_id: str, term: str, today: dt.date) -> list[dt.date]:
        limit = renewal_date(today, term)
        t = SandboxSubscription
        rows = session.execute(
            select(t.term_end, t.purchased_on).where(t.tenant_id == tenant_id, t.status == "active")
        ).all()
        existing = {end or bought + dt.timedelta(days=365) for end, bought in rows}
        return sorted({d for d in existing if today < d <= limit} | set(month_ends(today, limit)))

    def custom_term_end_dates(
        self, tenant_id: str, term: str, billing_cycle: str, *, correlation_id: str
    ) -> list[dt.date]:
        """GET /v1/customers/{id}/subscriptions/customTermEndDates?term_duration=…&billing_cycle=…: the dates a new
        purchase of that term may end on."""
        self._call("custom_term_end_dates", correlation_id)
        if not valid_combination(term, billing_cycle):
            raise ProviderError(f"{term} cannot be billed {billing_cycle}", correlation_id=correlation_id, status=400)
        with self._session() as session:
            self._customer(session, tenant_id, correlation_id)
            return self._term_ends(session, tenant_id, term, clock.today())

    def _check_line(self, session, tenant_id: str, item: CartLineItem, today: dt.date, correlation_id: str) -> None:
        def refuse(message: str):
            raise ProviderError(message, correlation_id=correlation_id, status=400)

        if item.term not in TERM_MONTHS or not valid_combination(item.term, item.billing_cycle):
            refuse(f"termDuration {item.term} with billingCycle {item.billing_cycle} is not an availability")
        if not isinstance(item.quantity, int) or item.quantity < 1:
            refuse("quantity must be a whole number of at least 1")
        if item.custom_term_end is not None and item.custom_term_end not in self._term_ends(
            session, tenant_id, item.term, today
        ):
            refuse(
                f"customTermEndDate {item.custom_term_end:%Y-%m-%d} is not an allowed term end date: use an active "
                "subscription's term end or the end of a calendar month within the term"
            )

    # -- carts ------------------------------------------------------------------------------------------------------
    @staticmethod
    def _as_cart(cart: SandboxCart) -> Cart:
        items = json.loads(cart.line_items)
        return Cart(
            cart_id=cart.cart_id,
            expires_at=cart.expires_at,
            line_items=tuple(
                CartLineItem(
                    offer_id=item["offerId"],
                    quantity=item["quantity"],
                    term=item["termDuration"],
                    billing_cycle=item["billingCycle"],
                    custom_term_end=dt.date.fromisoformat(item["customTermEndDate"][:10])
                    if item.get("customTermEndDate")
                    else None,
                    availability_id=item.get("availabilityId"),
                )
                for item in items
            ),
        )

    def _create_cart(self, tenant_id: str, line_items, correlation_id: str, request_id: str | None) -> Cart:
        if not line_items:
            raise ProviderError("A cart needs at least one line item", correlation_id=correlation_id, status=400)
        try:
            with self._session() as session, session.begin():
                self._customer(session, tenant_id, correlation_id)
                if request_id and (
                    made := session.scalars(select(SandboxCart).where(SandboxCart.request_id == request_id)).first()
                ):
                    return self._as_cart(made)  # the same request again: the cart it made
                today, now = clock.today(), clock.utcnow()
                for item in line_items:
                    self._check_line(session, tenant_id, item, today, correlation_id)
                cart = SandboxCart(
                    cart_id=str(uuid.uuid5(_NAMESPACE, f"cart:{request_id}")) if request_id else str(uuid.uuid4()),
                    tenant_id=tenant_id,
                    request_id=request_id,
                    line_items=json.dumps(
                        [
                            {
                                "id": number,
                                "offerId": item.offer_id,
                                "availabilityId": item.availability_id,
                                "quantity": item.quantity,
                                "billingCycle": item.billing_cycle,
                                "termDuration": item.term,
                                "customTermEndDate": item.custom_term_end.isoformat() if item.custom_term_end else None,
                            }
                            for number, item in enumerate(line_items)
                        ]
                    ),
                    status="Active",
                    created_at=now,
                    expires_at=now + CART_LIFETIME,
                )
                session.add(cart)
        except IntegrityError:  # the same request at the same moment: the other one made it
            with self._session() as session:
                made = session.scalars(select(SandboxCart).where(SandboxCart.request_id == request_id)).first()
                if made is None:
                    raise ProviderError(
                        "The sandbox could not make the cart: try again.", correlation_id=correlation_id
                    ) from None
                return self._as_cart(made)
        return self._as_cart(cart)

    def create_cart(
        self, tenant_id: str, line_items: list[CartLineItem], *, correlation_id: str, request_id: str | None = None
    ) -> Cart:
        self._call("create_cart", correlation_id)
        cart = self._create_cart(tenant_id, line_items, correlation_id, request_id)
        self._answer_lost("create_cart", correlation_id)
        return cart

    # -- checkout ---------------------------------------------------------------------------------------------------
    def _bought(self, sub: SandboxSubscription, batches: list[SandboxSeatBatch]) -> ProviderSubscription:
        """The subscription as checkout answers it: with its seats' windows (the purchase's is the first to end)."""
        now = clock.utcnow()
        refundable = tuple(
            RefundableQuantity(b.quantity, b.allowed_until) for b in batches if b.allowed_until > now and b.quantity
        )
        first = min((b.allowed_until for b in batches), default=None)
        return dataclasses.replace(self._as_provider(sub), cancellation_allowed_until=first, refundable=refundable)

    def _ordered(self, session, cart: SandboxCart) -> list[ProviderSubscription]:
        t = SandboxSubscription
        subs = session.scalars(select(t).where(t.cart_id == cart.cart_id).order_by(t.id)).all()
        batches = session.scalars(
            select(SandboxSeatBatch)
            .where(SandboxSeatBatch.subscription_id.in_([s.subscription_id for s in subs]))
            .order_by(SandboxSeatBatch.id)
        ).all()
        return [self._bought(s, [b for b in batches if b.subscription_id == s.subscription_id]) for s in subs]

    def _checkout(
        self, tenant_id: str, cart_id: str, correlation_id: str, request_id: str | None, order_request_id=None
    ) -> list[ProviderSubscription]:
        try:
            with self._session() as session, session.begin():
                self._customer(session, tenant_id, correlation_id)
                cart = session.scalars(
                    select(SandboxCart).where(SandboxCart.cart_id == cart_id, SandboxCart.tenant_id == tenant_id)
                ).first()
                if cart is None:
                    raise ProviderError(f"No cart {cart_id}", correlation_id=correlation_id, status=404)
                if cart.status == "Ordered":
                    return self._ordered(session, cart)  # checked out before: what that checkout made
                now, today = clock.utcnow(), clock.today()
                if now >= cart.expires_at:
                    raise ProviderError(
                        f"Cart {cart_id} has expired (carts expire 7 days after they are made): make a new one",
                        correlation_id=correlation_id,
                        status=400,
                    )
                cart_items = self._as_cart(cart).line_items
                for item in cart_items:
                    self._check_line(session, tenant_id, item, today, correlation_id)
                for number, item in enumerate(cart_items):
                    subscription_id = str(uuid.uuid5(_NAMESPACE, f"subscription:{cart_id}:{number}"))
                    session.add(
                        SandboxSubscription(
                            subscription_id=subscription_id,
                            tenant_id=tenant_id,
                            offer_id=item.offer_id,
                            quantity=item.quantity,
                            billing_cycle=item.billing_cycle,
                            purchased_on=today,
                            request_id=order_request_id if len(cart_items) == 1 else None,
                            term=item.term,
                            term_started_on=today,
                            term_end=item.custom_term_end or renewal_date(today, item.term),
                            cart_id=cart_id,
                        )
                    )
                    session.add(
                        SandboxSeatBatch(
                            subscription_id=subscription_id,
                            quantity=item.quantity,
                            added_at=now,
                            allowed_until=now + WINDOW,
                        )
                    )
                cart.status = "Ordered"
                cart.checkout_request_id = request_id
                session.flush()
                return self._ordered(session, cart)
        except IntegrityError:  # checked out at the same moment by another request: what that one made
            with self._session() as session:
                cart = session.scalars(select(SandboxCart).where(SandboxCart.cart_id == cart_id)).first()
                if cart is None or cart.status != "Ordered":
                    raise ProviderError(
                        "The sandbox could not check out the cart: try again.", correlation_id=correlation_id
                    ) from None
                return self._ordered(session, cart)

    def checkout_cart(
        self, tenant_id: str, cart_id: str, *, correlation_id: str, request_id: str | None = None
    ) -> list[ProviderSubscription]:
        self._call("checkout_cart", correlation_id)
        bought = self._checkout(tenant_id, cart_id, correlation_id, request_id)
        self._answer_lost("checkout_cart", correlation_id)
        return bought

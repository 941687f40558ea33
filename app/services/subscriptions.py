"""A subscription's term and its seat batches: how a new subscription is recorded, when a term ends, and the
168-hour window of each purchase, increase and renewal.

Microsoft's rules (https://learn.microsoft.com/partner-center/customers/subscription-lifecycle and the new-commerce
cancellation policy, ../shared/reference/microsoft-commerce.md): a new subscription can be cancelled, and each
purchase, quantity increase or renewal reduced, within 168 hours (7 days) of that moment for a prorated refund;
after that the seats are paid to the end of the term. A term of one month, one year or three years starts on the
purchase day and ends the day before the same day of the month one term later; it renews (or expires) on that day —
``renew_on`` is the first day of the next term.
"""

from __future__ import annotations

import calendar
import datetime as dt

from app import clock
from app.extensions import db
from app.models.accounts import Account
from app.models.catalog import TERM_MONTHS, Availability
from app.models.subscriptions import SeatBatch, Subscription

WINDOW = dt.timedelta(hours=168)


def add_months(day: dt.date, months: int) -> dt.date:
    """The same day ``months`` later (the month's last day when it has no such day: 31 Jan + 1 month = 28/29 Feb)."""
    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    return day.replace(year=year, month=month, day=min(day.day, calendar.monthrange(year, month)[1]))


def renewal_date(started: dt.date, term: str) -> dt.date:
    """The day a term started on ``started`` renews: one term later."""
    return add_months(started, TERM_MONTHS[term])


def window_end(added_at: dt.datetime) -> dt.datetime:
    """The end (UTC, naive) of the 168-hour window of seats added at ``added_at`` (UTC, naive)."""
    return added_at + WINDOW


def new_subscription(
    customer: Account,
    availability: Availability,
    quantity: int,
    *,
    unit_price,
    unit_cost,
    ms_unit_cost,
    provider_subscription_id: str | None,
    term_started_on: dt.date | None = None,
    renew_on: dt.date | None = None,
    auto_renew: bool = True,
    added_at: dt.datetime | None = None,
    refundable_until: dt.datetime | None = None,
    created_on: dt.datetime | None = None,
) -> Subscription:
    """A subscription of ``availability`` (prices per licence per billing period) with its purchase as the first seat
    batch; flushed. ``refundable_until``: Microsoft's stated end of the purchase's window (default: 168 hours after
    ``added_at``, itself now by default)."""
    added_at = added_at or clock.utcnow()
    started = term_started_on or clock.today()
    sub = Subscription(
        account_id=customer.id,
        product_id=availability.product_id,
        availability_id=availability.id,
        term=availability.term,
        billing_cycle=availability.billing_frequency,
        quantity=quantity,
        assigned=0,
        unit_price=unit_price,
        unit_cost=unit_cost,
        ms_unit_cost=ms_unit_cost,
        auto_renew=auto_renew,
        term_started_on=started,
        renew_on=renew_on or renewal_date(started, availability.term),
        provider_subscription_id=provider_subscription_id,
        created_on=created_on or added_at,
    )
    db.session.add(sub)
    db.session.flush()
    until = refundable_until or window_end(added_at)
    db.session.add(
        SeatBatch(
            account_id=customer.id,
            subscription_id=sub.id,
            kind="purchase",
            quantity=quantity,
            refundable=quantity if until > clock.utcnow() else 0,
            added_at=added_at,
            refundable_until=until,
            unit_price=unit_price,
        )
    )
    db.session.flush()
    return sub

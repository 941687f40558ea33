"""The cancellation window of each seat batch: what can still be given back, until when, for what refund; reductions
and cancellations within it.

Microsoft's rules (new commerce, licence-based):
- each purchase, quantity increase and renewal adds seats that can be reduced within 168 hours (7 days) of that
  moment, each with its own window, which Microsoft states as the subscription's ``refundableQuantity``
  (``details``: ``quantity``, ``allowedUntilDateTime``)
  (https://learn.microsoft.com/partner-center/customers/subscription-lifecycle,
  https://learn.microsoft.com/dotnet/api/microsoft.store.partnercenter.models.subscriptions.refundablequantitydetail);
  after that the seats are paid to the end of the term;
- a subscription can be cancelled only within 7 days of its purchase or renewal; after that the API refuses
  (https://learn.microsoft.com/partner-center/developer/cancel-an-azure-marketplace-subscription), by a PATCH of its
  ``status`` to ``deleted``, and its licences are taken from their users.

The portal's rules on top (Microsoft does not document them):
- a window is open while ``now < refundable_until`` (UTC; 168 real hours, whatever New Zealand's clocks do);
- a reduction of N seats is allowed up to the sum of the open batches' refundable seats and takes them from the
  newest batch first (the sandbox does the same); beyond that it is refused with the reason, and offered at renewal;
- the refund estimate of a batch is seats × its unit price × the days left in the current billing period (from
  today, New Zealand's date, to the period's end) / the days of that period — daily proration, half up to the cent.
  It is an estimate: Microsoft's invoice is the truth.

Every change holds the subscription's licence lease (``licensing._Lease``) and checks again under it, so two
reductions at once never give back more than is refundable.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from decimal import Decimal

from sqlalchemy import select

from app import clock
from app.csp import get_provider
from app.extensions import db
from app.models.operations import ProviderOperation
from app.models.subscriptions import LicenceAssignment, SeatBatch, Subscription
from app.services import licensing, operations, pricing, subscriptions
from app.services.events import record_event
from app.services.licensing import LicenceError
from security import capabilities
from security import permissions as P

log = logging.getLogger(__name__)

CANCEL = "subscription_cancel"  # the durable operation's kind


class ReductionRefused(LicenceError):
    """More seats than can still be given back: ``quantity`` is what was asked, to be offered at renewal."""

    def __init__(self, message: str, quantity: int):
        super().__init__(message)
        self.quantity = quantity


def when(value: dt.datetime | None) -> str:
    """A stored UTC time as ``08/12/2026 10:15 AM`` in the portal's zone."""
    return clock.local(value).strftime("%d/%m/%Y %I:%M %p") if value else ""


# -- reading the windows -----------------------------------------------------------------------------------------
def batches(sub: Subscription) -> list[SeatBatch]:
    """The subscription's batches, oldest first (read fresh: a lease holder may have changed them)."""
    return list(
        db.session.scalars(
            select(SeatBatch)
            .where(SeatBatch.subscription_id == sub.id)
            .order_by(SeatBatch.added_at, SeatBatch.id)
            .execution_options(populate_existing=True)
        )
    )


def is_open(batch: SeatBatch, now: dt.datetime | None = None) -> bool:
    return (now or clock.utcnow()) < batch.refundable_until


def open_batches(sub: Subscription, now: dt.datetime | None = None) -> list[SeatBatch]:
    """Batches with seats still returnable at ``now`` (UTC naive), newest first: the order they are given back in."""
    now = now or clock.utcnow()
    return [b for b in reversed(batches(sub)) if b.refundable > 0 and is_open(b, now)]


def refundable(sub: Subscription, now: dt.datetime | None = None) -> int:
    """How many seats can still be given back at ``now``."""
    return sum(b.refundable for b in open_batches(sub, now))


def billing_period(sub: Subscription, today: dt.date | None = None) -> tuple[dt.date, dt.date]:
    """The current billing period [start, end) of ``sub`` on ``today``: periods of ``period_months`` from the term's
    start."""
    today = today or clock.today()
    months = sub.period_months
    k = 0
    start, end = sub.term_started_on, subscriptions.add_months(sub.term_started_on, months)
    while end <= today and k < 1000:
        k += 1
        start = subscriptions.add_months(sub.term_started_on, k * months)
        end = subscriptions.add_months(sub.term_started_on, (k + 1) * months)
    return start, end


def refund_estimate(sub: Subscription, seats: int, unit_price: Decimal, today: dt.date | None = None) -> Decimal:
    """seats × unit price × days left in the billing period (today included) / days of the period, half up."""
    today = today or clock.today()
    start, end = billing_period(sub, today)
    days = (end - start).days
    left = min(days, max(0, (end - max(today, start)).days))
    return pricing.cents(Decimal(seats) * Decimal(unit_price) * left / days)


@dataclasses.dataclass(frozen=True)
class BatchLine:
    id: int
    kind: str
    added_at: dt.datetime
    quantity: int
    returnable: int  # seats that can still be given back now (0 once its window closed)
    until: dt.datetime  # the window's end, UTC naive
    open: bool
    refund: Decimal  # what giving back ``returnable`` seats would refund (estimate)
    unit_price: Decimal = Decimal("0")

    @property
    def until_text(self) -> str:
        return when(self.until)

    @property
    def until_iso(self) -> str:
        """The window's end for the page's countdown (UTC, ISO 8601)."""
        return self.until.strftime("%Y-%m-%dT%H:%M:%SZ")

    def left(self, now: dt.datetime | None = None) -> str:
        """Time left in the window, as the countdown shows it: ``6d 23h 59m 58s``."""
        return time_left(self.until, now)


def time_left(until: dt.datetime, now: dt.datetime | None = None) -> str:
    seconds = int((until - (now or clock.utcnow())).total_seconds())
    if seconds <= 0:
        return "closed"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{days}d {hours}h {minutes}m {seconds}s"


@dataclasses.dataclass(frozen=True)
class Windows:
    """What the subscription page shows of the windows."""

    lines: list[BatchLine]
    refundable: int
    refund: Decimal
    can_cancel: bool
    cancel_until: dt.datetime | None
    cancel_refund: Decimal

    @property
    def cancel_until_text(self) -> str:
        return when(self.cancel_until)


def summary(sub: Subscription, now: dt.datetime | None = None) -> Windows:
    now = now or clock.utcnow()
    today = clock.local(now).date()
    lines = []
    for b in batches(sub):
        live = is_open(b, now) and sub.status == "active"
        seats = b.refundable if live else 0
        lines.append(
            BatchLine(
                id=b.id,
                kind=b.kind,
                added_at=b.added_at,
                quantity=b.quantity,
                returnable=seats,
                until=b.refundable_until,
                open=live and seats > 0,
                refund=refund_estimate(sub, seats, b.unit_price, today) if seats else Decimal("0.00"),
                unit_price=b.unit_price,
            )
        )
    start = term_start_batch(sub)
    total = sum((line.refund for line in lines), Decimal("0.00"))
    return Windows(
        lines=lines,
        refundable=sum(line.returnable for line in lines),
        refund=total,
        can_cancel=cancellable(sub, now),
        cancel_until=start.refundable_until if start else None,
        cancel_refund=total,
    )


@dataclasses.dataclass(frozen=True)
class Take:
    """Seats a reduction takes from one batch, and their refund (estimate)."""

    batch: BatchLine
    seats: int
    refund: Decimal


def plan(sub: Subscription, fewer: int, now: dt.datetime | None = None) -> list[Take]:
    """What giving ``fewer`` seats back would take from each open batch, newest first (check_reduction first)."""
    now = now or clock.utcnow()
    today = clock.local(now).date()
    lines = {line.id: line for line in summary(sub, now).lines}
    takes = []
    for b in open_batches(sub, now):
        if fewer <= 0:
            break
        seats = min(fewer, b.refundable)
        takes.append(Take(lines[b.id], seats, refund_estimate(sub, seats, b.unit_price, today)))
        fewer -= seats
    return takes


def term_start_batch(sub: Subscription) -> SeatBatch | None:
    """The batch that started the current term: its purchase, or its latest renewal."""
    starts = [b for b in batches(sub) if b.kind in ("purchase", "renewal")]
    return starts[-1] if starts else None


def cancellable(sub: Subscription, now: dt.datetime | None = None) -> bool:
    start = term_start_batch(sub)
    return sub.status == "active" and start is not None and is_open(start, now)


# -- the rules --------------------------------------------------------------------------------------------------
def check_reduction(sub: Subscription, quantity: int, now: dt.datetime | None = None) -> None:
    """May ``sub`` go down to ``quantity`` now? LicenceError (ReductionRefused beyond the windows) if not."""
    now = now or clock.utcnow()
    name = sub.product.name
    if sub.status != "active":
        raise LicenceError(f"{name} is {sub.status}: its licences cannot change.")
    if quantity < 1:
        raise LicenceError("Keep at least 1 licence, or cancel the subscription.")
    if quantity < sub.assigned:
        raise LicenceError(
            f"{sub.assigned} licences of {name} are assigned: unassign some before going down to {quantity}."
        )
    fewer = sub.quantity - quantity
    available = open_batches(sub, now)
    can = sum(b.refundable for b in available)
    if fewer <= can:
        return
    renews = f"the end of the term (it renews on {sub.renew_on:%d/%m/%Y})"
    if can == 0:
        reason = (
            f"No licences of {name} can be given back now: each purchase or increase can be reduced only within 7 "
            f"days (168 hours); all {fewer} are paid to {renews}."
        )
    else:
        untils = " and ".join(f"{b.refundable} until {when(b.refundable_until)}" for b in reversed(available))
        if len(available) == 1:
            untils = f"until {when(available[0].refundable_until)}"
        reason = (
            f"Only {can} licence{'s' if can != 1 else ''} of {name} can still be given back, {untils}; the other "
            f"{fewer - can} {'are' if fewer - can != 1 else 'is'} paid to {renews}."
        )
    raise ReductionRefused(f"{reason} You can schedule the reduction to {quantity} at renewal instead.", quantity)


def reduce_to(sub: Subscription, quantity: int) -> None:
    """Give seats back down to ``quantity``: checked, then under the licence lease checked again, then Microsoft
    (licensing's durable quantity change), whose answer updates the batches (``quantity_changed``)."""
    check_reduction(sub, quantity)
    with licensing._Lease(sub).held():
        db.session.refresh(sub)
        check_reduction(sub, quantity)
        licensing._send_quantity(sub, quantity)


def reduce(sub: Subscription, give_back: int) -> None:
    """The subscription page's reduction: ``give_back`` seats fewer (needs Orders)."""
    capabilities.require(P.ORDERS, P.WRITE)
    if give_back < 1:
        raise LicenceError("Enter how many licences to give back (1 or more).")
    reduce_to(sub, sub.quantity - give_back)


def quantity_changed(sub: Subscription, before: int, answer) -> None:
    """Microsoft changed ``sub`` from ``before`` to ``answer.quantity`` seats: an increase is a new batch whose window
    ends at Microsoft's newest ``allowedUntilDateTime`` (else 168 hours from now); a decrease takes seats from the
    open batches, newest first."""
    now = clock.utcnow()
    after = answer.quantity
    if after > before:
        stated = [r.allowed_until for r in getattr(answer, "refundable", ()) if r.allowed_until > now]
        db.session.add(
            SeatBatch(
                account_id=sub.account_id,
                subscription_id=sub.id,
                kind="increase",
                quantity=after - before,
                refundable=after - before,
                added_at=now,
                refundable_until=max(stated) if stated else subscriptions.window_end(now),
                unit_price=sub.unit_price,
            )
        )
    elif after < before:
        fewer = before - after
        for batch in open_batches(sub, now):
            taken = min(fewer, batch.refundable)
            batch.refundable -= taken
            fewer -= taken
            if fewer == 0:
                break
        if fewer:
            log.error("Subscription %s: %s seats given back beyond its open windows", sub.id, fewer)
    db.session.flush()


# -- cancellation -------------------------------------------------------------------------------------------------
def check_cancel(sub: Subscription, now: dt.datetime | None = None) -> None:
    name = sub.product.name
    if sub.status != "active":
        raise LicenceError(f"{name} is {sub.status}: it cannot be cancelled.")
    start = term_start_batch(sub)
    if start is None or not is_open(start, now):
        closed = f" on {when(start.refundable_until)}" if start else ""
        raise LicenceError(
            f"{name} can no longer be cancelled: a subscription can be cancelled only within 7 days (168 hours) of "
            f"its purchase or renewal, and that window closed{closed}. Turn auto-renew off so that it ends at the "
            f"end of its term (it renews on {sub.renew_on:%d/%m/%Y}), or schedule a change at renewal."
        )


def _record_cancelled(sub: Subscription, how: str) -> None:
    """The portal matches a cancelled subscription: status and time, its licences released (Microsoft takes them
    from their users), nothing refundable any more; a usage point and an event."""
    if sub.status == "cancelled":
        return
    refund = summary(sub).cancel_refund
    sub.status, sub.cancelled_at = "cancelled", clock.utcnow()
    for assignment in db.session.scalars(
        select(LicenceAssignment).where(LicenceAssignment.subscription_id == sub.id)
    ).all():
        db.session.delete(assignment)
    sub.assigned = 0
    for batch in batches(sub):
        batch.refundable = 0
    db.session.flush()
    licensing.record_usage(sub)
    record_event(
        "subscription.cancelled",
        account_id=sub.account_id,
        target=sub,
        summary=f"Cancelled {sub.quantity} × {sub.product.name}; refund about {pricing.cents(refund)} ({how})",
    )


def _match_cancelled(sub: Subscription, truth) -> tuple[bool, str]:
    """Microsoft's record after an unanswered cancel: deleted (the portal matches it) or still there."""
    from app.services.reconcile import PORTAL_STATUS

    if PORTAL_STATUS.get(str(truth.status).lower()) == "cancelled":
        _record_cancelled(sub, "Microsoft confirms it after an unanswered call")
        return True, f"{sub.product.name} is cancelled"
    return False, f"{sub.product.name} is still {truth.status}"


def cancel(sub: Subscription) -> None:
    """Cancel ``sub`` within its purchase's (or renewal's) window: Microsoft first (a durable operation, read back
    after a failure), then the portal (needs Orders)."""
    capabilities.require(P.ORDERS, P.WRITE)
    check_cancel(sub)
    with licensing._Lease(sub).held():
        db.session.refresh(sub)
        check_cancel(sub)
        tenant_id = licensing._linked(sub)
        operation = licensing._begin(
            CANCEL,
            sub.account_id,
            f"subscription:{sub.id}",
            {"subscription_id": sub.id, "provider_subscription_id": sub.provider_subscription_id},
        )
        answer, cid, settled = licensing._send(
            operation,
            lambda cid, rid: get_provider().cancel_subscription(
                tenant_id, sub.provider_subscription_id, correlation_id=cid, request_id=rid
            ),
            licensing._read_subscription(sub),
            lambda truth, _exc: _match_cancelled(sub, truth),
            what=f"cancel {sub.product.name}",
            noun="subscription",
            account_id=sub.account_id,
            target=sub,
        )
        if not settled:
            _record_cancelled(sub, f"request id {operation.request_id}")
        operations.succeeded(operation, {"status": answer.status}, cid)


def recover_cancel(operation: ProviderOperation) -> None:
    """An interrupted cancellation: Microsoft's record says whether it happened; the portal matches it."""
    params = operations.params_of(operation)
    sub = db.session.get(Subscription, params["subscription_id"])
    if sub is None:
        return licensing._interrupted(operation, False, "the subscription is no longer in the portal")
    done, words = _match_cancelled(sub, licensing._read_subscription(sub)())
    licensing._interrupted(operation, done, words)

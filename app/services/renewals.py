"""Renewals (issue 13): what happens at a subscription's term end — a change scheduled for renewal, the renewal or
expiry itself — and upgrades to another SKU now.

Microsoft's rules (https://learn.microsoft.com/partner-center/developer/create-scheduled-changes):

- A change for the next term (SKU within what ``transitionEligibilities?eligibilityType=scheduled`` lists, term,
  billing frequency, quantity) is PATCHed as the subscription's ``scheduledNextTermInstructions``; only while
  auto-renew is on. **Any mid-term (immediate) change deletes it** — a quantity change, auto-renew off, an upgrade:
  the portal clears its record of it in the same transaction (``after_midterm_change``), and the forms warn first.
- Renewal starts at 00:00 UTC the day after the term's last day (the portal's ``renew_on``) and can take up to
  24 hours. **The last moment a change for renewal is accepted** is that start less ``RENEWAL_CHANGE_LOCK_HOURS``
  (24 by default: some distributors lock instructions 24 hours before renewal), shown in the portal's zone.
- Quantity at renewal: Microsoft accepts fewer licences than are assigned; the portal does not — every assigned user
  stays licensed: a quantity below the assigned count is refused ("unassign first"), and while a change is scheduled
  no licence is assigned beyond its quantity (app/services/licensing.py).
- ``flask portal renew`` (daily, and the maintenance loop) reads each subscription that reached its term end back
  from Microsoft rather than assuming: renewed there → a new term here (Microsoft's SKU, term, billing cycle and
  quantity, re-priced with today's price lists — where a changed markup reaches existing subscriptions — and a
  "renewal" seat batch with its 168-hour window); expired there (auto-renew off) → expired here, its licences
  released (Microsoft takes an expired subscription's licences back from its users); neither yet → left for the next
  run. Idempotent, in batches.

Upgrades (https://learn.microsoft.com/partner-center/developer/transition-a-new-commerce-subscription): the targets
``transitionEligibilities?eligibilityType=immediate`` lists, then ``POST …/transitions`` (``transition_only``). All
seats: the subscription converts to the target SKU (the same subscription, its term end kept) and every licence
follows. Some seats: a new subscription of the target SKU, co-termed with the source, holds them; the holders who
move are the ones chosen, or else the most recently assigned first (as many as the moved seats, and at least as many
as the source could no longer hold). Each licence move is its own durable operation (add the target SKU, remove the
source's, in one call).

Every change of Microsoft's state is a durable operation (app/services/operations.py, sent through
``licensing._begin`` / ``licensing._send``: committed pending first, read back after a failure).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Callable
from contextvars import ContextVar
from decimal import Decimal

from flask import current_app, has_app_context
from sqlalchemy import delete, select
from sqlalchemy.orm import selectinload

from app import clock
from app.csp import get_provider
from app.csp.base import NextTermInstructions, ProviderError, ProviderSubscription, new_correlation_id
from app.extensions import db
from app.formatting import format_money
from app.models.accounts import Account
from app.models.catalog import FREQUENCY_LABELS, TERM_LABELS, Availability, Product
from app.models.subscriptions import LicenceAssignment, M365User, SeatBatch, Subscription
from app.services import catalogue, licensing, operations, pricing, subscriptions
from app.services.events import record_event
from app.services.licensing import LicenceError
from security import capabilities, scoping
from security import permissions as P

log = logging.getLogger(__name__)

SCHEDULE, UPGRADE, LICENCE_MOVE = "renewal_schedule", "upgrade", "licence_move"
DEFAULT_LOCK_HOURS = 24
RENEW_BATCH = 200


# -- what is scheduled, and until when it can change ---------------------------------------------------------------
def lock_hours() -> int:
    return int(current_app.config.get("RENEWAL_CHANGE_LOCK_HOURS", DEFAULT_LOCK_HOURS)) if has_app_context() else 24


def renewal_starts_at(sub: Subscription) -> dt.datetime:
    """00:00 UTC on ``renew_on`` (naive UTC): when Microsoft starts the renewal."""
    return dt.datetime.combine(sub.renew_on, dt.time())


def last_change_moment(sub: Subscription) -> dt.datetime:
    """The last moment (naive UTC) a change for the renewal is accepted."""
    return renewal_starts_at(sub) - dt.timedelta(hours=lock_hours())


def availability_words(availability: Availability) -> str:
    """ "1 year billed monthly"."""
    return f"{TERM_LABELS[availability.term]} billed {FREQUENCY_LABELS[availability.billing_frequency].lower()}"


def describe(sub: Subscription) -> str | None:
    """ "At renewal on 15/01/2027: Microsoft 365 Business Standard, 1 year billed monthly, 8 licences", or None."""
    if not sub.has_scheduled_change:
        return None
    availability = sub.next_availability or sub.availability
    quantity = sub.next_quantity or sub.quantity
    return (
        f"At renewal on {sub.renew_on:%d/%m/%Y}: {availability.product.name}, {availability_words(availability)}, "
        f"{quantity} licence{'s' if quantity != 1 else ''}"
    )


def _offer(availability: Availability) -> str:
    return availability.product.sku


def _match_availabilities(eligible) -> list[Availability]:
    """The catalogue's availabilities (on sale) of the eligibilities a provider listed."""
    skus = {e.offer_id for e in eligible}
    if not skus:
        return []
    wanted = {(e.offer_id, e.term, e.billing_cycle) for e in eligible}
    by_ms_id = {(e.offer_id, e.availability_id) for e in eligible if e.availability_id}
    found = []
    for availability in catalogue.for_sale():
        sku = availability.product.sku
        if sku not in skus:
            continue
        if (sku, availability.term, availability.billing_frequency) in wanted or (
            sku,
            availability.ms_availability_id,
        ) in by_ms_id:
            found.append(availability)
    return found


def eligible_at_renewal(sub: Subscription) -> list[Availability]:
    """What the subscription may renew as (Microsoft's scheduled eligibilities); ProviderError when it cannot say."""
    tenant_id = licensing._linked(sub)
    eligible = get_provider().get_transition_eligibilities(
        tenant_id, sub.provider_subscription_id, "scheduled", correlation_id=new_correlation_id()
    )
    return _match_availabilities(eligible)


def eligible_upgrades(sub: Subscription) -> list[Availability]:
    """What the subscription may be upgraded to now (Microsoft's immediate eligibilities)."""
    tenant_id = licensing._linked(sub)
    eligible = get_provider().get_transition_eligibilities(
        tenant_id, sub.provider_subscription_id, "immediate", correlation_id=new_correlation_id()
    )
    return [a for a in _match_availabilities(eligible) if a.product_id != sub.product_id]


# -- scheduling a change for renewal ---------------------------------------------------------------------------------
def check_schedule(sub: Subscription, availability: Availability, quantity: int, now: dt.datetime | None = None):
    """Why this change for renewal is refused (LicenceError), before Microsoft is asked."""
    if sub.status != "active":
        raise LicenceError(f"{sub.product.name} is {sub.status}: it does not renew.")
    if not sub.auto_renew:
        raise LicenceError(
            f"Auto-renew of {sub.product.name} is off: it expires on {sub.renew_on:%d/%m/%Y}. Microsoft accepts a "
            "change at renewal only while auto-renew is on: turn it on first."
        )
    now = now or clock.utcnow()
    if now >= last_change_moment(sub):
        raise LicenceError(
            f"Changes for the renewal on {sub.renew_on:%d/%m/%Y} were accepted until "
            f"{clock.local(last_change_moment(sub)):%d/%m/%y %I:%M %p}."
        )
    if not 1 <= quantity <= 10000:
        raise LicenceError("Renew with between 1 and 10,000 licences.")
    if quantity < sub.assigned:
        raise LicenceError(
            f"{sub.assigned} licences of {sub.product.name} are assigned: unassign some before renewing with "
            f"{quantity}."
        )
    if availability.id == sub.availability_id and quantity == sub.quantity and not sub.has_scheduled_change:
        raise LicenceError(
            f"{sub.product.name} already renews as {availability_words(availability)}, {quantity} "
            "licences: nothing to change."
        )


def _instructions(availability: Availability, quantity: int) -> NextTermInstructions:
    return NextTermInstructions(
        offer_id=_offer(availability),
        term=availability.term,
        billing_cycle=availability.billing_frequency,
        quantity=quantity,
        availability_id=availability.ms_availability_id,
    )


def _same(a: NextTermInstructions | None, b: NextTermInstructions | None) -> bool:
    if a is None or b is None:
        return a is b
    return (a.offer_id, a.term, a.billing_cycle, a.quantity) == (b.offer_id, b.term, b.billing_cycle, b.quantity)


def _availability_of(offer_id: str, term: str, billing_cycle: str) -> Availability | None:
    """The availability Microsoft's SKU, term and billing cycle name; during a renew pass its id is remembered (the
    object comes from the session's identity map when the batch already holds it)."""
    books = _books.get()
    key = ("availability", offer_id, term, billing_cycle)
    if books is not None and key in books:
        return db.session.get(Availability, books[key])
    product = db.session.scalar(select(Product).where(Product.sku == offer_id))
    found = catalogue.availability_of(product, term, billing_cycle) if product is not None else None
    if books is not None and found is not None:
        books[key] = found.id
    return found


def _record_scheduled(sub: Subscription, scheduled: NextTermInstructions | None) -> None:
    """The portal's record of what is scheduled: Microsoft's instructions (None: nothing)."""
    if scheduled is None:
        sub.next_availability_id = sub.next_quantity = sub.next_scheduled_at = None
        return
    availability = _availability_of(scheduled.offer_id, scheduled.term, scheduled.billing_cycle)
    sub.next_availability_id = availability.id if availability and availability.id != sub.availability_id else None
    sub.next_quantity = scheduled.quantity
    sub.next_scheduled_at = clock.utcnow()


def _portal_scheduled(sub: Subscription) -> NextTermInstructions | None:
    if not sub.has_scheduled_change:
        return None
    return _instructions(sub.next_availability or sub.availability, sub.next_quantity or sub.quantity)


def _match_scheduled(sub: Subscription, wanted: NextTermInstructions | None, truth: ProviderSubscription):
    """Make the portal's record Microsoft's (a repair an event); whether ``wanted`` is what Microsoft has."""
    if not _same(_portal_scheduled(sub), truth.scheduled):
        _record_scheduled(sub, truth.scheduled)
        record_event(
            "subscription.repaired",
            account_id=sub.account_id,
            target=sub,
            summary=f"Microsoft says {sub.product.name} has "
            f"{'a change scheduled for renewal' if truth.scheduled else 'no change scheduled for renewal'}: "
            "the portal now matches",
        )
    words = describe(sub) or f"{sub.product.name} renews as it is"
    return _same(wanted, truth.scheduled), words


def _send_schedule(sub: Subscription, wanted: NextTermInstructions | None, what: str):
    tenant_id = licensing._linked(sub)
    params = {"subscription_id": sub.id, "provider_subscription_id": sub.provider_subscription_id}
    if wanted is not None:
        params.update(dataclasses.asdict(wanted))
    operation = licensing._begin(SCHEDULE, sub.account_id, f"subscription:{sub.id}", params)
    answer, cid, _settled = licensing._send(
        operation,
        lambda cid, rid: get_provider().schedule_next_term(
            tenant_id, sub.provider_subscription_id, wanted, correlation_id=cid, request_id=rid
        ),
        licensing._read_subscription(sub),
        lambda truth, _exc: _match_scheduled(sub, wanted, truth),
        what=what,
        noun="subscription",
        account_id=sub.account_id,
        target=sub,
    )
    _record_scheduled(sub, answer.scheduled if answer.scheduled is not None or wanted is None else wanted)
    return operation, cid


def schedule(sub: Subscription, availability: Availability, quantity: int) -> None:
    """Schedule ``availability`` and ``quantity`` for the next term (what Microsoft lists as eligible at renewal)."""
    capabilities.require(P.ORDERS)
    check_schedule(sub, availability, quantity)
    try:
        eligible = eligible_at_renewal(sub)
    except ProviderError as exc:
        raise LicenceError(
            f"Microsoft could not say what {sub.product.name} may renew as: {exc} (correlation id "
            f"{exc.correlation_id}). Try again in a moment."
        ) from exc
    if availability.id != sub.availability_id and availability.id not in {a.id for a in eligible}:
        raise LicenceError(f"{availability} is not available at the renewal of {sub.product.name}.")
    wanted = _instructions(availability, quantity)
    operation, cid = _send_schedule(
        sub, wanted, f"schedule {availability.product.name}, {availability_words(availability)}, {quantity} licences"
    )
    record_event(
        "subscription.renewal_scheduled",
        account_id=sub.account_id,
        target=sub,
        summary=f"{describe(sub)} (request id {operation.request_id})",
    )
    operations.succeeded(operation, {"scheduled": True}, cid)


def clear(sub: Subscription) -> None:
    """Renew as it is: the scheduled change deleted at Microsoft, then here."""
    capabilities.require(P.ORDERS)
    if not sub.has_scheduled_change:
        raise LicenceError(f"Nothing is scheduled for the renewal of {sub.product.name}.")
    before = describe(sub)
    operation, cid = _send_schedule(sub, None, f"clear the change scheduled for {sub.product.name}")
    record_event(
        "subscription.renewal_cleared",
        account_id=sub.account_id,
        target=sub,
        summary=f"{sub.product.name}: cleared the change scheduled for renewal ({before}) "
        f"(request id {operation.request_id})",
    )
    operations.succeeded(operation, {"scheduled": False}, cid)


def after_midterm_change(sub: Subscription, what: str) -> None:
    """A mid-term change succeeded: Microsoft deleted what was scheduled for renewal; so does the portal (an event).
    Called by licensing (quantity, auto-renew) and by ``upgrade`` in the transaction that records the change."""
    if not sub.has_scheduled_change:
        return
    before = describe(sub)
    _record_scheduled(sub, None)
    record_event(
        "subscription.renewal_cleared",
        account_id=sub.account_id,
        target=sub,
        summary=f"{sub.product.name}: {what} cleared the change scheduled for renewal ({before}), as Microsoft "
        "deletes scheduled changes on any mid-term change",
    )


# -- the renewal itself --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class RenewReport:
    renewed: int = 0
    expired: int = 0
    waiting: int = 0
    problems: int = 0
    lines: list[str] = dataclasses.field(default_factory=list)


def _batch(sub: Subscription, start: dt.date, truth: ProviderSubscription | None) -> None:
    added = dt.datetime.combine(start, dt.time())
    allowed = [r.allowed_until for r in truth.refundable] if truth else []
    until = max(allowed) if allowed else subscriptions.window_end(added)
    db.session.add(
        SeatBatch(
            account_id=sub.account_id,
            subscription_id=sub.id,
            kind="renewal",
            quantity=sub.quantity,
            refundable=sub.quantity if until > clock.utcnow() else 0,
            added_at=added,
            refundable_until=until,
            unit_price=sub.unit_price,
        )
    )


# A renew pass's price lists: one PriceBook per reseller and renewal day, read once (not once per subscription).
_books: ContextVar[dict | None] = ContextVar("renewal_price_books", default=None)


def _quote(sub: Subscription, availability: Availability, on: dt.date) -> pricing.Quote:
    """``pricing.quote`` for the new term — from the pass's price books when a pass is running."""
    books = _books.get()
    if books is None:
        return pricing.quote(sub.account, availability, on=on, subscription_id=sub.id)
    reseller_id = pricing.reseller_id_of(sub.account)
    book = books.get((reseller_id, on))
    if book is None:
        book = books[(reseller_id, on)] = pricing.PriceBook(reseller_id, None, on)
    return book.quote(sub.account_id, availability, sub.id)


def _apply_renewal(sub: Subscription, availability: Availability, quantity: int, end: dt.date, truth) -> str | None:
    """A new term here (its price re-quoted for the new term); None, or why it could not be recorded."""
    start = sub.renew_on
    if quantity < sub.assigned:
        return (
            f"{sub.product.name}: renewed with {quantity} licences but {sub.assigned} are assigned here: unassign "
            "some, then reconcile"
        )
    try:
        price = _quote(sub, availability, start)
        prices = (price.sell, price.buy, price.ms_cost)
    except pricing.NoPrice:
        if availability.id != sub.availability_id:
            return f"{sub.product.name}: {availability} has no price for {start:%m/%Y}"
        prices = (sub.unit_price, sub.unit_cost, sub.ms_unit_cost)  # no new price yet: the term's stays
    before = (sub.product.name, sub.unit_price)
    sub.product_id, sub.availability_id = availability.product_id, availability.id
    sub.product, sub.availability = availability.product, availability
    sub.term, sub.billing_cycle, sub.quantity = availability.term, availability.billing_frequency, quantity
    sub.unit_price, sub.unit_cost, sub.ms_unit_cost = prices
    sub.term_started_on, sub.renew_on = start, end
    _record_scheduled(sub, None)
    _batch(sub, start, truth)
    licensing.record_usage(sub)
    record_event(
        "subscription.renewed",
        account_id=sub.account_id,
        target=sub,
        summary=(
            f"{before[0]} renewed on {start:%d/%m/%Y} as {availability.product.name}, "
            f"{availability_words(availability)}: {quantity} licences at {format_money(sub.unit_price)} a licence per "
            f"billing period (was {format_money(before[1])}); next renewal {end:%d/%m/%Y}"
        ),
    )
    return None


def _expire(sub: Subscription) -> None:
    """Auto-renew was off: the subscription ends, and Microsoft takes its licences back from their users."""
    released = sub.assigned
    db.session.execute(delete(LicenceAssignment).where(LicenceAssignment.subscription_id == sub.id))
    sub.assigned = 0
    sub.status = "expired"
    _record_scheduled(sub, None)
    licensing.record_usage(sub)
    record_event(
        "subscription.expired",
        account_id=sub.account_id,
        target=sub,
        summary=f"{sub.product.name} expired on {sub.renew_on:%d/%m/%Y} (auto-renew was off); "
        f"{released} licence{'s' if released != 1 else ''} released",
    )


def _planned(sub: Subscription) -> tuple[Availability, int]:
    return sub.next_availability or sub.availability, sub.next_quantity or sub.quantity


def _renew_one(sub: Subscription, provider, report: RenewReport, dry_run: bool) -> None:
    name = f"{sub.account.name}: {sub.product.name}"
    if dry_run:
        if sub.auto_renew:
            availability, quantity = _planned(sub)
            report.renewed += 1
            report.lines.append(
                f"{name}: would renew as {availability.product.name}, "
                f"{availability_words(availability)}, {quantity} licences"
            )
        else:
            report.expired += 1
            report.lines.append(f"{name}: would expire (auto-renew off)")
        return
    tenant = sub.account.tenant
    if not sub.provider_subscription_id or tenant is None or not tenant.tenant_guid:
        # Nothing at Microsoft to ask: the portal's own instructions.
        if not sub.auto_renew:
            _expire(sub)
            report.expired += 1
            return
        availability, quantity = _planned(sub)
        problem = _apply_renewal(
            sub, availability, quantity, subscriptions.renewal_date(sub.renew_on, availability.term), None
        )
        _count(report, name, problem)
        return
    try:
        truth = provider.get_subscription(
            tenant.tenant_guid, sub.provider_subscription_id, correlation_id=new_correlation_id()
        )
    except ProviderError as exc:
        report.problems += 1
        report.lines.append(f"{name}: Microsoft could not be read ({exc}, correlation id {exc.correlation_id})")
        return
    end = truth.commitment_end or truth.renew_on
    status = truth.status.lower()
    if status == "active" and end is not None and end > sub.renew_on:
        availability = _availability_of(truth.offer_id, truth.term, truth.billing_cycle)
        if availability is None:
            report.problems += 1
            report.lines.append(
                f"{name}: renewed at Microsoft as {truth.offer_id} ({truth.term}, "
                f"{truth.billing_cycle}), which the catalogue does not sell"
            )
            return
        _count(report, name, _apply_renewal(sub, availability, truth.quantity, end, truth))
    elif status in ("expired", "deleted", "cancelled"):
        _expire(sub)
        report.expired += 1
    else:
        report.waiting += 1
        report.lines.append(
            f"{name}: not renewed at Microsoft yet (renewal starts at 00:00 UTC and can take up to 24 hours): next run"
        )


def _count(report: RenewReport, name: str, problem: str | None) -> None:
    if problem:
        report.problems += 1
        report.lines.append(problem)
    else:
        report.renewed += 1


def renew_due(*, dry_run: bool = False, today: dt.date | None = None, echo: Callable[[str], None] | None = None):
    """Renew or expire every active subscription whose ``renew_on`` has come (the portal's date); the report. The
    sandbox first renews on its own side, as Microsoft does. Under a named bypass: every customer's."""
    today = today or clock.today()
    provider = get_provider()
    report = RenewReport()
    if provider.name == "sandbox" and not dry_run:
        provider.renew_due()
    token = _books.set({})
    try:
        _renew_batches(today, provider, report, dry_run, echo)
    finally:
        _books.reset(token)
    return report


def _renew_batches(today: dt.date, provider, report: RenewReport, dry_run: bool, echo) -> None:
    with scoping.bypass("renewals: subscriptions reaching their term end"):
        after = 0
        while True:
            ids = db.session.scalars(
                select(Subscription.id)
                .where(Subscription.status == "active", Subscription.renew_on <= today, Subscription.id > after)
                .order_by(Subscription.id)
                .limit(RENEW_BATCH)
            ).all()
            if not ids:
                break
            # The batch with what each renewal reads (its customer and tenant, SKU and availability): a few statements
            # per batch instead of three lazy loads per subscription (bench/renewals.py).
            batch = db.session.scalars(
                select(Subscription)
                .where(Subscription.id.in_(ids))
                .options(
                    selectinload(Subscription.account).selectinload(Account.tenant),
                    selectinload(Subscription.product),
                    selectinload(Subscription.availability),
                )
            )
            for sub in batch:
                try:
                    _renew_one(sub, provider, report, dry_run)
                except Exception:
                    db.session.rollback()
                    raise
            if not dry_run:
                db.session.commit()
            else:
                db.session.rollback()
            db.session.expunge_all()
            _books.get({}).clear()  # what the batch read is gone with it (expired, detached): read again next batch
            after = ids[-1]
            if echo:
                echo(f"Checked {len(ids)} subscriptions…")


def run_renewals() -> int:
    """The maintenance task: how many were renewed or expired."""
    report = renew_due()
    return report.renewed + report.expired


# -- upgrades --------------------------------------------------------------------------------------------------------
def _holders(sub: Subscription) -> list[M365User]:
    """The subscription's holders, the most recently assigned first."""
    return list(
        db.session.scalars(
            select(M365User)
            .join(LicenceAssignment, LicenceAssignment.m365_user_id == M365User.id)
            .where(LicenceAssignment.subscription_id == sub.id)
            .order_by(LicenceAssignment.assigned_on.desc(), LicenceAssignment.id.desc())
        )
    )


def movers(sub: Subscription, quantity: int, chosen: list[M365User] | None) -> list[M365User]:
    """Whose licences move with ``quantity`` seats (LicenceError when the choice does not fit)."""
    holders = _holders(sub)
    if quantity >= sub.quantity:
        return holders
    at_least = max(0, sub.assigned - (sub.quantity - quantity))
    if chosen is None:
        return holders[: min(quantity, len(holders))]
    ids = {p.id for p in holders}
    if any(p.id not in ids for p in chosen):
        raise LicenceError(f"Choose holders of {sub.product.name} only.")
    if not at_least <= len(chosen) <= quantity:
        raise LicenceError(
            f"Choose between {at_least} and {quantity} users to move: {sub.quantity - quantity} licences stay on "
            f"{sub.product.name} for its {sub.assigned} users."
        )
    return chosen


def _found_transition(sub: Subscription, target: Availability, quantity: int, subs: list[ProviderSubscription]):
    """After an unanswered transition: the subscription holding the moved seats, if Microsoft made it."""
    sku = _offer(target)
    linked = set(
        db.session.scalars(
            select(Subscription.provider_subscription_id).where(Subscription.account_id == sub.account_id)
        )
    )
    source = next((s for s in subs if s.subscription_id == sub.provider_subscription_id), None)
    if quantity >= sub.quantity:
        return source if source is not None and source.offer_id == sku else None
    if source is None or source.quantity != sub.quantity - quantity:
        return None
    return next((s for s in subs if s.offer_id == sku and s.subscription_id not in linked), None)


def upgrade(sub: Subscription, target: Availability, quantity: int, chosen: list[M365User] | None = None):
    """Move ``quantity`` seats of ``sub`` to ``target`` (an eligible upgrade): all of them convert the subscription,
    some go to a new subscription co-termed with it; the licences follow. The subscription holding the moved seats."""
    capabilities.require(P.ORDERS)
    if sub.status != "active":
        raise LicenceError(f"{sub.product.name} is {sub.status}: it cannot be upgraded.")
    if not 1 <= quantity <= sub.quantity:
        raise LicenceError(f"Upgrade between 1 and {sub.quantity} licences.")
    try:
        eligible = eligible_upgrades(sub)
    except ProviderError as exc:
        raise LicenceError(
            f"Microsoft could not list the upgrades of {sub.product.name}: {exc} (correlation id "
            f"{exc.correlation_id}). Try again in a moment."
        ) from exc
    if target.id not in {a.id for a in eligible}:
        raise LicenceError(f"{target} is not an eligible upgrade of {sub.product.name}.")
    moving = movers(sub, quantity, chosen)
    try:
        price = pricing.quote(sub.account, target)
    except pricing.NoPrice as exc:
        raise LicenceError(str(exc)) from None
    tenant_id = licensing._linked(sub)
    source_sku, all_seats = sub.product.sku, quantity == sub.quantity
    with licensing._Lease(sub).held():
        db.session.refresh(sub)
        params = {
            "subscription_id": sub.id,
            "provider_subscription_id": sub.provider_subscription_id,
            "availability_id": target.id,
            "quantity": quantity,
            "movers": [p.id for p in moving],
            "unit_price": str(price.sell),
            "unit_cost": str(price.buy),
            "ms_unit_cost": str(price.ms_cost),
        }
        operation = licensing._begin(UPGRADE, sub.account_id, f"subscription:{sub.id}", params)
        found: dict[str, ProviderSubscription | None] = {}

        def settle(subs, _exc):
            found["sub"] = _found_transition(sub, target, quantity, subs)
            done = found["sub"] is not None
            return done, f"{sub.product.name} {'was' if done else 'was not'} upgraded"

        answer, cid, settled = licensing._send(
            operation,
            lambda cid, rid: get_provider().transition(
                tenant_id,
                sub.provider_subscription_id,
                _offer(target),
                quantity,
                term=target.term,
                billing_cycle=target.billing_frequency,
                availability_id=target.ms_availability_id,
                correlation_id=cid,
                request_id=rid,
            ),
            lambda: get_provider().list_subscriptions(tenant_id, correlation_id=new_correlation_id()),
            settle,
            what=f"upgrade {quantity} licences of {sub.product.name} to {target.product.name}",
            noun="subscription",
            account_id=sub.account_id,
            target=sub,
        )
        made = found["sub"] if settled else answer
        before = sub.product.name
        after_midterm_change(sub, f"Upgrading to {target.product.name}")
        if all_seats:
            holder = _convert(sub, target, price)
        else:
            holder = subscriptions.new_subscription(
                sub.account,
                target,
                quantity,
                unit_price=price.sell,
                unit_cost=price.buy,
                ms_unit_cost=price.ms_cost,
                provider_subscription_id=made.subscription_id,
                term_started_on=clock.today(),
                renew_on=sub.renew_on,  # co-termed with the source
                auto_renew=made.auto_renew,
            )
            licensing.record_usage(holder)
        record_event(
            "subscription.upgraded",
            account_id=sub.account_id,
            target=holder,
            summary=(
                f"{before}: {'all ' if all_seats else ''}{quantity} licence{'s' if quantity != 1 else ''} upgraded to "
                f"{target.product.name} ({availability_words(target)}) at {format_money(price.sell)} a licence per "
                f"billing period; {len(moving)} user{'s' if len(moving) != 1 else ''} move "
                f"(request id {operation.request_id})"
            ),
        )
        _recorded(operation, holder, made.subscription_id, source_sku)
        problems = _finish_moves(sub, holder, moving, source_sku, target.product.sku, check=False)
        if not all_seats:
            _shrink(sub, quantity)
        operations.succeeded(operation, {"subscription_id": holder.id, "provider": made.subscription_id}, cid)
        db.session.commit()
        if problems:
            raise LicenceError(f"{target.product.name} holds the upgraded licences, but: {' '.join(problems)}")
    return holder


def _recorded(operation, holder: Subscription, provider_id: str, from_sku: str) -> None:
    """The upgrade is recorded here (the operation still pending until every licence has moved): committed with a
    note of what it made, so that recovery after a crash in the licence moves finishes them and never records the
    upgrade twice."""
    operation.result = json.dumps({"subscription_id": holder.id, "provider": provider_id, "from_sku": from_sku})
    db.session.commit()


@dataclasses.dataclass(frozen=True)
class _Seats:
    """What ``windows.quantity_changed`` reads of an answer: the quantity."""

    quantity: int


def _shrink(source: Subscription, moved: int) -> None:
    """The source keeps the seats that did not move (never fewer than its licences still assigned here)."""
    from app.services import windows  # the moved seats leave the source's open batches, newest first (as Microsoft)

    windows.quantity_changed(source, source.quantity, _Seats(source.quantity - moved))
    quantity = source.quantity - moved
    if quantity < source.assigned:
        log.error("Subscription %s: %s licences assigned after upgrading away %s", source.id, source.assigned, moved)
        quantity = source.assigned
    source.quantity = quantity
    licensing.record_usage(source)


def _finish_moves(source, holder, movers, from_sku: str, to_sku: str, *, check: bool) -> list[str]:
    """Move each mover's licence that has not moved yet (``check``: ask Microsoft first which have — recovery); each
    move its own durable operation. What could not be moved, in words (a move not known yet is settled by its own
    recoverer)."""
    problems = []
    tenant_id = licensing._tenant_id(source.account)
    for person in movers:
        if holder.id != source.id and licensing._assignment(holder, person) is not None:
            continue  # moved, here and at Microsoft
        if check:
            skus = get_provider().get_user_licences(
                tenant_id, person.provider_user_id or "", correlation_id=new_correlation_id()
            )
            if to_sku in skus and (from_sku == to_sku or from_sku not in skus):
                if holder.id != source.id:
                    licensing._record_assignment(source, person, False)
                    licensing._record_assignment(holder, person, True)
                continue
        try:
            _move_licence(source, holder, person, from_sku, to_sku)
            db.session.commit()
        except LicenceError as exc:
            problems.append(str(exc))
    return problems


def _convert(sub: Subscription, target: Availability, price) -> Subscription:
    """All seats moved: the same subscription is now the target SKU (its term end kept), at the target's price."""
    sub.product_id, sub.availability_id = target.product_id, target.id
    sub.product, sub.availability = target.product, target
    sub.term, sub.billing_cycle = target.term, target.billing_frequency
    sub.unit_price, sub.unit_cost, sub.ms_unit_cost = price.sell, price.buy, price.ms_cost
    licensing.record_usage(sub)
    return sub


def _move_licence(source: Subscription, holder: Subscription, person: M365User, from_sku: str, to_sku: str):
    """One user's licence moves with the upgraded seats: at Microsoft (the target SKU added and the source's removed,
    in one call), then here."""
    tenant_id = licensing._tenant_id(source.account)
    user_id = person.provider_user_id or ""
    operation = licensing._begin(
        LICENCE_MOVE,
        source.account_id,
        f"subscription:{holder.id}",
        {
            "subscription_id": source.id,
            "target_subscription_id": holder.id,
            "m365_user_id": person.id,
            "provider_user_id": user_id,
            "from_sku": from_sku,
            "to_sku": to_sku,
        },
    )

    def moved(skus, _exc):
        done = to_sku in skus and (from_sku == to_sku or from_sku not in skus)
        return done, f"{person.user_principal_name} {'holds' if done else 'does not hold'} {holder.product.name}"

    _answer, cid, _settled = licensing._send(
        operation,
        lambda cid, rid: get_provider().assign_licences(
            tenant_id,
            user_id,
            add_sku_ids=[to_sku],
            remove_sku_ids=[from_sku] if from_sku != to_sku else [],
            correlation_id=cid,
            request_id=rid,
        ),
        lambda: get_provider().get_user_licences(tenant_id, user_id, correlation_id=new_correlation_id()),
        moved,
        what=f"move the licence of {person.user_principal_name} to {holder.product.name}",
        noun="licence",
        account_id=source.account_id,
        target=person,
    )
    if holder.id != source.id:
        licensing._record_assignment(source, person, False)
        licensing._record_assignment(holder, person, True)
    record_event(
        "licence.moved",
        account_id=source.account_id,
        target=person,
        summary=f"{person.user_principal_name}: {source.product.name if holder.id != source.id else from_sku} → "
        f"{holder.product.name} (upgrade)",
    )
    operations.succeeded(operation, {"moved": True}, cid)


# -- recovery: interrupted operations settled by asking Microsoft -----------------------------------------------------
def _recover_schedule(operation) -> None:
    params = operations.params_of(operation)
    sub = db.session.get(Subscription, params["subscription_id"])
    if sub is None:
        return licensing._interrupted(operation, False, "the subscription is no longer in the portal")
    wanted = None
    if "offer_id" in params:
        wanted = NextTermInstructions(
            **{k: params[k] for k in ("offer_id", "term", "billing_cycle", "quantity", "availability_id")}
        )
    done, words = _match_scheduled(sub, wanted, licensing._read_subscription(sub)())
    licensing._interrupted(operation, done, words)


def _recover_licence_move(operation) -> None:
    params = operations.params_of(operation)
    source = db.session.get(Subscription, params["subscription_id"])
    holder = db.session.get(Subscription, params["target_subscription_id"])
    person = db.session.get(M365User, params["m365_user_id"])
    if source is None or holder is None or person is None:
        return licensing._interrupted(operation, False, "its subscriptions or user are no longer in the portal")
    skus = get_provider().get_user_licences(
        licensing._tenant_id(source.account), params["provider_user_id"], correlation_id=new_correlation_id()
    )
    done = params["to_sku"] in skus and (params["from_sku"] == params["to_sku"] or params["from_sku"] not in skus)
    if done and holder.id != source.id and licensing._assignment(holder, person) is None:
        licensing._record_assignment(source, person, False)
        licensing._record_assignment(holder, person, True)
    licensing._interrupted(operation, done, f"{person.user_principal_name} {'holds' if done else 'lacks'} it")


def _recover_upgrade(operation) -> None:
    """An interrupted upgrade: when Microsoft made it, recorded here (once) and its licence moves finished — those
    Microsoft already made recorded, the others sent (each its own operation)."""
    params = operations.params_of(operation)
    sub = db.session.get(Subscription, params["subscription_id"])
    target = db.session.get(Availability, params["availability_id"])
    if sub is None or target is None:
        return licensing._interrupted(operation, False, "the subscription is no longer in the portal")
    movers = [p for p in (db.session.get(M365User, i) for i in params.get("movers", [])) if p is not None]
    recorded = operations.result_of(operation)
    if "subscription_id" in recorded:  # recorded here; interrupted in its licence moves
        holder, from_sku = db.session.get(Subscription, recorded["subscription_id"]), recorded["from_sku"]
    else:
        tenant_id = licensing._tenant_id(sub.account)
        subs = get_provider().list_subscriptions(tenant_id, correlation_id=new_correlation_id())
        made = _found_transition(sub, target, params["quantity"], subs)
        if made is None:
            return licensing._interrupted(operation, False, f"{sub.product.name} was not upgraded")
        price = dataclasses.make_dataclass("P", ["sell", "buy", "ms_cost"])(
            Decimal(params["unit_price"]), Decimal(params["unit_cost"]), Decimal(params["ms_unit_cost"])
        )
        before, from_sku = sub.product.name, sub.product.sku
        after_midterm_change(sub, f"Upgrading to {target.product.name}")
        if made.subscription_id == sub.provider_subscription_id:
            holder = _convert(sub, target, price)
        else:
            holder = subscriptions.new_subscription(
                sub.account,
                target,
                params["quantity"],
                unit_price=price.sell,
                unit_cost=price.buy,
                ms_unit_cost=price.ms_cost,
                provider_subscription_id=made.subscription_id,
                renew_on=sub.renew_on,
                auto_renew=made.auto_renew,
            )
            licensing.record_usage(holder)
        record_event(
            "subscription.upgraded",
            account_id=sub.account_id,
            target=holder,
            summary=f"{before}: {params['quantity']} licences upgraded to {target.product.name} by an interrupted "
            f"request, as Microsoft confirms: the portal now matches (request id {operation.request_id})",
        )
        _recorded(operation, holder, made.subscription_id, from_sku)
    with licensing._Lease(sub).held():
        _finish_moves(sub, holder, movers, from_sku, target.product.sku, check=True)
        if holder.id != sub.id:
            _shrink(sub, params["quantity"])
    licensing._interrupted(operation, True, f"{sub.product.name} was upgraded at Microsoft")


RECOVERERS = {SCHEDULE: _recover_schedule, LICENCE_MOVE: _recover_licence_move, UPGRADE: _recover_upgrade}


def availability_on_sale(product_id: int, term: str, billing_frequency: str) -> Availability | None:
    """The availability the Change at renewal form names, when it is still sold."""
    return db.session.scalars(
        select(Availability).where(
            Availability.product_id == product_id,
            Availability.term == term,
            Availability.billing_frequency == billing_frequency,
            Availability.retired_on.is_(None),
        )
    ).first()

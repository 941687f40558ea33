"""The charge ledger (issue 14): every billable moment of a subscription, written by the ORM's flush itself.

Mapper events on ``Subscription`` (the portal's side) and ``SandboxSubscription`` (the sandbox's, Microsoft's side)
write one ledger row in the same transaction as the change, through the flushing connection — so an order, a
reduction, a cancellation, a renewal, an upgrade, a recovery or a drift repair is recorded whichever code made it.
What a change is follows from the attributes that changed in the flush:

- inserted → ``new`` (its term's first day is the charge's);
- ``term_started_on`` changed → ``renew`` (a new term, with its quantity and prices);
- availability / offer changed within the term → ``convert`` (an upgrade);
- status to cancelled (portal) or deleted (sandbox) → ``cancel`` (its seats credited), to expired → ``expire``;
- quantity up → ``addQuantity``, down → ``removeQuantity``.

Bulk inserts that bypass the ORM (the scale seeder) write their own rows with ``portal_rows`` / ``rebuild``.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import delete, event, insert, inspect, select

from app.clock import utcnow
from app.models.billing import ChargeEvent
from app.models.csp import SandboxChargeEvent, SandboxSubscription
from app.models.subscriptions import SeatBatch, Subscription
from app.services.subscriptions import renewal_date

_PORTAL = ChargeEvent.__table__
_SANDBOX = SandboxChargeEvent.__table__
# The row is the flush's own: the subscription it records was just checked by the scope (or is the sandbox's).
_REVIEWED = {"portal_unscoped_reason": "charge ledger row written by the flush of its own subscription"}


def _changed(target, name: str):
    """(changed?, value before) of attribute ``name`` in the flush under way."""
    history = inspect(target).attrs[name].history
    if not history.has_changes():
        return False, None
    return True, (history.deleted[0] if history.deleted else None)


def _kind(target, *, cancelled: str, offer_attr: str) -> tuple[str, int] | None:
    """The ledger kind of an update of ``target`` and the seat change, or None when nothing billable changed."""
    term_changed, old_start = _changed(target, "term_started_on")
    quantity_changed, old_quantity = _changed(target, "quantity")
    status_changed, _old_status = _changed(target, "status")
    offer_changed, _old_offer = _changed(target, offer_attr)
    before = old_quantity if quantity_changed and old_quantity is not None else target.quantity
    if status_changed and target.status == cancelled:
        return "cancel", -before
    if status_changed and target.status == "expired":
        return "expire", 0
    if term_changed and old_start is not None:
        return "renew", target.quantity
    if offer_changed:
        return "convert", target.quantity - before
    if quantity_changed and target.quantity != before:
        return ("addQuantity" if target.quantity > before else "removeQuantity"), target.quantity - before
    return None


def portal_row(sub: Subscription, kind: str, delta: int, *, occurred_at: dt.datetime | None = None) -> dict:
    return {
        "account_id": sub.account_id,
        "subscription_id": sub.id,
        "occurred_at": occurred_at or utcnow(),
        "kind": kind,
        "quantity": 0 if kind == "cancel" else sub.quantity,
        "delta": delta,
        "product_id": sub.product_id,
        "availability_id": sub.availability_id,
        "term": sub.term,
        "billing_cycle": sub.billing_cycle,
        "term_started_on": sub.term_started_on,
        "renew_on": sub.renew_on,
        "unit_price": sub.unit_price,
        "unit_cost": sub.unit_cost,
        "ms_unit_cost": sub.ms_unit_cost if sub.ms_unit_cost is not None else Decimal("0"),
    }


def _sandbox_dates(sub: SandboxSubscription) -> tuple[dt.date, dt.date]:
    start = sub.term_started_on or sub.purchased_on
    return start, sub.term_end or renewal_date(start, sub.term or "P1Y")


def sandbox_row(sub: SandboxSubscription, kind: str, delta: int, *, occurred_at: dt.datetime | None = None) -> dict:
    from app.csp.sandbox_pricesheet import unit_price

    start, end = _sandbox_dates(sub)
    term = sub.term or "P1Y"
    return {
        "subscription_id": sub.subscription_id,
        "tenant_id": sub.tenant_id,
        "occurred_at": occurred_at or utcnow(),
        "kind": kind,
        "quantity": 0 if kind == "cancel" else sub.quantity,
        "delta": delta,
        "offer_id": sub.offer_id,
        "term": term,
        "billing_cycle": sub.billing_cycle,
        "term_started_on": start,
        "renew_on": end,
        "unit_price": unit_price(sub.offer_id, term, sub.billing_cycle, start),
    }


@event.listens_for(Subscription, "after_insert")
def _portal_insert(_mapper, connection, target: Subscription) -> None:
    connection.execute(
        insert(_PORTAL).values(portal_row(target, "new", target.quantity)).execution_options(**_REVIEWED)
    )


@event.listens_for(Subscription, "after_update")
def _portal_update(_mapper, connection, target: Subscription) -> None:
    found = _kind(target, cancelled="cancelled", offer_attr="availability_id")
    if found is not None:
        connection.execute(insert(_PORTAL).values(portal_row(target, *found)).execution_options(**_REVIEWED))


@event.listens_for(SandboxSubscription, "after_insert")
def _sandbox_insert(_mapper, connection, target: SandboxSubscription) -> None:
    connection.execute(
        insert(_SANDBOX).values(sandbox_row(target, "new", target.quantity)).execution_options(**_REVIEWED)
    )


@event.listens_for(SandboxSubscription, "after_update")
def _sandbox_update(_mapper, connection, target: SandboxSubscription) -> None:
    found = _kind(target, cancelled="deleted", offer_attr="offer_id")
    if found is not None:
        connection.execute(insert(_SANDBOX).values(sandbox_row(target, *found)).execution_options(**_REVIEWED))


# -- history rebuilt from seat batches (the migration's backfill, the demo's backdated subscriptions) -------------


def _history(quantity: int, term_started_on: dt.date, batches: list[tuple[str, int, dt.datetime]]):
    """(kind, delta, when) rows for a term that started on ``term_started_on`` and has ``quantity`` seats now,
    whose seat batches are (kind, seats, added_at): its purchase or renewal, then each increase of this term."""
    start_at = dt.datetime.combine(term_started_on, dt.time(0))
    increases = [(seats, at) for kind, seats, at in batches if kind == "increase" and at.date() >= term_started_on]
    first = "renew" if any(kind == "renewal" for kind, _, _ in batches) else "new"
    base = max(0, quantity - sum(seats for seats, _ in increases))
    rows = [(first, base, start_at, base)]
    running = base
    for seats, at in sorted(increases, key=lambda item: item[1]):
        running += seats
        rows.append(("addQuantity", seats, at, running))
    return rows


def rebuild(session, sub: Subscription) -> None:
    """Rewrite ``sub``'s ledger from its seat batches (demo data: a subscription "bought" before today)."""
    session.flush()
    session.execute(delete(_PORTAL).where(_PORTAL.c.subscription_id == sub.id))
    batches = session.execute(
        select(SeatBatch.kind, SeatBatch.quantity, SeatBatch.added_at).where(SeatBatch.subscription_id == sub.id)
    ).all()
    for kind, delta, when, running in _history(sub.quantity, sub.term_started_on, [tuple(b) for b in batches]):
        row = portal_row(sub, kind, delta, occurred_at=when)
        row["quantity"] = running
        session.execute(insert(_PORTAL).values(row))


def rebuild_sandbox(session, sub: SandboxSubscription, batches: list[tuple[int, dt.datetime]]) -> None:
    """Rewrite a sandbox subscription's ledger from its seat batches ((seats, added_at), the first its purchase)."""
    session.flush()
    session.execute(delete(_SANDBOX).where(_SANDBOX.c.subscription_id == sub.subscription_id))
    start, _end = _sandbox_dates(sub)
    ordered = sorted(batches, key=lambda b: b[1])
    kinds = [("purchase", seats, at) for seats, at in ordered[:1]] + [("increase", s, a) for s, a in ordered[1:]]
    for kind, delta, when, running in _history(sub.quantity, start, kinds):
        row = sandbox_row(sub, kind, delta, occurred_at=when)
        row["quantity"] = running
        session.execute(insert(_SANDBOX).values(row))

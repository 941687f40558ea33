"""How a month's charges follow from a subscription's charge ledger — Microsoft's new-commerce rules, stated once and
used for all three prices (Microsoft's cost, the reseller's buy price, the customer's sell price) and by the
sandbox for its own billed reconciliation file. Pure functions: no database, no clock.

**Billing period and charge cycles** (https://learn.microsoft.com/partner-center/billing/common-billing-scenarios-
onetime-recurring): Microsoft's billing period is a calendar month; a subscription's *charge cycle* starts on its
term's start and repeats every billing period of its billing frequency (monthly: 1 month, annual: 12, triennial:
36), on the same day of the month (the month's last day when it has none), and never runs past the term's end; a
co-termed term (not whole billing periods) counts its cycles back from its end, so its first cycle is the short one. A
charge belongs to the month of the day it starts, in UTC (Microsoft dates billing events in UTC: a seat added at
9 am on 1 December in Auckland is a 30 November charge).

**Charges**, each over ``charge_start`` … ``charge_end`` (inclusive):
- ``new`` / ``renew`` / ``cycleCharge``: a cycle's charge in advance for the seats at its start (the term's first
  cycle is ``new`` after a purchase, ``renew`` after a renewal; the others ``cycleCharge``);
- ``addQuantity``: seats added mid-cycle, from the day added to the cycle's end;
- ``removeQuantity`` / ``cancelImmediate``: seats given back (a reduction or a cancellation inside Microsoft's
  168-hour window), credited from that day to the cycle's end — negative;
- ``convert``: an upgrade mid-term credits the old SKU's seats from that day (``removeQuantity``) and charges the
  new SKU's (``convert``) to the end of the same cycle.

**Proration and rounding**, as Microsoft's billed reconciliation data defines its fields
(https://learn.microsoft.com/partner-center/billing/modern-invoice-reconciliation-file): *EffectiveUnitPrice* is the
unit price prorated by the day, ``UnitPrice × days charged ÷ days in the full charge cycle`` (kept to 6 decimals,
truncated); a licence-based *Subtotal* is ``ROUNDDOWN(EffectiveUnitPrice × PCToBCExchangeRate, 2) ×
BillableQuantity`` — the exchange rate is 1 (NZD prices billed in NZD). So a line's amount is the effective unit
price truncated to the cent, times the seats. Days are calendar days (dates, never hours): a month with a daylight-
saving change has its ordinary number of days. A full cycle charges the unit price exactly.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from functools import lru_cache

from app.models.catalog import PERIOD_MONTHS
from app.services.subscriptions import add_months

CENT = Decimal("0.01")
SIX = Decimal("0.000001")
STARTS = ("new", "renew")  # events that begin a term


@dataclass(frozen=True)
class Event:
    """One ledger row (the portal's ``ChargeEvent`` or the sandbox's ``SandboxChargeEvent``), prices per licence
    per billing period: ``prices`` is a tuple (Microsoft's, buy, sell; the sandbox has Microsoft's only)."""

    kind: str
    occurred_on: dt.date  # the UTC date
    quantity: int
    delta: int
    term: str
    billing_cycle: str
    term_started_on: dt.date
    renew_on: dt.date  # exclusive: the day the next term starts
    prices: tuple[Decimal, ...]
    sku: str = ""
    availability_id: int | None = None


def event_of(row, prices: tuple[Decimal, ...], sku: str, availability_id: int | None = None) -> Event:
    """The rules' view of a ledger row (the portal's ``ChargeEvent`` or the sandbox's ``SandboxChargeEvent``)."""
    return Event(
        kind=row.kind,
        occurred_on=row.occurred_at.date(),
        quantity=row.quantity,
        delta=row.delta,
        term=row.term,
        billing_cycle=row.billing_cycle,
        term_started_on=row.term_started_on,
        renew_on=row.renew_on,
        prices=prices,
        sku=sku,
        availability_id=availability_id,
    )


@dataclass(frozen=True)
class Charge:
    charge_type: str
    start: dt.date
    end: dt.date  # inclusive
    days: int
    cycle_days: int
    quantity: int  # seats; the amounts' sign says charge or credit
    unit_prices: tuple[Decimal, ...]
    effective_unit_prices: tuple[Decimal, ...]
    amounts: tuple[Decimal, ...]  # negative for a credit
    term: str
    billing_cycle: str
    sku: str
    availability_id: int | None


def effective_unit_price(unit_price: Decimal, days: int, cycle_days: int) -> Decimal:
    """``unit_price × days ÷ cycle_days``, truncated to 6 decimals (the whole price for a full cycle)."""
    if days == cycle_days:
        return unit_price.quantize(SIX)
    return (unit_price * days / cycle_days).quantize(SIX, rounding=ROUND_DOWN)


def subtotal(effective: Decimal, quantity: int) -> Decimal:
    """Microsoft's licence-based Subtotal: ROUNDDOWN(EffectiveUnitPrice, 2) × BillableQuantity."""
    return effective.quantize(CENT, rounding=ROUND_DOWN) * quantity


def month_bounds(month: dt.date) -> tuple[dt.date, dt.date]:
    first = month.replace(day=1)
    return first, add_months(first, 1) - dt.timedelta(days=1)


@lru_cache(maxsize=4096)
def term_cycles(
    term_started_on: dt.date, renew_on: dt.date, billing_cycle: str
) -> tuple[tuple[dt.date, dt.date, int], ...]:
    """The term's charge cycles in order: (start, end inclusive, days in the full cycle). A term of whole billing
    periods has them from its start, on its day of the month; a co-termed term (its end chosen to match another
    subscription's or a month's end, so not whole periods) has whole periods counted back from its end, the first
    one cut short — prorated from the purchase day, as the order's review quotes it
    (``ordering.first_billing_period``)."""
    months = PERIOD_MONTHS[billing_cycle]
    day = dt.timedelta(days=1)
    if renew_on <= term_started_on:  # no term to speak of: one cycle from its start
        nxt = add_months(term_started_on, months)
        return ((term_started_on, nxt - day, (nxt - term_started_on).days),)
    k = 0
    while add_months(term_started_on, k * months) < renew_on:
        k += 1
    if add_months(term_started_on, k * months) == renew_on:
        bounds = [add_months(term_started_on, i * months) for i in range(k + 1)]
    else:
        n = 1
        while add_months(renew_on, -n * months) > term_started_on:
            n += 1
        bounds = [add_months(renew_on, -i * months) for i in range(n, -1, -1)]
    return tuple(
        (max(bounds[i], term_started_on), bounds[i + 1] - day, (bounds[i + 1] - bounds[i]).days)
        for i in range(len(bounds) - 1)
    )


def cycle_of(term_started_on: dt.date, renew_on: dt.date, billing_cycle: str, day: dt.date):
    """The charge cycle containing ``day``: (start, end inclusive, days in the full cycle, index)."""
    cycles = term_cycles(term_started_on, renew_on, billing_cycle)
    for k, (start, end, cycle_days) in enumerate(cycles):
        if day <= end or k == len(cycles) - 1:
            return start, end, cycle_days, k
    raise AssertionError("a term has at least one cycle")  # pragma: no cover


def _charge(kind, start, end, cycle_days, seats, sign, state: Event) -> Charge:
    days = (end - start).days + 1
    effective = tuple(effective_unit_price(p, days, cycle_days) for p in state.prices)
    return Charge(
        charge_type=kind,
        start=start,
        end=end,
        days=days,
        cycle_days=cycle_days,
        quantity=seats,
        unit_prices=state.prices,
        effective_unit_prices=effective,
        amounts=tuple(sign * subtotal(e, seats) for e in effective),
        term=state.term,
        billing_cycle=state.billing_cycle,
        sku=state.sku,
        availability_id=state.availability_id,
    )


def _cycle_starts(state: Event, after: dt.date, until: dt.date) -> Iterator[tuple[int, dt.date, dt.date, int]]:
    """The term's cycles starting in (``after``, ``until``]: (index, start, end inclusive, full cycle days)."""
    for k, (start, end, cycle_days) in enumerate(
        term_cycles(state.term_started_on, state.renew_on, state.billing_cycle)
    ):
        if start > until:
            return
        if start > after:
            yield k, start, end, cycle_days


def charges(events: Iterable[Event], month: dt.date) -> list[Charge]:
    """The charges of ``month`` (any day in it) of one subscription whose ledger is ``events``, in ledger order."""
    first, last = month_bounds(month)
    out: list[Charge] = []
    state: Event | None = None
    active = False
    walked = dt.date.min  # cycle starts up to here have been handled

    def cycles_until(day: dt.date, *, inclusive: bool) -> None:
        """Emit the cycle charges of the current term that start before ``day`` (or on it, when inclusive)."""
        nonlocal walked
        if state is None or not active:
            return
        limit = day if inclusive else day - dt.timedelta(days=1)
        for k, start, end, cycle_days in _cycle_starts(state, walked, limit):
            if k == 0:
                continue  # the term's first cycle is charged by its new/renew/convert event
            if first <= start <= last and state.quantity > 0:
                out.append(_charge("cycleCharge", start, end, cycle_days, state.quantity, 1, state))
        walked = max(walked, limit)

    for event in events:
        if event.occurred_on > last and event.kind not in STARTS:
            break
        if event.kind in STARTS and event.term_started_on > last:
            break
        day = event.term_started_on if event.kind in STARTS else event.occurred_on
        # A new term's own first cycle is its event's charge; a change on a cycle's first day comes after that
        # cycle's charge (charged at 00:00 UTC for the seats it starts with), so that cycle is charged first.
        cycles_until(day, inclusive=event.kind not in STARTS)
        if event.kind in STARTS:
            state, active, walked = event, True, event.term_started_on
            start, end, cycle_days, _ = cycle_of(event.term_started_on, event.renew_on, event.billing_cycle, day)
            if first <= start <= last and event.quantity > 0:
                out.append(_charge(event.kind, start, end, cycle_days, event.quantity, 1, event))
            continue
        if state is None or not active:
            state = event if state is None else state
            continue
        start, end, cycle_days, _ = cycle_of(state.term_started_on, state.renew_on, state.billing_cycle, day)
        # A change in the hours before the term's first day in UTC (a term dated in New Zealand by the sandbox,
        # bought before 13:00 there) is charged from the cycle's start: never more than a full cycle.
        day = max(day, start)
        in_month = first <= day <= last
        if event.kind == "addQuantity" and event.delta > 0:
            if in_month:
                out.append(_charge("addQuantity", day, end, cycle_days, event.delta, 1, event))
        elif event.kind in ("removeQuantity", "cancel") and event.delta < 0:
            if in_month:
                kind = "cancelImmediate" if event.kind == "cancel" else "removeQuantity"
                out.append(_charge(kind, day, end, cycle_days, -event.delta, -1, state))
        elif event.kind == "convert":
            if in_month:
                if state.quantity > 0:
                    out.append(_charge("removeQuantity", day, end, cycle_days, state.quantity, -1, state))
                if event.quantity > 0:
                    new_start, new_end, new_days, _ = cycle_of(
                        event.term_started_on, event.renew_on, event.billing_cycle, day
                    )
                    out.append(_charge("convert", day, new_end, new_days, event.quantity, 1, event))
            walked = max(walked, day)
        state = event
        if event.kind in ("cancel", "expire"):
            active = False
    cycles_until(last, inclusive=True)
    return out

"""Microsoft's new-commerce charge rules (app/services/billing_rules.py), pure: ledgers written by hand, no database.

Every expected figure is worked out here from the rule — unit price × days charged ÷ days in the full charge cycle,
truncated to the cent, × seats — and written out so a reader can check it by hand."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_DOWN, Decimal
from zoneinfo import ZoneInfo

import pytest

from app.services import billing_rules
from app.services.billing_rules import Event

D = Decimal
AUCKLAND = ZoneInfo("Pacific/Auckland")


def prorate(price: str, days: int, cycle_days: int, seats: int) -> Decimal:
    """The rule, independently of the code under test: price × days ÷ cycle days, truncated to the cent, × seats."""
    return (D(price) * days / cycle_days).quantize(D("0.01"), rounding=ROUND_DOWN) * seats


def ev(
    kind: str,
    on: dt.date,
    quantity: int,
    delta: int,
    start: dt.date,
    renew: dt.date,
    price: str | tuple[str, ...] = "20.80",
    term: str = "P1Y",
    cycle: str = "monthly",
    sku: str = "BASIC",
) -> Event:
    prices = tuple(D(p) for p in ((price,) if isinstance(price, str) else price))
    return Event(kind, on, quantity, delta, term, cycle, start, renew, prices, sku)


def rows(charges):
    """(type, start, end, days, cycle days, seats, amounts) of each charge."""
    return [(c.charge_type, c.start, c.end, c.days, c.cycle_days, c.quantity, c.amounts) for c in charges]


def month(year: int, number: int) -> dt.date:
    return dt.date(year, number, 1)


def test_the_rule_written_out():
    assert prorate("20.80", 17, 30, 2) == D("23.56")  # 20.80 × 17/30 = 11.7866… → 11.78 × 2
    assert prorate("20.80", 30, 30, 3) == D("62.40")  # a full cycle: the unit price exactly
    assert billing_rules.effective_unit_price(D("20.80"), 17, 30) == D("11.786666")  # 6 decimals, truncated
    assert billing_rules.subtotal(D("11.786666"), 2) == D("23.56")


# -- charge cycles -----------------------------------------------------------------------------------------------------
def test_a_full_monthly_cycle_then_each_month_its_instalment():
    start, renew = dt.date(2026, 11, 1), dt.date(2027, 11, 1)
    ledger = [ev("new", start, 3, 3, start, renew)]
    assert rows(billing_rules.charges(ledger, month(2026, 11))) == [
        # 20.80 × 30/30 = 20.80 × 3 = 62.40
        ("new", start, dt.date(2026, 11, 30), 30, 30, 3, (prorate("20.80", 30, 30, 3),))
    ]
    assert prorate("20.80", 30, 30, 3) == D("62.40")
    assert rows(billing_rules.charges(ledger, month(2026, 12))) == [
        ("cycleCharge", dt.date(2026, 12, 1), dt.date(2026, 12, 31), 31, 31, 3, (D("62.40"),))
    ]


def test_a_mid_month_purchase_is_charged_a_whole_cycle_across_the_month_end():
    start, renew = dt.date(2026, 11, 14), dt.date(2027, 11, 14)
    ledger = [ev("new", start, 2, 2, start, renew)]
    assert rows(billing_rules.charges(ledger, month(2026, 11))) == [
        ("new", start, dt.date(2026, 12, 13), 30, 30, 2, (D("41.60"),))  # 20.80 × 30/30 × 2
    ]
    assert rows(billing_rules.charges(ledger, month(2026, 12))) == [
        ("cycleCharge", dt.date(2026, 12, 14), dt.date(2027, 1, 13), 31, 31, 2, (D("41.60"),))
    ]


def test_p1y_monthly_instalment_on_the_anniversary_day_or_the_last_day_of_a_shorter_month():
    start, renew = dt.date(2026, 1, 31), dt.date(2027, 1, 31)
    ledger = [ev("new", start, 1, 1, start, renew)]
    # The 31st, or the month's last day when it has none.
    expected_starts = {
        2: dt.date(2026, 2, 28),
        3: dt.date(2026, 3, 31),
        4: dt.date(2026, 4, 30),
        5: dt.date(2026, 5, 31),
        6: dt.date(2026, 6, 30),
        7: dt.date(2026, 7, 31),
        8: dt.date(2026, 8, 31),
        9: dt.date(2026, 9, 30),
        10: dt.date(2026, 10, 31),
        11: dt.date(2026, 11, 30),
        12: dt.date(2026, 12, 31),
    }
    [first] = billing_rules.charges(ledger, month(2026, 1))
    assert (first.charge_type, first.start, first.end, first.days) == ("new", start, dt.date(2026, 2, 27), 28)
    for number, cycle_start in expected_starts.items():
        [charge] = billing_rules.charges(ledger, month(2026, number))
        following = expected_starts.get(number + 1, dt.date(2027, 1, 31))
        assert charge.charge_type == "cycleCharge" and charge.start == cycle_start
        assert charge.end == following - dt.timedelta(days=1)
        assert charge.days == charge.cycle_days == (following - cycle_start).days  # a whole cycle…
        assert charge.amounts == (D("20.80"),)  # …is the unit price exactly
    assert billing_rules.charges(ledger, month(2027, 1)) == []  # the term ended on 30 January 2027; no renewal


def test_p1y_annual_is_charged_once_at_the_term_start_and_nothing_the_following_months():
    start, renew = dt.date(2026, 11, 10), dt.date(2027, 11, 10)
    ledger = [ev("new", start, 2, 2, start, renew, price="250.00", cycle="annual")]
    assert rows(billing_rules.charges(ledger, month(2026, 11))) == [
        ("new", start, dt.date(2027, 11, 9), 365, 365, 2, (D("500.00"),))  # 250.00 × 365/365 × 2
    ]
    for number in (12, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11):
        year = 2026 if number == 12 else 2027
        assert billing_rules.charges(ledger, month(year, number)) == []


def test_p3y_annual_is_charged_each_year_and_p3y_triennial_once():
    start, renew = dt.date(2026, 3, 1), dt.date(2029, 3, 1)
    annual = [ev("new", start, 1, 1, start, renew, price="300.00", term="P3Y", cycle="annual")]
    assert rows(billing_rules.charges(annual, month(2026, 3))) == [
        ("new", start, dt.date(2027, 2, 28), 365, 365, 1, (D("300.00"),))
    ]
    assert rows(billing_rules.charges(annual, month(2027, 3))) == [
        ("cycleCharge", dt.date(2027, 3, 1), dt.date(2028, 2, 29), 366, 366, 1, (D("300.00"),))  # a leap year
    ]
    assert rows(billing_rules.charges(annual, month(2028, 3))) == [
        ("cycleCharge", dt.date(2028, 3, 1), dt.date(2029, 2, 28), 365, 365, 1, (D("300.00"),))
    ]
    for year, number in ((2026, 4), (2027, 2), (2027, 4), (2028, 12), (2029, 3)):
        assert billing_rules.charges(annual, month(year, number)) == []

    triennial = [ev("new", start, 1, 1, start, renew, price="900.00", term="P3Y", cycle="triennial")]
    assert rows(billing_rules.charges(triennial, month(2026, 3))) == [
        ("new", start, dt.date(2029, 2, 28), 1096, 1096, 1, (D("900.00"),))  # 365 + 366 + 365 days
    ]
    for year in (2027, 2028, 2029):
        assert billing_rules.charges(triennial, month(year, 3)) == []


def test_p1m_renews_each_month_at_the_new_terms_price():
    first, second, third = dt.date(2026, 10, 20), dt.date(2026, 11, 20), dt.date(2026, 12, 20)
    ledger = [
        ev("new", first, 2, 2, first, second, price="25.00", term="P1M"),
        ev("renew", second, 2, 2, second, third, price="26.00", term="P1M"),
        ev("renew", third, 2, 2, third, dt.date(2027, 1, 20), price="27.00", term="P1M"),
    ]
    assert rows(billing_rules.charges(ledger, month(2026, 10))) == [
        ("new", first, dt.date(2026, 11, 19), 31, 31, 2, (D("50.00"),))  # 25.00 × 2
    ]
    assert rows(billing_rules.charges(ledger, month(2026, 11))) == [
        ("renew", second, dt.date(2026, 12, 19), 30, 30, 2, (D("52.00"),))  # 26.00 × 2
    ]
    assert rows(billing_rules.charges(ledger, month(2026, 12))) == [
        ("renew", third, dt.date(2027, 1, 19), 31, 31, 2, (D("54.00"),))  # 27.00 × 2
    ]
    assert billing_rules.charges(ledger, month(2027, 1)) == []  # no renewal recorded after 19 January


# -- changes inside a cycle ------------------------------------------------------------------------------------------
START, RENEW = dt.date(2026, 11, 14), dt.date(2027, 11, 14)  # cycle 14 November – 13 December: 30 days


def test_an_increase_mid_cycle_is_prorated_to_the_cycle_end():
    ledger = [ev("new", START, 3, 3, START, RENEW), ev("addQuantity", dt.date(2026, 11, 27), 5, 2, START, RENEW)]
    # 27 November – 13 December = 17 days: 20.80 × 17/30 = 11.7866… → 11.78 × 2 = 23.56
    expected = prorate("20.80", 17, 30, 2)
    assert expected == D("23.56")
    charges = billing_rules.charges(ledger, month(2026, 11))
    assert rows(charges) == [
        ("new", START, dt.date(2026, 12, 13), 30, 30, 3, (D("62.40"),)),
        ("addQuantity", dt.date(2026, 11, 27), dt.date(2026, 12, 13), 17, 30, 2, (expected,)),
    ]
    assert charges[1].effective_unit_prices == (D("11.786666"),)
    # December's instalment is for the five seats.
    assert rows(billing_rules.charges(ledger, month(2026, 12))) == [
        ("cycleCharge", dt.date(2026, 12, 14), dt.date(2027, 1, 13), 31, 31, 5, (D("104.00"),))  # 20.80 × 5
    ]


def test_a_reduction_inside_the_window_is_credited_from_that_day_at_the_price_held():
    prices = ("16.5000", "18.20", "20.80")  # Microsoft's, the reseller's buy, the customer's sell
    ledger = [
        ev("new", START, 3, 3, START, RENEW, price=prices),
        ev("addQuantity", dt.date(2026, 11, 27), 5, 2, START, RENEW, price=prices),
        ev("removeQuantity", dt.date(2026, 11, 29), 4, -1, START, RENEW, price=prices),
    ]
    # 29 November – 13 December = 15 days of 30:
    #   16.5000 × 15/30 = 8.25 → -8.25;  18.20 × 15/30 = 9.10 → -9.10;  20.80 × 15/30 = 10.40 → -10.40
    credit = tuple(-prorate(p, 15, 30, 1) for p in prices)
    assert credit == (D("-8.25"), D("-9.10"), D("-10.40"))
    charges = billing_rules.charges(ledger, month(2026, 11))
    assert [c.charge_type for c in charges] == ["new", "addQuantity", "removeQuantity"]
    reduction = charges[2]
    assert (reduction.start, reduction.end, reduction.days, reduction.cycle_days, reduction.quantity) == (
        dt.date(2026, 11, 29),
        dt.date(2026, 12, 13),
        15,
        30,
        1,
    )
    assert reduction.amounts == credit
    # new: 16.5000×3 = 49.50, 18.20×3 = 54.60, 20.80×3 = 62.40; add 17 days: 16.50×17/30 = 9.35 ×2 = 18.70,
    # 18.20×17/30 = 10.3133 → 10.31 ×2 = 20.62, 20.80×17/30 = 11.7866 → 11.78 ×2 = 23.56
    assert charges[0].amounts == (D("49.50"), D("54.60"), D("62.40"))
    assert charges[1].amounts == (D("18.70"), D("20.62"), D("23.56"))
    assert [prorate(p, 17, 30, 2) for p in prices] == [D("18.70"), D("20.62"), D("23.56")]
    assert rows(billing_rules.charges(ledger, month(2026, 12)))[0][5:] == (4, (D("66.00"), D("72.80"), D("83.20")))


def test_a_cancellation_inside_the_window_credits_the_rest_of_the_cycle_and_ends_the_charges():
    ledger = [
        ev("new", START, 5, 5, START, RENEW),
        ev("cancel", dt.date(2026, 11, 16), 0, -5, START, RENEW),
    ]
    # 16 November – 13 December = 28 days: 20.80 × 28/30 = 19.4133… → 19.41 × 5 = 97.05, credited
    assert prorate("20.80", 28, 30, 5) == D("97.05")
    assert rows(billing_rules.charges(ledger, month(2026, 11))) == [
        ("new", START, dt.date(2026, 12, 13), 30, 30, 5, (D("104.00"),)),
        ("cancelImmediate", dt.date(2026, 11, 16), dt.date(2026, 12, 13), 28, 30, 5, (D("-97.05"),)),
    ]
    assert billing_rules.charges(ledger, month(2026, 12)) == []


def test_a_cancellation_on_the_purchase_day_nets_to_zero():
    ledger = [ev("new", START, 5, 5, START, RENEW), ev("cancel", START, 0, -5, START, RENEW)]
    assert sum(c.amounts[0] for c in billing_rules.charges(ledger, month(2026, 11))) == D("0.00")


def test_seats_added_and_removed_the_same_day_net_to_zero():
    day = dt.date(2026, 11, 20)
    ledger = [
        ev("new", START, 3, 3, START, RENEW),
        ev("addQuantity", day, 6, 3, START, RENEW),
        ev("removeQuantity", day, 3, -3, START, RENEW),
    ]
    charges = billing_rules.charges(ledger, month(2026, 11))
    # 20 November – 13 December = 24 days: 20.80 × 24/30 = 16.64 × 3 = 49.92, charged then credited
    assert prorate("20.80", 24, 30, 3) == D("49.92")
    assert [(c.charge_type, c.amounts[0]) for c in charges[1:]] == [
        ("addQuantity", D("49.92")),
        ("removeQuantity", D("-49.92")),
    ]
    assert charges[1].amounts[0] + charges[2].amounts[0] == 0


def test_a_renewal_charges_the_new_term_at_its_price_and_the_old_terms_cycles_stop():
    old_start, renewal, next_end = dt.date(2025, 12, 5), dt.date(2026, 12, 5), dt.date(2027, 12, 5)
    ledger = [
        ev("new", old_start, 4, 4, old_start, renewal),
        # recorded when the renewal ran: 00:30 on 5 December in Auckland is still 4 December in UTC
        ev("renew", dt.date(2026, 12, 4), 4, 4, renewal, next_end, price="22.00"),
    ]
    # November: the old term's last cycle, 5 November – 4 December, nothing of the new term.
    assert rows(billing_rules.charges(ledger, month(2026, 11))) == [
        ("cycleCharge", dt.date(2026, 11, 5), dt.date(2026, 12, 4), 30, 30, 4, (D("83.20"),))  # 20.80 × 4
    ]
    # December: the renewal at the new price; no instalment of the old term.
    assert rows(billing_rules.charges(ledger, month(2026, 12))) == [
        ("renew", renewal, dt.date(2027, 1, 4), 31, 31, 4, (D("88.00"),))  # 22.00 × 4
    ]
    assert rows(billing_rules.charges(ledger, month(2027, 1))) == [
        ("cycleCharge", dt.date(2027, 1, 5), dt.date(2027, 2, 4), 31, 31, 4, (D("88.00"),))
    ]


def test_an_annual_renewal_stops_the_old_term_and_charges_the_new_year():
    old_start, renewal, next_end = dt.date(2025, 12, 5), dt.date(2026, 12, 5), dt.date(2027, 12, 5)
    ledger = [
        ev("new", old_start, 2, 2, old_start, renewal, price="250.00", cycle="annual"),
        ev("renew", renewal, 3, 3, renewal, next_end, price="260.00", cycle="annual"),
    ]
    assert billing_rules.charges(ledger, month(2026, 11)) == []
    assert rows(billing_rules.charges(ledger, month(2026, 12))) == [
        ("renew", renewal, dt.date(2027, 12, 4), 365, 365, 3, (D("780.00"),))  # 260.00 × 3
    ]


def test_a_co_termed_purchase_has_a_short_first_cycle_then_whole_cycles_to_the_shared_end():
    bought, shared_end = dt.date(2026, 11, 10), dt.date(2027, 3, 5)  # co-termed with a term renewing 5 March
    ledger = [ev("new", bought, 3, 3, bought, shared_end)]
    # Whole cycles counted back from 5 March: … 5 November – 4 December (30 days) holds the purchase day.
    # 10 November – 4 December = 25 days: 20.80 × 25/30 = 17.3333… → 17.33 × 3 = 51.99
    assert prorate("20.80", 25, 30, 3) == D("51.99")
    assert rows(billing_rules.charges(ledger, month(2026, 11))) == [
        ("new", bought, dt.date(2026, 12, 4), 25, 30, 3, (D("51.99"),))
    ]
    assert rows(billing_rules.charges(ledger, month(2026, 12))) == [
        ("cycleCharge", dt.date(2026, 12, 5), dt.date(2027, 1, 4), 31, 31, 3, (D("62.40"),))
    ]
    assert rows(billing_rules.charges(ledger, month(2027, 2))) == [
        ("cycleCharge", dt.date(2027, 2, 5), dt.date(2027, 3, 4), 28, 28, 3, (D("62.40"),))
    ]
    assert billing_rules.charges(ledger, month(2027, 3)) == []


def test_a_co_termed_annual_purchase_is_charged_to_the_shared_end():
    bought, shared_end = dt.date(2026, 11, 10), dt.date(2027, 11, 1)  # ends 31 October 2027, a month's end
    ledger = [ev("new", bought, 1, 1, bought, shared_end, price="250.00", cycle="annual")]
    # 10 November 2026 – 31 October 2027 = 356 days of the year 1 November 2026 – 31 October 2027 (365):
    # 250.00 × 356/365 = 243.8356… → 243.83
    assert prorate("250.00", 356, 365, 1) == D("243.83")
    assert rows(billing_rules.charges(ledger, month(2026, 11))) == [
        ("new", bought, dt.date(2027, 10, 31), 356, 365, 1, (D("243.83"),))
    ]


def test_an_upgrade_mid_cycle_credits_the_old_sku_and_charges_the_new_to_the_cycle_end():
    day = dt.date(2026, 11, 24)
    ledger = [
        ev("new", START, 3, 3, START, RENEW, sku="BASIC"),
        ev("convert", day, 3, 0, START, RENEW, price="41.60", sku="STANDARD"),
    ]
    # 24 November – 13 December = 20 days of 30:
    #   Basic 20.80 × 20/30 = 13.8666… → 13.86 × 3 = 41.58 credited; Standard 41.60 × 20/30 = 27.7333… → 27.73 × 3
    assert prorate("20.80", 20, 30, 3) == D("41.58") and prorate("41.60", 20, 30, 3) == D("83.19")
    charges = billing_rules.charges(ledger, month(2026, 11))
    assert [(c.charge_type, c.sku, c.start, c.end, c.days, c.quantity, c.amounts) for c in charges] == [
        ("new", "BASIC", START, dt.date(2026, 12, 13), 30, 3, (D("62.40"),)),
        ("removeQuantity", "BASIC", day, dt.date(2026, 12, 13), 20, 3, (D("-41.58"),)),
        ("convert", "STANDARD", day, dt.date(2026, 12, 13), 20, 3, (D("83.19"),)),
    ]
    [december] = billing_rules.charges(ledger, month(2026, 12))
    assert (december.charge_type, december.sku, december.amounts) == ("cycleCharge", "STANDARD", (D("124.80"),))


# -- dates, not hours ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("start", "change", "days", "cycle_days"),
    [
        # Daylight saving ends on 5 April 2026 (a 25-hour day): 3 – 19 April is 17 days of the 31-day cycle
        # 20 March – 19 April.
        (dt.date(2026, 3, 20), dt.date(2026, 4, 3), 17, 31),
        # …and starts on 27 September 2026 (a 23-hour day): 25 September – 19 October is 25 days of 30.
        (dt.date(2026, 8, 20), dt.date(2026, 9, 25), 25, 30),
    ],
)
def test_a_month_with_a_daylight_saving_change_counts_its_ordinary_days(start, change, days, cycle_days):
    renew = start.replace(year=start.year + 1)
    ledger = [ev("new", start, 1, 1, start, renew), ev("addQuantity", change, 2, 1, start, renew)]
    [added] = [c for c in billing_rules.charges(ledger, change) if c.charge_type == "addQuantity"]
    assert (added.charge_type, added.start, added.days, added.cycle_days) == ("addQuantity", change, days, cycle_days)
    assert added.amounts == (prorate("20.80", days, cycle_days, 1),)
    # 20.80 × 17/31 = 11.4064… → 11.40;  20.80 × 25/30 = 17.3333… → 17.33
    assert added.amounts[0] == {17: D("11.40"), 25: D("17.33")}[days]


@pytest.mark.parametrize("first", [dt.date(2026, 4, 1), dt.date(2026, 9, 1)])
def test_a_whole_cycle_over_a_daylight_saving_change_is_the_months_days(first):
    renew = first.replace(year=2027)
    [charge] = billing_rules.charges([ev("new", first, 1, 1, first, renew)], first)
    assert (charge.days, charge.cycle_days, charge.amounts) == (30, 30, (D("20.80"),))  # April and September: 30


def test_a_change_is_dated_by_its_utc_day():
    moment = dt.datetime(2026, 11, 30, 11, 30, tzinfo=dt.UTC)
    assert moment.astimezone(AUCKLAND).date() == dt.date(2026, 12, 1)  # already 1 December in Auckland
    ledger = [ev("new", START, 3, 3, START, RENEW), ev("addQuantity", moment.date(), 4, 1, START, RENEW)]
    # 30 November – 13 December = 14 days: 20.80 × 14/30 = 9.7066… → 9.70
    assert prorate("20.80", 14, 30, 1) == D("9.70")
    november = billing_rules.charges(ledger, month(2026, 11))
    assert rows(november)[-1] == ("addQuantity", dt.date(2026, 11, 30), dt.date(2026, 12, 13), 14, 30, 1, (D("9.70"),))
    assert [c.charge_type for c in billing_rules.charges(ledger, month(2026, 12))] == ["cycleCharge"]


def test_a_change_on_the_utc_day_before_the_terms_first_day_belongs_to_that_day():
    # Bought at 00:20 on 1 December in Auckland (term from 1 December), cancelled ten minutes later: both are on
    # 30 November in UTC. The credit is the charge's, in the same month — never a 32-day credit in November.
    start, renew = dt.date(2026, 12, 1), dt.date(2027, 12, 1)
    ledger = [
        ev("new", dt.date(2026, 11, 30), 2, 2, start, renew),
        ev("cancel", dt.date(2026, 11, 30), 0, -2, start, renew),
    ]
    assert billing_rules.charges(ledger, month(2026, 11)) == []
    december = billing_rules.charges(ledger, month(2026, 12))
    assert rows(december) == [
        ("new", start, dt.date(2026, 12, 31), 31, 31, 2, (D("41.60"),)),
        ("cancelImmediate", start, dt.date(2026, 12, 31), 31, 31, 2, (D("-41.60"),)),
    ]


def test_money_is_decimal_throughout():
    prices = ("16.5000", "18.20", "20.80")
    ledger = [
        ev("new", START, 3, 3, START, RENEW, price=prices),
        ev("addQuantity", dt.date(2026, 11, 27), 5, 2, START, RENEW, price=prices),
        ev("removeQuantity", dt.date(2026, 11, 29), 4, -1, START, RENEW, price=prices),
        ev("convert", dt.date(2026, 11, 30), 4, 0, START, RENEW, price=("33.0000", "36.40", "41.60"), sku="STD"),
    ]
    charges = billing_rules.charges(ledger, month(2026, 11)) + billing_rules.charges(ledger, month(2026, 12))
    # November: new, addQuantity, removeQuantity, the upgrade's credit and charge; December: the instalment
    assert len(charges) == 6
    for charge in charges:
        for money in (*charge.unit_prices, *charge.effective_unit_prices, *charge.amounts):
            assert type(money) is Decimal, (charge, money)
        assert all(a == a.quantize(D("0.01")) for a in charge.amounts)
        assert all(e == e.quantize(D("0.000001")) for e in charge.effective_unit_prices)
        assert isinstance(charge.days, int) and isinstance(charge.cycle_days, int)


# -- a change on the cycle's anniversary day ---------------------------------------------------------------------------
def test_seats_added_on_the_anniversary_day_are_charged_once():
    day = dt.date(2026, 12, 14)  # the second cycle's first day
    ledger = [ev("new", START, 3, 3, START, RENEW), ev("addQuantity", day, 5, 2, START, RENEW)]
    # The cycle's charge for the 3 seats it started with (20.80 × 3 = 62.40), then the 2 added for the whole cycle
    # 14 December – 13 January (31 days of 31: 20.80 × 2 = 41.60): 5 seats, 104.00 — never the 2 twice.
    assert rows(billing_rules.charges(ledger, month(2026, 12))) == [
        ("cycleCharge", day, dt.date(2027, 1, 13), 31, 31, 3, (D("62.40"),)),
        ("addQuantity", day, dt.date(2027, 1, 13), 31, 31, 2, (D("41.60"),)),
    ]
    assert rows(billing_rules.charges(ledger, month(2027, 1)))[0][5:] == (5, (D("104.00"),))


def test_seats_given_back_on_the_anniversary_day_are_credited_against_that_cycle():
    day = dt.date(2026, 12, 14)
    ledger = [
        ev("new", START, 3, 3, START, RENEW),
        ev("addQuantity", dt.date(2026, 12, 9), 5, 2, START, RENEW),
        ev("removeQuantity", day, 4, -1, START, RENEW),
    ]
    charges = billing_rules.charges(ledger, month(2026, 12))
    # addQuantity 9 – 13 December: 5 days of 30, 20.80 × 5/30 = 3.4666… → 3.46 × 2 = 6.92; the cycle from 14 December
    # for the 5 seats it started with (104.00), then 1 credited for the whole cycle (−20.80): 4 seats paid.
    assert prorate("20.80", 5, 30, 2) == D("6.92")
    assert [(c.charge_type, c.start, c.quantity, c.amounts[0]) for c in charges] == [
        ("addQuantity", dt.date(2026, 12, 9), 2, D("6.92")),
        ("cycleCharge", day, 5, D("104.00")),
        ("removeQuantity", day, 1, D("-20.80")),
    ]


def test_an_upgrade_on_the_anniversary_day_charges_the_old_cycle_then_swaps_it_whole():
    day = dt.date(2026, 12, 14)
    ledger = [ev("new", START, 3, 3, START, RENEW), ev("convert", day, 3, 0, START, RENEW, price="41.60", sku="STD")]
    charges = billing_rules.charges(ledger, month(2026, 12))
    # 20.80 × 3 = 62.40 charged and credited whole; 41.60 × 3 = 124.80 for the new SKU: net the new SKU's cycle.
    assert [(c.charge_type, c.sku, c.amounts[0]) for c in charges] == [
        ("cycleCharge", "BASIC", D("62.40")),
        ("removeQuantity", "BASIC", D("-62.40")),
        ("convert", "STD", D("124.80")),
    ]
    assert sum(c.amounts[0] for c in charges) == D("124.80")


def test_a_partial_upgrade_credits_and_charges_the_same_days():
    # 2 of 5 Basic seats move to a new Standard subscription co-termed with the source (renewals.upgrade): the source
    # gives them back from 10 November, the new subscription charges them from then — over the same cycle, whose
    # boundaries both count the same way (the source's from its 31 January start, the new one's back from 31 January).
    source_start, shared_end, day = dt.date(2026, 1, 31), dt.date(2027, 1, 31), dt.date(2026, 11, 10)
    source = [
        ev("new", source_start, 5, 5, source_start, shared_end),
        ev("removeQuantity", day, 3, -2, source_start, shared_end),
    ]
    holder = [ev("new", day, 2, 2, day, shared_end, price="41.60", sku="STD")]
    [credit] = [c for c in billing_rules.charges(source, day) if c.charge_type == "removeQuantity"]
    [charge, holder_next] = billing_rules.charges(holder, day)
    source_next = billing_rules.charges(source, day)[-1]
    # Cycle 31 October – 29 November (30 days); 10 – 29 November = 20 days:
    #   20.80 × 20/30 = 13.8666… → 13.86 × 2 = 27.72 credited;  41.60 × 20/30 = 27.7333… → 27.73 × 2 = 55.46 charged
    assert (credit.start, credit.end, credit.days, credit.cycle_days, credit.amounts) == (
        day,
        dt.date(2026, 11, 29),
        20,
        30,
        (-prorate("20.80", 20, 30, 2),),
    )
    assert (charge.start, charge.end, charge.days, charge.cycle_days, charge.amounts) == (
        day,
        dt.date(2026, 11, 29),
        20,
        30,
        (prorate("41.60", 20, 30, 2),),
    )
    assert (credit.amounts[0], charge.amounts[0]) == (D("-27.72"), D("55.46"))
    # From 30 November both bill whole cycles on the same days: 30 November – 30 December (31 days).
    for following, seats, total in ((holder_next, 2, D("83.20")), (source_next, 3, D("62.40"))):
        assert (following.charge_type, following.start, following.end, following.days) == (
            "cycleCharge",
            dt.date(2026, 11, 30),
            dt.date(2026, 12, 30),
            31,
        )
        assert (following.quantity, following.amounts) == (seats, (total,))  # 41.60 × 2;  20.80 × 3
    assert [c.start for c in billing_rules.charges(holder, month(2026, 12))] == [dt.date(2026, 12, 31)]
    assert [c.start for c in billing_rules.charges(source, month(2026, 12))] == [dt.date(2026, 12, 31)]

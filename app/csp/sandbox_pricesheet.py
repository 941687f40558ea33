"""The sandbox's licence-based price sheet: Microsoft's format (app/services/pricesheet.py), generated for any month
from the base sheet shipped in app/data/pricesheet-NZ-sample.csv.

The base sheet prices the demo's eight SKUs in NZD (per licence per billing period, excluding GST), derived from the
demo's monthly prices (each row's SkuDescription says how):
- 1 year billed monthly: ``ERP Price`` = the demo's price per month (Office 365 Business Premium 17.30, Exchange
  Online (Plan 1) 5.50, Microsoft 365 Business Basic 9.00 …) and ``UnitPrice`` = the demo's cost per month;
- 1 year paid up front (Annual): the 1-year billed-monthly price / 1.05 × 12, rounded half up to the cent (partner
  publications put an annual term billed monthly 5 % above paid up front);
- 1 month (Monthly): the 1-year billed-monthly price × 1.20, to the cent (a monthly term about 20 % above);
- 3 years (Office 365 Business Premium, Microsoft 365 Business Standard, Microsoft 365 E3): billed annually at the
  1-year up-front price each year, or Triennial at 3 × that.

The sheet of month M has ``EffectiveStartDate`` M's 1st and ``EffectiveEndDate`` its last day. **The one change from
month to month**: Microsoft 365 E3 (every term and billing plan, cost and retail) costs 5 % more in even months
(February, April, …, December) than in odd ones, to four decimals — so next month's sheet always differs from this
month's in one visible way (+5 % or back down) and the demo's subscriptions (none of them E3) keep their prices.
"""

from __future__ import annotations

import calendar
import csv
import datetime as dt
import io
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

BASE_SHEET = Path(__file__).resolve().parent.parent / "data" / "pricesheet-NZ-sample.csv"
MARKETS = ("NZ",)
CHANGING_SKU = ("CFQ7TTC0LFLX", "0001")  # Microsoft 365 E3
CHANGE = Decimal("1.05")


def _month(month: str | dt.date | None, today: dt.date) -> dt.date:
    if month is None:
        return today.replace(day=1)
    if isinstance(month, dt.date):
        return month.replace(day=1)
    if len(month) != 6 or not month.isdigit() or not 1 <= int(month[4:]) <= 12:
        raise ValueError(f"month {month!r} is not YYYYMM")
    return dt.date(int(month[:4]), int(month[4:]), 1)


def _money(value: Decimal) -> str:
    text = format(value.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def sheet(market: str, month: str | dt.date | None, today: dt.date) -> bytes:
    """The sheet of ``market`` for ``month`` (YYYYMM; default the month of ``today``) as Microsoft sends it: CSV,
    UTF-8 with a byte order mark. ValueError for a market the sandbox does not publish or a bad month."""
    market = market.upper()
    if market not in MARKETS:
        raise ValueError(f"the sandbox publishes no price sheet for market {market!r} (only {', '.join(MARKETS)})")
    first = _month(month, today)
    last = first.replace(day=calendar.monthrange(first.year, first.month)[1])
    with BASE_SHEET.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        columns, rows = list(reader.fieldnames or ()), list(reader)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, quoting=csv.QUOTE_ALL)
    writer.writeheader()
    for row in rows:
        row["EffectiveStartDate"] = f"{first.month}/1/{first.year} 12:00:00 AM"
        row["EffectiveEndDate"] = f"{last.month}/{last.day}/{last.year} 11:59:59 PM"
        if (row["ProductId"], row["SkuId"]) == CHANGING_SKU and first.month % 2 == 0:
            for column in ("UnitPrice", "ERP Price"):
                row[column] = _money(Decimal(row[column]) * CHANGE)
        writer.writerow(row)
    return b"\xef\xbb\xbf" + out.getvalue().encode("utf-8")


_PLANS = {"Monthly": "monthly", "Annual": "annual", "Triennial": "triennial"}


def _base_prices() -> dict[tuple[str, str, str], Decimal]:
    global _BASE
    if _BASE is None:
        with BASE_SHEET.open(encoding="utf-8-sig", newline="") as f:
            _BASE = {
                (f"{row['ProductId']}:{row['SkuId']}", row["TermDuration"], _PLANS[row["BillingPlan"]]): Decimal(
                    row["UnitPrice"]
                )
                for row in csv.DictReader(f)
                if row["BillingPlan"] in _PLANS
            }
    return _BASE


_BASE: dict[tuple[str, str, str], Decimal] | None = None


def unit_price(offer_id: str, term: str, billing_cycle: str, month: dt.date) -> Decimal:
    """What the sandbox (Microsoft) charges per licence per billing period for ``offer_id`` (ProductId:SkuId) in
    ``term`` billed ``billing_cycle``, by the sheet of ``month`` — the same figure its sheet of that month shows.
    0 for an offer its sheet does not price (the sandbox sells it, as before issue 13, without a price)."""
    base = _base_prices().get((offer_id, term, billing_cycle))
    if base is None:
        return Decimal("0")
    if tuple(offer_id.split(":", 1)) == CHANGING_SKU and month.month % 2 == 0:
        return (base * CHANGE).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)
    return base

"""Subscription money as the CSP Report, its workbook, the landing page and the widgets show it.

Prices are stored per licence per billing period (``unit_price`` the customer's, ``unit_cost`` the reseller's buy
price, ``ms_unit_cost`` Microsoft's cost); a monthly figure divides by the period's months (1, 12 or 36).

**Rounding** (the one rule, in SQL and in Python alike): a per-licence monthly figure is the period's price ÷ its
months, half up to the cent; the monthly total of a subscription is unit price × quantity ÷ period months, half up
to the cent; a total of totals adds the rounded subscription totals. Margin per licence per month = price per
licence per month − cost per licence per month (the two figures shown); margin per month in total = the
subscription's monthly total − its monthly cost total. SQL adds integer cents only (SQLite would add NUMERIC as
floats, DESIGN.md rule 8): ``monthly_cents`` halves-up with integer division, exact on SQLite and PostgreSQL.

Who sees what: everyone who sees a subscription sees what the customer pays; ``security.permissions.COSTS`` (CSP
Admins, operator staff) adds the buy price ("Cost") and the margin; ``MICROSOFT_COSTS`` (operator staff) adds
Microsoft's cost. The page and the workbook name their columns from ``MONEY_COLUMNS``: the same name, the same value.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import BigInteger, case, cast, func, select
from sqlalchemy.orm import contains_eager, joinedload

from app import clock
from app.extensions import db
from app.formatting import local_time
from app.models.accounts import CUSTOMER, RESELLER, Account
from app.models.catalog import PERIOD_MONTHS, Availability, Product
from app.models.subscriptions import SeatBatch, Subscription
from security import capabilities
from security import permissions as P

CENT = Decimal("0.01")
CUSTOMERS_PER_PAGE = 25


# -- the arithmetic ---------------------------------------------------------------------------------------------


def cents(value: Decimal) -> Decimal:
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


def per_month(price: Decimal, period_months: int) -> Decimal:
    """A per-licence price of a billing period, per month (half up to the cent)."""
    return cents(Decimal(price) / period_months)


def monthly_total(price: Decimal, quantity: int, period_months: int) -> Decimal:
    """What ``quantity`` licences at ``price`` a billing period come to a month (half up to the cent)."""
    return cents(Decimal(price) * quantity / period_months)


def period_months_sql(cycle_column):
    """The billing period's months, from a billing cycle column (an integer in SQL)."""
    return case(*((cycle_column == cycle, months) for cycle, months in PERIOD_MONTHS.items() if months != 1), else_=1)


def monthly_cents(price_column, quantity_column, cycle_column):
    """One subscription's monthly total in integer cents, half up — integer arithmetic only: (2·c·q + p) // 2p."""
    period = period_months_sql(cycle_column)
    period_cents = cast(func.round(price_column * 100), BigInteger) * quantity_column
    return (period_cents * 2 + period) // (period * 2)


def monthly_sum(price_column, quantity_column=Subscription.quantity, cycle_column=Subscription.billing_cycle):
    """SUM of the subscriptions' rounded monthly totals, in integer cents (0 when none)."""
    return func.coalesce(func.sum(monthly_cents(price_column, quantity_column, cycle_column)), 0)


def from_cents(value) -> Decimal:
    return Decimal(int(value or 0)) / 100


# -- columns and who sees them ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MoneyColumn:
    key: str
    header: str
    resource: str | None = None  # the capability that shows it (None: whoever sees the subscription)
    workbook_only: bool = False  # per billing period figures the page leaves to the workbook


MONEY_COLUMNS = (
    MoneyColumn("price", "Price"),  # the guide's word: per licence per billing period (the page's footnote says so)
    MoneyColumn("price_month", "Price per licence per month"),
    MoneyColumn("total_month", "Price per month in total"),
    MoneyColumn("cost", "Cost (per licence per billing period)", P.COSTS, workbook_only=True),
    MoneyColumn("cost_month", "Cost per licence per month", P.COSTS),
    MoneyColumn("cost_total_month", "Cost per month in total", P.COSTS),
    MoneyColumn("margin_month", "Margin per licence per month", P.COSTS),
    MoneyColumn("margin_total_month", "Margin per month in total", P.COSTS),
    MoneyColumn("ms_cost", "Microsoft cost (per licence per billing period)", P.MICROSOFT_COSTS, workbook_only=True),
    MoneyColumn("ms_cost_month", "Microsoft cost per licence per month", P.MICROSOFT_COSTS),
    MoneyColumn("ms_cost_total_month", "Microsoft cost per month in total", P.MICROSOFT_COSTS),
)


@dataclasses.dataclass(frozen=True)
class Visibility:
    costs: bool = False  # the buy price and the margin
    microsoft_costs: bool = False

    def shows(self, column: MoneyColumn) -> bool:
        return (
            column.resource is None
            or (column.resource == P.COSTS and self.costs)
            or (column.resource == P.MICROSOFT_COSTS and self.microsoft_costs)
        )


def visibility() -> Visibility:
    """What the current request may see (outside a request — the CLI, a job — pass a Visibility instead)."""
    costs = capabilities.may(P.COSTS)
    return Visibility(costs=costs, microsoft_costs=costs and capabilities.may(P.MICROSOFT_COSTS))


def money_columns(seen: Visibility, *, workbook: bool) -> list[MoneyColumn]:
    return [c for c in MONEY_COLUMNS if seen.shows(c) and (workbook or not c.workbook_only)]


def figures(price: Decimal, cost: Decimal, ms_cost: Decimal, quantity: int, cycle: str) -> dict[str, Decimal]:
    """Every money column of one subscription (the rounding of the module's docstring)."""
    months = PERIOD_MONTHS[cycle]
    price_month, cost_month = per_month(price, months), per_month(cost, months)
    total, cost_total = monthly_total(price, quantity, months), monthly_total(cost, quantity, months)
    return {
        "price": Decimal(price),
        "price_month": price_month,
        "total_month": total,
        "cost": Decimal(cost),
        "cost_month": cost_month,
        "cost_total_month": cost_total,
        "margin_month": price_month - cost_month,
        "margin_total_month": total - cost_total,
        "ms_cost": Decimal(ms_cost),
        "ms_cost_month": per_month(ms_cost, months),
        "ms_cost_total_month": monthly_total(ms_cost, quantity, months),
    }


def window_text(until: dt.datetime | None) -> str:
    """The end of a cancellation window as pages show it: 08/12/2026 09:00 AM (portal's zone), or ""."""
    return "" if until is None else local_time(until).strftime("%d/%m/%Y %I:%M %p")


# -- the cancellation windows -------------------------------------------------------------------------------------


def open_windows(now: dt.datetime | None = None):
    """Per subscription, the end of its latest window still open (seats still refundable, end still ahead): a
    subquery of (subscription_id, until)."""
    now = now or clock.utcnow()
    return (
        select(SeatBatch.subscription_id, func.max(SeatBatch.refundable_until).label("until"))
        .where(SeatBatch.refundable > 0, SeatBatch.refundable_until > now)
        .group_by(SeatBatch.subscription_id)
        .subquery("open_window")
    )


def window_ends(subscription_ids: list[int]) -> dict[int, dt.datetime]:
    if not subscription_ids:
        return {}
    windows = open_windows()
    return dict(
        db.session.execute(
            select(windows.c.subscription_id, windows.c.until).where(windows.c.subscription_id.in_(subscription_ids))
        ).all()
    )


# -- totals (the landing page, the widgets, the report's footer) --------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Totals:
    used: int
    bought: int
    price_month: Decimal  # the customers' monthly totals added up
    cost_month: Decimal
    ms_cost_month: Decimal

    @property
    def margin_month(self) -> Decimal:
        return self.price_month - self.cost_month


def totals(*where) -> Totals:
    """Licences used and bought and the monthly totals of the subscriptions matching ``where`` (joined to their
    customer ``Account``), in scope; one statement."""
    used, bought, price, cost, ms_cost = db.session.execute(
        select(
            func.coalesce(func.sum(Subscription.assigned), 0),
            func.coalesce(func.sum(Subscription.quantity), 0),
            monthly_sum(Subscription.unit_price),
            monthly_sum(Subscription.unit_cost),
            monthly_sum(Subscription.ms_unit_cost),
        )
        .join(Account, Account.id == Subscription.account_id)
        .where(*where)
    ).one()
    return Totals(int(used), int(bought), from_cents(price), from_cents(cost), from_cents(ms_cost))


def monthly_spend(*where) -> Decimal:
    """What the subscriptions matching ``where`` come to a month (their rounded monthly totals added)."""
    return from_cents(db.session.scalar(select(monthly_sum(Subscription.unit_price)).where(*where)))


# -- the page -------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Line:
    """One subscription of the report: the row, its money, its open window's end and its scheduled change."""

    sub: Subscription
    money: dict[str, Decimal]
    window_end: dt.datetime | None

    @property
    def window_text(self) -> str:
        return window_text(self.window_end)

    @property
    def scheduled_change(self) -> str:
        return self.sub.scheduled_change_label


@dataclasses.dataclass
class ReportPage:
    customers: list[Account]
    lines: dict[int, list[Line]]  # by customer id
    total_customers: int
    totals: Totals
    columns: list[MoneyColumn]
    seen: Visibility


def customers_of(account: Account):
    """The customers a report on ``account`` covers: itself, or a reseller's (operator staff: every customer)."""
    if account.kind == CUSTOMER:
        return Account.id == account.id
    if account.kind == RESELLER:
        return Account.parent_id == account.id
    return Account.kind == CUSTOMER  # operator staff: every customer (in scope)


def report_page(account: Account, page: int, seen: Visibility) -> ReportPage:
    """The CSP Report's page of customers (25 a page) with their subscriptions: a constant number of statements
    however many rows."""
    covered = (customers_of(account), Account.kind == CUSTOMER)
    customers = db.session.scalars(
        select(Account)
        .where(*covered)
        .order_by(func.lower(Account.name), Account.id)
        .offset((page - 1) * CUSTOMERS_PER_PAGE)
        .limit(CUSTOMERS_PER_PAGE)
    ).all()
    ids = [c.id for c in customers]
    subs = (
        db.session.scalars(
            select(Subscription)
            .join(Subscription.product)
            .options(
                contains_eager(Subscription.product),
                joinedload(Subscription.next_availability).joinedload(Availability.product),
            )
            .where(Subscription.account_id.in_(ids))
            .order_by(Product.name, Subscription.id)
        )
        .unique()
        .all()
        if ids
        else []
    )
    ends = window_ends([s.id for s in subs])
    lines: dict[int, list[Line]] = {}
    for sub in subs:
        money = figures(sub.unit_price, sub.unit_cost, sub.ms_unit_cost, sub.quantity, sub.billing_cycle)
        lines.setdefault(sub.account_id, []).append(Line(sub, money, ends.get(sub.id)))
    total_customers = db.session.scalar(select(func.count(Account.id)).where(*covered))
    return ReportPage(
        customers=list(customers),
        lines=lines,
        total_customers=total_customers,
        totals=totals(customers_of(account)),
        columns=money_columns(seen, workbook=False),
        seen=seen,
    )

"""Licence drift (issue 14, item 6): per customer and subscription, seats **bought** (the subscription's quantity)
against seats **assigned** (its licence assignments) and seats **billed**, with what the unused seats cost a month.

- *billed* is the seat count the charge ledger (``ChargeEvent``, app/services/billing_ledger.py) holds for the
  subscription now: the quantity after its latest billable event up to this moment — the seats the current charge
  cycle is charged for (the cycle's charge at its start, plus seats added and less seats credited since). It differs
  from *bought* only when the portal's quantity moved without a billable event (a repair, a change not yet recorded)
  — a difference worth looking at before the month's billing run. A subscription without any ledger row has none.
- *unused* = bought − assigned; its monthly cost is unused × the monthly price, rounded half up to the cent once per
  subscription: at the customer's price (``unit_price`` ÷ the billing period's months) and at the reseller's buy price
  (``unit_cost`` ÷ months; shown only to those who may see costs). Totals add the rounded figures.

Listed: active subscriptions with unused seats or a billed count that differs from bought. Everything is read through
the session, so the caller's scope decides whose customers appear (operator staff all, a reseller its own). A page
costs three statements however many customers there are (the customers on the page with their rows, how many
customers there are, the totals); the workbook streams its rows in one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from io import BytesIO

from sqlalchemy import and_, distinct, func, or_, select
from sqlalchemy.orm import aliased

from app.clock import utcnow
from app.extensions import db
from app.formatting import local_time
from app.models.accounts import CUSTOMER, Account
from app.models.billing import ChargeEvent
from app.models.catalog import PERIOD_MONTHS, Product
from app.models.subscriptions import Subscription
from app.services import exports
from app.services.events import record_event
from app.services.exports import MONEY, NUMBER, Column, Sheet

CENT = Decimal("0.01")
CUSTOMERS_PER_PAGE = 50
FETCH = 2000


def half_up(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def unused_cost(unused: int, period_price: Decimal, billing_cycle: str) -> Decimal:
    """``unused`` seats a month at a per-period price: unused × price ÷ months, half up to the cent."""
    return half_up(Decimal(unused) * Decimal(period_price) / PERIOD_MONTHS[billing_cycle])


@dataclasses.dataclass(frozen=True)
class DriftRow:
    reseller_id: int | None
    reseller_name: str
    customer_id: int
    customer_name: str
    subscription_id: int
    product: str
    sku: str
    term: str
    billing_cycle: str
    bought: int
    assigned: int
    billed: int | None
    unit_price: Decimal  # the customer's, per licence per billing period
    unit_cost: Decimal  # the reseller's buy price, per licence per billing period

    @property
    def months(self) -> int:
        return PERIOD_MONTHS[self.billing_cycle]

    @property
    def unused(self) -> int:
        return self.bought - self.assigned

    @property
    def price_month(self) -> Decimal:
        return half_up(Decimal(self.unit_price) / self.months)

    @property
    def cost_month(self) -> Decimal:
        return half_up(Decimal(self.unit_cost) / self.months)

    @property
    def unused_price_month(self) -> Decimal:
        return unused_cost(self.unused, self.unit_price, self.billing_cycle)

    @property
    def unused_cost_month(self) -> Decimal:
        return unused_cost(self.unused, self.unit_cost, self.billing_cycle)

    @property
    def billed_differs(self) -> bool:
        return self.billed != self.bought


@dataclasses.dataclass
class Totals:
    subscriptions: int = 0
    bought: int = 0
    assigned: int = 0
    unused: int = 0
    unused_price_month: Decimal = Decimal("0.00")
    unused_cost_month: Decimal = Decimal("0.00")
    billed_differs: int = 0


@dataclasses.dataclass
class CustomerDrift:
    id: int
    name: str
    reseller_name: str
    rows: list[DriftRow]

    @property
    def totals(self) -> Totals:
        totals = Totals()
        for row in self.rows:
            _add(totals, row.bought, row.assigned, row.unused_price_month, row.unused_cost_month, row.billed_differs)
        return totals


@dataclasses.dataclass
class DriftReport:
    customers: list[CustomerDrift]
    total_customers: int
    totals: Totals
    page: int
    per_page: int


def _add(totals: Totals, bought, assigned, price, cost, differs, count: int = 1) -> None:
    totals.subscriptions += count
    totals.bought += bought * count
    totals.assigned += assigned * count
    totals.unused += (bought - assigned) * count
    totals.unused_price_month += price * count
    totals.unused_cost_month += cost * count
    totals.billed_differs += count if differs else 0


def _billed():
    """The ledger's seat count now: the quantity after the subscription's latest charge event (correlated, on the
    ledger's (subscription, time, id) index)."""
    return (
        select(ChargeEvent.quantity)
        .where(ChargeEvent.subscription_id == Subscription.id)
        .order_by(ChargeEvent.occurred_at.desc(), ChargeEvent.id.desc())
        .limit(1)
        .correlate(Subscription)
        .scalar_subquery()
    )


def _drifting(billed):
    return and_(
        Subscription.status == "active",
        or_(Subscription.quantity > Subscription.assigned, billed.is_(None), billed != Subscription.quantity),
    )


def _rows_statement(customer_ids=None):
    customer, reseller = aliased(Account), aliased(Account)
    billed = _billed().label("billed")
    statement = (
        select(
            reseller.id,
            reseller.name,
            customer.id,
            customer.name,
            Subscription.id,
            Product.name,
            Product.sku,
            Subscription.term,
            Subscription.billing_cycle,
            Subscription.quantity,
            Subscription.assigned,
            billed,
            Subscription.unit_price,
            Subscription.unit_cost,
        )
        .join(customer, customer.id == Subscription.account_id)
        .outerjoin(reseller, reseller.id == customer.parent_id)
        .join(Product, Product.id == Subscription.product_id)
        .where(customer.kind == CUSTOMER, _drifting(_billed()))
        .order_by(reseller.name, reseller.id, customer.name, customer.id, Product.name, Subscription.id)
    )
    if customer_ids is not None:
        statement = statement.where(customer.id.in_(customer_ids))
    return statement


def _row(values) -> DriftRow:
    return DriftRow(*values[:4], *values[4:9], int(values[9]), int(values[10]), values[11], *values[12:])


def _drifting_customers():
    """The customers with drift, as the report orders them (by reseller, then name)."""
    customer, reseller = aliased(Account), aliased(Account)
    return (
        select(customer.id)
        .join(Subscription, Subscription.account_id == customer.id)
        .outerjoin(reseller, reseller.id == customer.parent_id)
        .where(customer.kind == CUSTOMER, _drifting(_billed()))
        .group_by(customer.id, customer.name, reseller.id, reseller.name)
        .order_by(reseller.name, reseller.id, customer.name, customer.id)
    )


def totals() -> tuple[int, Totals]:
    """(customers with drift, the totals over all of them): two statements. Rows alike in seats, prices and
    billing period cost the same rounded amount, so they are counted in groups, and added up exactly in Decimal."""
    customers = db.session.scalar(
        select(func.count(distinct(Subscription.account_id)))
        .join(Account, Account.id == Subscription.account_id)
        .where(Account.kind == CUSTOMER, _drifting(_billed()))
    )
    billed = _billed()
    each = (
        select(
            Subscription.quantity,
            Subscription.assigned,
            Subscription.unit_price,
            Subscription.unit_cost,
            Subscription.billing_cycle,
            or_(billed.is_(None), billed != Subscription.quantity).label("differs"),
        )
        .join(Account, Account.id == Subscription.account_id)
        .where(Account.kind == CUSTOMER, _drifting(_billed()))
        .subquery()
    )
    alike = tuple(each.c)  # seats, prices, billing period, whether billed differs
    groups = db.session.execute(select(*alike, func.count()).group_by(*alike)).all()
    result = Totals()
    for quantity, assigned, price, cost, cycle, differ, count in groups:
        unused = quantity - assigned
        _add(
            result,
            quantity,
            assigned,
            unused_cost(unused, price, cycle),
            unused_cost(unused, cost, cycle),
            bool(differ),
            count,
        )
    return customers or 0, result


def report(page: int = 1, per_page: int | None = None) -> DriftReport:
    """One page of customers with drift, each with its rows, and the totals over every customer in scope."""
    page, per_page = max(page, 1), per_page or CUSTOMERS_PER_PAGE
    on_page = _drifting_customers().limit(per_page).offset((page - 1) * per_page).subquery()
    customers: dict[int, CustomerDrift] = {}
    for values in db.session.execute(_rows_statement(select(on_page.c.id))):
        row = _row(values)
        if row.customer_id not in customers:
            customers[row.customer_id] = CustomerDrift(row.customer_id, row.customer_name, row.reseller_name, [])
        customers[row.customer_id].rows.append(row)
    count, grand = totals()
    return DriftReport(list(customers.values()), count, grand, page, per_page)


def all_rows() -> Iterator[DriftRow]:
    """Every row in scope, streamed (the workbook)."""
    for values in db.session.execute(_rows_statement().execution_options(yield_per=FETCH)):
        yield _row(values)


# -- the workbook --------------------------------------------------------------------------------------------------


def workbook_columns(with_costs: bool) -> list[Column]:
    columns = [
        Column("Reseller", width=26),
        Column("Customer", width=28),
        Column("Product", width=34),
        Column("SKU", width=18),
        Column("Billing", width=10),
        Column("Bought", NUMBER, 9),
        Column("Assigned", NUMBER, 9),
        Column("Billed", NUMBER, 9),
        Column("Unused", NUMBER, 9),
        Column("Price per licence per month", MONEY, 14),
        Column("Unused seats per month (customer's price)", MONEY, 18),
    ]
    if with_costs:
        columns += [
            Column("Buy price per licence per month", MONEY, 14),
            Column("Unused seats per month (buy price)", MONEY, 18),
        ]
    return columns


def _workbook_rows(with_costs: bool) -> Iterator[tuple]:
    for row in all_rows():
        values = (
            row.reseller_name,
            row.customer_name,
            row.product,
            row.sku,
            row.billing_cycle.capitalize(),
            row.bought,
            row.assigned,
            row.billed,
            row.unused,
            row.price_month,
            row.unused_price_month,
        )
        yield values + ((row.cost_month, row.unused_cost_month) if with_costs else ())


def export_workbook(account: Account, with_costs: bool) -> exports.Download:
    """The report as .xlsx (every row in scope; text never becomes a formula or a link: app/services/exports.py),
    and the event that it was exported (committed before the file goes out)."""
    now = utcnow()
    buffer = BytesIO()
    title = f"Licence drift — {account.name} — exported {local_time(now):%d/%m/%Y %I:%M %p}"
    rows = exports.write_workbook(
        buffer, title, [Sheet("Licence drift", workbook_columns(with_costs), _workbook_rows(with_costs))]
    )
    buffer.seek(0)
    record_event(
        "report.exported",
        account_id=account.id,
        target=account,
        summary=f"Licence drift report of {account.name} exported ({rows} rows)",
    )
    db.session.commit()
    return exports.Download(buffer, f"licence-drift-{local_time(now):%Y-%m-%d}.xlsx")

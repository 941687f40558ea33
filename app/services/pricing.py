"""Prices: Microsoft's catalogue price for a month, the operator's price list for each reseller (buy prices) and each
reseller's price list for its customers (sell prices).

Every price is NZD per licence per billing period of its availability, excluding GST. A rule is ``basis`` ±
``percent``: buy rules on Microsoft's cost (the sheet's UnitPrice) or its estimated retail price (ERP Price); sell
rules on the reseller's buy price or Microsoft's retail price. **Rounding**: each price is computed from the sheet's
price (up to four decimals) and rounded once, half up, to the cent; a monthly equivalent is the period's price divided
by its months, shown rounded half up (never stored). Without a rule: the buy price is Microsoft's cost and the sell
price Microsoft's retail price. A sell price under the buy price holds only when its rule says it is intended;
otherwise the buy price is charged (``Quote.floored``).

Which rule applies — the most specific: buy: the reseller's rule for the SKU, then for the product, then its
default, then the operator's default rules (SKU, product, default) for every reseller. sell: the subscription's
rule, then the customer's (SKU, product, default), then the reseller's (SKU, product, default).

Price lists are read under a named bypass: a customer ordering must be priced by its reseller's and the operator's
lists, which its own scope does not show it (and never does: only the resulting price is shown).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import or_, select

from app import clock
from app.extensions import db
from app.models.accounts import Account
from app.models.catalog import Availability, CataloguePrice, PriceRule, Product
from security import scoping

CENT = Decimal("0.01")
_READ_LISTS = "pricing: the operator's and the reseller's price lists behind a quote"


def cents(value: Decimal) -> Decimal:
    """Half up, to the cent: the one rounding of every price the portal charges."""
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


def monthly(price: Decimal, period_months: int) -> Decimal:
    """A billing period's price per month, rounded half up to the cent (shown, never stored)."""
    return cents(Decimal(price) / period_months)


class NoPrice(LookupError):
    """The availability has no catalogue price for that month."""


@dataclasses.dataclass(frozen=True)
class Quote:
    """One licence of ``availability`` for one billing period, as priced on ``on``."""

    availability_id: int
    period_months: int
    term_months: int
    valid_from: dt.date
    ms_cost: Decimal  # what Microsoft charges the operator (rounded to the cent)
    erp: Decimal  # Microsoft's estimated retail price
    buy: Decimal  # what the reseller pays the operator
    sell: Decimal  # what the customer pays the reseller
    buy_rule: str  # in words: "cost + 8 %" or "Microsoft's cost"
    sell_rule: str
    floored: bool = False  # the sell rule gave less than the buy price, not intended: the buy price is charged
    rule_sell: Decimal | None = None  # what the sell rule gave, before any floor

    @property
    def margin(self) -> Decimal:
        """The reseller's margin per licence per billing period."""
        return self.sell - self.buy

    def per_month(self, price: Decimal) -> Decimal:
        return monthly(price, self.period_months)


def month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def catalogue_price(availability_id: int, on: dt.date | None = None) -> CataloguePrice | None:
    """The sheet's price of an availability in force on ``on`` (the portal's today): the latest month started by
    then that has not ended."""
    on = on or clock.today()
    return db.session.scalars(
        select(CataloguePrice)
        .where(
            CataloguePrice.availability_id == availability_id,
            CataloguePrice.valid_from <= on,
            or_(CataloguePrice.valid_until.is_(None), CataloguePrice.valid_until >= on),
        )
        .order_by(CataloguePrice.valid_from.desc())
        .limit(1)
    ).first()


def _apply(rule: PriceRule, bases: dict[str, Decimal]) -> Decimal:
    return cents(bases[rule.basis] * (100 + Decimal(rule.percent)) / 100)


def rule_kind(rule: PriceRule) -> int:
    """0 a subscription's rule, 1 a SKU's, 2 a product's (every SKU of it), 3 the owner's default."""
    if rule.subscription_id is not None:
        return 0
    if rule.product_id is not None:
        return 1
    if rule.ms_product_id is not None:
        return 2
    return 3


def _most_specific(
    rules: list[PriceRule], product: Product, order: list[int], subscription_id: int | None = None
) -> PriceRule | None:
    """Of ``rules``, the first by owner (``order``: account ids, most specific first), then subscription, SKU,
    product, default."""
    fitting = [
        r
        for r in rules
        if r.account_id in order
        and (r.subscription_id is None or r.subscription_id == subscription_id)
        and (r.product_id is None or r.product_id == product.id)
        and (r.ms_product_id is None or r.ms_product_id == product.ms_product_id)
    ]
    return min(fitting, key=lambda r: (order.index(r.account_id), rule_kind(r)), default=None)


def _operator_id() -> int | None:
    from app.models.accounts import OPERATOR

    return db.session.scalar(select(Account.id).where(Account.kind == OPERATOR).order_by(Account.id).limit(1))


def reseller_id_of(customer: Account) -> int:
    """The reseller whose price list prices ``customer``: its parent, or itself when a reseller buys for itself."""
    from app.models.accounts import RESELLER

    return customer.id if customer.kind == RESELLER or customer.parent_id is None else customer.parent_id


class PriceBook:
    """The price lists behind many quotes, read once (a page's table, re-pricing many subscriptions): the operator's
    buy rules for ``reseller_id``, the reseller's sell rules and those of ``customer_ids`` (every customer of the
    reseller when None), and the catalogue prices in force on ``on``. Statements do not grow with rows."""

    def __init__(self, reseller_id: int, customer_ids: list[int] | None = (), on: dt.date | None = None):
        self.reseller_id = reseller_id
        self.on = on or clock.today()
        with scoping.bypass(_READ_LISTS):
            operator_id = _operator_id()
            self.buy_owners = [reseller_id] + ([operator_id] if operator_id and operator_id != reseller_id else [])
            self.buy_rules = list(
                db.session.scalars(
                    select(PriceRule).where(PriceRule.level == "buy", PriceRule.account_id.in_(self.buy_owners))
                )
            )
            sell = select(PriceRule).where(PriceRule.level == "sell")
            if customer_ids is None:
                children = select(Account.id).where(Account.parent_id == reseller_id)
                sell = sell.where(or_(PriceRule.account_id == reseller_id, PriceRule.account_id.in_(children)))
            else:
                sell = sell.where(PriceRule.account_id.in_([reseller_id, *customer_ids]))
            self.sell_rules = list(db.session.scalars(sell))
        self._prices: dict[int, CataloguePrice | None] = {}

    def load_prices(self, availability_ids) -> None:
        """The catalogue prices in force on ``on`` for these availabilities, in one statement."""
        wanted = [i for i in set(availability_ids) if i not in self._prices]
        if not wanted:
            return
        rows = db.session.scalars(
            select(CataloguePrice).where(
                CataloguePrice.availability_id.in_(wanted),
                CataloguePrice.valid_from <= self.on,
                or_(CataloguePrice.valid_until.is_(None), CataloguePrice.valid_until >= self.on),
            )
        ).all()
        found: dict[int, CataloguePrice | None] = dict.fromkeys(wanted)
        for row in rows:
            current = found[row.availability_id]
            if current is None or row.valid_from > current.valid_from:
                found[row.availability_id] = row
        self._prices.update(found)

    def price_of(self, availability_id: int) -> CataloguePrice | None:
        self.load_prices([availability_id])
        return self._prices[availability_id]

    def buy_rule(self, product: Product) -> PriceRule | None:
        return _most_specific(self.buy_rules, product, self.buy_owners)

    def sell_rule(self, customer_id: int | None, product: Product, subscription_id: int | None = None):
        owners = ([customer_id] if customer_id and customer_id != self.reseller_id else []) + [self.reseller_id]
        return _most_specific(self.sell_rules, product, owners, subscription_id)

    def quote(
        self,
        customer_id: int | None,
        availability: Availability,
        subscription_id: int | None = None,
        sell_rule: PriceRule | None = None,
    ) -> Quote:
        """``quote`` from the lists read once; ``customer_id`` None prices a customer without rules of its own;
        ``sell_rule`` given: priced by that rule instead (what a rule being saved would charge)."""
        price = self.price_of(availability.id)
        if price is None:
            raise NoPrice(f"{availability} has no price for {self.on:%m/%Y}.")
        product = availability.product
        ms_cost, erp = Decimal(price.unit_cost), Decimal(price.erp_price)
        brule = self.buy_rule(product)
        buy = _apply(brule, {"cost": ms_cost, "retail": erp}) if brule else cents(ms_cost)
        srule = sell_rule or self.sell_rule(customer_id, product, subscription_id)
        sell = _apply(srule, {"buy": buy, "retail": erp}) if srule else cents(erp)
        floored = sell < buy and not (srule is not None and srule.below_cost_intended)
        return Quote(
            availability_id=availability.id,
            period_months=availability.period_months,
            term_months=availability.term_months,
            valid_from=price.valid_from,
            ms_cost=cents(ms_cost),
            erp=cents(erp),
            buy=buy,
            sell=buy if floored else sell,
            buy_rule=brule.describe() if brule else "Microsoft's cost",
            sell_rule=srule.describe() if srule else "Microsoft's retail price",
            floored=floored,
            rule_sell=sell,
        )


def buy_rule(reseller_id: int, product: Product) -> PriceRule | None:
    return PriceBook(reseller_id).buy_rule(product)


def sell_rule(reseller_id: int, customer_id: int, product: Product, subscription_id: int | None) -> PriceRule | None:
    return PriceBook(reseller_id, [customer_id]).sell_rule(customer_id, product, subscription_id)


def quote(
    customer: Account,
    availability: Availability,
    on: dt.date | None = None,
    subscription_id: int | None = None,
) -> Quote:
    """What one licence of ``availability`` costs each party for one billing period, priced on ``on``."""
    book = PriceBook(reseller_id_of(customer), [customer.id], on)
    return book.quote(customer.id, availability, subscription_id)

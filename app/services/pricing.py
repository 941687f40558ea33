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


def _most_specific(rules: list[PriceRule], product: Product, order: list[int]) -> PriceRule | None:
    """Of ``rules``, the first by owner (``order``: account ids, most specific first), then SKU, product, default."""

    def rank(rule: PriceRule) -> tuple:
        if rule.subscription_id is not None:
            kind = 0
        elif rule.product_id is not None:
            kind = 1
        elif rule.ms_product_id is not None:
            kind = 2
        else:
            kind = 3
        return (order.index(rule.account_id), kind)

    fitting = [
        r
        for r in rules
        if r.account_id in order
        and (r.product_id is None or r.product_id == product.id)
        and (r.ms_product_id is None or r.ms_product_id == product.ms_product_id)
    ]
    return min(fitting, key=rank, default=None)


def _operator_id() -> int | None:
    from app.models.accounts import OPERATOR

    return db.session.scalar(select(Account.id).where(Account.kind == OPERATOR).order_by(Account.id).limit(1))


def buy_rule(reseller_id: int, product: Product) -> PriceRule | None:
    with scoping.bypass(_READ_LISTS):
        operator_id = _operator_id()
        owners = [reseller_id] + ([operator_id] if operator_id else [])
        rules = db.session.scalars(
            select(PriceRule).where(PriceRule.level == "buy", PriceRule.account_id.in_(owners))
        ).all()
    return _most_specific(list(rules), product, owners)


def sell_rule(reseller_id: int, customer_id: int, product: Product, subscription_id: int | None) -> PriceRule | None:
    with scoping.bypass(_READ_LISTS):
        rules = db.session.scalars(
            select(PriceRule).where(
                PriceRule.level == "sell",
                PriceRule.account_id.in_([customer_id, reseller_id]),
                or_(PriceRule.subscription_id.is_(None), PriceRule.subscription_id == subscription_id),
            )
        ).all()
    return _most_specific(list(rules), product, [customer_id, reseller_id])


def quote(
    customer: Account,
    availability: Availability,
    on: dt.date | None = None,
    subscription_id: int | None = None,
) -> Quote:
    """What one licence of ``availability`` costs each party for one billing period, priced on ``on``."""
    on = on or clock.today()
    price = catalogue_price(availability.id, on)
    if price is None:
        raise NoPrice(f"{availability} has no price for {on:%m/%Y}.")
    product = availability.product
    ms_cost, erp = Decimal(price.unit_cost), Decimal(price.erp_price)
    reseller_id = customer.parent_id or customer.id
    brule = buy_rule(reseller_id, product)
    buy = _apply(brule, {"cost": ms_cost, "retail": erp}) if brule else cents(ms_cost)
    srule = sell_rule(reseller_id, customer.id, product, subscription_id)
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
    )

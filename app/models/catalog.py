"""The catalogue as Microsoft publishes it: product → SKU → availability (term, billing frequency), with prices by
month of validity from Microsoft's licence-based price sheet; and the two price lists built on it.

A ``Product`` row is one Microsoft SKU as sold (``sku`` = ``ProductId:SkuId``, ``name`` = the SKU's title,
``product_title`` = the product it belongs to): the order form asks for the product, then its SKU. Each SKU has
availabilities — a term (``P1M``, ``P1Y``, ``P3Y``) and a billing frequency (``monthly``, ``annual``, ``triennial``;
Microsoft's ``termDuration`` and ``billingCycle``, https://learn.microsoft.com/partner-center/developer/cart-resources)
— and each availability has prices by month: Microsoft's cost to the operator and its estimated retail price (ERP),
per licence per billing period, as the price sheet states them.

Price lists (``PriceRule``): what the operator charges each reseller (the *buy* price: a default rule such as cost
+ 8 % or retail − 10 %, overrides per product or SKU), and what each reseller charges its customers (the *sell*
price: a default markup on its buy price, overrides per customer and per subscription). app/services/pricing.py
applies them.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from flask_appbuilder import Model
from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import TenantOwned, utcnow

TERMS = ("P1M", "P1Y", "P3Y")
BILLING_FREQUENCIES = ("monthly", "annual", "triennial")
TERM_MONTHS = {"P1M": 1, "P1Y": 12, "P3Y": 36}
PERIOD_MONTHS = {"monthly": 1, "annual": 12, "triennial": 36}
TERM_LABELS = {"P1M": "1 month", "P1Y": "1 year", "P3Y": "3 years"}
FREQUENCY_LABELS = {"monthly": "Monthly", "annual": "Annual", "triennial": "Triennial"}

# Catalogue prices as Microsoft states them (its sheets carry up to four decimals); what the portal charges is
# rounded to the cent (app/services/pricing.py).
SheetMoney = Numeric(14, 4, asdecimal=True)


def valid_combination(term: str, billing_frequency: str) -> bool:
    """A billing period is never longer than the term (a monthly term is billed monthly; a 3-year term monthly,
    annually or up front)."""
    return (
        term in TERM_MONTHS
        and billing_frequency in PERIOD_MONTHS
        and PERIOD_MONTHS[billing_frequency] <= TERM_MONTHS[term]
    )


class Product(Model):
    """One Microsoft SKU as sold. Retiring keeps subscriptions."""

    __tablename__ = "product"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(160), nullable=False)  # the SKU's title (Microsoft's SkuTitle)
    sku: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)  # ProductId:SkuId
    product_title: Mapped[str] = mapped_column(String(160), nullable=False)  # Microsoft's ProductTitle
    retired_on: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_on: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)

    availabilities: Mapped[list[Availability]] = relationship(
        back_populates="product", order_by="Availability.id", viewonly=True
    )

    @property
    def is_retired(self) -> bool:
        return self.retired_on is not None

    @property
    def ms_product_id(self) -> str:
        return self.sku.partition(":")[0]

    @property
    def ms_sku_id(self) -> str:
        return self.sku.partition(":")[2]

    def __repr__(self) -> str:
        return self.name


class Availability(Model):
    """A SKU's term and billing frequency: what an order line buys (Microsoft's catalogItemId is
    ``product:sku:availability``)."""

    __tablename__ = "availability"
    __table_args__ = (
        UniqueConstraint("product_id", "term", "billing_frequency", name="uq_availability"),
        CheckConstraint("term IN ('P1M', 'P1Y', 'P3Y')", name="ck_availability_term"),
        CheckConstraint(
            "billing_frequency IN ('monthly', 'annual', 'triennial')", name="ck_availability_billing_frequency"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id", ondelete="RESTRICT"), nullable=False)
    term: Mapped[str] = mapped_column(String(3), nullable=False)
    billing_frequency: Mapped[str] = mapped_column(String(16), nullable=False)
    # Microsoft's availability id (the third part of a catalogItemId), when the price sheet or catalogue names it.
    ms_availability_id: Mapped[str | None] = mapped_column(String(64))
    retired_on: Mapped[dt.datetime | None] = mapped_column(DateTime)

    product: Mapped[Product] = relationship(back_populates="availabilities")

    @property
    def period_months(self) -> int:
        return PERIOD_MONTHS[self.billing_frequency]

    @property
    def term_months(self) -> int:
        return TERM_MONTHS[self.term]

    @property
    def label(self) -> str:
        return f"{TERM_LABELS[self.term]}, billed {FREQUENCY_LABELS[self.billing_frequency].lower()}"

    def __repr__(self) -> str:
        return f"{self.product.name} — {self.label}"


class CataloguePrice(Model):
    """An availability's prices for the months from ``valid_from`` (the 1st) to ``valid_until`` (its last day,
    inclusive; open when None), per licence per billing period, excluding GST: Microsoft's price to the operator
    (``unit_cost``, the sheet's UnitPrice) and its estimated retail price (``erp_price``, the sheet's ERP Price)."""

    __tablename__ = "catalogue_price"
    __table_args__ = (
        UniqueConstraint("availability_id", "valid_from", name="uq_catalogue_price_month"),
        CheckConstraint("unit_cost >= 0 AND erp_price >= 0", name="ck_catalogue_price_money"),
        Index("ix_catalogue_price_valid_from", "valid_from"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    availability_id: Mapped[int] = mapped_column(ForeignKey("availability.id", ondelete="CASCADE"), nullable=False)
    valid_from: Mapped[dt.date] = mapped_column(Date, nullable=False)
    valid_until: Mapped[dt.date | None] = mapped_column(Date)
    unit_cost: Mapped[Decimal] = mapped_column(SheetMoney, nullable=False)
    erp_price: Mapped[Decimal] = mapped_column(SheetMoney, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False, default="NZD")
    market: Mapped[str] = mapped_column(String(2), nullable=False, default="NZ")
    imported_on: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)

    availability: Mapped[Availability] = relationship()


PRICE_LEVELS = ("buy", "sell")
# buy (operator → reseller): on Microsoft's cost or its retail price; sell (reseller → customer): on the reseller's
# buy price or Microsoft's retail price.
PRICE_BASES = {"buy": ("cost", "retail"), "sell": ("buy", "retail")}


def rule_reach(subscription_id: int | None, product_id: int | None, ms_product_id: str | None) -> str:
    """The subscription, SKU and product a price rule narrows to, as one string the unique index can compare."""
    return f"s:{subscription_id or ''}|p:{product_id or ''}|m:{ms_product_id or ''}"


def _reach_of(context) -> str:
    values = context.get_current_parameters()
    return rule_reach(values.get("subscription_id"), values.get("product_id"), values.get("ms_product_id"))


class PriceRule(TenantOwned, Model):
    """One line of a price list: ``basis`` + ``percent`` (cost + 8, retail − 10, buy + 15), owned by the account it
    prices (scoped like the account's other rows).

    level ``buy`` (the operator's price list): ``account_id`` the reseller it prices, or the operator's own account
    for the default of every reseller; narrowed to a product (``ms_product_id``: every SKU of it) or one SKU
    (``product_id``).
    level ``sell`` (a reseller's price list): ``account_id`` the reseller (its default for every customer) or one
    customer (that customer's), narrowed to one subscription (``subscription_id``), a product or a SKU.
    The most specific rule wins (app/services/pricing.py). ``below_cost_intended``: the CSP Admin ticked that a sell
    price under the buy price is meant (otherwise such a rule is refused)."""

    __account_index__ = False
    __tablename__ = "price_rule"
    __table_args__ = (
        CheckConstraint("level IN ('buy', 'sell')", name="ck_price_rule_level"),
        CheckConstraint("basis IN ('cost', 'retail', 'buy')", name="ck_price_rule_basis"),
        CheckConstraint("percent > -100 AND percent < 1000", name="ck_price_rule_percent"),
        Index("ix_price_rule_lookup", "account_id", "level"),
        Index("ix_price_rule_subscription", "subscription_id"),
        # At most one rule per owner, level and reach (migration 0019): NULLs never clash in a unique index, the key
        # spells the reach out.
        Index("uq_price_rule_reach", "account_id", "level", "reach", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    level: Mapped[str] = mapped_column(String(4), nullable=False)
    subscription_id: Mapped[int | None] = mapped_column(ForeignKey("subscription.id", ondelete="CASCADE"))
    product_id: Mapped[int | None] = mapped_column(ForeignKey("product.id", ondelete="CASCADE"))
    ms_product_id: Mapped[str | None] = mapped_column(String(32))
    basis: Mapped[str] = mapped_column(String(8), nullable=False)
    percent: Mapped[Decimal] = mapped_column(Numeric(7, 2, asdecimal=True), nullable=False)
    below_cost_intended: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default=false())
    updated_on: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow, onupdate=utcnow)
    # What the rule narrows to, spelt out ("s:12|p:|m:"): see ``rule_reach``; set on insert.
    reach: Mapped[str] = mapped_column(String(80), nullable=False, default=_reach_of)

    product: Mapped[Product | None] = relationship()

    def describe(self) -> str:
        """ "cost + 8 %", "retail − 10 %", "buy + 15 %"."""
        sign = "+" if self.percent >= 0 else "−"
        return f"{self.basis} {sign} {abs(self.percent).normalize():f} %"

"""The catalogue: products (Microsoft SKUs as sold), their availabilities (term × billing frequency) and the prices
Microsoft publishes for each month. The price sheet import (app/services/pricesheet.py) and the demo fill it; the
order form reads it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from decimal import Decimal

from sqlalchemy import select

from app import clock
from app.extensions import db
from app.models.base import utcnow
from app.models.catalog import Availability, CataloguePrice, Product, valid_combination
from app.services.customer_services import commit

_ORDER = {"P1M": 0, "P1Y": 1, "P3Y": 2, "monthly": 0, "annual": 1, "triennial": 2}


def product_by_sku(sku: str) -> Product | None:
    return db.session.scalars(select(Product).where(Product.sku == sku)).first()


def ensure_product(name: str, sku: str, product_title: str | None = None) -> Product:
    """The SKU ``sku`` (ProductId:SkuId), added when missing."""
    product = product_by_sku(sku)
    if product is None:
        product = Product(name=name, sku=sku, product_title=product_title or name)
        db.session.add(product)
        db.session.flush()
    return product


def retire(products: Iterable[Product], record: Callable[[Product], None]) -> list[Product]:
    """Retire those of ``products`` not retired yet (existing subscriptions keep them), ``record`` each one's event,
    and commit; the retired ones, in the order given (rolled back, and raised, on any failure)."""

    def change() -> list[Product]:
        retired = [product for product in {p.id: p for p in products}.values() if product.retired_on is None]
        for product in retired:
            product.retired_on = utcnow()
            record(product)
        return retired

    return commit(change)


def availabilities(product: Product) -> list[Availability]:
    """The SKU's availabilities (retired or not), by term and billing frequency."""
    return sorted(
        db.session.scalars(select(Availability).where(Availability.product_id == product.id)),
        key=lambda a: (_ORDER[a.term], _ORDER[a.billing_frequency]),
    )


def availability_of(product: Product, term: str, billing_frequency: str) -> Availability | None:
    return db.session.scalars(
        select(Availability).where(
            Availability.product_id == product.id,
            Availability.term == term,
            Availability.billing_frequency == billing_frequency,
        )
    ).first()


def ensure_availability(product: Product, term: str, billing_frequency: str) -> Availability:
    if not valid_combination(term, billing_frequency):
        raise ValueError(f"{term} cannot be billed {billing_frequency}")
    availability = availability_of(product, term, billing_frequency)
    if availability is None:
        availability = Availability(product_id=product.id, term=term, billing_frequency=billing_frequency)
        db.session.add(availability)
        db.session.flush()
    return availability


def set_price(
    availability: Availability,
    unit_cost: Decimal | str,
    erp_price: Decimal | str,
    valid_from: dt.date | None = None,
    *,
    currency: str = "NZD",
    market: str = "NZ",
) -> CataloguePrice:
    """The availability's price from ``valid_from`` (default: the 1st of this month), per licence per billing
    period: replaced when that month already has one."""
    valid_from = valid_from or clock.today().replace(day=1)
    price = db.session.scalars(
        select(CataloguePrice).where(
            CataloguePrice.availability_id == availability.id, CataloguePrice.valid_from == valid_from
        )
    ).first()
    if price is None:
        price = CataloguePrice(availability_id=availability.id, valid_from=valid_from)
        db.session.add(price)
    price.unit_cost, price.erp_price = Decimal(unit_cost), Decimal(erp_price)
    price.currency, price.market = currency, market
    db.session.flush()
    return price


def for_sale() -> list[Availability]:
    """Every availability on sale (neither it nor its product retired), by product, SKU, term and frequency."""
    order = {"P1M": 0, "P1Y": 1, "P3Y": 2, "monthly": 0, "annual": 1, "triennial": 2}
    rows = db.session.scalars(
        select(Availability)
        .join(Availability.product)
        .where(Availability.retired_on.is_(None), Product.retired_on.is_(None))
    ).all()
    return sorted(
        rows,
        key=lambda a: (a.product.product_title, a.product.name, order[a.term], order[a.billing_frequency]),
    )

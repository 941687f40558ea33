"""The product catalogue the operator sells: one row per SKU and billing cycle."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from flask_appbuilder import Model
from sqlalchemy import CheckConstraint, DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Money, utcnow

BILLING_CYCLES = ("monthly", "annual")


class Product(Model):
    """A catalogue item. Prices are NZD per licence per month, excluding GST. Retiring keeps subscriptions."""

    __tablename__ = "product"
    __table_args__ = (
        CheckConstraint("billing_cycle IN ('monthly', 'annual')", name="ck_product_billing_cycle"),
        CheckConstraint("unit_cost >= 0 AND unit_price >= 0", name="ck_product_money"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(160), nullable=False)
    sku: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    billing_cycle: Mapped[str] = mapped_column(String(16), nullable=False, default="monthly")
    unit_cost: Mapped[Decimal] = mapped_column(Money, nullable=False)
    unit_price: Mapped[Decimal] = mapped_column(Money, nullable=False)
    retired_on: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_on: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)

    @property
    def is_retired(self) -> bool:
        return self.retired_on is not None

    def __repr__(self) -> str:
        return self.name

"""Subscriptions, the Microsoft 365 users of a customer's tenant, their licence assignments and usage history."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from flask_appbuilder import Model
from sqlalchemy import CheckConstraint, Date, DateTime, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Money, TenantOwned, utcnow
from app.models.catalog import Product

SUBSCRIPTION_STATUSES = ("active", "suspended", "cancelled", "expired")


class Subscription(TenantOwned, Model):
    """A customer's licence-based subscription. ``assigned`` is the count of its licence assignments, kept in the
    same transaction as they change; the database refuses more assignments than licences."""

    __account_index__ = False
    __tablename__ = "subscription"
    __table_args__ = (
        CheckConstraint("quantity >= 0", name="ck_subscription_quantity"),
        CheckConstraint("assigned >= 0 AND assigned <= quantity", name="ck_subscription_assigned"),
        CheckConstraint("unit_price >= 0 AND unit_cost >= 0", name="ck_subscription_money"),
        CheckConstraint("billing_cycle IN ('monthly', 'annual')", name="ck_subscription_billing_cycle"),
        CheckConstraint("status IN ('active', 'suspended', 'cancelled', 'expired')", name="ck_subscription_status"),
        Index("ix_subscription_renew_on", "renew_on"),
        Index("ix_subscription_account_renew_on", "account_id", "renew_on"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id", ondelete="RESTRICT"), nullable=False, index=True)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    assigned: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    renew_on: Mapped[dt.date] = mapped_column(Date, nullable=False)
    term_started_on: Mapped[dt.date] = mapped_column(Date, nullable=False)
    billing_cycle: Mapped[str] = mapped_column(String(16), nullable=False)
    unit_price: Mapped[Decimal] = mapped_column(Money, nullable=False)
    unit_cost: Mapped[Decimal] = mapped_column(Money, nullable=False)
    auto_renew: Mapped[bool] = mapped_column(nullable=False, default=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    provider_subscription_id: Mapped[str | None] = mapped_column(String(64))
    created_on: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    # One licence change at a time (app/services/licensing.py): the lease's holder and when it lapses — claimed and
    # committed before the call to Microsoft, released after; a crashed holder's lease lapses by itself.
    licence_lease: Mapped[str | None] = mapped_column(String(36))
    licence_lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime)

    product: Mapped[Product] = relationship()

    @property
    def monthly_total(self) -> Decimal:
        return self.unit_price * self.quantity

    def __repr__(self) -> str:
        return f"{self.product.name} ({self.assigned}/{self.quantity})"


class M365User(TenantOwned, Model):
    """A person in the customer's Microsoft tenant; licences are assigned to these, not to portal users."""

    __tablename__ = "m365_user"
    __table_args__ = (
        UniqueConstraint("account_id", "user_principal_name", name="uq_m365_user_account_upn"),
        CheckConstraint("status IN ('active', 'disabled')", name="ck_m365_user_status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    display_name: Mapped[str] = mapped_column(String(256), nullable=False)
    user_principal_name: Mapped[str] = mapped_column(String(320), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    provider_user_id: Mapped[str | None] = mapped_column(String(64))
    created_on: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)

    def __repr__(self) -> str:
        return self.user_principal_name


class LicenceAssignment(TenantOwned, Model):
    """One licence of a subscription held by one Microsoft 365 user."""

    __tablename__ = "licence_assignment"
    __table_args__ = (UniqueConstraint("subscription_id", "m365_user_id", name="uq_licence_assignment"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscription.id", ondelete="CASCADE"), nullable=False)
    m365_user_id: Mapped[int] = mapped_column(
        ForeignKey("m365_user.id", ondelete="CASCADE"), nullable=False, index=True
    )
    assigned_on: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)

    subscription: Mapped[Subscription] = relationship()
    m365_user: Mapped[M365User] = relationship()


class UsagePoint(TenantOwned, Model):
    """A change point of a subscription's numbers: written only when quantity, assigned or price changes."""

    __account_index__ = False
    __tablename__ = "usage_point"
    __table_args__ = (
        Index("ix_usage_point_subscription_time", "subscription_id", "recorded_at"),
        Index("ix_usage_point_account_time", "account_id", "recorded_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscription.id", ondelete="CASCADE"), nullable=False)
    recorded_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    assigned: Mapped[int] = mapped_column(Integer, nullable=False)
    unit_price: Mapped[Decimal] = mapped_column(Money, nullable=False)

    subscription: Mapped[Subscription] = relationship()

"""Subscriptions, the Microsoft 365 users of a customer's tenant, their licence assignments and usage history."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from flask_appbuilder import Model
from sqlalchemy import CheckConstraint, Date, DateTime, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Money, TenantOwned, utcnow
from app.models.catalog import FREQUENCY_LABELS, PERIOD_MONTHS, TERM_LABELS, Availability, Product

SUBSCRIPTION_STATUSES = ("active", "suspended", "cancelled", "expired")


class Subscription(TenantOwned, Model):
    """A customer's licence-based subscription. ``assigned`` is the count of its licence assignments, kept in the
    same transaction as they change; the database refuses more assignments than licences.

    It buys one availability (``term``, ``billing_cycle``: copies of the availability's, Microsoft's ``termDuration``
    and ``billingCycle``). Prices are per licence per billing period, excluding GST, locked for the term:
    ``unit_price`` what the customer pays (the reseller's sell price), ``unit_cost`` what the reseller pays the
    operator (its buy price), ``ms_unit_cost`` what Microsoft charges the operator. ``renew_on`` is the term's end
    (the day it renews or expires). A change scheduled for the next term (Microsoft's
    ``scheduledNextTermInstructions``) is ``next_availability_id`` / ``next_quantity``."""

    __account_index__ = False
    __tablename__ = "subscription"
    __table_args__ = (
        CheckConstraint("quantity >= 0", name="ck_subscription_quantity"),
        CheckConstraint("assigned >= 0 AND assigned <= quantity", name="ck_subscription_assigned"),
        CheckConstraint("unit_price >= 0 AND unit_cost >= 0 AND ms_unit_cost >= 0", name="ck_subscription_money"),
        CheckConstraint("billing_cycle IN ('monthly', 'annual', 'triennial')", name="ck_subscription_billing_cycle"),
        CheckConstraint("term IN ('P1M', 'P1Y', 'P3Y')", name="ck_subscription_term"),
        CheckConstraint("next_quantity IS NULL OR next_quantity >= 1", name="ck_subscription_next_quantity"),
        CheckConstraint("status IN ('active', 'suspended', 'cancelled', 'expired')", name="ck_subscription_status"),
        Index("ix_subscription_renew_on", "renew_on"),
        Index("ix_subscription_account_renew_on", "account_id", "renew_on"),
        Index("ix_subscription_provider_id", "provider_subscription_id"),  # billing reconciliation (0023)
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id", ondelete="RESTRICT"), nullable=False, index=True)
    availability_id: Mapped[int] = mapped_column(
        ForeignKey("availability.id", ondelete="RESTRICT"), nullable=False, index=True
    )
    term: Mapped[str] = mapped_column(String(3), nullable=False)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    assigned: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    renew_on: Mapped[dt.date] = mapped_column(Date, nullable=False)
    term_started_on: Mapped[dt.date] = mapped_column(Date, nullable=False)
    billing_cycle: Mapped[str] = mapped_column(String(16), nullable=False)
    unit_price: Mapped[Decimal] = mapped_column(Money, nullable=False)
    unit_cost: Mapped[Decimal] = mapped_column(Money, nullable=False)
    ms_unit_cost: Mapped[Decimal] = mapped_column(Money, nullable=False, default=Decimal("0"))
    auto_renew: Mapped[bool] = mapped_column(nullable=False, default=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    provider_subscription_id: Mapped[str | None] = mapped_column(String(64))
    created_on: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    # One licence change at a time (app/services/licensing.py): the lease's holder and when it lapses — claimed and
    # committed before the call to Microsoft, released after; a crashed holder's lease lapses by itself.
    licence_lease: Mapped[str | None] = mapped_column(String(36))
    licence_lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # The change scheduled for the next term (none: renews as it is); the term's end is when it applies.
    next_availability_id: Mapped[int | None] = mapped_column(ForeignKey("availability.id", ondelete="SET NULL"))
    next_quantity: Mapped[int | None] = mapped_column(Integer)
    next_scheduled_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(DateTime)

    product: Mapped[Product] = relationship()
    availability: Mapped[Availability] = relationship(foreign_keys=[availability_id])
    next_availability: Mapped[Availability | None] = relationship(foreign_keys=[next_availability_id])

    @property
    def period_months(self) -> int:
        return PERIOD_MONTHS[self.billing_cycle]

    @property
    def monthly_price(self) -> Decimal:
        """The customer's price per licence per month (the billing period's price spread evenly; not rounded)."""
        return self.unit_price / self.period_months

    @property
    def monthly_cost(self) -> Decimal:
        return self.unit_cost / self.period_months

    @property
    def monthly_total(self) -> Decimal:
        """What the customer pays a month for all its licences, to the cent (half up)."""
        return (self.unit_price * self.quantity / self.period_months).quantize(Decimal("0.01"), "ROUND_HALF_UP")

    @property
    def has_scheduled_change(self) -> bool:
        return self.next_availability_id is not None or self.next_quantity is not None

    # -- in words, as pages and reports show them (load ``next_availability`` and its product with the rows) ------
    @property
    def term_label(self) -> str:
        return TERM_LABELS[self.term]

    @property
    def billing_frequency_label(self) -> str:
        return FREQUENCY_LABELS[self.billing_cycle]

    @property
    def term_and_billing_label(self) -> str:
        """ "1 year, billed annually"."""
        return f"{TERM_LABELS[self.term]}, {BILLED[self.billing_cycle]}"

    @property
    def scheduled_change_label(self) -> str:
        """ "At renewal: <SKU title>, 1 year billed monthly, 8 licences", or "" when nothing is scheduled."""
        if not self.has_scheduled_change:
            return ""
        offer = self.next_availability
        name, term, cycle = (
            (offer.product.name, offer.term, offer.billing_frequency)
            if offer is not None
            else (self.product.name, self.term, self.billing_cycle)
        )
        return scheduled_change_words(name, term, cycle, self.next_quantity or self.quantity)

    def __repr__(self) -> str:
        return f"{self.product.name} ({self.assigned}/{self.quantity})"


BILLED = {"monthly": "billed monthly", "annual": "billed annually", "triennial": "billed triennially"}


def scheduled_change_words(sku_title: str, term: str, billing_cycle: str, seats: int) -> str:
    """ "At renewal: Office 365 E3, 1 year billed monthly, 8 licences"."""
    licences = f"{seats} licence{'' if seats == 1 else 's'}"
    return f"At renewal: {sku_title}, {TERM_LABELS[term]} {BILLED[billing_cycle]}, {licences}"


SEAT_BATCH_KINDS = ("purchase", "increase", "renewal")


class SeatBatch(TenantOwned, Model):
    """Seats a purchase, an increase or a renewal added, and the window in which Microsoft lets them be given back
    for a prorated refund: 168 hours (7 days) after that moment, its own end for each batch
    (https://learn.microsoft.com/partner-center/customers/subscription-lifecycle — new-commerce cancellation policy).
    ``refundable`` is how many of its seats can still be given back; ``refundable_until`` is Microsoft's
    ``allowedUntilDateTime`` (UTC) for the Partner Center provider, 168 hours after ``added_at`` for the sandbox."""

    __account_index__ = False
    __tablename__ = "seat_batch"
    __table_args__ = (
        CheckConstraint("kind IN ('purchase', 'increase', 'renewal')", name="ck_seat_batch_kind"),
        CheckConstraint("quantity >= 1 AND refundable >= 0 AND refundable <= quantity", name="ck_seat_batch_seats"),
        Index("ix_seat_batch_subscription", "subscription_id", "added_at"),
        Index("ix_seat_batch_account", "account_id", "refundable_until"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscription.id", ondelete="CASCADE"), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    refundable: Mapped[int] = mapped_column(Integer, nullable=False)
    added_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    refundable_until: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False)
    unit_price: Mapped[Decimal] = mapped_column(Money, nullable=False)  # the customer's, per licence per period

    subscription: Mapped[Subscription] = relationship()


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
    # As Microsoft's admin centre shows them (issue 15); NULL for users recorded before (the display name stands).
    first_name: Mapped[str | None] = mapped_column(String(64))
    last_name: Mapped[str | None] = mapped_column(String(64))
    # Two letters (ISO 3166): where the user's licensed services are used; Microsoft requires it to assign licences.
    usage_location: Mapped[str | None] = mapped_column(String(2))

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

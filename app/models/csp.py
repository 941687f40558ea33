"""State of the embedded ``sandbox`` CSP provider: what Partner Center would know, kept in our database."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from flask_appbuilder import Model
from sqlalchemy import Boolean, Date, DateTime, Integer, Numeric, String, Text, false, true
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import utcnow


class SandboxDomain(Model):
    """An onmicrosoft prefix the sandbox treats as taken (``<prefix>.onmicrosoft.com`` exists)."""

    __tablename__ = "sandbox_domain"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prefix: Mapped[str] = mapped_column(String(27), nullable=False, unique=True)
    created_on: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)


class SandboxCustomer(Model):
    """A customer (and its tenant) the sandbox created, as Partner Center would hold it."""

    __tablename__ = "sandbox_customer"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(36), nullable=False, unique=True)
    domain_prefix: Mapped[str] = mapped_column(String(27), nullable=False, unique=True)
    company_name: Mapped[str] = mapped_column(String(160), nullable=False)
    agreement_accepted_on: Mapped[dt.date | None] = mapped_column(Date)
    created_on: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)


class SandboxSubscription(Model):
    """A subscription the sandbox sold: its term (``term``: P1M, P1Y, P3Y) runs from ``term_started_on`` to
    ``term_end`` (inclusive); what is scheduled for the next term is ``next_*`` (Microsoft's
    scheduledNextTermInstructions); ``offer_id`` is the SKU (ProductId:SkuId)."""

    __tablename__ = "sandbox_subscription"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscription_id: Mapped[str] = mapped_column(String(36), nullable=False, unique=True)
    tenant_id: Mapped[str] = mapped_column(String(36), nullable=False, index=True)
    offer_id: Mapped[str] = mapped_column(String(64), nullable=False)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    auto_renew: Mapped[bool] = mapped_column(nullable=False, default=True)
    billing_cycle: Mapped[str] = mapped_column(String(16), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    purchased_on: Mapped[dt.date] = mapped_column(Date, nullable=False)
    # The MS-RequestId of the order that made it: the same request sent again returns this subscription.
    request_id: Mapped[str | None] = mapped_column(String(36), unique=True)
    term: Mapped[str] = mapped_column(String(3), nullable=False, default="P1Y", server_default="P1Y")
    term_started_on: Mapped[dt.date | None] = mapped_column(Date)
    term_end: Mapped[dt.date | None] = mapped_column(Date)
    next_offer_id: Mapped[str | None] = mapped_column(String(64))
    next_term: Mapped[str | None] = mapped_column(String(3))
    next_billing_cycle: Mapped[str | None] = mapped_column(String(16))
    next_quantity: Mapped[int | None] = mapped_column(Integer)
    cart_id: Mapped[str | None] = mapped_column(String(36), index=True)


class SandboxSeatBatch(Model):
    """Seats the sandbox added (purchase, increase, renewal) and until when they can be given back (168 hours):
    what Partner Center reports as the subscription's refundable quantities."""

    __tablename__ = "sandbox_seat_batch"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscription_id: Mapped[str] = mapped_column(String(36), nullable=False, index=True)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    added_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False)
    allowed_until: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False)


class SandboxCart(Model):
    """A cart the sandbox holds (Partner Center: POST /v1/customers/{id}/carts; checked out once; expires after
    7 days). ``line_items`` is the JSON the portal sent; ``request_id`` the MS-RequestId that made it."""

    __tablename__ = "sandbox_cart"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cart_id: Mapped[str] = mapped_column(String(36), nullable=False, unique=True)
    tenant_id: Mapped[str] = mapped_column(String(36), nullable=False, index=True)
    request_id: Mapped[str | None] = mapped_column(String(36), unique=True)
    checkout_request_id: Mapped[str | None] = mapped_column(String(36), unique=True)
    line_items: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="Active")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False)


class SandboxUser(Model):
    """A Microsoft 365 user the sandbox created, and the SKUs assigned to it (space-separated)."""

    __tablename__ = "sandbox_user"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[str] = mapped_column(String(36), nullable=False, unique=True)
    tenant_id: Mapped[str] = mapped_column(String(36), nullable=False, index=True)
    user_principal_name: Mapped[str] = mapped_column(String(320), nullable=False, unique=True)
    display_name: Mapped[str] = mapped_column(String(256), nullable=False)
    sku_ids: Mapped[str] = mapped_column(Text, nullable=False, default="")
    # May sign in (a disabled user keeps its licences, as in Microsoft 365); a deleted user's row is removed.
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True, server_default=true())
    # When its password was last reset (the password itself is never kept, not even here).
    password_reset_on: Mapped[dt.datetime | None] = mapped_column(DateTime)
    first_name: Mapped[str | None] = mapped_column(String(64))
    last_name: Mapped[str | None] = mapped_column(String(64))
    usage_location: Mapped[str | None] = mapped_column(String(2))
    # The tenant's first global admin, made with the customer (issue 15).
    is_global_admin: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default=false())


class SandboxChargeEvent(Model):
    """The sandbox's own billing events (Microsoft's side of the charge ledger, issue 14): written from its flush by
    app/services/billing_ledger.py whenever a sandbox subscription is bought, renewed, converted, changes quantity,
    is cancelled or expires. ``unit_price`` is Microsoft's price per licence per billing period, from the sandbox's
    price sheet for the month the term started (annual and 3-year prices are locked for the term). ``term_end`` is
    exclusive here (the day the term renews), as the portal's ``renew_on``."""

    __tablename__ = "sandbox_charge_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscription_id: Mapped[str] = mapped_column(String(36), nullable=False, index=True)
    tenant_id: Mapped[str] = mapped_column(String(36), nullable=False)
    occurred_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    delta: Mapped[int] = mapped_column(Integer, nullable=False)
    offer_id: Mapped[str] = mapped_column(String(64), nullable=False)
    term: Mapped[str] = mapped_column(String(3), nullable=False)
    billing_cycle: Mapped[str] = mapped_column(String(16), nullable=False)
    term_started_on: Mapped[dt.date] = mapped_column(Date, nullable=False)
    renew_on: Mapped[dt.date] = mapped_column(Date, nullable=False)
    unit_price: Mapped[Decimal] = mapped_column(Numeric(14, 4, asdecimal=True), nullable=False)

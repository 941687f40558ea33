"""Billing (issue 14): the charge ledger, invoices and their lines, numbering per issuer, each issuer's invoice
settings, and Microsoft's billed reconciliation lines imported for a month.

The **charge ledger** (``ChargeEvent``) is written by app/services/billing_ledger.py whenever a subscription is
bought, renewed, converted, changes its quantity, is cancelled or expires — in the same transaction, from the ORM's
own flush, so no path (orders, reductions, renewals, recovery, drift repair, demo) can forget it. The billing run
derives every month's charges from it (app/services/billing_rules.py).

An **issued** invoice is unchangeable: the database refuses any update or delete of it and any change to its lines
(triggers from migration 0023, on SQLite and PostgreSQL); corrections are credit notes."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from flask_appbuilder import Model
from sqlalchemy import (
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import IssuedBetween, Money, OperatorOnly, TenantOwned, utcnow

# Microsoft's 4-decimal prices (the price sheet's UnitPrice) and the 6-decimal effective unit price of its file.
Price4 = Numeric(14, 4, asdecimal=True)
Price6 = Numeric(16, 6, asdecimal=True)

CHARGE_EVENT_KINDS = ("new", "renew", "addQuantity", "removeQuantity", "cancel", "convert", "expire")
INVOICE_STATUSES = ("draft", "issued")
INVOICE_KINDS = ("invoice", "credit_note")
# Microsoft's ChargeType values of new-commerce licence-based charges, as its billed reconciliation data spells
# them (https://learn.microsoft.com/partner-center/billing/recon-file-charge-types).
CHARGE_TYPES = ("new", "renew", "cycleCharge", "addQuantity", "removeQuantity", "cancelImmediate", "convert")


class ChargeEvent(TenantOwned, Model):
    """One billable moment of a subscription, with the subscription as it is after it: ``quantity`` seats (the
    seat change ``delta``), its term ``term_started_on`` → ``renew_on`` (exclusive), its availability and its three
    prices per licence per billing period: ``unit_price`` (the customer's), ``unit_cost`` (the reseller's buy
    price), ``ms_unit_cost`` (Microsoft's). ``occurred_at`` is UTC: Microsoft dates its billing events in UTC."""

    __account_index__ = False
    __tablename__ = "charge_event"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('new', 'renew', 'addQuantity', 'removeQuantity', 'cancel', 'convert', 'expire')",
            name="ck_charge_event_kind",
        ),
        Index("ix_charge_event_subscription", "subscription_id", "occurred_at", "id"),
        Index("ix_charge_event_account", "account_id", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscription.id", ondelete="CASCADE"), nullable=False)
    occurred_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    delta: Mapped[int] = mapped_column(Integer, nullable=False)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id", ondelete="RESTRICT"), nullable=False)
    availability_id: Mapped[int] = mapped_column(ForeignKey("availability.id", ondelete="RESTRICT"), nullable=False)
    term: Mapped[str] = mapped_column(String(3), nullable=False)
    billing_cycle: Mapped[str] = mapped_column(String(16), nullable=False)
    term_started_on: Mapped[dt.date] = mapped_column(Date, nullable=False)
    renew_on: Mapped[dt.date] = mapped_column(Date, nullable=False)
    unit_price: Mapped[Decimal] = mapped_column(Money, nullable=False)
    unit_cost: Mapped[Decimal] = mapped_column(Money, nullable=False)
    ms_unit_cost: Mapped[Decimal] = mapped_column(Price4, nullable=False)


class BillingProfile(TenantOwned, Model):
    """How an issuer (the operator or a reseller) invoices: number prefix, GST number, payment terms, and the
    account code and tax type its accounting export writes. ``next_number`` is the next invoice number: taken under
    a row lock in the transaction that issues, so numbers have no gaps (a rolled-back issue takes none)."""

    __account_index__ = False
    __tablename__ = "billing_profile"
    __table_args__ = (
        UniqueConstraint("account_id", name="uq_billing_profile_account"),
        CheckConstraint("payment_terms_days >= 0 AND payment_terms_days <= 365", name="ck_billing_profile_terms"),
        CheckConstraint("next_number >= 1", name="ck_billing_profile_next"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    invoice_prefix: Mapped[str] = mapped_column(String(12), nullable=False, default="INV-")
    gst_number: Mapped[str | None] = mapped_column(String(20))
    payment_terms_days: Mapped[int] = mapped_column(Integer, nullable=False, default=20)
    next_number: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    xero_account_code: Mapped[str] = mapped_column(String(10), nullable=False, default="200")
    xero_tax_type: Mapped[str] = mapped_column(String(40), nullable=False, default="15% GST on Income")


class Invoice(IssuedBetween, Model):
    """From ``issuer_id`` (the operator, or a reseller) to ``buyer_id`` (a reseller, or a customer) for ``month``
    (its 1st). Visible to the issuer's and the buyer's side (security/scoping.py). Amounts NZD, GST at TAX_RATE on
    the subtotal, rounded half up to the cent once per invoice."""

    __tablename__ = "invoice"
    __table_args__ = (
        CheckConstraint("status IN ('draft', 'issued')", name="ck_invoice_status"),
        CheckConstraint("kind IN ('invoice', 'credit_note')", name="ck_invoice_kind"),
        CheckConstraint(
            "(status = 'draft' AND number IS NULL) OR (status = 'issued' AND number IS NOT NULL)",
            name="ck_invoice_number",
        ),
        UniqueConstraint("issuer_id", "number", name="uq_invoice_issuer_number"),
        Index("ix_invoice_issuer_month", "issuer_id", "month", "buyer_id"),
        Index("ix_invoice_buyer_month", "buyer_id", "month"),
        # Deleting a draft checks that no credit note refers to it: without an index, a scan per deleted row.
        Index("ix_invoice_corrects", "corrects_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False, default="invoice")
    month: Mapped[dt.date] = mapped_column(Date, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="draft")
    number: Mapped[str | None] = mapped_column(String(32))
    issue_date: Mapped[dt.date | None] = mapped_column(Date)
    due_date: Mapped[dt.date | None] = mapped_column(Date)
    currency: Mapped[str] = mapped_column(String(3), nullable=False, default="NZD")
    tax_rate: Mapped[Decimal] = mapped_column(Numeric(6, 4), nullable=False)
    subtotal: Mapped[Decimal] = mapped_column(Money, nullable=False, default=Decimal("0"))
    tax: Mapped[Decimal] = mapped_column(Money, nullable=False, default=Decimal("0"))
    total: Mapped[Decimal] = mapped_column(Money, nullable=False, default=Decimal("0"))
    issuer_gst_number: Mapped[str | None] = mapped_column(String(20))
    corrects_id: Mapped[int | None] = mapped_column(ForeignKey("invoice.id", ondelete="RESTRICT"))
    note: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    issued_at: Mapped[dt.datetime | None] = mapped_column(DateTime)

    issuer: Mapped["Account"] = relationship(foreign_keys="Invoice.issuer_id")  # noqa: F821
    buyer: Mapped["Account"] = relationship(foreign_keys="Invoice.buyer_id")  # noqa: F821
    lines: Mapped[list["InvoiceLine"]] = relationship(
        back_populates="invoice", order_by="InvoiceLine.position", passive_deletes=True
    )

    @property
    def is_issued(self) -> bool:
        return self.status == "issued"

    @property
    def title(self) -> str:
        word = "Credit note" if self.kind == "credit_note" else "Invoice"
        return f"{word} {self.number}" if self.number else f"Draft {word.lower()}"


class InvoiceLine(IssuedBetween, Model):
    """One charge: a subscription's charge of one type over ``charge_start`` … ``charge_end`` (inclusive).
    ``unit_price`` is per licence per billing period; ``effective_unit_price`` the prorated one (6 decimals);
    ``amount`` = ROUNDDOWN(effective unit price, 2) × quantity, negative for a credit. ``ms_*`` (the operator's
    invoices only, never shown to resellers) are what Microsoft charges the operator for the same charge."""

    __tablename__ = "invoice_line"
    __table_args__ = (
        Index("ix_invoice_line_invoice", "invoice_id", "position"),
        Index("ix_invoice_line_subscription", "subscription_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoice.id", ondelete="CASCADE"), nullable=False)
    # issuer_id, buyer_id (IssuedBetween): the invoice's parties, copied — scoping filters lines as it filters invoices.
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    customer_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="RESTRICT"), nullable=False)
    subscription_id: Mapped[int | None] = mapped_column(ForeignKey("subscription.id", ondelete="SET NULL"))
    description: Mapped[str] = mapped_column(String(300), nullable=False)
    sku: Mapped[str] = mapped_column(String(64), nullable=False)
    charge_type: Mapped[str] = mapped_column(String(20), nullable=False)
    term: Mapped[str] = mapped_column(String(3), nullable=False)
    billing_cycle: Mapped[str] = mapped_column(String(16), nullable=False)
    charge_start: Mapped[dt.date] = mapped_column(Date, nullable=False)
    charge_end: Mapped[dt.date] = mapped_column(Date, nullable=False)
    days: Mapped[int] = mapped_column(Integer, nullable=False)
    cycle_days: Mapped[int] = mapped_column(Integer, nullable=False)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    unit_price: Mapped[Decimal] = mapped_column(Money, nullable=False)
    effective_unit_price: Mapped[Decimal] = mapped_column(Price6, nullable=False)
    amount: Mapped[Decimal] = mapped_column(Money, nullable=False)
    ms_unit_price: Mapped[Decimal | None] = mapped_column(Price4)
    ms_effective_unit_price: Mapped[Decimal | None] = mapped_column(Price6)
    ms_amount: Mapped[Decimal | None] = mapped_column(Money)

    invoice: Mapped[Invoice] = relationship(back_populates="lines")


class MicrosoftBilledLine(OperatorOnly, Model):
    """One line of Microsoft's new-commerce billed reconciliation data for a month, as imported (its field names:
    https://learn.microsoft.com/partner-center/billing/modern-invoice-reconciliation-file). ``match`` is what the
    reconciliation found: matched, price_differs, quantity_differs, only_microsoft; the portal's lines that have no
    Microsoft line are reported without a row here."""

    __tablename__ = "microsoft_billed_line"
    __table_args__ = (
        Index("ix_microsoft_billed_line_month", "month", "subscription_id", "charge_type", "charge_start"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    month: Mapped[dt.date] = mapped_column(Date, nullable=False)
    invoice_number: Mapped[str] = mapped_column(String(32), nullable=False)
    customer_id: Mapped[str] = mapped_column(String(36), nullable=False)  # Microsoft's CustomerId (tenant)
    customer_name: Mapped[str | None] = mapped_column(String(160))
    subscription_id: Mapped[str] = mapped_column(String(64), nullable=False)  # Microsoft's SubscriptionId
    product_id: Mapped[str] = mapped_column(String(32), nullable=False)
    sku_id: Mapped[str] = mapped_column(String(16), nullable=False)
    sku_name: Mapped[str | None] = mapped_column(String(200))
    charge_type: Mapped[str] = mapped_column(String(20), nullable=False)
    charge_start: Mapped[dt.date] = mapped_column(Date, nullable=False)
    charge_end: Mapped[dt.date] = mapped_column(Date, nullable=False)
    term_and_billing_cycle: Mapped[str | None] = mapped_column(String(60))
    unit_price: Mapped[Decimal] = mapped_column(Price4, nullable=False)
    effective_unit_price: Mapped[Decimal] = mapped_column(Price6, nullable=False)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    billable_quantity: Mapped[Decimal] = mapped_column(Numeric(14, 4), nullable=False)
    subtotal: Mapped[Decimal] = mapped_column(Money, nullable=False)
    match: Mapped[str | None] = mapped_column(String(20))
    imported_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)

"""The sandbox's invoices and billed reconciliation data (issue 14), mixed into SandboxProvider (uses its ``_call``
and ``_engine``).

One invoice a month, ``G`` + YYYYMM + ``0001`` (G2026110001 for November 2026: Microsoft's new-commerce invoice ids
start with G), listed once the month has ended (UTC). Its lines are the month's charges of every sandbox
subscription, computed from the sandbox's own charge ledger (``SandboxChargeEvent``: Microsoft's side) by
Microsoft's rules (app/services/billing_rules.py), with the field names of Graph's billed reconciliation export:
camelCase, as its JSON lines and Partner Center's invoice line items spell them. The fields' meaning:
https://learn.microsoft.com/partner-center/billing/modern-invoice-reconciliation-file; the camelCase JSON names:
https://learn.microsoft.com/partner-center/developer/get-invoiceline-items (partnerId, customerId, customerName,
invoiceNumber, productId, skuId, availabilityId, skuName, productName, chargeType, unitPrice, effectiveUnitPrice,
quantity, billableQuantity, subtotal, taxTotal, totalForCustomer, currency, subscriptionId, chargeStartDate,
chargeEndDate, termAndBillingCycle, billingFrequency, pcToBCExchangeRate …). Numbers are Decimals (what
``json.loads(parse_float=Decimal)`` gives for the JSON lines); dates are ISO timestamps at 00:00 UTC
(``chargeEndDate`` is the charge's last day).

Sign convention: ``quantity`` is the seats charged or credited (positive); a credit (``removeQuantity``,
``cancelImmediate``) has a negative ``billableQuantity``, ``subtotal``, ``taxTotal`` and ``totalForCustomer``, so
``subtotal = ROUNDDOWN(effectiveUnitPrice × pcToBCExchangeRate, 2) × billableQuantity`` holds for every line.

Memory stays flat: subscriptions are read a chunk at a time (ordered by id), each chunk's ledger in one query, and
no database transaction is held open while lines are handed out.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
import uuid
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.csp.base import ProviderError, new_correlation_id
from app.models.csp import SandboxChargeEvent, SandboxCustomer, SandboxSubscription

CHUNK = 500  # subscriptions per read
TAX_RATE = Decimal("0.15")  # Microsoft charges New Zealand GST on a New Zealand partner's invoice
CENT = Decimal("0.01")
CURRENCY = "NZD"
PARTNER_ID = "5b9a1f3e-0000-4000-8000-00000000c5d0"  # the sandbox's partner (the operator's own tenant)
TERM_WORDS = {"P1M": "1 Month", "P1Y": "1 Year", "P3Y": "3 Years"}
FREQUENCY_WORDS = {"monthly": "Monthly", "annual": "Annual", "triennial": "Triennial"}
INVOICE_ID = re.compile(r"^G(\d{4})(\d{2})0001$")
_NAMESPACE = uuid.UUID("0c6f4a2e-3b9d-4f8e-a1c7-9d2e5b4a7f10")


def invoice_id(month: dt.date) -> str:
    """The sandbox's invoice for ``month``'s billing period."""
    return f"G{month:%Y%m}0001"


def invoice_month(invoice: str) -> dt.date | None:
    """The month of one of the sandbox's invoice ids, or None when it is not one."""
    found = INVOICE_ID.match(invoice or "")
    if not found or not 1 <= int(found.group(2)) <= 12:
        return None
    return dt.date(int(found.group(1)), int(found.group(2)), 1)


def _timestamp(day: dt.date) -> str:
    return f"{day.isoformat()}T00:00:00Z"


def _availability_id(offer_id: str, term: str, billing_cycle: str) -> str:
    """A deterministic 12-character availability id (Microsoft's look like DZH318Z0BQ3P)."""
    return uuid.uuid5(_NAMESPACE, f"{offer_id}:{term}:{billing_cycle}").hex[:12].upper()


_NAMES: dict[str, tuple[str, str]] | None = None


def _names(offer_id: str) -> tuple[str, str]:
    """(productName, skuName) of an offer, from the sandbox's base price sheet (the offer id itself otherwise)."""
    global _NAMES
    if _NAMES is None:
        from app.csp.sandbox_pricesheet import BASE_SHEET

        with BASE_SHEET.open(encoding="utf-8-sig", newline="") as f:
            _NAMES = {
                f"{row['ProductId']}:{row['SkuId']}": (row["ProductTitle"], row["SkuTitle"])
                for row in csv.DictReader(f)
            }
    return _NAMES.get(offer_id, (offer_id, offer_id))


def line(charge, *, invoice: str, subscription_id: str, offer_id: str, customer: tuple[str, str, str]) -> dict:
    """One billed reconciliation line (Microsoft's field names) for one charge (prices: Microsoft's only)."""
    tenant_id, company, domain = customer
    product_id, _, sku_id = offer_id.partition(":")
    product_name, sku_name = _names(offer_id)
    credit = charge.amounts[0] < 0 or charge.charge_type in ("removeQuantity", "cancelImmediate")
    billable = -charge.quantity if credit else charge.quantity
    subtotal = charge.amounts[0]
    tax = (subtotal * TAX_RATE).quantize(CENT, rounding=ROUND_HALF_UP)
    return {
        "partnerId": PARTNER_ID,
        "customerId": tenant_id,
        "customerName": company,
        "customerDomainName": domain,
        "customerCountry": "NZ",
        "invoiceNumber": invoice,
        "productId": product_id,
        "skuId": sku_id,
        "availabilityId": _availability_id(offer_id, charge.term, charge.billing_cycle),
        "skuName": sku_name,
        "productName": product_name,
        "publisherName": "Microsoft Corporation",
        "chargeType": charge.charge_type,
        "unitPrice": charge.unit_prices[0],
        "effectiveUnitPrice": charge.effective_unit_prices[0],
        "unitType": "Licenses",
        "quantity": charge.quantity,
        "billableQuantity": billable,
        "subtotal": subtotal,
        "taxTotal": tax,
        "totalForCustomer": subtotal + tax,
        "currency": CURRENCY,
        "pricingCurrency": CURRENCY,
        "pcToBCExchangeRate": Decimal("1"),
        "subscriptionId": subscription_id,
        "subscriptionDescription": sku_name,
        "chargeStartDate": _timestamp(charge.start),
        "chargeEndDate": _timestamp(charge.end),
        "termAndBillingCycle": f"{TERM_WORDS.get(charge.term, charge.term)} Subscription",
        "billingFrequency": FREQUENCY_WORDS.get(charge.billing_cycle, charge.billing_cycle),
        "productCategory": "LicenseBased",
    }


class SandboxBilling:
    """Microsoft's invoices and billed reconciliation data, as the sandbox would export them."""

    def billed_invoices(self, month: dt.date, *, correlation_id: str | None = None) -> list[str]:
        """The month's invoice once its billing period has ended (in UTC, as Microsoft bills); none before."""
        from app import clock
        from app.services.billing_rules import month_bounds

        self._call("billed_invoices", correlation_id or new_correlation_id())
        if month_bounds(month)[1] >= clock.utcnow().date():
            return []
        return [invoice_id(month)]

    def billed_reconciliation_lines(
        self, invoice: str, *, correlation_id: str | None = None
    ) -> Iterator[dict[str, Any]]:
        correlation_id = correlation_id or new_correlation_id()
        self._call("billed_reconciliation_lines", correlation_id)
        month = invoice_month(invoice)
        if month is None:
            raise ProviderError(f"the sandbox has no invoice {invoice!r}", correlation_id=correlation_id, status=404)
        return self._billed_lines(invoice, month)

    def _billed_lines(self, invoice: str, month: dt.date) -> Iterator[dict[str, Any]]:
        from app.services import billing_rules

        _first, last = billing_rules.month_bounds(month)
        end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(0))
        after = 0
        while True:
            out: list[dict[str, Any]] = []
            with Session(self._engine()) as session:  # read, closed before any line is handed out
                subs = session.execute(
                    select(SandboxSubscription.id, SandboxSubscription.subscription_id, SandboxSubscription.tenant_id)
                    .where(SandboxSubscription.id > after)
                    .order_by(SandboxSubscription.id)
                    .limit(CHUNK)
                ).all()
                if not subs:
                    return
                after = subs[-1][0]
                ids = [sid for _pk, sid, _tenant in subs]
                tenants = {tenant for _pk, _sid, tenant in subs}
                customers = {
                    tenant: (tenant, name, f"{prefix}.onmicrosoft.com")
                    for tenant, name, prefix in session.execute(
                        select(
                            SandboxCustomer.tenant_id, SandboxCustomer.company_name, SandboxCustomer.domain_prefix
                        ).where(SandboxCustomer.tenant_id.in_(tenants))
                    )
                }
                ledgers: dict[str, list] = {}
                offers: dict[str, str] = {}
                for event in session.scalars(
                    select(SandboxChargeEvent)
                    .where(
                        SandboxChargeEvent.subscription_id.in_(ids),
                        # A term that starts in the month counts even when recorded after it (renewals are made
                        # from 00:00 UTC of the term's first day and may take up to 24 hours): as billing.py reads.
                        or_(
                            SandboxChargeEvent.occurred_at < end,
                            SandboxChargeEvent.kind.in_(billing_rules.STARTS)
                            & (SandboxChargeEvent.term_started_on <= last),
                        ),
                    )
                    .order_by(SandboxChargeEvent.subscription_id, SandboxChargeEvent.occurred_at, SandboxChargeEvent.id)
                ):
                    ledgers.setdefault(event.subscription_id, []).append(
                        billing_rules.event_of(event, (Decimal(event.unit_price),), event.offer_id)
                    )
                    offers[event.subscription_id] = event.offer_id
            for _pk, sid, tenant in subs:
                customer = customers.get(tenant, (tenant, "", ""))
                for charge in billing_rules.charges(ledgers.get(sid, ()), month):
                    out.append(
                        line(
                            charge,
                            invoice=invoice,
                            subscription_id=sid,
                            offer_id=charge.sku or offers.get(sid, ""),
                            customer=customer,
                        )
                    )
            yield from out

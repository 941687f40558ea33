"""The accounting export (issue 14): an issuer's issued invoices of a month as Xero's sales-invoice import CSV.

Xero's "Import sales invoices" template (Sales ▸ Invoices ▸ Import ▸ Download template) has the columns of
``HEADERS``, in that order, required ones marked ``*``; one row per invoice line, the lines of one invoice sharing its
*InvoiceNumber. Xero's import guide (https://online.flippingbook.com/view/399081/31/, "sblive Xero Guide"): dates as
DD/MM/YYYY (New Zealand organisations); every price in a file either tax inclusive or tax exclusive, chosen when the
file is imported — ours are **tax exclusive: choose "Tax exclusive" in Xero's import**; at most **500 invoices a
file** ("split the file as this is the maximum you can import in one file").

What we write:
- the issuer's ISSUED invoices (and credit notes) of the month, by number; a draft has no number and is not exported
  (``ExportError`` when none is issued yet: issue them first);
- the contact is the buyer (name, contact e-mail, postal address);
- *Quantity = the line's seats, *UnitAmount = ROUNDDOWN(effective unit price, 2), negative for a credit: exactly how
  the line's amount is computed (app/services/billing_rules.py), so Quantity × UnitAmount is the line's amount to the
  cent and the lines add up to the invoice's subtotal. A credit note's lines are all negative;
- *AccountCode and *TaxType from the issuer's ``BillingProfile``; TaxAmount is the invoice's GST (rounded once per
  invoice) shared over its lines to the cent, so Xero's GST equals the invoice's rather than a per-line rounding of
  it; Total is left for Xero to calculate; Currency NZD;
- text that a spreadsheet could take for a formula (first character ``= + - @``, tab, CR) gets a leading apostrophe;
  numbers and dates never do;
- more than 500 invoices: numbered files (``xero-DRL-2026-11-1.csv``, ``-2.csv`` …), an invoice never split.

Who may export: the issuer's side only — operator staff (the operator's invoices and any reseller's), a reseller for
its own (``may_export``); the invoices are read through the session, so the caller's scope applies too.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import joinedload, selectinload

from app.extensions import db
from app.models.accounts import OPERATOR, RESELLER, Account
from app.models.billing import Invoice
from app.services import billing
from app.services.events import record_event
from security import scoping

HEADERS = (
    "*ContactName",
    "EmailAddress",
    "POAddressLine1",
    "POAddressLine2",
    "POAddressLine3",
    "POAddressLine4",
    "POCity",
    "PORegion",
    "POPostalCode",
    "POCountry",
    "*InvoiceNumber",
    "Reference",
    "*InvoiceDate",
    "*DueDate",
    "Total",
    "InventoryItemCode",
    "*Description",
    "*Quantity",
    "*UnitAmount",
    "Discount",
    "*AccountCode",
    "*TaxType",
    "TaxAmount",
    "TrackingName1",
    "TrackingOption1",
    "TrackingName2",
    "TrackingOption2",
    "Currency",
    "BrandingTheme",
)
MAX_INVOICES_PER_FILE = 500  # Xero's limit per imported file
DATE_FORMAT = "%d/%m/%Y"  # Xero's for New Zealand organisations
CENT = Decimal("0.01")
_UNSAFE_FIRST = frozenset("=+-@\t\r")


class ExportError(Exception):
    """The export cannot be made (nothing issued yet, a bad month); the message says why and what to do."""


class NotExportable(LookupError):
    """The caller is not on the issuer's side (or the issuer is not there for it): answered as 404."""


@dataclass(frozen=True)
class ExportFile:
    name: str
    data: bytes
    invoices: int


def may_export(issuer_id: int) -> bool:
    """The issuer's side only: operator staff (every issuer), a reseller its own invoices; nobody else."""
    scope = scoping.current_scope()
    if scope.is_all:
        return True
    return scope.kind == scoping.RESELLER_SCOPE and scope.account_id == issuer_id


def _issuer(issuer_id: int) -> Account:
    if not may_export(issuer_id):
        raise NotExportable(issuer_id)
    issuer = db.session.get(Account, issuer_id)
    if issuer is None or issuer.kind not in (OPERATOR, RESELLER):
        raise NotExportable(issuer_id)
    return issuer


def _month(month: dt.date | str) -> dt.date:
    if isinstance(month, str):
        try:
            return billing.parse_month(month)
        except ValueError as exc:
            raise ExportError(str(exc)) from None
    return month.replace(day=1)


def text(value) -> str:
    """A text cell: empty for None, an apostrophe before a first character a spreadsheet would read as a formula."""
    value = "" if value is None else str(value)
    return f"'{value}" if value and value[0] in _UNSAFE_FIRST else value


def unit_amount(effective_unit_price: Decimal, amount: Decimal) -> Decimal:
    """ROUNDDOWN(effective unit price, 2), with the line's sign: what the line's amount is made of."""
    unit = Decimal(effective_unit_price).quantize(CENT, rounding=ROUND_DOWN)
    return -unit if amount < 0 else unit


def line_taxes(amounts: list[Decimal], tax: Decimal, rate: Decimal) -> list[Decimal]:
    """The invoice's GST shared over its lines: each line's GST half up, the cents left over (the invoice rounds
    once) put on the largest line, so the lines' GST adds up to the invoice's exactly."""
    shares = [(a * rate).quantize(CENT, rounding=ROUND_HALF_UP) for a in amounts]
    if shares:
        left = tax - sum(shares, Decimal("0"))
        if left:
            largest = max(range(len(amounts)), key=lambda i: (abs(amounts[i]), -i))
            shares[largest] += left
    return shares


def _file_prefix(invoice_prefix: str, issuer: Account) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", invoice_prefix or "").strip("-")
    return slug or f"account-{issuer.id}"


def _corrected_numbers(invoices: list[Invoice]) -> dict[int, str]:
    ids = {i.corrects_id for i in invoices if i.corrects_id}
    if not ids:
        return {}
    return dict(db.session.execute(select(Invoice.id, Invoice.number).where(Invoice.id.in_(ids))).all())


def _rows(invoices: list[Invoice], account_code: str, tax_type: str) -> list[list[str]]:
    corrected = _corrected_numbers(invoices)
    rows = []
    for invoice in invoices:
        buyer = invoice.buyer
        reference = f"Microsoft cloud services {invoice.month:%B %Y}"
        if invoice.kind == "credit_note":
            reference = f"Credit note for {corrected.get(invoice.corrects_id, 'an earlier invoice')}"
        amounts = [line.amount for line in invoice.lines]
        taxes = line_taxes(amounts, invoice.tax, invoice.tax_rate)
        for line, tax in zip(invoice.lines, taxes, strict=True):
            unit = unit_amount(line.effective_unit_price, line.amount)
            if unit * line.quantity != line.amount:
                raise ExportError(
                    f"{invoice.title}, line {line.position}: {line.quantity} × {unit} is not its amount "
                    f"{line.amount}; the export would not add up to the invoice."
                )
            period = f"{line.charge_start:{DATE_FORMAT}}–{line.charge_end:{DATE_FORMAT}}"
            rows.append(
                [
                    text(buyer.name),
                    text(buyer.contact_email),
                    text(buyer.address_line1),
                    text(buyer.address_line2),
                    "",
                    "",
                    text(buyer.city),
                    text(buyer.region),
                    text(buyer.postcode),
                    text(buyer.country),
                    text(invoice.number),
                    text(reference),
                    f"{invoice.issue_date:{DATE_FORMAT}}",
                    f"{invoice.due_date:{DATE_FORMAT}}",
                    "",
                    "",
                    text(f"{line.description} ({line.sku}), {period}"),
                    str(line.quantity),
                    str(unit),
                    "",
                    text(account_code),
                    text(tax_type),
                    str(tax.quantize(CENT)),
                    "",
                    "",
                    "",
                    "",
                    text(invoice.currency),
                    "",
                ]
            )
    return rows


def _csv(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(HEADERS)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def issued_count(month: dt.date, issuer_id: int) -> tuple[int, int]:
    """(issued, drafts) of the issuer's invoices of the month, as the caller may see them."""
    counts = dict(
        db.session.execute(
            select(Invoice.status, func.count(Invoice.id))
            .where(Invoice.issuer_id == issuer_id, Invoice.month == month)
            .group_by(Invoice.status)
        ).all()
    )
    return counts.get("issued", 0), counts.get("draft", 0)


def export_files(month: dt.date | str, issuer_id: int) -> list[ExportFile]:
    """The month's export of one issuer (see the module's docstring): files of at most 500 invoices each, read
    500 invoices at a time (their lines and buyers in one statement each); the session holds one file's invoices at
    a time."""
    month = _month(month)
    issuer = _issuer(issuer_id)
    issued, drafts = issued_count(month, issuer.id)
    if not issued:
        waiting = f" ({drafts} draft(s) waiting)" if drafts else ""
        raise ExportError(
            f"{issuer.name} has no issued invoices for {month:%B %Y}{waiting}: issue them first "
            f"(flask portal billing issue --month {month:%Y-%m} --issuer {issuer.id}); drafts have no number."
        )
    settings = billing.profile(issuer.id)
    account_code, tax_type, prefix = (
        settings.xero_account_code,
        settings.xero_tax_type,
        _file_prefix(settings.invoice_prefix, issuer),
    )
    chunks: list[tuple[bytes, int]] = []
    after = ""
    while True:
        invoices = (
            db.session.scalars(
                select(Invoice)
                .where(
                    Invoice.issuer_id == issuer.id,
                    Invoice.month == month,
                    Invoice.status == "issued",
                    Invoice.number > after,
                )
                .options(joinedload(Invoice.buyer), selectinload(Invoice.lines))
                .order_by(Invoice.number)
                .limit(MAX_INVOICES_PER_FILE)
            )
            .unique()
            .all()
        )
        if not invoices:
            break
        after = invoices[-1].number
        chunks.append((_csv(_rows(invoices, account_code, tax_type)), len(invoices)))
        for invoice in invoices:  # written: let the session forget them (one file's invoices in memory)
            for line in invoice.lines:
                db.session.expunge(line)
            db.session.expunge(invoice)
        if len(invoices) < MAX_INVOICES_PER_FILE:
            break
    base = f"xero-{prefix}-{month:%Y-%m}"
    if len(chunks) == 1:
        return [ExportFile(f"{base}.csv", chunks[0][0], chunks[0][1])]
    return [ExportFile(f"{base}-{n}.csv", data, count) for n, (data, count) in enumerate(chunks, start=1)]


def export(month: dt.date | str, issuer_id: int) -> list[tuple[str, bytes]]:
    """(file name, CSV bytes) of each file of the month's export (see ``export_files``)."""
    return [(f.name, f.data) for f in export_files(month, issuer_id)]


def record_export(month: dt.date, issuer_id: int, files: list[ExportFile]) -> None:
    """The audit trail's line for an export, committed before the file goes out."""
    invoices = sum(f.invoices for f in files)
    record_event(
        "invoice.exported",
        account_id=issuer_id,
        summary=f"Xero export of {month:%B %Y}: {invoices} issued invoice(s) in " + ", ".join(f.name for f in files),
    )
    db.session.commit()

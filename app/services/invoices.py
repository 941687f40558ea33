"""The invoices' pages (issue 14): the reads behind the Billing tabs, the operator's invoice list, one invoice with
its lines, the invoice's .xlsx, and each issuer's billing settings.

Every read goes through the request's scope (security/scoping.py: an invoice is visible to its issuer's and its
buyer's side), and a page costs the same few statements however many invoices or lines it shows. The names and
addresses printed on an invoice are the one cross-tenant read: a reseller's scope does not hold the operator's
account, nor a customer's its reseller's, yet the invoice they can see names both — ``parties`` reads those two
accounts' names and addresses (nothing else) under a named bypass, for an invoice already fetched in scope.

Issuing and credit notes are app/services/billing.py's; who may ask for them (the issuer's side) is decided here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from decimal import Decimal
from io import BytesIO

import xlsxwriter
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from app.extensions import db
from app.models.accounts import OPERATOR, RESELLER, Account
from app.models.billing import BillingProfile, Invoice
from app.services import billing
from app.services.events import record_event
from security import scoping

PER_PAGE = 25
MONTH_CHOICES = 36  # the month filter lists this many months, newest first
ISSUER_CHOICES = 500  # the operator's issuer filter lists this many issuers


class SettingsError(Exception):
    """Billing settings that cannot be saved; ``errors`` maps each field to its message."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(errors.values()))
        self.errors = errors


@dataclasses.dataclass(frozen=True)
class Party:
    """The issuer or the buyer as the invoice prints them."""

    id: int
    name: str
    address: tuple[str, ...] = ()
    kind: str = ""


@dataclasses.dataclass
class InvoicePage:
    rows: list[Invoice]
    total: int
    page: int
    per_page: int
    names: dict[int, str]


# -- lists -----------------------------------------------------------------------------------------------------------


def _filters(
    *, issuer_id: int | None, buyer_id: int | None, month: dt.date | None, kind: str | None, issued_only: bool = False
) -> list:
    where = [Invoice.status == "issued"] if issued_only else []
    if issuer_id is not None:
        where.append(Invoice.issuer_id == issuer_id)
    if buyer_id is not None:
        where.append(Invoice.buyer_id == buyer_id)
    if month is not None:
        where.append(Invoice.month == month.replace(day=1))
    if kind is not None:
        where.append(Invoice.kind == kind)
    return where


def invoice_page(
    *,
    issuer_id: int | None = None,
    buyer_id: int | None = None,
    month: dt.date | None = None,
    issued_only: bool = False,
    page: int = 1,
    per_page: int = PER_PAGE,
) -> InvoicePage:
    """One page of the invoices (and credit notes) in scope matching the filters, newest month first: three
    statements (the count, the page, the parties' names). ``issued_only``: what a buyer sees (a draft is still the
    issuer's work)."""
    where = _filters(issuer_id=issuer_id, buyer_id=buyer_id, month=month, kind=None, issued_only=issued_only)
    total = db.session.scalar(select(func.count(Invoice.id)).where(*where)) or 0
    page = max(1, min(page, (total + per_page - 1) // per_page or 1))
    rows = list(
        db.session.scalars(
            select(Invoice)
            .where(*where)
            .order_by(Invoice.month.desc(), Invoice.issuer_id, Invoice.id.desc())
            .offset((page - 1) * per_page)
            .limit(per_page)
        )
    )
    return InvoicePage(rows=rows, total=total, page=page, per_page=per_page, names=_names(rows))


def _names(rows: list[Invoice]) -> dict[int, str]:
    ids = {i.issuer_id for i in rows} | {i.buyer_id for i in rows}
    if not ids:
        return {}
    with scoping.bypass("invoice list: the names of the parties of invoices in scope"):
        return dict(db.session.execute(select(Account.id, Account.name).where(Account.id.in_(ids))).all())


def months(*, issuer_id: int | None = None, buyer_id: int | None = None, issued_only: bool = False) -> list[dt.date]:
    """The months that have invoices in scope (matching the filters), newest first — the month filter's choices."""
    where = _filters(issuer_id=issuer_id, buyer_id=buyer_id, month=None, kind=None, issued_only=issued_only)
    return list(
        db.session.scalars(
            select(Invoice.month)
            .where(*where)
            .group_by(Invoice.month)
            .order_by(Invoice.month.desc())
            .limit(MONTH_CHOICES)
        )
    )


def issuer_choices() -> list[tuple[int, str]]:
    """The operator and the resellers (operator staff's issuer filter), the operator first."""
    return [
        (row.id, row.name)
        for row in db.session.execute(
            select(Account.id, Account.name)
            .where(Account.kind.in_((OPERATOR, RESELLER)))
            .order_by((Account.kind != OPERATOR), func.lower(Account.name), Account.id)
            .limit(ISSUER_CHOICES)
        )
    ]


def parse_month(text: str | None) -> dt.date | None:
    """A ``?month=YYYY-MM`` filter: None when absent; ValueError when it is not a month."""
    if not text:
        return None
    if not re.fullmatch(r"\d{4}-\d{2}", text.strip()):
        raise ValueError(text)
    return billing.parse_month(text)


# -- one invoice -----------------------------------------------------------------------------------------------------


def get(invoice_id: int) -> Invoice | None:
    """The invoice with its lines (two statements), or None when it is not in scope."""
    return db.session.scalars(
        select(Invoice).where(Invoice.id == invoice_id).options(selectinload(Invoice.lines))
    ).first()


def parties(invoice: Invoice) -> tuple[Party, Party]:
    """The issuer and the buyer of an invoice the caller has already fetched in scope: names and addresses only."""
    with scoping.bypass("invoice page: the names and addresses printed on an invoice in scope"):
        rows = {
            row.id: row
            for row in db.session.execute(
                select(
                    Account.id,
                    Account.kind,
                    Account.name,
                    Account.address_line1,
                    Account.address_line2,
                    Account.city,
                    Account.region,
                    Account.postcode,
                    Account.country,
                ).where(Account.id.in_((invoice.issuer_id, invoice.buyer_id)))
            )
        }

    def party(account_id: int) -> Party:
        row = rows.get(account_id)
        if row is None:
            return Party(id=account_id, name="")
        town = " ".join(part for part in (row.city, row.postcode) if part)
        lines = (row.address_line1, row.address_line2, town, row.region, "New Zealand" if row.country == "NZ" else "")
        return Party(id=row.id, name=row.name, address=tuple(x for x in lines if x), kind=row.kind)

    return party(invoice.issuer_id), party(invoice.buyer_id)


def visible_to_buyer(invoice: Invoice) -> bool:
    """The buyer's side sees an invoice once it is issued: a draft is still the issuer's to check (and the monthly
    run replaces drafts)."""
    return invoice.status == "issued"


def is_issuer_side(invoice: Invoice, account_id: int | None) -> bool:
    """Does ``account_id`` (the signed-in user's own account) issue this invoice? Only it issues and corrects it."""
    return account_id is not None and invoice.issuer_id == account_id


def corrections(invoice: Invoice) -> list[Invoice]:
    """Credit notes of an invoice, and the invoice a credit note corrects (in scope), oldest first."""
    ids = [invoice.corrects_id] if invoice.corrects_id else []
    query = select(Invoice).where(Invoice.corrects_id == invoice.id)
    if ids:
        query = select(Invoice).where((Invoice.corrects_id == invoice.id) | (Invoice.id.in_(ids)))
    return list(db.session.scalars(query.order_by(Invoice.id)))


def line_words(line) -> dict[str, str]:
    """A line's term, billing frequency and charge type in words."""
    return {
        "term": billing.term_words(line.term, line.billing_cycle),
        "charge": billing.charge_words(line.charge_type, line.billing_cycle),
    }


def tax_percent(rate: Decimal) -> str:
    """0.1500 → "15%"; 0.125 → "12.5%"."""
    text = f"{(rate * 100).normalize():f}"
    return f"{text}%"


# -- the .xlsx -------------------------------------------------------------------------------------------------------


def workbook(invoice: Invoice, issuer: Party, buyer: Party, *, with_microsoft: bool) -> bytes:
    """The invoice as an .xlsx: its heading, one row per line, subtotal, GST and total. Money is written as numbers
    with two decimals; text stays text (never a formula or a link). Microsoft's cost columns only ``with_microsoft``
    (operator staff, on the operator's invoices)."""
    out = BytesIO()
    book = xlsxwriter.Workbook(
        out, {"in_memory": True, "strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False}
    )
    bold = book.add_format({"bold": True})
    title = book.add_format({"bold": True, "font_size": 14})
    header = book.add_format({"bold": True, "bg_color": "#333333", "font_color": "#FFFFFF", "border": 1})
    money = book.add_format({"num_format": "#,##0.00"})
    money_bold = book.add_format({"num_format": "#,##0.00", "bold": True})
    price6 = book.add_format({"num_format": "0.000000"})
    date = book.add_format({"num_format": "dd/mm/yyyy"})
    sheet = book.add_worksheet("Invoice")

    row = 0
    sheet.write_string(row, 0, invoice.title if invoice.number else f"{invoice.title} (Draft)", title)
    row += 2
    heading = [
        ("Issuer", issuer.name),
        ("GST number", invoice.issuer_gst_number or ""),
        ("Buyer", buyer.name),
        ("Number", invoice.number or "Draft"),
        ("Month", invoice.month.strftime("%B %Y")),
    ]
    for label, value in heading:
        sheet.write_string(row, 0, label, bold)
        sheet.write_string(row, 1, value)
        row += 1
    for label, value in (("Issue date", invoice.issue_date), ("Due date", invoice.due_date)):
        sheet.write_string(row, 0, label, bold)
        if value is None:
            sheet.write_string(row, 1, "")
        else:
            sheet.write_datetime(row, 1, dt.datetime.combine(value, dt.time()), date)
        row += 1
    sheet.write_string(row, 0, "Currency", bold)
    sheet.write_string(row, 1, invoice.currency)
    row += 2

    columns = [
        ("Description", 48),
        ("SKU", 16),
        ("Term and billing frequency", 26),
        ("Charge type", 22),
        ("Charge start", 12),
        ("Charge end", 12),
        ("Days", 6),
        ("Cycle days", 10),
        ("Quantity", 9),
        ("Unit price (per billing period)", 14),
        ("Effective unit price", 14),
        ("Amount", 12),
    ]
    if with_microsoft:
        columns += [("Microsoft unit price", 14), ("Microsoft effective unit price", 14), ("Microsoft amount", 14)]
    for col, (name, width) in enumerate(columns):
        sheet.write_string(row, col, name, header)
        sheet.set_column(col, col, width)
    row += 1
    for line in invoice.lines:
        words = line_words(line)
        sheet.write_string(row, 0, line.description)
        sheet.write_string(row, 1, line.sku)
        sheet.write_string(row, 2, words["term"])
        sheet.write_string(row, 3, words["charge"])
        sheet.write_datetime(row, 4, dt.datetime.combine(line.charge_start, dt.time()), date)
        sheet.write_datetime(row, 5, dt.datetime.combine(line.charge_end, dt.time()), date)
        sheet.write_number(row, 6, line.days)
        sheet.write_number(row, 7, line.cycle_days)
        sheet.write_number(row, 8, line.quantity)
        sheet.write_number(row, 9, _cents(line.unit_price), money)
        sheet.write_number(row, 10, float(line.effective_unit_price), price6)
        sheet.write_number(row, 11, _cents(line.amount), money)
        if with_microsoft:
            for col, value, fmt in (
                (12, line.ms_unit_price, money),
                (13, line.ms_effective_unit_price, price6),
                (14, line.ms_amount, money),
            ):
                if value is None:
                    sheet.write_string(row, col, "")
                else:
                    sheet.write_number(row, col, float(value) if fmt is price6 else _cents(value), fmt)
        row += 1
    row += 1
    for label, value in (
        ("Subtotal", invoice.subtotal),
        (f"GST {tax_percent(invoice.tax_rate)}", invoice.tax),
        (f"Total {invoice.currency}", invoice.total),
    ):
        sheet.write_string(row, 10, label, bold)
        sheet.write_number(row, 11, _cents(value), money_bold)
        row += 1
    book.close()
    return out.getvalue()


def _cents(value: Decimal) -> float:
    return float(Decimal(value).quantize(Decimal("0.01")))


def xlsx_name(invoice: Invoice) -> str:
    number = invoice.number or f"draft-{invoice.id}"
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{number}-{invoice.month:%Y-%m}") + ".xlsx"


# -- billing settings ------------------------------------------------------------------------------------------------

PREFIX = re.compile(r"[A-Za-z0-9-]{1,12}")
IRD = re.compile(r"(\d{2,3})-?(\d{3})-?(\d{3})")
XERO_CODE = re.compile(r"[A-Za-z0-9]{1,10}")
DEFAULTS = {"payment_terms_days": 20, "xero_account_code": "200", "xero_tax_type": "15% GST on Income"}


def settings_of(account_id: int) -> BillingProfile:
    """The issuer's settings as they are, or (unsaved, nothing written) as they would be made."""
    found = db.session.scalars(select(BillingProfile).where(BillingProfile.account_id == account_id)).first()
    if found is not None:
        return found
    return BillingProfile(
        account_id=account_id,
        invoice_prefix=billing._default_prefix(account_id),
        gst_number=None,
        next_number=1,
        **DEFAULTS,
    )


def check_settings(*, prefix: str, gst_number: str, terms: str, xero_account_code: str, xero_tax_type: str) -> dict:
    """The settings as they will be stored; SettingsError naming each bad field."""
    errors: dict[str, str] = {}
    values: dict = {}
    prefix = (prefix or "").strip()
    if not PREFIX.fullmatch(prefix):
        errors["invoice_prefix"] = "Use 1 to 12 letters, digits or dashes, e.g. INV- or DR-."
    values["invoice_prefix"] = prefix
    gst_text = (gst_number or "").strip()
    if gst_text:
        found = IRD.fullmatch(gst_text)
        if not found:
            errors["gst_number"] = "A GST number is an IRD number: 8 or 9 digits, e.g. 123-456-789 or 12-345-678."
        else:
            values["gst_number"] = "-".join(found.groups())
    else:
        values["gst_number"] = None
    terms_text = (terms or "").strip()
    if not (terms_text.isascii() and terms_text.isdigit() and len(terms_text) <= 3 and int(terms_text) <= 365):
        errors["payment_terms_days"] = "Payment terms are a whole number of days from 0 to 365."
    else:
        values["payment_terms_days"] = int(terms_text)
    code = (xero_account_code or "").strip()
    if not XERO_CODE.fullmatch(code):
        errors["xero_account_code"] = "A Xero account code is 1 to 10 letters or digits, e.g. 200."
    values["xero_account_code"] = code
    tax_type = (xero_tax_type or "").strip()
    if not tax_type or len(tax_type) > 40 or not tax_type.isprintable():
        errors["xero_tax_type"] = "Name the Xero tax rate (up to 40 characters), e.g. 15% GST on Income."
    values["xero_tax_type"] = tax_type
    if errors:
        raise SettingsError(errors)
    return values


def save_settings(account_id: int, **fields) -> BillingProfile:
    """Check and save an issuer's billing settings, with an event naming what changed. Numbers already issued keep
    theirs; the next issued invoice takes the new prefix and continues the issuer's sequence (no gap)."""
    values = check_settings(**fields)
    settings = billing.profile(account_id)
    changes = []
    for name, value in values.items():
        old = getattr(settings, name)
        if old != value:
            changes.append(f"{name.replace('_', ' ')}: {old if old is not None else '—'} → {value or '—'}")
            setattr(settings, name, value)
    if changes:
        db.session.flush()
        record_event(
            "billing.settings",
            account_id=account_id,
            target=settings,
            summary="Billing settings: " + "; ".join(changes),
        )
    db.session.commit()
    return settings


def issue(invoice: Invoice, *, account_id: int | None) -> Invoice:
    """Issue a draft for its issuer's side (``account_id``: the signed-in user's own account)."""
    if not is_issuer_side(invoice, account_id):
        raise PermissionError("only the issuer issues its invoices")
    return billing.issue(invoice)


def credit_note(invoice: Invoice, reason: str, *, account_id: int | None) -> Invoice:
    """A draft credit note for an issued invoice, asked for by its issuer's side, with the reason said (written
    in the caller's own scope: the issuer's side may write its invoices)."""
    if not is_issuer_side(invoice, account_id):
        raise PermissionError("only the issuer corrects its invoices")
    reason = (reason or "").strip()
    if not reason:
        raise SettingsError({"reason": "Say why the invoice is being corrected."})
    return billing.credit_note(invoice, reason=reason[:400])

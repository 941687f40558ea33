"""Reconciliation of the operator's Microsoft costs against Microsoft's billed reconciliation data (issue 14).

**Import.** Microsoft's new-commerce billed reconciliation data for a month — from the provider (Graph's
asynchronous export, app/csp/partner_center_billing.py; the sandbox's own ledger, app/csp/sandbox_billing.py) or
from a file (JSON lines, plain or gzipped, as the export's blobs hold them; or Microsoft's CSV download with its
PascalCase headers) — is stored as ``MicrosoftBilledLine`` rows, replacing that month's earlier import. Field names
are Microsoft's (https://learn.microsoft.com/partner-center/billing/modern-invoice-reconciliation-file; camelCase in
the JSON lines, as https://learn.microsoft.com/partner-center/developer/get-invoiceline-items spells them:
subscriptionId, chargeType, chargeStartDate, chargeEndDate, unitPrice, effectiveUnitPrice, quantity,
billableQuantity, subtotal …). Lines stream into the table in batches of ``BATCH`` in one transaction: a bad or
missing field stops the import with an error naming the line, and nothing of it is written (the earlier import
stays).

**Matching.** The portal's side is the month's Microsoft-cost charges computed from the portal's own ledger
(app/services/billing.py ``subscription_charges``: ``amounts[0]``, ``unit_prices[0]``, ``effective_unit_prices[0]``)
of every subscription with a ``provider_subscription_id``; Microsoft's side is the imported lines. Both are keyed by
(Microsoft's subscription id, charge type, charge start) — quantities and subtotals summed when a key repeats — and
each key is classified:

- ``matched``: the same seats and the same subtotal to the cent (and the same unit price);
- ``price_differs``: the same seats, another subtotal or unit price;
- ``quantity_differs``: other seats;
- ``only_microsoft``: Microsoft billed it, the portal has no such charge;
- ``only_portal``: the portal has the charge, Microsoft did not bill it.

``reconcile(month)`` stores the class on each imported line (``MicrosoftBilledLine.match``; ``only_portal`` has no
line) and reports counts and totals per class. Memory stays flat: subscriptions are taken a chunk at a time (by id),
with their Microsoft lines, and Microsoft's lines for subscriptions the portal does not know are read in pages.
Seats are compared as counts (a credit's seats are positive; its subtotal is negative on both sides).
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from itertools import chain
from pathlib import Path
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, tuple_, update

from app.extensions import db
from app.models.accounts import OPERATOR, Account
from app.models.billing import CHARGE_TYPES, MicrosoftBilledLine
from app.models.catalog import Product
from app.models.subscriptions import Subscription
from app.services import billing
from app.services.events import record_event

BATCH = 2000  # lines per INSERT (and per UPDATE of their match)
CHUNK = 500  # portal subscriptions per step of the matching
CLASSES = ("matched", "price_differs", "quantity_differs", "only_microsoft", "only_portal")
DIFFERENCES = CLASSES[1:]
CLASS_WORDS = {
    "matched": "Matched",
    "price_differs": "Price differs",
    "quantity_differs": "Quantity differs",
    "only_microsoft": "Only at Microsoft",
    "only_portal": "Only in the portal",
}
KEEP_DIFFERENCES = 1000  # differences a report keeps for display (all of them are counted)
CENT = Decimal("0.01")
FOUR = Decimal("0.0001")
SIX = Decimal("0.000001")
LIMIT = Decimal("1e9")  # no price, seat count or subtotal of a line reaches this (the columns' range is 1e10)
REQUIRED = (
    "customerId",
    "subscriptionId",
    "productId",
    "skuId",
    "chargeType",
    "chargeStartDate",
    "chargeEndDate",
    "unitPrice",
    "quantity",
    "subtotal",
)
_CANONICAL_CHARGE = {name.lower(): name for name in CHARGE_TYPES}
_US_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})")
_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})")


class ReconcileError(ValueError):
    """The data cannot be imported or reconciled; the message says which line and why."""


# -- reading Microsoft's data ------------------------------------------------------------------------------------


def _camel(header: str) -> str:
    """A CSV header (PascalCase: ``PCToBCExchangeRate``, ``ChargeStartDate``) as the JSON lines name it."""
    header = header.strip().lstrip("\ufeff")
    if header.startswith("PC"):
        return "pc" + header[2:]
    return header[:1].lower() + header[1:]


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _number(raw: Mapping[str, Any], name: str, where: str) -> Decimal:
    value = raw.get(name)
    if isinstance(value, Decimal) and value.is_finite():
        return value
    if isinstance(value, bool) or value is None or _text(value) == "":
        raise ReconcileError(f"{where}: {name} is missing")
    try:
        number = Decimal(value) if isinstance(value, int) else Decimal(_text(value))
    except (InvalidOperation, ValueError):
        raise ReconcileError(f"{where}: {name} {value!r} is not a number") from None
    if not number.is_finite():
        raise ReconcileError(f"{where}: {name} {value!r} is not a number")
    return number


def _date(raw: Mapping[str, Any], name: str, where: str) -> dt.date:
    text = _text(raw.get(name))
    if not text:
        raise ReconcileError(f"{where}: {name} is missing")
    try:
        if found := _ISO_DATE.match(text):
            return dt.date(int(found.group(1)), int(found.group(2)), int(found.group(3)))
        if found := _US_DATE.match(text):  # Microsoft's CSV: 11/22/2026 or 11/22/2026 12:00:00 AM
            return dt.date(int(found.group(3)), int(found.group(1)), int(found.group(2)))
    except ValueError:
        pass
    raise ReconcileError(f"{where}: {name} {text!r} is not a date")


def _row(month: dt.date, raw: Any, number: int, invoice_number: str, now: dt.datetime) -> dict[str, Any]:
    """One line as MicrosoftBilledLine's columns, or ReconcileError naming the line."""
    if not isinstance(raw, Mapping):
        raise ReconcileError(f"line {number}: not a JSON object")
    get = raw.get
    texts = {name: _text(get(name)) for name in REQUIRED}
    where = f"line {number}" + (f" (subscription {texts['subscriptionId'][:64]})" if texts["subscriptionId"] else "")
    for name in REQUIRED:
        if not texts[name]:
            raise ReconcileError(f"{where}: {name} is missing")
    charge_type = _CANONICAL_CHARGE.get(texts["chargeType"].lower(), texts["chargeType"])
    if len(charge_type) > 20:
        raise ReconcileError(f"{where}: chargeType {charge_type[:40]!r} is not a charge type")
    quantity = _number(raw, "quantity", where)
    if quantity != quantity.to_integral_value():
        raise ReconcileError(f"{where}: quantity {quantity} is not a whole number of licences")
    subtotal = _number(raw, "subtotal", where)
    unit_price = _number(raw, "unitPrice", where)
    effective = _number(raw, "effectiveUnitPrice", where) if _text(get("effectiveUnitPrice")) else unit_price
    if _text(get("billableQuantity")):
        billable = _number(raw, "billableQuantity", where)
    else:
        billable = -abs(quantity) if subtotal < 0 else abs(quantity)
    for name, value in (("quantity", quantity), ("subtotal", subtotal), ("unitPrice", unit_price)):
        if abs(value) >= LIMIT:
            raise ReconcileError(f"{where}: {name} {value} is out of range")
    if abs(effective) >= LIMIT or abs(billable) >= LIMIT:
        raise ReconcileError(f"{where}: effectiveUnitPrice or billableQuantity is out of range")
    start, end = _date(raw, "chargeStartDate", where), _date(raw, "chargeEndDate", where)
    if end < start:
        raise ReconcileError(f"{where}: chargeEndDate {end} is before chargeStartDate {start}")
    customer = texts["customerId"].removeprefix("org:")
    for name, value, limit in (
        ("customerId", customer, 36),
        ("subscriptionId", texts["subscriptionId"], 64),
        ("productId", texts["productId"], 32),
        ("skuId", texts["skuId"], 16),
    ):
        if len(value) > limit:
            raise ReconcileError(f"{where}: {name} is longer than {limit} characters")
    invoice = _text(get("invoiceNumber")) or invoice_number or "-"
    if len(invoice) > 32:
        raise ReconcileError(f"{where}: invoiceNumber is longer than 32 characters")
    return {
        "month": month,
        "invoice_number": invoice,
        "customer_id": customer,
        "customer_name": _text(get("customerName"))[:160] or None,
        "subscription_id": texts["subscriptionId"],
        "product_id": texts["productId"],
        "sku_id": texts["skuId"],
        "sku_name": _text(get("skuName"))[:200] or None,
        "charge_type": charge_type,
        "charge_start": start,
        "charge_end": end,
        "term_and_billing_cycle": _text(get("termAndBillingCycle"))[:60] or None,
        "unit_price": unit_price.quantize(FOUR),
        "effective_unit_price": effective.quantize(SIX),
        "quantity": abs(int(quantity)),
        "billable_quantity": billable.quantize(FOUR),
        "subtotal": subtotal.quantize(CENT),
        "match": None,
        "imported_at": now,
    }


def _operator_id() -> int | None:
    return db.session.scalar(select(Account.id).where(Account.kind == OPERATOR).order_by(Account.id).limit(1))


def import_lines(month: dt.date, lines: Iterable[Mapping[str, Any]], invoice_number: str = "") -> int:
    """Store Microsoft's billed lines for ``month``, replacing the month's earlier import; the number stored. One
    transaction, inserts of ``BATCH`` rows: a bad line raises ReconcileError naming it and nothing is written.
    ``invoice_number``: for lines without ``invoiceNumber``. Commits."""
    from app import clock

    month = month.replace(day=1)
    now = clock.utcnow()
    session = db.session
    count = 0
    invoices: set[str] = set()
    cleared = False

    def write(rows: list[dict[str, Any]]) -> None:
        nonlocal cleared
        if not cleared:  # the earlier import goes when the first rows are ready (not while Microsoft prepares them)
            session.execute(delete(MicrosoftBilledLine).where(MicrosoftBilledLine.month == month))
            cleared = True
        if rows:
            session.execute(insert(MicrosoftBilledLine.__table__), rows)

    try:
        batch: list[dict[str, Any]] = []
        for count, raw in enumerate(lines, 1):
            row = _row(month, raw, count, invoice_number, now)
            if len(invoices) < 20:
                invoices.add(row["invoice_number"])
            batch.append(row)
            if len(batch) >= BATCH:
                write(batch)
                batch = []
        write(batch)
        operator_id = _operator_id()
        if operator_id is not None:
            record_event(
                "billing.reconciliation.imported",
                account_id=operator_id,
                summary=f"{month:%B %Y}: {count} line(s) of Microsoft's billed reconciliation data imported"
                + (f" (invoice {', '.join(sorted(invoices))})" if invoices else ""),
            )
        session.commit()
    except BaseException:
        session.rollback()
        raise
    billing.refresh_statistics("microsoft_billed_line")  # the look-ups that follow plan on the lines just imported
    return count


def _json_lines(text: Iterable[str]) -> Iterator[dict[str, Any]]:
    for number, raw in enumerate(text, 1):
        if not raw.strip():
            continue
        try:
            yield json.loads(raw, parse_float=Decimal)
        except ValueError as exc:
            raise ReconcileError(f"line {number}: not JSON ({exc})") from None


def _csv_lines(text: Iterable[str]) -> Iterator[dict[str, Any]]:
    reader = csv.reader(text)
    header = next(reader, None)
    if not header:
        return
    names = [_camel(name) for name in header]
    if "subscriptionId" not in names:
        raise ReconcileError("the file is neither JSON lines nor Microsoft's reconciliation CSV (no SubscriptionId)")
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        yield dict(zip(names, row, strict=False))


def read_file(stream, name: str = "") -> Iterator[dict[str, Any]]:
    """The lines of a billed reconciliation file (JSON lines or Microsoft's CSV, gzipped or not), streamed from a
    binary ``stream``; the first character decides the format (``{``: JSON lines)."""
    if name.lower().endswith(".gz") or (hasattr(stream, "peek") and stream.peek(2)[:2] == b"\x1f\x8b"):
        stream = gzip.GzipFile(fileobj=stream)
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    try:
        first = ""
        for first in text:
            if first.strip():
                break
        if not first.strip():
            return
        if first.lstrip().startswith("["):
            raise ReconcileError("a JSON array is not Microsoft's format: give one JSON object a line (JSON lines)")
        lines = chain([first], text)
        yield from (_json_lines(lines) if first.lstrip().startswith("{") else _csv_lines(lines))
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
        raise ReconcileError(f"the file cannot be read: {exc}") from None


def import_file(month: dt.date, path: str | Path) -> int:
    """Import a billed reconciliation file (.json/.jsonl of JSON lines, .csv, either gzipped): ``import_lines``."""
    path = Path(path)
    if not path.is_file():
        raise ReconcileError(f"{path} is not a file")
    with path.open("rb") as stream:  # buffered: its first bytes are peeked at (gzip or not)
        return import_lines(month, read_file(stream, path.name), invoice_number=path.stem[:32])


def fetch_from_provider(month: dt.date, provider=None) -> int:
    """Import the month's data from the CSP provider: its invoices for the month, then each one's lines."""
    from app.csp import get_provider
    from app.csp.base import new_correlation_id

    provider = provider or get_provider()
    correlation_id = new_correlation_id()
    invoices = provider.billed_invoices(month.replace(day=1), correlation_id=correlation_id)
    if not invoices:
        raise ReconcileError(f"Microsoft has no invoice for {month:%B %Y} yet: nothing was imported")
    # The first export is asked for (and awaited) before anything is written; the others as their turn comes.
    first = provider.billed_reconciliation_lines(invoices[0], correlation_id=correlation_id)
    rest = (provider.billed_reconciliation_lines(invoice, correlation_id=correlation_id) for invoice in invoices[1:])
    return import_lines(month, chain(first, chain.from_iterable(rest)), invoice_number=invoices[0])


# -- matching ----------------------------------------------------------------------------------------------------

Key = tuple[str, str, dt.date]  # (Microsoft's subscription id, charge type, charge start)


@dataclass
class Side:
    """One side of a key: its lines summed (seats, subtotal); the rest from its first line."""

    subscription: str
    customer: str
    sku: str
    sku_name: str
    charge_type: str
    start: dt.date
    end: dt.date
    quantity: int
    unit_price: Decimal
    effective_unit_price: Decimal
    subtotal: Decimal
    line_ids: list[int] = field(default_factory=list)

    def add(self, other: Side) -> None:
        self.quantity += other.quantity
        self.subtotal += other.subtotal
        self.end = max(self.end, other.end)
        self.line_ids.extend(other.line_ids)


@dataclass
class Difference:
    match: str
    key: Key
    microsoft: Side | None
    portal: Side | None

    @property
    def words(self) -> str:
        return CLASS_WORDS[self.match]

    @property
    def amount(self) -> Decimal:
        """Microsoft's subtotal less the portal's."""
        return (self.microsoft.subtotal if self.microsoft else Decimal(0)) - (
            self.portal.subtotal if self.portal else Decimal(0)
        )


@dataclass
class Report:
    month: dt.date
    lines: int = 0  # Microsoft's lines imported for the month
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CLASSES, 0))
    microsoft_totals: dict[str, Decimal] = field(default_factory=lambda: {c: Decimal("0.00") for c in CLASSES})
    portal_totals: dict[str, Decimal] = field(default_factory=lambda: {c: Decimal("0.00") for c in CLASSES})
    differences: list[Difference] = field(default_factory=list)  # the first KEEP_DIFFERENCES

    @property
    def difference_count(self) -> int:
        return sum(self.counts[c] for c in DIFFERENCES)

    @property
    def microsoft_total(self) -> Decimal:
        return sum(self.microsoft_totals.values(), Decimal("0.00"))

    @property
    def portal_total(self) -> Decimal:
        return sum(self.portal_totals.values(), Decimal("0.00"))

    @property
    def total_difference(self) -> Decimal:
        return self.microsoft_total - self.portal_total

    def rows(self) -> list[tuple[str, str, int, Decimal, Decimal, Decimal]]:
        """(class, words, count, Microsoft's total, the portal's total, difference) per class."""
        return [
            (
                c,
                CLASS_WORDS[c],
                self.counts[c],
                self.microsoft_totals[c],
                self.portal_totals[c],
                self.microsoft_totals[c] - self.portal_totals[c],
            )
            for c in CLASSES
        ]

    def summary_lines(self) -> list[str]:
        out = [f"{self.month:%B %Y}: {self.lines} Microsoft line(s); {self.difference_count} difference(s)."]
        for _c, words, count, ms, portal, diff in self.rows():
            out.append(f"  {words}: {count} (Microsoft {ms}, portal {portal}, difference {diff})")
        out.append(
            f"  Total: Microsoft {self.microsoft_total}, portal {self.portal_total}, difference {self.total_difference}"
        )
        return out


def classify(microsoft: Side | None, portal: Side | None) -> str:
    if microsoft is None:
        return "only_portal"
    if portal is None:
        return "only_microsoft"
    if microsoft.quantity != portal.quantity:
        return "quantity_differs"
    if microsoft.subtotal.quantize(CENT) != portal.subtotal.quantize(CENT) or microsoft.unit_price.quantize(
        FOUR
    ) != portal.unit_price.quantize(FOUR):
        return "price_differs"
    return "matched"


_LINE_COLUMNS = (
    MicrosoftBilledLine.id,
    MicrosoftBilledLine.subscription_id,
    MicrosoftBilledLine.customer_name,
    MicrosoftBilledLine.customer_id,
    MicrosoftBilledLine.product_id,
    MicrosoftBilledLine.sku_id,
    MicrosoftBilledLine.sku_name,
    MicrosoftBilledLine.charge_type,
    MicrosoftBilledLine.charge_start,
    MicrosoftBilledLine.charge_end,
    MicrosoftBilledLine.quantity,
    MicrosoftBilledLine.unit_price,
    MicrosoftBilledLine.effective_unit_price,
    MicrosoftBilledLine.subtotal,
)


def _microsoft_side(line) -> Side:
    """A row of ``_LINE_COLUMNS`` as a Side."""
    return Side(
        subscription=line.subscription_id,
        customer=line.customer_name or line.customer_id,
        sku=f"{line.product_id}:{line.sku_id}",
        sku_name=line.sku_name or "",
        charge_type=line.charge_type,
        start=line.charge_start,
        end=line.charge_end,
        quantity=line.quantity,
        unit_price=Decimal(line.unit_price),
        effective_unit_price=Decimal(line.effective_unit_price),
        subtotal=Decimal(line.subtotal),
        line_ids=[line.id],
    )


def _merge(into: dict[Key, Side], key: Key, side: Side) -> None:
    if key in into:
        into[key].add(side)
    else:
        into[key] = side


def _portal_chunks(month: dt.date) -> Iterator[list[tuple[int, str, str, str, str]]]:
    """Subscriptions with a Microsoft id, CHUNK at a time by id: (id, Microsoft's id, customer, SKU, SKU name)."""
    after = 0
    while True:
        rows = db.session.execute(
            select(Subscription.id, Subscription.provider_subscription_id, Account.name, Product.sku, Product.name)
            .join(Account, Account.id == Subscription.account_id)
            .join(Product, Product.id == Subscription.product_id)
            .where(Subscription.provider_subscription_id.is_not(None), Subscription.id > after)
            .order_by(Subscription.id)
            .limit(CHUNK)
        ).all()
        if not rows:
            return
        after = rows[-1][0]
        yield [tuple(row) for row in rows]


def _pairs(month: dt.date) -> Iterator[tuple[Key, Side | None, Side | None]]:
    """Every key of the month with Microsoft's side and the portal's, a chunk of subscriptions at a time, then
    Microsoft's lines of subscriptions the portal does not know."""
    for chunk in _portal_chunks(month):
        charges = billing.subscription_charges([row[0] for row in chunk], month)
        portal: dict[Key, Side] = {}
        for sub_id, provider_id, customer, sku, sku_name in chunk:
            for charge in charges.get(sub_id, ()):
                key = (provider_id, charge.charge_type, charge.start)
                side = Side(
                    subscription=provider_id,
                    customer=customer,
                    sku=sku,
                    sku_name=sku_name,
                    charge_type=charge.charge_type,
                    start=charge.start,
                    end=charge.end,
                    quantity=charge.quantity,
                    unit_price=charge.unit_prices[0],
                    effective_unit_price=charge.effective_unit_prices[0],
                    subtotal=charge.amounts[0],
                )
                _merge(portal, key, side)
        microsoft: dict[Key, Side] = {}
        provider_ids = [row[1] for row in chunk]
        for line in db.session.execute(
            select(*_LINE_COLUMNS)
            .where(MicrosoftBilledLine.month == month, MicrosoftBilledLine.subscription_id.in_(provider_ids))
            .order_by(MicrosoftBilledLine.id)
        ):
            _merge(microsoft, (line.subscription_id, line.charge_type, line.charge_start), _microsoft_side(line))
        for key in sorted(set(portal) | set(microsoft)):
            yield key, microsoft.get(key), portal.get(key)
    yield from _only_microsoft(month)


def _only_microsoft(month: dt.date) -> Iterator[tuple[Key, Side | None, Side | None]]:
    """Microsoft's lines whose subscription the portal does not have. The candidates are the lines no chunk has
    classified yet (``match`` NULL) or classified ``only_microsoft`` — after ``reconcile`` has marked the known
    subscriptions' lines that is the few at stake; each page's subscriptions are then looked up in the portal (the
    portal's own may have been marked ``only_microsoft`` for a charge it lacks: those were reported by their chunk).
    Pages of BATCH lines, keyset on (subscription, id): memory stays flat."""
    candidates = or_(MicrosoftBilledLine.match.is_(None), MicrosoftBilledLine.match == "only_microsoft")
    last: tuple[str, int] | None = None
    pending: dict[Key, Side] = {}
    current = None
    while True:
        statement = select(*_LINE_COLUMNS).where(MicrosoftBilledLine.month == month, candidates)
        if last is not None:
            statement = statement.where(
                tuple_(MicrosoftBilledLine.subscription_id, MicrosoftBilledLine.id) > tuple_(*last)
            )
        page = db.session.execute(
            statement.order_by(MicrosoftBilledLine.subscription_id, MicrosoftBilledLine.id).limit(BATCH)
        ).all()
        ids = {line.subscription_id for line in page}
        known = (
            set(
                db.session.scalars(
                    select(Subscription.provider_subscription_id).where(Subscription.provider_subscription_id.in_(ids))
                )
            )
            if ids
            else set()
        )
        for line in page:
            if line.subscription_id in known:
                continue
            if line.subscription_id != current:
                for key in sorted(pending):
                    yield key, pending[key], None
                pending, current = {}, line.subscription_id
            _merge(pending, (line.subscription_id, line.charge_type, line.charge_start), _microsoft_side(line))
        if len(page) < BATCH:
            break
        last = (page[-1].subscription_id, page[-1].id)
    for key in sorted(pending):
        yield key, pending[key], None


def imported_lines(month: dt.date) -> int:
    """How many of Microsoft's lines are imported for the month."""
    month = month.replace(day=1)
    return db.session.scalar(select(func.count(MicrosoftBilledLine.id)).where(MicrosoftBilledLine.month == month)) or 0


def imported_at(month: dt.date) -> dt.datetime | None:
    """When the month's lines were imported (UTC), or None."""
    month = month.replace(day=1)
    return db.session.scalar(
        select(func.max(MicrosoftBilledLine.imported_at)).where(MicrosoftBilledLine.month == month)
    )


def compare(month: dt.date, *, on_pair: Callable[[str, Side | None, Side | None], None] | None = None) -> Report:
    """The month's comparison (reads only): counts, totals, the first KEEP_DIFFERENCES differences."""
    month = month.replace(day=1)
    report = Report(month=month, lines=imported_lines(month))
    for key, microsoft, portal in _pairs(month):
        match = classify(microsoft, portal)
        report.counts[match] += 1
        if microsoft is not None:
            report.microsoft_totals[match] += microsoft.subtotal
        if portal is not None:
            report.portal_totals[match] += portal.subtotal
        if match != "matched" and len(report.differences) < KEEP_DIFFERENCES:
            report.differences.append(Difference(match, key, microsoft, portal))
        if on_pair is not None:
            on_pair(match, microsoft, portal)
    return report


def differences(month: dt.date) -> Iterator[Difference]:
    """Every difference of the month (reads only), streamed: for the workbook."""
    for key, microsoft, portal in _pairs(month.replace(day=1)):
        match = classify(microsoft, portal)
        if match != "matched":
            yield Difference(match, key, microsoft, portal)


def reconcile(month: dt.date) -> Report:
    """Match the month's imported Microsoft lines with the portal's charges: each line's ``match`` stored (one
    UPDATE … WHERE id IN (…) per class per BATCH lines), counts and totals per class reported. Commits."""
    month = month.replace(day=1)
    session = db.session
    table = MicrosoftBilledLine.__table__
    pending: dict[str, list[int]] = {}
    waiting = 0

    def flush() -> None:
        nonlocal waiting
        for match, ids in pending.items():
            if ids:
                session.execute(update(table).where(table.c.id.in_(ids)).values(match=match))
        pending.clear()
        waiting = 0

    def store(match: str, microsoft: Side | None, portal: Side | None) -> None:
        nonlocal waiting
        if microsoft is not None:
            pending.setdefault(match, []).extend(microsoft.line_ids)
            waiting += len(microsoft.line_ids)
            if waiting >= BATCH:
                flush()

    try:
        session.execute(
            update(MicrosoftBilledLine)
            .where(and_(MicrosoftBilledLine.month == month, MicrosoftBilledLine.match.is_not(None)))
            .values(match=None)
        )
        report = compare(month, on_pair=store)
        flush()
        operator_id = _operator_id()
        if operator_id is not None:
            record_event(
                "billing.reconciliation.run",
                account_id=operator_id,
                summary=f"{month:%B %Y}: Microsoft's billed data reconciled: "
                + ", ".join(f"{CLASS_WORDS[c].lower()} {report.counts[c]}" for c in CLASSES),
            )
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return report


# -- the workbook of differences ---------------------------------------------------------------------------------

WORKBOOK_COLUMNS = (
    "Difference",
    "Subscription",
    "Charge type",
    "Charge start",
    "Microsoft: customer",
    "Microsoft: SKU",
    "Microsoft: charge end",
    "Microsoft: quantity",
    "Microsoft: unit price",
    "Microsoft: subtotal",
    "Portal: customer",
    "Portal: SKU",
    "Portal: charge end",
    "Portal: quantity",
    "Portal: unit price",
    "Portal: subtotal",
    "Microsoft less portal",
)


def write_workbook(month: dt.date, target) -> int:
    """The month's differences as an .xlsx (xlsxwriter, constant memory; text is never read as a formula or a
    link) into ``target`` (a path or a binary file); the number of differences written."""
    import xlsxwriter

    workbook = xlsxwriter.Workbook(
        target,
        {
            "constant_memory": True,
            "strings_to_formulas": False,
            "strings_to_urls": False,
            "strings_to_numbers": False,
            "in_memory": False,
        },
    )
    bold = workbook.add_format({"bold": True})
    money = workbook.add_format({"num_format": "#,##0.00"})
    price = workbook.add_format({"num_format": "#,##0.0000"})
    date = workbook.add_format({"num_format": "dd/mm/yyyy"})
    sheet = workbook.add_worksheet(f"{month:%Y-%m} differences")
    for col, title in enumerate(WORKBOOK_COLUMNS):
        sheet.write_string(0, col, title, bold)
    sheet.set_column(0, 1, 24)
    sheet.set_column(2, len(WORKBOOK_COLUMNS) - 1, 16)
    row = 0
    for difference in differences(month):
        row += 1
        subscription, charge_type, start = difference.key
        sheet.write_string(row, 0, difference.words)
        sheet.write_string(row, 1, subscription)
        sheet.write_string(row, 2, charge_type)
        sheet.write_datetime(row, 3, dt.datetime.combine(start, dt.time(0)), date)
        for offset, side in ((4, difference.microsoft), (10, difference.portal)):
            if side is None:
                continue
            sheet.write_string(row, offset, side.customer)
            sheet.write_string(row, offset + 1, f"{side.sku_name} ({side.sku})" if side.sku_name else side.sku)
            sheet.write_datetime(row, offset + 2, dt.datetime.combine(side.end, dt.time(0)), date)
            sheet.write_number(row, offset + 3, side.quantity)
            sheet.write_number(row, offset + 4, float(side.unit_price), price)
            sheet.write_number(row, offset + 5, float(side.subtotal), money)
        sheet.write_number(row, 16, float(difference.amount), money)
    workbook.close()
    return row

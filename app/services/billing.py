"""The monthly billing run and the invoices' lifecycle (issue 14).

``run(month)``: for the month, each reseller's invoice from the operator (its buy prices; each line also carries
what Microsoft charges the operator for it) and each customer's invoice from its reseller (sell prices). The lines
are the month's charges of the charge ledger, by Microsoft's rules (app/services/billing_rules.py: daily proration,
ROUNDDOWN to the cent per licence). GST is ``TAX_RATE`` of the invoice's subtotal, rounded half up to the cent once
per invoice. The run is idempotent: it replaces the month's drafts and leaves issued invoices alone (a pair already
issued is reported, and corrected by a credit note). Memory stays flat: customers are read a page at a time and
their lines written as they are made.

``issue(invoice)``: draft → issued, numbered without gaps per issuer (its ``BillingProfile.next_number``, taken
under a row lock in the issuing transaction), dated today in the portal's zone, due by the issuer's payment terms;
unchangeable from then on (database triggers). ``credit_note(invoice)``: a draft that reverses an issued invoice.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from flask import current_app, has_app_context
from sqlalchemy import delete, exists, func, insert, or_, select, update
from sqlalchemy.orm import aliased

from app import clock
from app.extensions import db
from app.models.accounts import CUSTOMER, OPERATOR, RESELLER, Account
from app.models.billing import BillingProfile, ChargeEvent, Invoice, InvoiceLine
from app.models.catalog import TERM_LABELS, Product
from app.models.subscriptions import BILLED, Subscription
from app.services import billing_rules
from app.services.events import record_event

CENT = Decimal("0.01")
PAGE = 500  # customers per page of the run
CHARGE_WORDS = {
    "new": "New purchase",
    "renew": "Renewal",
    "cycleCharge": "Monthly instalment",
    "addQuantity": "Seats added",
    "removeQuantity": "Seats given back (credit)",
    "cancelImmediate": "Cancelled (credit)",
    "convert": "Upgrade",
}
INSTALMENT_WORDS = {"monthly": "Monthly charge", "annual": "Yearly instalment", "triennial": "Three-yearly charge"}


class BillingError(Exception):
    """A billing step that cannot be done (an issued invoice changed, a bad month); the message says why."""


def tax_rate() -> Decimal:
    if has_app_context():
        return Decimal(str(current_app.config.get("TAX_RATE", "0.15")))
    return Decimal("0.15")


def gst(subtotal: Decimal, rate: Decimal) -> Decimal:
    return (subtotal * rate).quantize(CENT, rounding=ROUND_HALF_UP)


def parse_month(text: str) -> dt.date:
    """ "2026-11" → 1 November 2026; ValueError otherwise."""
    try:
        year, month = (int(part) for part in text.strip().split("-"))
        return dt.date(year, month, 1)
    except (ValueError, TypeError):
        raise ValueError(f"{text!r} is not a month: write it as YYYY-MM, e.g. 2026-11") from None


def charge_words(charge_type: str, billing_cycle: str) -> str:
    if charge_type == "cycleCharge":
        return INSTALMENT_WORDS.get(billing_cycle, CHARGE_WORDS[charge_type])
    return CHARGE_WORDS.get(charge_type, charge_type)


def term_words(term: str, billing_cycle: str) -> str:
    return f"{TERM_LABELS[term]}, {BILLED[billing_cycle]}"


def profile(account: Account | int) -> BillingProfile:
    """The issuer's invoice settings (made with defaults the first time)."""
    account_id = account if isinstance(account, int) else account.id
    found = db.session.scalars(select(BillingProfile).where(BillingProfile.account_id == account_id)).first()
    if found is None:
        found = BillingProfile(account_id=account_id, invoice_prefix=_default_prefix(account_id))
        db.session.add(found)
        db.session.flush()
    return found


def _default_prefix(account_id: int) -> str:
    name = db.session.scalar(select(Account.name).where(Account.id == account_id)) or "INV"
    letters = "".join(word[0] for word in name.split() if word[:1].isalpha()).upper()[:4] or "INV"
    return f"{letters}-"


# -- the run -----------------------------------------------------------------------------------------------------


@dataclass
class RunReport:
    month: dt.date
    invoices: int = 0
    lines: int = 0
    skipped_issued: int = 0
    totals: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))

    def summary(self) -> str:
        label = self.month.strftime("%B %Y")
        text = f"{label}: {self.invoices} draft invoices, {self.lines} lines"
        if self.skipped_issued:
            text += f"; {self.skipped_issued} already issued (left as they are)"
        return text + "."


def ledger_events(subscription_ids: Iterable[int], until: dt.date) -> dict[int, list[billing_rules.Event]]:
    """Each subscription's ledger up to ``until`` (inclusive), in order, with its SKU; a term starting by ``until`` is
    in it even when recorded later."""
    ids = list(subscription_ids)
    out: dict[int, list[billing_rules.Event]] = defaultdict(list)
    if not ids:
        return out
    end = dt.datetime.combine(until + dt.timedelta(days=1), dt.time(0))
    rows = db.session.execute(
        select(ChargeEvent, Product.sku)
        .join(Product, Product.id == ChargeEvent.product_id)
        .where(
            ChargeEvent.subscription_id.in_(ids),
            # A term that starts by then, even when recorded after (Microsoft renews from 00:00 UTC of the new term's
            # first day and may take up to 24 hours): its charge is that month's, or no month's.
            or_(
                ChargeEvent.occurred_at < end,
                ChargeEvent.kind.in_(billing_rules.STARTS) & (ChargeEvent.term_started_on <= until),
            ),
        )
        .order_by(ChargeEvent.subscription_id, ChargeEvent.occurred_at, ChargeEvent.id)
    ).all()
    for event, sku in rows:
        out[event.subscription_id].append(
            billing_rules.event_of(
                event, (event.ms_unit_cost, event.unit_cost, event.unit_price), sku, event.availability_id
            )
        )
    return out


def subscription_charges(subscription_ids: list[int], month: dt.date) -> dict[int, list[billing_rules.Charge]]:
    """The month's charges of each subscription (prices: Microsoft's, buy, sell)."""
    _first, last = billing_rules.month_bounds(month)
    events = ledger_events(subscription_ids, last)
    return {sid: found for sid in subscription_ids if (found := billing_rules.charges(events.get(sid, ()), month))}


def _operator() -> Account:
    operator = db.session.scalars(select(Account).where(Account.kind == OPERATOR).order_by(Account.id)).first()
    if operator is None:
        raise BillingError("There is no operator account to issue invoices.")
    return operator


def run(
    month: dt.date, *, reseller_ids: list[int] | None = None, echo: Callable[[str], None] | None = None
) -> RunReport:
    """Draft the month's invoices (see the module's docstring). Commits once per page of customers."""
    month = month.replace(day=1)
    operator = _operator()
    rate = tax_rate()
    report = RunReport(month=month)
    products = dict(db.session.execute(select(Product.id, Product.name)).all())
    resellers = db.session.execute(
        select(Account.id, Account.name)
        .where(Account.kind == RESELLER, *([Account.id.in_(reseller_ids)] if reseller_ids else []))
        .order_by(Account.id)
    ).all()
    operator_profile = profile(operator.id)
    pages = 0
    for reseller_id, reseller_name in resellers:
        reseller_profile = profile(reseller_id)
        _drop_drafts(month, reseller_id)
        issued_buyers = set(
            db.session.scalars(
                select(Invoice.buyer_id).where(
                    Invoice.issuer_id == reseller_id,
                    Invoice.month == month,
                    Invoice.status == "issued",
                    Invoice.kind == "invoice",
                    _not_reversed(),
                )
            )
        )
        reseller_issued = (
            db.session.scalar(
                select(func.count(Invoice.id)).where(
                    Invoice.issuer_id == operator.id,
                    Invoice.buyer_id == reseller_id,
                    Invoice.month == month,
                    Invoice.status == "issued",
                    Invoice.kind == "invoice",
                    _not_reversed(),
                )
            )
            > 0
        )
        report.skipped_issued += len(issued_buyers) + (1 if reseller_issued else 0)
        upper = _Invoice(operator.id, reseller_id, month, rate, operator_profile.gst_number)
        after = 0
        while True:
            customers = db.session.execute(
                select(Account.id, Account.name)
                .where(Account.parent_id == reseller_id, Account.kind == CUSTOMER, Account.id > after)
                .order_by(Account.id)
                .limit(PAGE)
            ).all()
            if not customers:
                break
            after = customers[-1][0]
            names = dict(customers)
            subs = db.session.execute(
                select(Subscription.id, Subscription.account_id, Subscription.product_id)
                .where(Subscription.account_id.in_(names))
                .order_by(Subscription.account_id, Subscription.id)
            ).all()
            charges = subscription_charges([s.id for s in subs], month)
            by_customer: dict[int, list] = defaultdict(list)
            for sub_id, customer_id, product_id in subs:
                for charge in charges.get(sub_id, ()):
                    by_customer[customer_id].append((sub_id, product_id, charge))
            drafts: list[_Invoice] = []
            for customer_id, items in by_customer.items():
                lower = None
                if customer_id not in issued_buyers:
                    lower = _Invoice(reseller_id, customer_id, month, rate, reseller_profile.gst_number, deferred=True)
                for sub_id, product_id, charge in items:
                    name = products.get(product_id, charge.sku)
                    if lower is not None:
                        lower.add(customer_id, sub_id, name, charge, level=2)
                    if not reseller_issued:
                        upper.add(customer_id, sub_id, f"{names[customer_id]}: {name}", charge, level=1)
                if lower is not None:
                    drafts.append(lower)
            report.lines += _save_drafts(drafts)
            report.invoices += sum(1 for draft in drafts if draft.id)
            if not reseller_issued:
                report.lines += upper.flush_lines()
            db.session.commit()
            pages += 1
            _refresh_statistics(pages)
        if not reseller_issued and upper.save_totals():
            report.invoices += 1
        drafted = db.session.scalar(
            select(func.count(Invoice.id)).where(
                Invoice.issuer_id == reseller_id, Invoice.month == month, Invoice.status == "draft"
            )
        )
        record_event(
            "billing.run",
            account_id=reseller_id,
            summary=f"{month:%B %Y}: {drafted} draft invoice(s) to {reseller_name}'s customers"
            + ("" if reseller_issued else f"; {operator.name}'s draft invoice to {reseller_name}"),
        )
        db.session.commit()
        if echo:
            echo(f"{reseller_name}: done")
    record_event("billing.run", account_id=operator.id, summary=report.summary())
    db.session.commit()
    return report


def _not_reversed():
    """An issued invoice still stands: no issued credit note reverses it (once one does, the run drafts the pair's
    invoice again, with the month's charges as the ledger has them now)."""
    note = aliased(Invoice)
    return ~exists().where(note.corrects_id == Invoice.id, note.kind == "credit_note", note.status == "issued")


def refresh_statistics(*tables: str) -> None:
    """PostgreSQL plans the checks and look-ups of billing tables from their statistics, and keeps those plans for
    the session: statistics taken while a table was (nearly) empty — its first month, or a server whose autovacuum
    lags — make every check scan the whole table, and a month's run quadratic (measured: 390,000 scans of ``invoice``
    in one run over 172,000 customers; 120 s of a 300,000-line reconciliation in look-ups of the imported lines).
    ANALYZE refreshes them, which also makes PostgreSQL plan again. Best effort: a role that does not own the
    tables gets a warning from ANALYZE, not an error. Nothing on SQLite."""
    if db.engine.dialect.name != "postgresql" or not tables:
        return
    from sqlalchemy import text

    known = {"invoice", "invoice_line", "microsoft_billed_line"}
    if not set(tables) <= known:
        raise ValueError(f"not a billing table: {sorted(set(tables) - known)}")
    reviewed = {"portal_unscoped_reason": "statistics of the billing tables, refreshed as they grow"}
    db.session.execute(text(f"ANALYZE {', '.join(tables)}").execution_options(**reviewed))
    db.session.commit()


def _refresh_statistics(pages: int) -> None:
    """After the run's 1st, 8th, 64th, 512th … page: the tables it writes, as they grow."""
    if not (pages & (pages - 1) or (pages.bit_length() - 1) % 3):
        refresh_statistics("invoice", "invoice_line")


def _drop_drafts(month: dt.date, reseller_id: int) -> None:
    """The month's drafts of one reseller: its own invoice from the operator and its invoices to customers."""
    ids = select(Invoice.id).where(
        Invoice.month == month,
        Invoice.status == "draft",
        Invoice.kind == "invoice",
        ((Invoice.issuer_id == reseller_id) | (Invoice.buyer_id == reseller_id)),
    )
    db.session.execute(delete(InvoiceLine).where(InvoiceLine.invoice_id.in_(ids)))
    db.session.execute(
        delete(Invoice).where(
            Invoice.month == month,
            Invoice.status == "draft",
            Invoice.kind == "invoice",
            ((Invoice.issuer_id == reseller_id) | (Invoice.buyer_id == reseller_id)),
        )
    )


class _Invoice:
    """A draft being written: its row made on the first line, lines written in batches, totals at the end.
    ``level`` 1 = operator → reseller (buy prices, with Microsoft's), 2 = reseller → customer (sell prices)."""

    def __init__(
        self,
        issuer_id: int,
        buyer_id: int,
        month: dt.date,
        rate: Decimal,
        gst_number: str | None,
        *,
        deferred: bool = False,
    ):
        # deferred: no row until _save_drafts writes it with its lines and totals (a page's drafts in 2 statements)
        self.deferred = deferred
        self.issuer_id, self.buyer_id, self.month, self.rate, self.gst_number = (
            issuer_id,
            buyer_id,
            month,
            rate,
            gst_number,
        )
        self.id: int | None = None
        self.position = 0
        self.subtotal = Decimal("0")
        self.pending: list[dict] = []

    def add(self, customer_id: int, sub_id: int, name: str, charge: billing_rules.Charge, *, level: int) -> None:
        if self.id is None and not self.deferred:
            self.id = db.session.execute(
                insert(Invoice)
                .values(
                    kind="invoice",
                    issuer_id=self.issuer_id,
                    buyer_id=self.buyer_id,
                    month=self.month,
                    status="draft",
                    currency="NZD",
                    tax_rate=self.rate,
                    subtotal=0,
                    tax=0,
                    total=0,
                    issuer_gst_number=self.gst_number,
                    created_at=clock.utcnow(),
                )
                .returning(Invoice.id)
            ).scalar_one()
        self.position += 1
        amount = charge.amounts[level]
        self.subtotal += amount
        line = {
            "invoice_id": self.id,
            "issuer_id": self.issuer_id,
            "buyer_id": self.buyer_id,
            "position": self.position,
            "customer_id": customer_id,
            "subscription_id": sub_id,
            "description": f"{name} — {charge_words(charge.charge_type, charge.billing_cycle)}"[:300],
            "sku": charge.sku,
            "charge_type": charge.charge_type,
            "term": charge.term,
            "billing_cycle": charge.billing_cycle,
            "charge_start": charge.start,
            "charge_end": charge.end,
            "days": charge.days,
            "cycle_days": charge.cycle_days,
            "quantity": charge.quantity,
            "unit_price": charge.unit_prices[level],
            "effective_unit_price": charge.effective_unit_prices[level],
            "amount": amount,
            "ms_unit_price": charge.unit_prices[0] if level == 1 else None,
            "ms_effective_unit_price": charge.effective_unit_prices[0] if level == 1 else None,
            "ms_amount": charge.amounts[0] if level == 1 else None,
        }
        self.pending.append(line)
        if len(self.pending) >= 2000 and not self.deferred:
            self.flush_lines()

    def flush_lines(self) -> int:
        written = len(self.pending)
        if self.pending:
            db.session.execute(insert(InvoiceLine), self.pending)
            self.pending = []
        return written

    def save_totals(self) -> bool:
        self.flush_lines()
        if self.id is None:
            return False
        tax = gst(self.subtotal, self.rate)
        db.session.execute(
            update(Invoice)
            .where(Invoice.id == self.id)
            .values(subtotal=self.subtotal, tax=tax, total=self.subtotal + tax)
        )
        return True


def _save_drafts(drafts: list[_Invoice]) -> int:
    """Write deferred drafts that have lines: their rows with their totals in one INSERT, then all their lines in
    one; the number of lines written. (Per draft, an INSERT, an UPDATE and an INSERT of its lines took three round
    trips a customer: most of the run's time at scale.)"""
    drafts = [draft for draft in drafts if draft.pending]
    if not drafts:
        return 0
    now = clock.utcnow()
    rows = []
    for draft in drafts:
        tax = gst(draft.subtotal, draft.rate)
        rows.append(
            {
                "kind": "invoice",
                "issuer_id": draft.issuer_id,
                "buyer_id": draft.buyer_id,
                "month": draft.month,
                "status": "draft",
                "currency": "NZD",
                "tax_rate": draft.rate,
                "subtotal": draft.subtotal,
                "tax": tax,
                "total": draft.subtotal + tax,
                "issuer_gst_number": draft.gst_number,
                "created_at": now,
            }
        )
    ids = db.session.scalars(insert(Invoice).returning(Invoice.id, sort_by_parameter_order=True), rows).all()
    lines = []
    for draft, invoice_id in zip(drafts, ids, strict=True):
        draft.id = invoice_id
        for line in draft.pending:
            line["invoice_id"] = invoice_id
        lines.extend(draft.pending)
        draft.pending = []
    db.session.execute(insert(InvoiceLine), lines)
    return len(lines)


# -- lifecycle -----------------------------------------------------------------------------------------------------


def _locked_profile(issuer_id: int) -> BillingProfile:
    profile(issuer_id)
    # populate_existing: the row as the lock found it, even when this session already holds the profile read before
    # (else its next_number would be the one another issue has just taken).
    return db.session.scalars(
        select(BillingProfile)
        .where(BillingProfile.account_id == issuer_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()


def issue(invoice: Invoice, *, commit: bool = True) -> Invoice:
    """Number, date and issue a draft (see the module's docstring). BillingError if it is not a draft."""
    if invoice.status != "draft":
        raise BillingError(f"{invoice.title} is already issued: correct it with a credit note.")
    settings = _locked_profile(invoice.issuer_id)
    db.session.refresh(invoice)
    if invoice.status != "draft":
        raise BillingError(f"{invoice.title} is already issued: correct it with a credit note.")
    _check_complete(invoice)
    number = f"{settings.invoice_prefix}{settings.next_number:06d}"
    settings.next_number += 1
    today = clock.today()
    invoice.number, invoice.status = number, "issued"
    invoice.issue_date, invoice.due_date = today, today + dt.timedelta(days=settings.payment_terms_days)
    invoice.issuer_gst_number = settings.gst_number
    invoice.issued_at = clock.utcnow()
    db.session.flush()
    record_event(
        "invoice.issued",
        account_id=invoice.issuer_id,
        target=invoice,
        summary=f"{invoice.title} to {invoice.buyer.name} for {invoice.month:%B %Y}: {invoice.total} NZD incl. GST",
    )
    if commit:
        db.session.commit()
    return invoice


def _check_complete(invoice: Invoice) -> None:
    """A draft is issued only as the run finished it: its subtotal the sum of its lines, its GST and total from
    that. A run killed half-way leaves a reseller's draft with lines but no totals yet: run the month again."""
    lines = db.session.scalar(
        select(func.coalesce(func.sum(InvoiceLine.amount), 0)).where(InvoiceLine.invoice_id == invoice.id)
    )
    count = db.session.scalar(select(func.count(InvoiceLine.id)).where(InvoiceLine.invoice_id == invoice.id))
    tax = gst(invoice.subtotal, invoice.tax_rate) if invoice.kind == "invoice" else invoice.tax
    if not count or Decimal(lines) != invoice.subtotal or invoice.tax != tax or invoice.total != invoice.subtotal + tax:
        raise BillingError(
            f"{invoice.title} to {invoice.buyer.name} for {invoice.month:%B %Y} is incomplete (its lines do not add "
            f"up to its totals: a billing run did not finish). Run the month again, then issue it."
        )


def issue_month(month: dt.date, *, issuer_id: int | None = None, refused: list[str] | None = None) -> int:
    """Issue every draft of the month (of one issuer), each in its own transaction; how many were issued. A draft
    that cannot be issued (incomplete) is left as it is, its reason added to ``refused``."""
    query = select(Invoice.id).where(Invoice.month == month.replace(day=1), Invoice.status == "draft")
    if issuer_id is not None:
        query = query.where(Invoice.issuer_id == issuer_id)
    issued = 0
    for invoice_id in db.session.scalars(query.order_by(Invoice.issuer_id, Invoice.id)).all():
        invoice = db.session.get(Invoice, invoice_id)
        if invoice is not None and invoice.status == "draft":
            try:
                issue(invoice)
            except BillingError as exc:
                db.session.rollback()
                if refused is not None:
                    refused.append(str(exc))
                continue
            issued += 1
    return issued


def credit_note(invoice: Invoice, *, reason: str) -> Invoice:
    """A draft credit note reversing every line of an issued invoice (issue it like an invoice)."""
    if invoice.status != "issued" or invoice.kind != "invoice":
        raise BillingError("Only an issued invoice can be corrected with a credit note; change a draft instead.")
    if db.session.scalar(select(Invoice.id).where(Invoice.corrects_id == invoice.id).limit(1)) is not None:
        raise BillingError(f"{invoice.title} already has a credit note: it can be reversed only once.")
    note = Invoice(
        kind="credit_note",
        issuer_id=invoice.issuer_id,
        buyer_id=invoice.buyer_id,
        month=invoice.month,
        status="draft",
        currency=invoice.currency,
        tax_rate=invoice.tax_rate,
        subtotal=-invoice.subtotal,
        tax=-invoice.tax,
        total=-invoice.total,
        issuer_gst_number=invoice.issuer_gst_number,
        corrects_id=invoice.id,
        note=(reason or "")[:500] or None,
    )
    db.session.add(note)
    db.session.flush()
    # ORM rows, not a bulk INSERT: a scope other than ALL refuses Core and bulk writes, and lets the issuer's side
    # add lines to its own invoice (security/scoping.py).
    for line in invoice.lines:
        row = {c.name: getattr(line, c.name) for c in InvoiceLine.__table__.columns if c.name != "id"}
        row["invoice_id"] = note.id
        for money in ("amount", "ms_amount"):
            if row[money] is not None:
                row[money] = -row[money]
        db.session.add(InvoiceLine(**row))
    db.session.flush()
    record_event(
        "invoice.credit_note",
        account_id=invoice.issuer_id,
        target=note,
        summary=f"Draft credit note for {invoice.title}: {reason}"[:1000],
    )
    db.session.commit()
    return note


# -- the monthly job ---------------------------------------------------------------------------------------------

RUN_DAY = 2  # the day of the month (New Zealand) on which last month is drafted: its last UTC day is over by then


def run_if_due() -> int:
    """The maintenance loop's monthly step: from the 2nd of a month (New Zealand), draft last month's invoices once
    (an Event ``billing.month`` marks it done). On PostgreSQL a session advisory lock keeps two processes from
    running it at once. How many invoices were drafted (0 when not due)."""
    from app.models.events import Event

    today = clock.today()
    if today.day < RUN_DAY:
        return 0
    month = (today.replace(day=1) - dt.timedelta(days=1)).replace(day=1)
    key = f"{month:%Y-%m}"
    done = select(Event.id).where(Event.action == "billing.month", Event.target_type == "Month", Event.target_id == key)
    if db.session.scalar(done.limit(1)) is not None:
        return 0
    lock = None
    if db.engine.dialect.name == "postgresql":
        from sqlalchemy import text

        lock = db.engine.connect()
        if not lock.execute(
            text("SELECT pg_try_advisory_lock(14, :month)").execution_options(
                portal_unscoped_reason="advisory lock of the monthly billing run"
            ),
            {"month": month.year * 100 + month.month},
        ).scalar():
            lock.close()
            return 0
    try:
        if db.session.scalar(done.limit(1)) is not None:
            return 0
        report = run(month)
        record_event(
            "billing.month",
            account_id=_operator().id,
            target_type="Month",
            target_id=key,
            summary=f"Monthly billing run: {report.summary()}",
        )
        db.session.commit()
        return report.invoices
    finally:
        if lock is not None:
            lock.close()  # ends the session: the advisory lock goes with it

"""The CSP Report's workbooks: the subscription report and the user report, as .xlsx (xlsxwriter).

Rows stream from the database (``yield_per``) into xlsxwriter's ``constant_memory`` mode, so memory stays flat
however large the customer base. Strings are written as text, never formulas or links; a sheet that would pass
Excel's row limit continues on a numbered sheet, so the workbook always holds every row.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from io import BytesIO
from pathlib import Path

import xlsxwriter
from flask import current_app
from sqlalchemy import Select, func, select
from sqlalchemy.orm import aliased

from app.clock import utcnow
from app.extensions import db
from app.formatting import local_time
from app.models.accounts import Account, MicrosoftTenant
from app.models.catalog import FREQUENCY_LABELS, TERM_LABELS, Availability, Product
from app.models.subscriptions import LicenceAssignment, M365User, Subscription, scheduled_change_words
from app.services import csp_report
from app.services.events import record_event
from security.models import Membership, PortalUser, address_of

EXCEL_MAX_ROWS = 1_048_576
FETCH = 2000
# A cell starting with one of these could be taken for a formula by a spreadsheet (or by a person re-typing it):
# such text gets Excel's quote prefix, which keeps it text and shows it unchanged.
_UNSAFE_FIRST = frozenset("=+-@\t\r")
TEXT, NUMBER, MONEY, DATE, DATETIME = "text", "number", "money", "date", "datetime"
WINDOW_END = "window_end"  # a moment to the minute with a four-digit year: 08/12/2026 09:00 AM (portal's zone)


@dataclasses.dataclass(frozen=True)
class Column:
    header: str
    kind: str = TEXT
    width: int = 16


@dataclasses.dataclass
class Sheet:
    name: str
    columns: list[Column]
    rows: Iterable[tuple]


def rows_per_sheet() -> int:
    """Data rows a sheet may hold: Excel's limit less the title and header rows (smaller in tests)."""
    return min(current_app.config.get("EXPORT_ROWS_PER_SHEET") or EXCEL_MAX_ROWS, EXCEL_MAX_ROWS) - 2


def write_workbook(target, title: str, sheets: list[Sheet], progress: Callable[[int], None] | None = None) -> int:
    """Write ``sheets`` to ``target`` (a path or a binary file); returns the number of data rows written."""
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
    formats = {
        "title": workbook.add_format({"bold": True, "font_size": 12}),
        "header": workbook.add_format({"bold": True, "bg_color": "#333333", "font_color": "#FFFFFF", "border": 1}),
        MONEY: workbook.add_format({"num_format": '"$"#,##0.00'}),
        DATE: workbook.add_format({"num_format": "dd/mm/yyyy"}),
        DATETIME: workbook.add_format({"num_format": "dd/mm/yy hh:mm AM/PM"}),
        WINDOW_END: workbook.add_format({"num_format": "dd/mm/yyyy hh:mm AM/PM"}),
        "quoted": workbook.add_format({"quote_prefix": True}),
    }
    limit = rows_per_sheet()
    written = 0
    for sheet in sheets:
        part, worksheet, row, writers = 1, None, 0, ()
        for record in sheet.rows:
            if worksheet is None or row - 2 >= limit:
                if worksheet is not None:
                    _finish(worksheet, sheet.columns, row)
                    part += 1
                worksheet = _start(workbook, sheet, part, title, formats)
                writers = _writers(worksheet, sheet.columns, formats)
                row = 2
            for index, (write, value) in enumerate(zip(writers, record, strict=True)):
                if value is not None:  # an empty cell is simply not written
                    write(row, index, value)
            row += 1
            written += 1
            if progress and written % 1000 == 0:
                progress(written)
        if worksheet is None:
            worksheet, row = _start(workbook, sheet, 1, title, formats), 2
        _finish(worksheet, sheet.columns, row)
    workbook.close()
    if progress:
        progress(written)
    return written


def _start(workbook, sheet: Sheet, part: int, title: str, formats):
    worksheet = workbook.add_worksheet(sheet.name if part == 1 else f"{sheet.name} ({part})")
    for index, column in enumerate(sheet.columns):
        worksheet.set_column(index, index, column.width)
    worksheet.write_string(0, 0, title, formats["title"])
    for index, column in enumerate(sheet.columns):
        worksheet.write_string(1, index, column.header, formats["header"])
    worksheet.freeze_panes(2, 0)
    return worksheet


def _finish(worksheet, columns: list[Column], next_row: int) -> None:
    worksheet.autofilter(1, 0, max(next_row - 1, 1), len(columns) - 1)


def _writers(worksheet, columns: list[Column], formats) -> list:
    """One writer per column, chosen once per sheet (the rows are many: no per-cell decisions)."""
    write_string, write_number, write_datetime = (
        worksheet.write_string,
        worksheet.write_number,
        worksheet.write_datetime,
    )
    money, date, moment, quoted = formats[MONEY], formats[DATE], formats[DATETIME], formats["quoted"]
    window_end = formats[WINDOW_END]

    def text(row, col, value):
        value = value if type(value) is str else str(value)
        if value and value[0] in _UNSAFE_FIRST:
            write_string(row, col, value, quoted)
        else:
            write_string(row, col, value)

    chosen = {
        TEXT: text,
        NUMBER: write_number,
        MONEY: lambda row, col, value: write_number(row, col, float(value), money),
        DATE: lambda row, col, value: write_datetime(row, col, dt.datetime.combine(value, dt.time()), date),
        DATETIME: lambda row, col, value: write_datetime(row, col, local_time(value).replace(tzinfo=None), moment),
        WINDOW_END: lambda row, col, value: write_datetime(
            row, col, local_time(value).replace(tzinfo=None, second=0, microsecond=0), window_end
        ),
    }
    return [chosen[column.kind] for column in columns]


# -- the reports ---------------------------------------------------------------------------------------------------


_customers_of = csp_report.customers_of  # the customers a report covers: the page's and the workbook's alike


def _stream(statement: Select) -> Iterator:
    return db.session.execute(statement.execution_options(yield_per=FETCH))


SUBSCRIPTION_COLUMNS = [
    Column("Reseller", width=24),
    Column("Customer", width=28),
    Column("Primary domain", width=30),
    Column("Product", width=34),
    Column("SKU", width=20),
    Column("Licenses assigned", NUMBER, 10),
    Column("Licenses total", NUMBER, 10),
    Column("Term", width=10),
    Column("Billing frequency", width=12),
    Column("Renew on", DATE, 12),
    Column("Auto-renew", width=10),
    Column("Cancellable until", WINDOW_END, 20),
    Column("Change at renewal", width=48),
]


def subscription_columns(seen: csp_report.Visibility) -> list[Column]:
    """The fixed columns, then the money columns ``seen`` may see — named as the CSP Report page names them."""
    money = [Column(c.header, MONEY, 16) for c in csp_report.money_columns(seen, workbook=True)]
    return SUBSCRIPTION_COLUMNS + money


def _subscription_query(account: Account) -> Select:
    reseller = aliased(Account)
    next_offer, next_product = aliased(Availability), aliased(Product)
    windows = csp_report.open_windows()
    return (
        select(
            reseller.name,
            Account.name,
            MicrosoftTenant.domain_prefix,
            Product.name,
            Product.sku,
            Subscription.assigned,
            Subscription.quantity,
            Subscription.term,
            Subscription.billing_cycle,
            Subscription.renew_on,
            Subscription.auto_renew,
            windows.c.until,
            Subscription.next_availability_id,
            Subscription.next_quantity,
            next_product.name,
            next_offer.term,
            next_offer.billing_frequency,
            Subscription.unit_price,
            Subscription.unit_cost,
            Subscription.ms_unit_cost,
        )
        .select_from(Subscription)
        .join(Account, Account.id == Subscription.account_id)
        .join(reseller, reseller.id == Account.parent_id)
        .join(Product, Product.id == Subscription.product_id)
        .outerjoin(MicrosoftTenant, MicrosoftTenant.account_id == Account.id)
        .outerjoin(windows, windows.c.subscription_id == Subscription.id)
        .outerjoin(next_offer, next_offer.id == Subscription.next_availability_id)
        .outerjoin(next_product, next_product.id == next_offer.product_id)
        .where(_customers_of(account))
        .order_by(Account.name, Account.id, Product.name, Subscription.id)
    )


def subscription_rows(account: Account, seen: csp_report.Visibility) -> Iterator[tuple]:
    keys = [c.key for c in csp_report.money_columns(seen, workbook=True)]
    for (
        reseller,
        customer,
        prefix,
        product,
        sku,
        assigned,
        quantity,
        term,
        cycle,
        renew_on,
        auto_renew,
        window_end,
        next_offer_id,
        next_quantity,
        next_name,
        next_term,
        next_cycle,
        price,
        cost,
        ms_cost,
    ) in _stream(_subscription_query(account)):
        change = None
        if next_offer_id is not None or next_quantity is not None:
            change = (
                scheduled_change_words(next_name, next_term, next_cycle, next_quantity or quantity)
                if next_offer_id is not None
                else scheduled_change_words(product, term, cycle, next_quantity)
            )
        money = csp_report.figures(price, cost, ms_cost, quantity, cycle)
        yield (
            reseller,
            customer,
            f"{prefix}.onmicrosoft.com" if prefix else None,
            product,
            sku,
            assigned,
            quantity,
            TERM_LABELS[term],
            FREQUENCY_LABELS[cycle],
            renew_on,
            "Yes" if auto_renew else "No",
            window_end,
            change,
            *(money[key] for key in keys),
        )


def count_subscription_rows(account: Account) -> int:
    return db.session.scalar(
        select(func.count(Subscription.id))
        .join(Account, Account.id == Subscription.account_id)
        .where(_customers_of(account))
    )


M365_COLUMNS = [
    Column("Reseller", width=24),
    Column("Customer", width=28),
    Column("Display name", width=26),
    Column("User name", width=40),
    Column("Status", width=10),
    Column("Licences held", width=50),
]
PORTAL_COLUMNS = [
    Column("Reseller", width=24),
    Column("Customer", width=28),
    Column("Name", width=24),
    Column("Email", width=34),
    Column("Mobile", width=16),
    Column("Status", width=10),
    Column("Last login", DATETIME, 18),
    Column("Admin", width=8),
    Column("Master Admin", width=12),
    Column("CP3 enabled", width=12),
]


def m365_user_rows(account: Account) -> Iterator[tuple]:
    """Users and the licences they hold: two streams in user order, merged (constant memory at any size)."""
    reseller = aliased(Account)
    users = _stream(
        select(
            M365User.id,
            reseller.name,
            Account.name,
            M365User.display_name,
            M365User.user_principal_name,
            M365User.status,
        )
        .join(Account, Account.id == M365User.account_id)
        .join(reseller, reseller.id == Account.parent_id)
        .where(_customers_of(account))
        .order_by(M365User.id)
    )
    held = iter(
        _stream(
            select(LicenceAssignment.m365_user_id, Product.name)
            .join(Subscription, Subscription.id == LicenceAssignment.subscription_id)
            .join(Product, Product.id == Subscription.product_id)
            .join(Account, Account.id == LicenceAssignment.account_id)
            .where(_customers_of(account))
            .order_by(LicenceAssignment.m365_user_id, Product.name)
        )
    )
    pending = next(held, None)
    for user_id, reseller_name, customer, display, upn, status in users:
        names = []
        while pending is not None and pending[0] < user_id:
            pending = next(held, None)
        while pending is not None and pending[0] == user_id:
            names.append(pending[1])
            pending = next(held, None)
        yield reseller_name, customer, display, upn, status.capitalize(), ", ".join(names)


def portal_user_rows(account: Account) -> Iterator[tuple]:
    """One row per membership: a person with access to three customers is three rows, each with that customer's
    flags (a login shared by customers, such as the reseller's IT support, shows under each)."""
    reseller = aliased(Account)
    for (
        reseller_name,
        customer,
        first,
        last,
        email,
        mobile,
        login_active,
        login_deleted,
        active,
        deleted,
        last_login,
        admin,
        master,
        cp3,
    ) in _stream(
        select(
            reseller.name,
            Account.name,
            PortalUser.first_name,
            PortalUser.last_name,
            PortalUser.email,
            PortalUser.mobile,
            PortalUser.active,
            PortalUser.deleted_at,
            Membership.active,
            Membership.deleted_at,
            PortalUser.last_login,
            Membership.is_admin,
            Membership.is_master_admin,
            Membership.cp3_enabled,
        )
        .select_from(Membership)
        .join(PortalUser, PortalUser.id == Membership.user_id)
        .join(Account, Account.id == Membership.account_id)
        .join(reseller, reseller.id == Account.parent_id)
        .where(_customers_of(account))
        .order_by(Account.name, Account.id, Membership.id)
    ):
        gone = deleted or login_deleted
        status = "Deleted" if gone else ("Active" if active and login_active else "Disabled")
        yield (
            reseller_name,
            customer,
            f"{first} {last}",
            address_of(email),
            mobile,
            status,
            last_login,
            "Yes" if admin else "No",
            "Yes" if master else "No",
            "Yes" if cp3 else "No",
        )


def count_user_rows(account: Account) -> int:
    m365 = db.session.scalar(
        select(func.count(M365User.id)).join(Account, Account.id == M365User.account_id).where(_customers_of(account))
    )
    portal = db.session.scalar(
        select(func.count(Membership.id))
        .join(Account, Account.id == Membership.account_id)
        .where(_customers_of(account))
    )
    return m365 + portal


def report_sheets(kind: str, account: Account, with_costs: bool, with_ms_costs: bool = False) -> list[Sheet]:
    """``with_costs``: the buy price and margin (COSTS); ``with_ms_costs``: Microsoft's cost too (MICROSOFT_COSTS)."""
    if kind == "subscriptions":
        seen = csp_report.Visibility(costs=with_costs, microsoft_costs=with_costs and with_ms_costs)
        return [Sheet("Subscriptions", subscription_columns(seen), subscription_rows(account, seen))]
    return [
        Sheet("Microsoft 365 users", M365_COLUMNS, m365_user_rows(account)),
        Sheet("Portal users", PORTAL_COLUMNS, portal_user_rows(account)),
    ]


def count_rows(kind: str, account: Account) -> int:
    return count_subscription_rows(account) if kind == "subscriptions" else count_user_rows(account)


def report_title(kind: str, account: Account, now: dt.datetime) -> str:
    name = "Subscription report" if kind == "subscriptions" else "User report"
    zone = current_app.config["PORTAL_TIMEZONE"]
    return f"{name} — {account.name} — exported {local_time(now):%d/%m/%Y %I:%M %p} ({zone})"


def file_name(kind: str, account: Account, now: dt.datetime) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", account.name.lower()).strip("-") or f"account-{account.id}"
    return f"{slug}-{kind}-{local_time(now):%Y-%m-%d}.xlsx"


def money(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"))


@dataclasses.dataclass(frozen=True)
class Download:
    """A workbook made on request, ready to send."""

    data: BytesIO
    name: str


def export_report_now(
    kind: str, account: Account, with_costs: bool, rows: int, *, with_ms_costs: bool = False
) -> Download:
    """Export Subscription / Export Users at once (small enough not to need a job): the workbook, and the event that
    it was exported (committed before the file goes out)."""
    now = utcnow()
    with tempfile.NamedTemporaryFile(suffix=".xlsx") as handle:  # constant_memory writes through a file
        sheets = report_sheets(kind, account, with_costs, with_ms_costs)
        write_workbook(handle.name, report_title(kind, account, now), sheets)
        data = BytesIO(Path(handle.name).read_bytes())
    record_event(
        "report.exported",
        account_id=account.id,
        target=account,
        summary=f"{kind.capitalize()} report of {account.name} exported ({rows} rows)",
    )
    db.session.commit()
    return Download(data, file_name(kind, account, now))


def export_usage_chart(account: Account, series: dict) -> Download:
    """The Usage Chart's data (licences used and bought, monthly spend per month), and its event (committed)."""
    usage = Sheet(
        "Licences",
        [
            Column("Month", width=12),
            Column("Product", width=34),
            Column("Used", NUMBER, 10),
            Column("Bought", NUMBER, 10),
        ],
        [
            (month, name, data["used"][i], data["bought"][i])
            for name, data in sorted(series["products"].items())
            for i, month in enumerate(series["months"])
        ],
    )
    spend = Sheet(
        "Monthly spend",
        [Column("Month", width=12), Column("Monthly spend", MONEY, 16)],
        list(zip(series["months"], series["spend"], strict=True)),
    )
    buffer = BytesIO()
    write_workbook(buffer, f"Usage chart — {account.name}", [usage, spend])
    buffer.seek(0)
    record_event(
        "report.exported",
        account_id=account.id,
        target=account,
        summary=f"Usage chart data of {account.name} exported",
    )
    db.session.commit()
    return Download(buffer, file_name("usage", account, utcnow()))

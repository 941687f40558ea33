"""Issue 14, item 4: the accounting export — an issuer's issued invoices of a month as Xero's sales-invoice import
CSV (app/services/xero.py): Xero's headers, lines that add up to each invoice, at most 500 invoices a file, text
that cannot become a formula, only the issuer's side may download it, and the CLI writes the files."""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from collections import defaultdict
from decimal import Decimal

import pytest
from sqlalchemy import String, cast, func, insert, literal, select, update

from app import clock
from app.models.accounts import CUSTOMER, Account
from app.models.billing import Invoice, InvoiceLine
from app.models.events import Event
from app.services import billing, xero
from app.services.accounts import create_account
from tests.conftest import csrf_token, unscoped

XERO_HEADERS = [
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
]


def _month() -> dt.date:
    """The month the world's subscriptions' purchases are in the charge ledger (recorded when made, in UTC)."""
    return clock.utcnow().date().replace(day=1)


def _rows(data: bytes) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(data.decode("utf-8")))
    return list(reader.fieldnames or []), list(reader)


def _billed_and_issued(world, *, account_code="4100", tax_type="15% GST on Income") -> dt.date:
    """The month's billing run, reseller A's invoices issued, its Xero settings set."""
    month = _month()
    reseller = world.accounts["reseller_a"].id
    with unscoped() as session:
        billing.run(month)
        settings = billing.profile(reseller)
        settings.xero_account_code, settings.xero_tax_type = account_code, tax_type
        session.commit()
        assert billing.issue_month(month, issuer_id=reseller) >= 1
    return month


def _bulk_issued(issuer_id: int, buyer_id: int, month: dt.date, count: int, *, description="Seats", start=1) -> None:
    """``count`` issued invoices of one line each (3 seats at an effective 9.333333 = 27.99), written in bulk: drafts
    with their lines, then issued in one UPDATE (lines cannot be added to an issued invoice)."""
    today = clock.today()
    with unscoped() as session:
        ids = (
            session.execute(
                insert(Invoice).returning(Invoice.id),
                [
                    {
                        "kind": "invoice",
                        "issuer_id": issuer_id,
                        "buyer_id": buyer_id,
                        "month": month,
                        "status": "draft",
                        "currency": "NZD",
                        "tax_rate": Decimal("0.15"),
                        "subtotal": Decimal("27.99"),
                        "tax": Decimal("4.20"),
                        "total": Decimal("32.19"),
                    }
                    for _ in range(count)
                ],
            )
            .scalars()
            .all()
        )
        session.execute(
            insert(InvoiceLine),
            [
                {
                    "invoice_id": invoice_id,
                    "issuer_id": issuer_id,
                    "buyer_id": buyer_id,
                    "position": 1,
                    "customer_id": buyer_id,
                    "subscription_id": None,
                    "description": description,
                    "sku": "TEST-BASIC",
                    "charge_type": "addQuantity",
                    "term": "P1Y",
                    "billing_cycle": "monthly",
                    "charge_start": month + dt.timedelta(days=2),
                    "charge_end": month + dt.timedelta(days=29),
                    "days": 28,
                    "cycle_days": 30,
                    "quantity": 3,
                    "unit_price": Decimal("10.00"),
                    "effective_unit_price": Decimal("9.333333"),
                    "amount": Decimal("27.99"),
                }
                for invoice_id in ids
            ],
        )
        session.execute(
            update(Invoice)
            .where(Invoice.id.in_(ids))
            .values(
                status="issued",
                number=literal("T-") + cast(Invoice.id + 100000 * start, String),
                issue_date=today,
                due_date=today + dt.timedelta(days=20),
            )
        )
        session.commit()


# -- the file ------------------------------------------------------------------------------------------------------


def test_the_csv_has_xeros_headers_and_each_invoices_lines_add_up_to_it(app, world):
    month = _billed_and_issued(world)
    reseller = world.accounts["reseller_a"].id
    with unscoped() as session:
        files = xero.export(month, reseller)
        invoices, buyers = {}, {}
        for i in session.scalars(
            select(Invoice).where(Invoice.issuer_id == reseller, Invoice.month == month, Invoice.status == "issued")
        ):
            invoices[i.number] = (i.issue_date, i.due_date, i.subtotal, i.tax)
            buyer = session.get(Account, i.buyer_id)
            buyers[i.number] = (buyer.name, buyer.contact_email or "", buyer.country)
        line_count = session.scalar(
            select(func.count(InvoiceLine.id))
            .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
            .where(Invoice.issuer_id == reseller, Invoice.month == month, Invoice.status == "issued")
        )
    assert len(files) == 1
    name, data = files[0]
    assert name == f"xero-APL-{month:%Y-%m}.csv"
    headers, rows = _rows(data)
    assert headers == XERO_HEADERS
    assert len(rows) == line_count > 0
    per_invoice = defaultdict(Decimal)
    tax = defaultdict(Decimal)
    for row in rows:
        quantity, unit = int(row["*Quantity"]), Decimal(row["*UnitAmount"])
        assert unit == unit.quantize(Decimal("0.01"))  # the cent, as the line's amount is computed
        per_invoice[row["*InvoiceNumber"]] += quantity * unit
        tax[row["*InvoiceNumber"]] += Decimal(row["TaxAmount"])
        issued_on, due_on, _subtotal, _tax = invoices[row["*InvoiceNumber"]]
        assert row["*InvoiceDate"] == issued_on.strftime("%d/%m/%Y")
        assert row["*DueDate"] == due_on.strftime("%d/%m/%Y")
        assert (row["*ContactName"], row["EmailAddress"], row["POCountry"]) == buyers[row["*InvoiceNumber"]]
        assert (row["*AccountCode"], row["*TaxType"], row["Currency"]) == ("4100", "15% GST on Income", "NZD")
        assert row["Total"] == ""  # Xero calculates it (tax exclusive amounts)
    assert set(per_invoice) == set(invoices)
    for number, (_issued, _due, subtotal, gst) in invoices.items():
        assert per_invoice[number] == subtotal
        assert tax[number] == gst  # GST rounded once per invoice, as the invoice has it


def test_drafts_are_not_exported_and_a_month_with_none_issued_says_to_issue_them_first(app, world):
    month = _month()
    reseller = world.accounts["reseller_a"].id
    with unscoped():
        billing.run(month)
        with pytest.raises(xero.ExportError, match="issue them first"):
            xero.export(month, reseller)
        with pytest.raises(xero.ExportError, match="YYYY-MM"):
            xero.export("November", reseller)
    with unscoped() as session:
        drafts = session.scalars(select(Invoice).where(Invoice.issuer_id == reseller, Invoice.status == "draft")).all()
        assert drafts and all(d.number is None for d in drafts)


def test_a_credit_note_exports_negative_unit_amounts_and_adds_up(app, world):
    month = _billed_and_issued(world)
    reseller = world.accounts["reseller_a"].id
    with unscoped() as session:
        original = session.scalars(
            select(Invoice).where(Invoice.issuer_id == reseller, Invoice.status == "issued").order_by(Invoice.id)
        ).first()
        note = billing.credit_note(original, reason="Wrong customer")
        billing.issue(note)
        note_number, original_number, subtotal = note.number, original.number, note.subtotal
        data = xero.export(month, reseller)[0][1]
    _headers, rows = _rows(data)
    credit = [r for r in rows if r["*InvoiceNumber"] == note_number]
    assert credit and all(Decimal(r["*UnitAmount"]) < 0 and int(r["*Quantity"]) > 0 for r in credit)
    assert sum(int(r["*Quantity"]) * Decimal(r["*UnitAmount"]) for r in credit) == subtotal < 0
    # A number is not text: a negative amount keeps its minus sign, without the apostrophe text gets.
    assert not any(r["*UnitAmount"].startswith("'") for r in credit)
    assert credit[0]["Reference"] == f"Credit note for {original_number}"


def test_501_invoices_make_two_files_and_no_invoice_is_split(app, world):
    month = _month()
    reseller, customer = world.accounts["reseller_a"].id, world.accounts["customer_a"].id
    _bulk_issued(reseller, customer, month, 501)
    with unscoped():
        files = xero.export(month, reseller)
    assert [name for name, _ in files] == [f"xero-APL-{month:%Y-%m}-1.csv", f"xero-APL-{month:%Y-%m}-2.csv"]
    numbers = []
    for _name, data in files:
        headers, rows = _rows(data)
        assert headers == XERO_HEADERS
        numbers.append({r["*InvoiceNumber"] for r in rows})
        for row in rows:
            assert int(row["*Quantity"]) * Decimal(row["*UnitAmount"]) == Decimal("27.99")
    assert [len(n) for n in numbers] == [500, 1]
    assert not numbers[0] & numbers[1]  # no invoice in both files


def test_text_that_could_be_a_formula_is_neutralised(app, world):
    month = _month()
    reseller = world.accounts["reseller_a"].id
    with unscoped() as session:
        parent = session.get(Account, reseller)
        evil = create_account(
            CUSTOMER,
            '=HYPERLINK("http://evil.example","Click")',
            parent,
            contact_email="@evil.example",
            address_line1="+64 1 Main Street",
            city="-Wellington",
        )
        session.commit()
        evil_id = evil.id
    _bulk_issued(reseller, evil_id, month, 1, description="=cmd|' /C calc'!A0")
    with unscoped():
        _headers, rows = _rows(xero.export(month, reseller)[0][1])
    row = rows[0]
    assert row["*ContactName"] == '\'=HYPERLINK("http://evil.example","Click")'
    assert row["EmailAddress"] == "'@evil.example"
    assert row["POAddressLine1"] == "'+64 1 Main Street"
    assert row["POCity"] == "'-Wellington"
    assert row["*Description"].startswith("'=cmd|")
    assert (row["*Quantity"], row["*UnitAmount"], row["TaxAmount"]) == ("3", "9.33", "4.20")


# -- the download --------------------------------------------------------------------------------------------------


def _download(client, issuer_id: int, month: dt.date):
    return client.post(f"/billing/export/{issuer_id}/{month:%Y-%m}", data={"csrf_token": csrf_token(client)})


def _export_events() -> int:
    with unscoped() as session:
        return len(session.scalars(select(Event).where(Event.action == "invoice.exported")).all())


def test_a_resellers_csp_admin_downloads_its_own_export_and_it_is_audited(app, world, reseller_a_admin_client):
    month = _billed_and_issued(world)
    reseller = world.accounts["reseller_a"].id
    response = _download(reseller_a_admin_client, reseller, month)
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert f"xero-APL-{month:%Y-%m}.csv" in response.headers["Content-Disposition"]
    with unscoped():
        expected = xero.export(month, reseller)[0][1]
    assert response.data == expected
    with unscoped() as session:
        event = session.scalars(select(Event).where(Event.action == "invoice.exported")).one()
        assert event.account_id == reseller and event.actor_id == world.users["reseller_a_admin"].id
    # GET changes nothing and serves nothing.
    assert reseller_a_admin_client.get(f"/billing/export/{reseller}/{month:%Y-%m}").status_code == 405


def test_operator_staff_download_a_resellers_large_month_as_a_zip(app, world, ops_admin_client):
    month = _month()
    reseller, customer = world.accounts["reseller_a"].id, world.accounts["customer_a"].id
    _bulk_issued(reseller, customer, month, 501)
    response = _download(ops_admin_client, reseller, month)
    assert response.status_code == 200
    assert response.mimetype == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.data))
    assert archive.namelist() == [f"xero-APL-{month:%Y-%m}-1.csv", f"xero-APL-{month:%Y-%m}-2.csv"]
    counts = [len({r["*InvoiceNumber"] for r in _rows(archive.read(n))[1]}) for n in archive.namelist()]
    assert counts == [500, 1]


def test_operator_staff_download_the_operators_invoices_to_resellers(app, world, ops_admin_client):
    month = _month()
    operator = world.accounts["operator"].id
    with unscoped():
        billing.run(month)
        assert billing.issue_month(month, issuer_id=operator) == 2  # one to each reseller
    response = _download(ops_admin_client, operator, month)
    assert response.status_code == 200 and response.mimetype == "text/csv"
    _headers, rows = _rows(response.data)
    assert {r["*ContactName"] for r in rows} == {world.accounts["reseller_a"].name, world.accounts["reseller_b"].name}
    with unscoped() as session:
        subtotals = dict(
            session.execute(select(Invoice.number, Invoice.subtotal).where(Invoice.issuer_id == operator)).all()
        )
    added = defaultdict(Decimal)
    for row in rows:
        added[row["*InvoiceNumber"]] += int(row["*Quantity"]) * Decimal(row["*UnitAmount"])
    assert added == subtotals  # at the resellers' buy prices (Microsoft's cost is never in the file)


@pytest.mark.parametrize(
    ("who", "issuer"),
    [
        ("reseller_b_admin", "reseller_a"),  # another reseller's export
        ("reseller_a_admin", "operator"),  # the invoices it was billed: the operator's side exports those
        ("reseller_a_user", "reseller_a"),  # a Partner User may not issue, nor export
        ("customer_a_master_admin", "reseller_a"),  # a buyer
    ],
)
def test_only_the_issuers_side_may_export_others_get_404_and_nothing(app, world, login, who, issuer):
    month = _billed_and_issued(world)
    with unscoped():
        operator = world.accounts["operator"].id
        assert billing.issue_month(month, issuer_id=operator) >= 1
    client = login(world.users[who].email)
    before = _export_events()
    response = _download(client, world.accounts[issuer].id, month)
    assert response.status_code == 404
    assert "csv" not in response.mimetype and b"*ContactName" not in response.data
    assert _export_events() == before


def test_a_month_with_nothing_issued_is_said_not_downloaded(app, world, reseller_a_admin_client):
    month = _month()
    with unscoped():
        billing.run(month)
    response = _download(reseller_a_admin_client, world.accounts["reseller_a"].id, month)
    assert response.status_code == 302
    page = reseller_a_admin_client.get(response.location, follow_redirects=True).text
    assert "issue them first" in page
    assert _export_events() == 0


# -- the CLI -------------------------------------------------------------------------------------------------------


def test_the_cli_writes_the_files_and_prints_their_names(app, world, tmp_path):
    month = _month()
    reseller, customer = world.accounts["reseller_a"].id, world.accounts["customer_a"].id
    _bulk_issued(reseller, customer, month, 501)
    result = app.test_cli_runner().invoke(
        args=[
            "portal",
            "billing",
            "export",
            "--month",
            f"{month:%Y-%m}",
            "--issuer",
            str(reseller),
            "--format",
            "xero",
            "--out",
            str(tmp_path),
        ]
    )
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in tmp_path.iterdir())
    assert len(written) == 2 and written[0].endswith("-1.csv") and written[1].endswith("-2.csv")
    assert result.output.split() == [str(tmp_path / name) for name in written]
    total = sum(len(_rows((tmp_path / name).read_bytes())[1]) for name in written)
    assert total == 501
    assert _export_events() == 1
    # Nothing issued for another month: a clear refusal, no file.
    later = (month + dt.timedelta(days=40)).replace(day=1)
    refused = app.test_cli_runner().invoke(
        args=["portal", "billing", "export", "--month", f"{later:%Y-%m}", "--issuer", str(reseller)]
    )
    assert refused.exit_code != 0 and "issue them first" in refused.output

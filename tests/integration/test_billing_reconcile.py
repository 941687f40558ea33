"""Reconciliation with Microsoft's billed data (issue 14, item 5): the demo's November 2026 matches the sandbox's
billed reconciliation data to the cent; each kind of difference injected into Microsoft's lines is found exactly
once; files (JSON lines, gzipped, Microsoft's CSV) import, a bad one imports nothing and says which line; the
Partner Center client against the fake returns the sandbox's lines; the page is operator staff's only."""

from __future__ import annotations

import copy
import csv
import datetime as dt
import gzip
import io
import re
from decimal import Decimal

import openpyxl
import pytest
import time_machine
from sqlalchemy import func, select

from app.csp import get_provider
from app.csp.partner_center import PartnerCenterProvider
from app.extensions import db
from app.models.billing import MicrosoftBilledLine
from app.models.events import Event
from app.services import billing_reconcile
from app.services.billing_reconcile import ReconcileError, import_file, import_lines, reconcile
from app.services.demo import seed_demo
from security import scoping
from tests.conftest import csrf_token, login_to, unscoped
from tests.fake_partner_center_billing import json_line

NOVEMBER = dt.date(2026, 11, 1)
INVOICE = "G2026110001"
SEEDED_AT = "2026-12-01T23:00:00+00:00"  # 2 December 2026, noon in Auckland: November is billed
BROWSED_AT = "2026-12-01T23:05:00+00:00"
PASSWORD = "demo-password-for-tests"
DEMO_CHARGES = 7  # the demo's November charges (the sandbox's 7 subscriptions)


@pytest.fixture
def demo(app):
    with time_machine.travel(SEEDED_AT, tick=False), app.app_context(), scoping.bypass("test: demo"):
        seed_demo(password=PASSWORD)
        db.session.commit()
    return app


def _sandbox_lines(app) -> list[dict]:
    with app.app_context():
        return list(get_provider().billed_reconciliation_lines(INVOICE))


def _import_and_reconcile(app, lines):
    with app.app_context(), scoping.bypass("test: reconcile"):
        import_lines(NOVEMBER, lines, INVOICE)
        return reconcile(NOVEMBER)


def _matches() -> dict[str | None, int]:
    with unscoped() as session:
        rows = session.execute(
            select(MicrosoftBilledLine.match, func.count())
            .where(MicrosoftBilledLine.month == NOVEMBER)
            .group_by(MicrosoftBilledLine.match)
        ).all()
        return dict(rows)


def _differences(report) -> dict[str, int]:
    return {c: n for c, n in report.counts.items() if c != "matched" and n}


def _reprice(line: dict, unit_price: Decimal) -> dict:
    changed = dict(line, unitPrice=unit_price, effectiveUnitPrice=unit_price)
    changed["subtotal"] = unit_price.quantize(Decimal("0.01")) * line["billableQuantity"]
    return changed


def test_the_demo_matches_and_each_injected_difference_is_found_exactly_once(demo, tmp_path):
    with time_machine.travel(BROWSED_AT, tick=True):  # 2 December in Auckland: November is billed, December not
        _scenarios(demo, tmp_path)


def _scenarios(app, tmp_path) -> None:
    with app.app_context(), scoping.bypass("test: fetch"), pytest.raises(ReconcileError, match="no invoice for Dec"):
        billing_reconcile.fetch_from_provider(dt.date(2026, 12, 1))
    with app.app_context(), scoping.bypass("test: fetch"):
        assert billing_reconcile.fetch_from_provider(NOVEMBER) == DEMO_CHARGES
        report = reconcile(NOVEMBER)
    assert report.difference_count == 0 and report.counts["matched"] == DEMO_CHARGES
    assert report.microsoft_total == report.portal_total == Decimal("425.84")
    assert _matches() == {"matched": DEMO_CHARGES}

    lines = _sandbox_lines(app)
    assert len(lines) == DEMO_CHARGES and {line["invoiceNumber"] for line in lines} == {INVOICE}

    # The done-when: 1 after a price is changed in the sandbox's file (a gzipped JSON-lines file).
    changed = copy.deepcopy(lines)
    changed[0] = _reprice(changed[0], changed[0]["unitPrice"] + Decimal("0.50"))
    path = tmp_path / "G2026110001.jsonl.gz"
    path.write_bytes(gzip.compress("".join(json_line(line) + "\n" for line in changed).encode()))
    with app.app_context(), scoping.bypass("test: file"):
        assert import_file(NOVEMBER, path) == DEMO_CHARGES
        report = reconcile(NOVEMBER)
    assert _differences(report) == {"price_differs": 1}
    (difference,) = report.differences
    assert difference.key[0] == changed[0]["subscriptionId"] and difference.microsoft.unit_price == (
        lines[0]["unitPrice"] + Decimal("0.50")
    )
    assert difference.portal.unit_price == lines[0]["unitPrice"]
    assert _matches() == {"matched": DEMO_CHARGES - 1, "price_differs": 1}

    # Only the subtotal changed (the unit price as the portal has it): still a price difference.
    changed = copy.deepcopy(lines)
    changed[1]["subtotal"] += Decimal("0.01")
    assert _differences(_import_and_reconcile(app, changed)) == {"price_differs": 1}

    # Every kind at once, each exactly once: a price, a quantity, a line only Microsoft has, one it lacks.
    changed = copy.deepcopy(lines)
    changed[0] = _reprice(changed[0], changed[0]["unitPrice"] + Decimal("1"))
    seats = changed[1]["quantity"] + 1
    changed[1].update(quantity=seats, billableQuantity=seats)
    changed[1]["subtotal"] = changed[1]["effectiveUnitPrice"].quantize(Decimal("0.01")) * seats
    extra = dict(changed[2], subscriptionId="00000000-0000-4000-8000-0000000000ff", chargeType="new")
    removed = changed.pop(3)
    changed.append(extra)
    report = _import_and_reconcile(app, changed)
    assert report.counts == {
        "matched": DEMO_CHARGES - 3,
        "price_differs": 1,
        "quantity_differs": 1,
        "only_microsoft": 1,
        "only_portal": 1,
    }
    by_class = {d.match: d for d in report.differences}
    assert by_class["quantity_differs"].microsoft.quantity == by_class["quantity_differs"].portal.quantity + 1
    assert by_class["only_microsoft"].portal is None and by_class["only_microsoft"].key[0] == extra["subscriptionId"]
    assert by_class["only_portal"].microsoft is None and by_class["only_portal"].key[0] == removed["subscriptionId"]
    assert by_class["only_portal"].portal.subtotal == removed["subtotal"]
    assert report.portal_totals["only_portal"] == removed["subtotal"]
    assert report.total_difference == sum(d.amount for d in report.differences)
    assert _matches() == {
        "matched": DEMO_CHARGES - 3,
        "price_differs": 1,
        "quantity_differs": 1,
        "only_microsoft": 1,
    }  # the portal-only charge has no Microsoft line to mark

    # A charge Microsoft billed on a subscription the portal has, of a kind the portal did not charge: found once
    # (by its subscription's chunk), not a second time among the subscriptions the portal lacks.
    changed = [*copy.deepcopy(lines), dict(lines[5], chargeType="renew")]
    report = _import_and_reconcile(app, changed)
    assert _differences(report) == {"only_microsoft": 1} and report.counts["matched"] == DEMO_CHARGES
    assert report.differences[0].key == (lines[5]["subscriptionId"], "renew", report.differences[0].key[2])

    # The same key twice at Microsoft (two lines): summed, so two halves of a charge match the portal's one.
    changed = copy.deepcopy(lines)
    half = dict(changed[1], quantity=changed[1]["quantity"] - 1, billableQuantity=changed[1]["quantity"] - 1)
    half["subtotal"] = half["effectiveUnitPrice"].quantize(Decimal("0.01")) * half["quantity"]
    rest = dict(changed[1], quantity=1, billableQuantity=1)
    rest["subtotal"] = rest["effectiveUnitPrice"].quantize(Decimal("0.01"))
    changed[1:2] = [half, rest]
    report = _import_and_reconcile(app, changed)
    assert report.difference_count == 0 and report.lines == DEMO_CHARGES + 1
    assert _matches() == {"matched": DEMO_CHARGES + 1}

    # Microsoft's CSV download (PascalCase headers, US dates) of the unchanged lines: everything matches again.
    header = [name[:1].upper() + name[1:] if not name.startswith("pc") else "PC" + name[2:] for name in lines[0]]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    for line in lines:
        row = []
        for name, value in line.items():
            if name in ("chargeStartDate", "chargeEndDate"):
                day = dt.date.fromisoformat(value[:10])
                value = f"{day.month}/{day.day}/{day.year} 12:00:00 AM"
            row.append(str(value))
        writer.writerow(row)
    csv_path = tmp_path / "recon.csv"
    csv_path.write_bytes(b"\xef\xbb\xbf" + out.getvalue().encode())
    with app.app_context(), scoping.bypass("test: csv"):
        assert import_file(NOVEMBER, csv_path) == DEMO_CHARGES
        assert reconcile(NOVEMBER).difference_count == 0

    # The command line: a file with a changed price, then Microsoft (the sandbox); exit code 0 either way.
    changed = copy.deepcopy(lines)
    changed[0] = _reprice(changed[0], changed[0]["unitPrice"] + Decimal("0.50"))
    jsonl = tmp_path / "changed.jsonl"
    jsonl.write_text("".join(json_line(line) + "\n" for line in changed))
    runner = app.test_cli_runner()
    result = runner.invoke(args=["portal", "billing", "reconcile", "--month", "2026-11", "--file", str(jsonl)])
    assert result.exit_code == 0, result.output
    assert "Price differs: 1" in result.output and "1 difference(s)" in result.output
    assert changed[0]["subscriptionId"] in result.output
    result = runner.invoke(args=["portal", "billing", "reconcile", "--month", "2026-11"])
    assert result.exit_code == 0, result.output
    assert f"Matched: {DEMO_CHARGES}" in result.output and "0 difference(s)" in result.output


def test_a_bad_file_says_which_line_and_imports_nothing(demo, tmp_path):
    app = demo
    lines = _sandbox_lines(app)
    _import_and_reconcile(app, lines)
    before = _matches()

    bad = copy.deepcopy(lines)
    del bad[2]["chargeStartDate"]
    with app.app_context(), scoping.bypass("test: bad"), pytest.raises(ReconcileError) as caught:
        import_lines(NOVEMBER, bad, INVOICE)
    assert re.search(r"line 3 \(subscription [0-9a-f-]+\): chargeStartDate is missing", str(caught.value))

    bad = copy.deepcopy(lines)
    bad[5]["subtotal"] = "twelve dollars"
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json_line(line) + "\n" for line in bad))
    with app.app_context(), scoping.bypass("test: bad"), pytest.raises(ReconcileError, match="line 6 .*subtotal"):
        import_file(NOVEMBER, path)
    result = app.test_cli_runner().invoke(
        args=["portal", "billing", "reconcile", "--month", "2026-11", "--file", str(path)]
    )
    assert result.exit_code == 1 and "line 6" in result.output and "'twelve dollars' is not a number" in result.output

    path.write_text(json_line(lines[0]) + "\n{not json\n")
    with app.app_context(), scoping.bypass("test: bad"), pytest.raises(ReconcileError, match="line 2: not JSON"):
        import_file(NOVEMBER, path)

    path.write_text("Name,Amount\nx,1\n")
    with app.app_context(), scoping.bypass("test: bad"), pytest.raises(ReconcileError, match="SubscriptionId"):
        import_file(NOVEMBER, path)

    assert _matches() == before  # the earlier import stands, untouched
    with unscoped() as session:
        assert session.scalar(select(func.count()).select_from(MicrosoftBilledLine)) == DEMO_CHARGES


def test_partner_center_against_the_fake_gives_the_sandboxs_lines_and_the_page_shows_them(demo, fake_partner_center):
    app = demo
    fake = fake_partner_center
    lines = _sandbox_lines(app)
    fake.add_invoice("G2026100001", "2026-10-01", "2026-10-31", [])
    fake.add_invoice(INVOICE, "2026-11-01", "2026-11-30", lines)
    provider = PartnerCenterProvider.from_config(fake.config())

    assert provider.billed_invoices(NOVEMBER) == [INVOICE]
    assert list(provider.billed_reconciliation_lines(INVOICE)) == lines  # the same lines, Decimals and all
    assert len(fake.calls("GET", "/v1.0/reports/partners/billing/operations/*")) == 2  # a "running" poll first

    changed = copy.deepcopy(lines)
    changed[0] = _reprice(changed[0], changed[0]["unitPrice"] + Decimal("0.50"))
    fake.billed_lines[INVOICE] = changed
    stray = dict(lines[1], subscriptionId="00000000-0000-4000-8000-00000000beef", invoiceNumber="G2026110002")
    fake.add_invoice("G2026110002", "2026-11-01", "2026-11-30", [stray])  # a second invoice for November
    with app.app_context(), scoping.bypass("test: partner center"):
        assert billing_reconcile.fetch_from_provider(NOVEMBER, provider) == DEMO_CHARGES + 1
        assert _differences(reconcile(NOVEMBER)) == {"price_differs": 1, "only_microsoft": 1}
        invoices = set(db.session.scalars(select(MicrosoftBilledLine.invoice_number)))
    assert invoices == {INVOICE, "G2026110002"}

    with time_machine.travel(BROWSED_AT, tick=True):  # after the seeding (its sign-in times), the clock running
        _browse_as_ops(app, changed, lines, stray)


def _browse_as_ops(app, changed: list[dict], lines: list[dict], stray: dict) -> None:
    ops = login_to(app, "ops@mycloudstore.co.nz", PASSWORD)
    page = ops.get("/billing/reconciliation/?month=2026-11")
    assert page.status_code == 200, page.location
    assert re.search(r'id="summary-price_differs">.*?class="text-right count">1<', page.text, re.S)
    assert re.search(r'id="summary-matched">.*?class="text-right count">6<', page.text, re.S)
    assert re.search(r'id="summary-only_microsoft">.*?class="text-right count">1<', page.text, re.S)
    assert changed[0]["subscriptionId"] in page.text and "Fetch from Microsoft and reconcile" in page.text
    assert changed[0]["customerName"] in page.text

    workbook = ops.get("/billing/reconciliation/export?month=2026-11")
    assert workbook.status_code == 200 and workbook.mimetype.endswith("spreadsheetml.sheet")
    sheet = openpyxl.load_workbook(io.BytesIO(workbook.data)).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:3] == ("Difference", "Subscription", "Charge type") and len(rows) == 3
    (price,) = [row for row in rows if row[0] == "Price differs"]
    assert price[1] == changed[0]["subscriptionId"]
    assert Decimal(str(price[9])) == changed[0]["subtotal"] and Decimal(str(price[15])) == lines[0]["subtotal"]
    (stray_row,) = [row for row in rows if row[0] == "Only at Microsoft"]
    assert stray_row[1] == stray["subscriptionId"] and stray_row[10] is None  # no portal side

    # The button: fetched from the app's provider (the sandbox) and reconciled — everything matches again.
    answer = ops.post(
        "/billing/reconciliation/fetch",
        data={"csrf_token": csrf_token(ops, "/billing/reconciliation/"), "month": "2026-11"},
    )
    assert answer.status_code == 302 and "month=2026-11" in answer.location
    assert _matches() == {"matched": DEMO_CHARGES}
    assert "everything matches" in ops.get(answer.location).text
    with unscoped() as session:  # the change is in the operator's event log, by the user who asked for it
        events = session.scalars(select(Event).where(Event.action.like("billing.reconciliation.%"))).all()
        mine = [e for e in events if e.actor_id is not None]
        assert {e.action for e in mine} == {"billing.reconciliation.imported", "billing.reconciliation.run"}
        assert all("November 2026" in e.summary for e in mine)
    assert ops.post("/billing/reconciliation/fetch", data={"month": "2026-11"}).status_code == 400  # no CSRF


def test_the_page_its_workbook_and_its_button_are_404_for_resellers_and_customers(
    app, world, reseller_a_admin_client, reseller_a_user_client, customer_a_master_admin_client
):
    for client in (reseller_a_admin_client, reseller_a_user_client, customer_a_master_admin_client):
        assert client.get("/billing/reconciliation/").status_code == 404
        assert client.get("/billing/reconciliation/?month=2026-11").status_code == 404
        assert client.get("/billing/reconciliation/export?month=2026-11").status_code == 404
        token = csrf_token(client)
        assert (
            client.post("/billing/reconciliation/fetch", data={"csrf_token": token, "month": "2026-11"}).status_code
            == 404
        )
        assert "/billing/reconciliation/" not in client.get("/", follow_redirects=True).text  # no menu item either
    with unscoped() as session:
        assert session.scalar(select(func.count()).select_from(MicrosoftBilledLine)) == 0
    anonymous = app.test_client().get("/billing/reconciliation/")
    assert anonymous.status_code == 302 and "/login" in anonymous.location


def test_operator_staff_see_the_page_and_the_menu_item(ops_admin_client):
    page = ops_admin_client.get("/billing/reconciliation/?month=2026-11")
    assert page.status_code == 200 and "No Microsoft data has been imported for November 2026" in page.text
    assert "/billing/reconciliation/" in ops_admin_client.get("/", follow_redirects=True).text
    assert ops_admin_client.get("/billing/reconciliation/?month=2026-13").status_code == 404


def test_a_large_import_streams_in_batches_and_every_unknown_line_is_only_microsoft(app):
    """More lines than one INSERT batch and one page of the keyset scan; no portal subscription knows them."""
    count = billing_reconcile.BATCH * 2 + 7

    def lines():
        for n in range(count):
            yield {
                "customerId": "c0ffee00-0000-4000-8000-000000000001",
                "subscriptionId": f"00000000-0000-4000-8000-{n // 3:012d}",
                "productId": "CFQ7TTC0LH16",
                "skuId": "0001",
                "chargeType": ("new", "addQuantity", "addQuantity")[n % 3],
                "chargeStartDate": "2026-11-03T00:00:00Z",  # the two addQuantity lines share a key: summed
                "chargeEndDate": "2026-12-02T00:00:00Z",
                "unitPrice": Decimal("4.68"),
                "effectiveUnitPrice": Decimal("4.68"),
                "quantity": 1,
                "subtotal": Decimal("4.68"),
            }

    with app.app_context(), scoping.bypass("test: large"):
        assert import_lines(NOVEMBER, lines(), INVOICE) == count
        report = reconcile(NOVEMBER)
    keys = len({(n // 3, n % 3 > 0) for n in range(count)})  # (subscription, new or addQuantity)
    assert report.counts["only_microsoft"] == keys and report.difference_count == keys
    assert report.microsoft_totals["only_microsoft"] == Decimal("4.68") * count
    assert report.portal_total == 0
    assert _matches() == {"only_microsoft": count}
    assert len(report.differences) == billing_reconcile.KEEP_DIFFERENCES  # kept for display; all counted

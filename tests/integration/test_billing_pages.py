"""The billing screens (issue 14): Billing tabs, the operator's invoice list, the invoice page and its .xlsx, Issue and
Credit note, the billing settings, the customer portal's invoices — who sees what, cross-tenant 404s, and pages whose
statement count does not grow with the invoices or lines they show."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from io import BytesIO

import openpyxl
import pytest
import time_machine
from sqlalchemy import func, select

from app.extensions import db
from app.models.accounts import CUSTOMER, Account
from app.models.billing import BillingProfile, Invoice, InvoiceLine
from app.models.events import Event
from app.services import billing
from app.services.accounts import create_account
from security import scoping
from tests import factories
from tests.conftest import count_statements, csrf_token, unscoped

# The world is built and billed at a fixed moment: its subscriptions' charges then fall in MONTH whatever the date.
BUILT_AT = dt.datetime(2026, 11, 10, 1, 0, tzinfo=dt.UTC)
MONTH = dt.date(2026, 11, 1)


def _frozen():
    return time_machine.travel(BUILT_AT, tick=False)


def _invoice_ids() -> dict[tuple[int, int], int]:
    with unscoped() as session:
        return {
            (i.issuer_id, i.buyer_id): i.id for i in session.scalars(select(Invoice).where(Invoice.kind == "invoice"))
        }


@pytest.fixture
def billed(app):
    """The test world (tests/factories.py) and its drafts of MONTH; ``ids``: the invoices by (issuer, buyer) name."""
    with _frozen(), app.app_context(), scoping.bypass("test world"):
        world = factories.build_world()
        billing.run(MONTH)
    a = world.accounts
    by_parties = _invoice_ids()
    world.invoices = {
        "op_to_a": by_parties[(a["operator"].id, a["reseller_a"].id)],
        "op_to_b": by_parties[(a["operator"].id, a["reseller_b"].id)],
        "a_to_customer_a": by_parties[(a["reseller_a"].id, a["customer_a"].id)],
        "b_to_customer_b": by_parties[(a["reseller_b"].id, a["customer_b"].id)],
    }
    return world


def _state(invoice_id: int) -> tuple:
    with unscoped() as session:
        invoice = session.get(Invoice, invoice_id)
        return invoice.status, invoice.number, invoice.issue_date


def _issue(app, *invoice_ids: int) -> None:
    """Issue invoices as the operator's process would (a named bypass)."""
    with app.app_context(), scoping.bypass("test: issue"):
        for invoice_id in invoice_ids:
            billing.issue(db.session.get(Invoice, invoice_id))


def prefix_of(account_id: int) -> str | None:
    with unscoped() as session:
        return session.scalars(
            select(BillingProfile.invoice_prefix).where(BillingProfile.account_id == account_id)
        ).one()


def _count(model, *where) -> int:
    with unscoped() as session:
        return session.scalar(select(func.count(model.id)).where(*where))


def _post(client, url: str, data: dict | None = None, form_page: str = "/"):
    return client.post(url, data={"csrf_token": csrf_token(client, form_page), **(data or {})})


def _document(html: str) -> str:
    """The invoice itself (the page's menus name Microsoft's products and services)."""
    return html.split('data-test="invoice"', 1)[1].split("</article>", 1)[0]


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


# -- the Billing tabs and lists ------------------------------------------------------------------------------------


def test_resellers_billing_tab_shows_received_and_issued_invoices_by_month(billed, login, app):
    a, inv = billed.accounts, billed.invoices
    client = login(billed.users["reseller_a_admin"].email)
    # The operator's draft is still the operator's: the reseller sees what it receives once it is issued.
    draft = client.get(f"/billing/accounts/{a['reseller_a'].id}/").text
    assert f'data-invoice="{inv["op_to_a"]}"' not in draft and 'data-empty="received"' in draft
    assert client.get(f"/billing/invoices/{inv['op_to_a']}").status_code == 404
    _issue(app, inv["op_to_a"])
    page = client.get(f"/billing/accounts/{a['reseller_a'].id}/")
    assert page.status_code == 200
    html = page.text
    received = html.split('data-panel="received"')[1].split('data-panel="issued"')[0]
    issued = html.split('data-panel="issued"')[1]
    assert f'data-invoice="{inv["op_to_a"]}"' in received and "Mycloudstore" in received
    assert f'data-invoice="{inv["a_to_customer_a"]}"' in issued and "Aardvark Farms" in issued
    assert f'data-invoice="{inv["b_to_customer_b"]}"' not in html and f'data-invoice="{inv["op_to_b"]}"' not in html
    assert "Billing settings" in html
    # A month with no invoices: nothing listed, the month still chosen.
    empty = client.get(f"/billing/accounts/{a['reseller_a'].id}/?month=2026-01").text
    assert 'data-empty="issued"' in empty and 'data-empty="received"' in empty
    assert client.get(f"/billing/accounts/{a['reseller_a'].id}/?month=garbage").status_code == 400
    # The tab is on the account screen.
    assert f"/billing/accounts/{a['reseller_a'].id}/" in client.get(f"/accounts/{a['reseller_a'].id}/details").text


def test_a_partner_user_sees_invoices_to_customers_but_not_what_its_reseller_pays(billed, login, app):
    a, inv = billed.accounts, billed.invoices
    _issue(app, inv["op_to_a"])
    assert login(billed.users["reseller_a_admin"].email).get(f"/billing/invoices/{inv['op_to_a']}").status_code == 200
    client = login(billed.users["reseller_a_user"].email)
    html = client.get(f"/billing/accounts/{a['reseller_a'].id}/").text
    assert 'data-panel="received"' not in html and f'data-invoice="{inv["a_to_customer_a"]}"' in html
    assert "Billing settings" not in html
    assert client.get(f"/billing/invoices/{inv['a_to_customer_a']}").status_code == 200
    assert client.get(f"/billing/invoices/{inv['op_to_a']}").status_code == 404
    assert client.get(f"/billing/invoices/{inv['op_to_a']}.xlsx").status_code == 404


def test_customers_billing_tab_lists_its_invoices(billed, login):
    a, inv = billed.accounts, billed.invoices
    client = login(billed.users["reseller_a_admin"].email)
    html = client.get(f"/billing/accounts/{a['customer_a'].id}/?month=2026-11").text
    assert f'data-invoice="{inv["a_to_customer_a"]}"' in html
    assert f'data-invoice="{inv["op_to_a"]}"' not in html
    assert client.get(f"/billing/accounts/{a['customer_b'].id}/").status_code == 404


def test_operator_lists_every_issuers_invoices_by_month_and_issuer(billed, login):
    a, inv = billed.accounts, billed.invoices
    client = login(billed.users["ops_admin"].email)
    html = client.get("/billing/all/").text
    assert all(f'data-invoice="{i}"' in html for i in inv.values())
    only_b = client.get(f"/billing/all/?month=2026-11&issuer={a['reseller_b'].id}").text
    assert f'data-invoice="{inv["b_to_customer_b"]}"' in only_b
    assert f'data-invoice="{inv["a_to_customer_a"]}"' not in only_b and f'data-invoice="{inv["op_to_a"]}"' not in only_b
    assert 'data-empty="invoices"' in client.get("/billing/all/?month=2025-01").text
    assert client.get("/billing/all/?issuer=abc").status_code == 400
    # Reseller staff and customers: no such page.
    assert login(billed.users["reseller_a_admin"].email).get("/billing/all/").status_code == 404
    assert login(billed.users["customer_a_master_admin"].email).get("/billing/all/").status_code == 404


def test_the_billing_lists_page_with_a_fixed_size_newest_month_first(billed, login, app):
    a = billed.accounts
    with _frozen(), app.app_context(), scoping.bypass("test: more customers"):
        reseller = db.session.get(Account, a["reseller_a"].id)
        basic = db.session.get(factories.Product, billed.rows["products"]["basic"])
        for n in range(26):
            customer = create_account(CUSTOMER, f"Zed {n:02d} Ltd", reseller)
            factories.subscription(customer, basic, 1 + n % 3)
        db.session.commit()
        billing.run(MONTH)
    december = time_machine.travel(dt.datetime(2026, 12, 10, 1, 0, tzinfo=dt.UTC), tick=False)
    with december, app.app_context(), scoping.bypass("test: December"):
        billing.run(dt.date(2026, 12, 1))
    client = login(billed.users["reseller_a_admin"].email)
    total = _count(Invoice, Invoice.issuer_id == a["reseller_a"].id)
    assert total > 50
    pattern = re.compile(r'<tr data-invoice="(\d+)">\s*<td>.*?</td>\s*<td>([A-Z][a-z]+ \d{4})</td>', re.S)
    pages = []
    for number in range(1, 4):
        html = client.get(f"/billing/accounts/{a['reseller_a'].id}/?page={number}").text
        issued = html.split('data-panel="issued"')[1]
        assert f"of {total} entries" in issued
        pages.append(pattern.findall(issued))
    assert [len(p) for p in pages] == [25, 25, total - 50]
    seen = [row for found in pages for row in found]
    assert len({invoice for invoice, _ in seen}) == total  # every invoice once
    order = [dt.datetime.strptime(month, "%B %Y") for _, month in seen]
    assert order == sorted(order, reverse=True) and order[0].month == 12 and order[-1].month == 11


# -- the invoice page and its .xlsx ----------------------------------------------------------------------------------


def test_invoice_page_shows_the_parties_lines_and_totals_without_microsofts_cost(billed, login, app):
    a, inv = billed.accounts, billed.invoices
    with unscoped() as session:
        profile = session.scalars(select(BillingProfile).where(BillingProfile.account_id == a["operator"].id)).one()
        profile.gst_number = "123-456-789"
        session.commit()
    _issue(app, inv["op_to_a"])  # the buyer sees it issued (with the GST number of the issuer's settings)
    with unscoped() as session:
        lines = session.scalars(select(InvoiceLine).where(InvoiceLine.invoice_id == inv["op_to_a"])).all()
        line = lines[0]
        words = (
            billing.term_words(line.term, line.billing_cycle),
            billing.charge_words(line.charge_type, line.billing_cycle),
        )
        invoice = session.get(Invoice, inv["op_to_a"])
        total, tax, ms = invoice.total, invoice.tax, [x.ms_amount for x in lines]
        days = f"{line.days}/{line.cycle_days}"
    client = login(billed.users["reseller_a_admin"].email)
    html = client.get(f"/billing/invoices/{inv['op_to_a']}").text
    text = _text(html)
    assert "Mycloudstore" in text and "Alpha Partners Ltd" in text
    number = _state(inv["op_to_a"])[1]
    assert f'data-test="number">{number}<' in html and number.startswith(prefix_of(a["operator"].id))
    assert 'data-test="number">Draft<' in client.get(f"/billing/invoices/{inv['a_to_customer_a']}").text
    assert words[0] in text and words[1] in text
    assert days in text
    assert "GST 15%" in text and f"${total}" in text and f"${tax}" in text
    assert 'data-test="gst-number">123-456-789<' in html
    assert "Microsoft" not in _text(_document(html)) and 'data-test="ms-cost"' not in html
    assert "css/print.css" in html
    # Operator staff see Microsoft's amount as an extra column on the operator's invoices.
    ops_html = login(billed.users["ops_admin"].email).get(f"/billing/invoices/{inv['op_to_a']}").text
    assert 'data-test="ms-cost"' in ops_html and all(f"${m}" in ops_html for m in ms)
    ops_customer = login(billed.users["ops_admin"].email).get(f"/billing/invoices/{inv['a_to_customer_a']}").text
    assert 'data-test="ms-cost"' not in ops_customer


def test_invoice_xlsx_has_the_lines_with_money_as_numbers_and_no_microsoft_columns(billed, login, app):
    inv = billed.invoices
    _issue(app, inv["op_to_a"])
    client = login(billed.users["reseller_a_admin"].email)
    answer = client.get(f"/billing/invoices/{inv['op_to_a']}.xlsx")
    assert answer.status_code == 200 and answer.mimetype.endswith("spreadsheetml.sheet")
    assert "attachment" in answer.headers["Content-Disposition"]
    sheet = openpyxl.load_workbook(BytesIO(answer.data)).active
    cells = [[c.value for c in row] for row in sheet.iter_rows()]
    header = next(i for i, row in enumerate(cells) if row[0] == "Description")
    assert not any("Microsoft" in str(v) for row in cells for v in row if v is not None)
    amount_col = cells[header].index("Amount")
    first = sheet.cell(row=header + 2, column=amount_col + 1)
    assert isinstance(first.value, float) and first.number_format == "#,##0.00"
    with unscoped() as session:
        invoice = session.get(Invoice, inv["op_to_a"])
        amounts = [line.amount for line in invoice.lines]
        total = invoice.total
    assert Decimal(str(first.value)) == amounts[0]
    total_row = next(row for row in cells if row[amount_col - 1] == "Total NZD")
    assert Decimal(str(total_row[amount_col])).quantize(Decimal("0.01")) == total
    # Operator staff get Microsoft's columns on the operator's invoice.
    ops = login(billed.users["ops_admin"].email).get(f"/billing/invoices/{inv['op_to_a']}.xlsx")
    ops_cells = [c.value for row in openpyxl.load_workbook(BytesIO(ops.data)).active.iter_rows() for c in row]
    assert "Microsoft amount" in ops_cells


# -- Issue and Credit note -------------------------------------------------------------------------------------------


def test_csp_admin_issues_its_invoice_and_drafts_a_credit_note(billed, login):
    a, inv = billed.accounts, billed.invoices
    client = login(billed.users["reseller_a_admin"].email)
    page = client.get(f"/billing/invoices/{inv['a_to_customer_a']}").text
    assert 'data-test="issue-form"' in page
    # Not on the invoice it received: that is the operator's to issue (and the reseller sees it once issued).
    assert client.get(f"/billing/invoices/{inv['op_to_a']}").status_code == 404
    assert _post(client, f"/billing/invoices/{inv['op_to_a']}/issue", {"confirmed": "yes"}).status_code == 404
    assert _state(inv["op_to_a"])[0] == "draft"
    answer = _post(client, f"/billing/invoices/{inv['a_to_customer_a']}/issue", {"confirmed": "yes"})
    assert answer.status_code == 302
    status, number, issued_on = _state(inv["a_to_customer_a"])
    assert status == "issued" and number.endswith("000001") and issued_on is not None
    assert _count(Event, Event.action == "invoice.issued", Event.account_id == a["reseller_a"].id) == 1
    page = client.get(f"/billing/invoices/{inv['a_to_customer_a']}").text
    assert f'data-test="number">{number}<' in page and 'data-test="issue-form"' not in page
    assert 'data-test="credit-note"' in page
    # A credit note needs its reason: the message stands beside the field, nothing is made.
    empty = _post(client, f"/billing/invoices/{inv['a_to_customer_a']}/credit-note", {"reason": "  "})
    assert empty.status_code == 400
    assert re.search(r'data-error-for="reason">[^<]*why', empty.text)
    assert _count(Invoice, Invoice.kind == "credit_note") == 0
    made = _post(client, f"/billing/invoices/{inv['a_to_customer_a']}/credit-note", {"reason": "Wrong quantity"})
    assert made.status_code == 302
    with unscoped() as session:
        note = session.scalars(select(Invoice).where(Invoice.kind == "credit_note")).one()
        assert note.corrects_id == inv["a_to_customer_a"] and note.status == "draft" and note.note == "Wrong quantity"
        assert note.total == -session.get(Invoice, inv["a_to_customer_a"]).total
        assert len(note.lines) == len(session.get(Invoice, inv["a_to_customer_a"]).lines)
        note_id = note.id
    assert made.location.endswith(f"/billing/invoices/{note_id}")
    assert _count(Event, Event.action == "invoice.credit_note") == 1


def test_operator_issues_its_invoice_to_a_reseller(billed, login):
    inv = billed.invoices
    client = login(billed.users["ops_admin"].email)
    assert _post(client, f"/billing/invoices/{inv['op_to_a']}/issue", {"confirmed": "yes"}).status_code == 302
    assert _state(inv["op_to_a"])[0] == "issued"
    # The reseller's invoices to its customers are the reseller's to issue: not the operator's.
    assert _post(client, f"/billing/invoices/{inv['a_to_customer_a']}/issue", {"confirmed": "yes"}).status_code == 404
    assert _state(inv["a_to_customer_a"])[0] == "draft"


def test_issue_by_get_changes_nothing(billed, login):
    inv = billed.invoices
    client = login(billed.users["reseller_a_admin"].email)
    assert client.get(f"/billing/invoices/{inv['a_to_customer_a']}/issue").status_code in (404, 405)
    assert client.get(f"/billing/invoices/{inv['a_to_customer_a']}/credit-note").status_code in (404, 405)
    assert _state(inv["a_to_customer_a"]) == ("draft", None, None)


def test_issue_needs_the_csrf_token(billed, login):
    inv = billed.invoices
    client = login(billed.users["reseller_a_admin"].email)
    assert client.post(f"/billing/invoices/{inv['a_to_customer_a']}/issue").status_code == 400
    assert _state(inv["a_to_customer_a"]) == ("draft", None, None)


def test_a_partner_user_cannot_issue_or_credit(billed, login, app):
    inv = billed.invoices
    client = login(billed.users["reseller_a_user"].email)
    assert 'data-test="issue-form"' not in client.get(f"/billing/invoices/{inv['a_to_customer_a']}").text
    assert _post(client, f"/billing/invoices/{inv['a_to_customer_a']}/issue", {"confirmed": "yes"}).status_code == 404
    assert _state(inv["a_to_customer_a"]) == ("draft", None, None)
    with app.app_context(), scoping.bypass("test: issue"):
        billing.issue(db.session.get(Invoice, inv["a_to_customer_a"]))
    answer = _post(client, f"/billing/invoices/{inv['a_to_customer_a']}/credit-note", {"reason": "x"})
    assert answer.status_code == 404 and _count(Invoice, Invoice.kind == "credit_note") == 0


def test_another_resellers_admin_gets_404_everywhere_and_nothing_changes(billed, login, app):
    a, inv = billed.accounts, billed.invoices
    with app.app_context(), scoping.bypass("test: issue one"):
        billing.issue(db.session.get(Invoice, inv["op_to_a"]))
    before = {name: _state(i) for name, i in inv.items()}
    client = login(billed.users["reseller_b_admin"].email)
    for name in ("op_to_a", "a_to_customer_a"):
        assert client.get(f"/billing/invoices/{inv[name]}").status_code == 404
        assert client.get(f"/billing/invoices/{inv[name]}.xlsx").status_code == 404
        assert _post(client, f"/billing/invoices/{inv[name]}/issue", {"confirmed": "yes"}).status_code == 404
        assert _post(client, f"/billing/invoices/{inv[name]}/credit-note", {"reason": "mine now"}).status_code == 404
    assert client.get(f"/billing/accounts/{a['reseller_a'].id}/").status_code == 404
    assert client.get(f"/billing/settings/{a['reseller_a'].id}").status_code == 404
    assert _post(client, f"/billing/settings/{a['reseller_a'].id}", {"invoice_prefix": "HACK-"}).status_code == 404
    assert {name: _state(i) for name, i in inv.items()} == before
    assert _count(Invoice, Invoice.kind == "credit_note") == 0
    # Its own draft it may see (the scope is not simply closed).
    assert client.get(f"/billing/invoices/{inv['b_to_customer_b']}").status_code == 200


def test_a_customer_sees_its_own_invoices_only(billed, login, app):
    a, inv = billed.accounts, billed.invoices
    client = login(billed.users["customer_a_master_admin"].email)
    ca, cb = a["customer_a"].id, a["customer_b"].id
    # A draft is still its reseller's work: not shown to the customer.
    assert f'data-invoice="{inv["a_to_customer_a"]}"' not in client.get(f"/portal/{ca}/invoices").text
    assert client.get(f"/portal/{ca}/invoices/{inv['a_to_customer_a']}").status_code == 404
    _issue(app, *inv.values())
    listed = client.get(f"/portal/{ca}/invoices")
    assert listed.status_code == 200 and f'data-invoice="{inv["a_to_customer_a"]}"' in listed.text
    assert f"/portal/{ca}/invoices" in client.get(f"/portal/{ca}/").text  # the sidebar's Invoices
    page = client.get(f"/portal/{ca}/invoices/{inv['a_to_customer_a']}")
    assert page.status_code == 200 and "Alpha Partners Ltd" in page.text and "Aardvark Farms" in page.text
    assert 'data-test="issue-form"' not in page.text and "Microsoft's" not in _document(page.text)
    assert client.get(f"/portal/{ca}/invoices/{inv['a_to_customer_a']}.xlsx").status_code == 200
    # Another customer's invoice, its reseller's invoice from the operator: not there.
    for url in (
        f"/portal/{ca}/invoices/{inv['b_to_customer_b']}",
        f"/portal/{cb}/invoices/{inv['b_to_customer_b']}",
        f"/portal/{ca}/invoices/{inv['op_to_a']}",
        f"/portal/{ca}/invoices/{inv['op_to_a']}.xlsx",
        f"/portal/{cb}/invoices",
        f"/billing/invoices/{inv['a_to_customer_a']}",
        f"/billing/invoices/{inv['op_to_a']}",
    ):
        assert client.get(url).status_code == 404, url
    customer_page = f"/portal/{ca}/invoices"
    credit = f"/billing/invoices/{inv['a_to_customer_a']}/credit-note"
    assert _post(client, credit, {"reason": "please"}, form_page=customer_page).status_code == 404
    assert _count(Invoice, Invoice.kind == "credit_note") == 0


# -- billing settings ------------------------------------------------------------------------------------------------


SETTINGS = {
    "invoice_prefix": "ALP-",
    "gst_number": "12-345-678",
    "payment_terms_days": "14",
    "xero_account_code": "200",
    "xero_tax_type": "15% GST on Income",
}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("invoice_prefix", "", "1 to 12 letters"),
        ("invoice_prefix", "ALPHA PARTNERS", "1 to 12 letters"),
        ("invoice_prefix", "<script>", "1 to 12 letters"),
        ("gst_number", "1234567", "8 or 9 digits"),
        ("gst_number", "12-345-6789", "8 or 9 digits"),
        ("gst_number", "GST123456", "8 or 9 digits"),
        ("payment_terms_days", "366", "0 to 365"),
        ("payment_terms_days", "-1", "0 to 365"),
        ("payment_terms_days", "ten", "0 to 365"),
        ("payment_terms_days", "9" * 30, "0 to 365"),
        ("xero_account_code", "", "Xero account code"),
        ("xero_tax_type", "x" * 41, "Xero tax rate"),
    ],
)
def test_billing_settings_refuse_bad_input_beside_the_field(billed, login, field, value, message):
    a = billed.accounts
    client = login(billed.users["reseller_a_admin"].email)
    url = f"/billing/settings/{a['reseller_a'].id}"
    answer = _post(client, url, {**SETTINGS, field: value}, form_page=url)
    assert answer.status_code == 400
    assert re.search(rf'data-error-for="{field}">[^<]*{re.escape(message)}', answer.text)
    assert _count(BillingProfile, BillingProfile.invoice_prefix == "ALP-") == 0


def test_billing_settings_save_with_an_event_and_number_the_next_invoice(billed, login):
    a, inv = billed.accounts, billed.invoices
    client = login(billed.users["reseller_a_admin"].email)
    url = f"/billing/settings/{a['reseller_a'].id}"
    assert client.get(url).status_code == 200
    answer = _post(client, url, {**SETTINGS, "gst_number": "12345678"}, form_page=url)
    assert answer.status_code == 302
    with unscoped() as session:
        saved = session.scalars(select(BillingProfile).where(BillingProfile.account_id == a["reseller_a"].id)).one()
        assert (saved.invoice_prefix, saved.gst_number, saved.payment_terms_days) == ("ALP-", "12-345-678", 14)
    assert _count(Event, Event.action == "billing.settings", Event.account_id == a["reseller_a"].id) == 1
    _post(client, f"/billing/invoices/{inv['a_to_customer_a']}/issue", {"confirmed": "yes"})
    status, number, issued_on = _state(inv["a_to_customer_a"])
    with unscoped() as session:
        invoice = session.get(Invoice, inv["a_to_customer_a"])
        assert number == "ALP-000001" and invoice.due_date == issued_on + dt.timedelta(days=14)
        assert invoice.issuer_gst_number == "12-345-678"


def test_billing_settings_belong_to_the_issuers_own_staff(billed, login):
    a = billed.accounts
    user = login(billed.users["reseller_a_user"].email)
    assert user.get(f"/billing/settings/{a['reseller_a'].id}").status_code == 404
    assert _post(user, f"/billing/settings/{a['reseller_a'].id}", SETTINGS).status_code == 404
    admin = login(billed.users["reseller_a_admin"].email)
    assert admin.get(f"/billing/settings/{a['operator'].id}").status_code == 404
    assert admin.get(f"/billing/settings/{a['reseller_b'].id}").status_code == 404
    assert _post(admin, f"/billing/settings/{a['operator'].id}", SETTINGS).status_code == 404
    assert _count(BillingProfile, BillingProfile.invoice_prefix == "ALP-") == 0
    # Operator staff keep the operator's settings (a reseller's are its own).
    ops = login(billed.users["ops_admin"].email)
    assert ops.get(f"/billing/settings/{a['reseller_a'].id}").status_code == 404
    url = f"/billing/settings/{a['operator'].id}"
    assert ops.get(url).status_code == 200
    assert _post(ops, url, {**SETTINGS, "invoice_prefix": "MCS"}, form_page=url).status_code == 302
    assert prefix_of(a["operator"].id) == "MCS" and prefix_of(a["reseller_a"].id) != "MCS"
    assert _count(Event, Event.action == "billing.settings", Event.account_id == a["operator"].id) == 1


def test_customer_users_without_the_capability_do_not_see_invoices(billed, login, app):
    a, inv = billed.accounts, billed.invoices
    _issue(app, inv["a_to_customer_a"])
    with app.app_context(), scoping.bypass("test: a customer admin"):
        customer = db.session.get(Account, a["customer_a"].id)
        factories.user(customer, "admin@aardvark.example", admin=True, cp3_enabled=True)
        db.session.commit()
    client = login("admin@aardvark.example")
    ca = a["customer_a"].id
    assert f"/portal/{ca}/invoices" not in client.get(f"/portal/{ca}/").text
    for url in (f"/portal/{ca}/invoices", f"/portal/{ca}/invoices/{inv['a_to_customer_a']}"):
        assert client.get(url).status_code == 404, url


# -- statements per page ---------------------------------------------------------------------------------------------


def _statements(app, client, url: str) -> int:
    client.get(url)  # warm: first-request work (session refresh, role cache) is not the page's
    with count_statements(app) as statements:
        answer = client.get(url)
    assert answer.status_code == 200, url
    return len(statements)


def test_pages_cost_the_same_statements_however_many_invoices_and_lines(billed, login, app):
    """November as billed (a few invoices, a line or two each), measured; then more customers and subscriptions,
    December billed and issued: its pages show many more invoices and lines for the same statements."""
    a = billed.accounts
    clients = {
        "reseller": login(billed.users["reseller_a_admin"].email),
        "ops": login(billed.users["ops_admin"].email),
        "customer": login(billed.users["customer_a_master_admin"].email),
    }

    def pages(month: dt.date) -> dict[str, tuple[str, str]]:
        with unscoped() as session:
            ids = {
                (i.issuer_id, i.buyer_id): i.id for i in session.scalars(select(Invoice).where(Invoice.month == month))
            }
        op_to_a = ids[(a["operator"].id, a["reseller_a"].id)]
        to_customer_a = ids[(a["reseller_a"].id, a["customer_a"].id)]
        return {
            "reseller tab": ("reseller", f"/billing/accounts/{a['reseller_a'].id}/"),
            "customer tab": ("reseller", f"/billing/accounts/{a['customer_a'].id}/"),
            "operator list": ("ops", "/billing/all/"),
            "received invoice": ("reseller", f"/billing/invoices/{op_to_a}"),
            "received xlsx": ("reseller", f"/billing/invoices/{op_to_a}.xlsx"),
            "operator's invoice": ("ops", f"/billing/invoices/{op_to_a}"),
            "issued invoice": ("reseller", f"/billing/invoices/{to_customer_a}"),
            "customer list": ("customer", f"/portal/{a['customer_a'].id}/invoices"),
            "customer invoice": ("customer", f"/portal/{a['customer_a'].id}/invoices/{to_customer_a}"),
        }

    def lines_of(month: dt.date, issuer: str, buyer: str) -> int:
        with unscoped() as session:
            return session.scalar(
                select(func.count(InvoiceLine.id))
                .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
                .where(Invoice.month == month, Invoice.issuer_id == a[issuer].id, Invoice.buyer_id == a[buyer].id)
            )

    def measure(month: dt.date) -> dict[str, int]:
        with unscoped() as session:
            drafts = session.scalars(select(Invoice.id).where(Invoice.month == month, Invoice.status == "draft")).all()
        _issue(app, *drafts)  # the buyers see them issued
        return {name: _statements(app, clients[who], url) for name, (who, url) in pages(month).items()}

    small = measure(MONTH)
    with _frozen(), app.app_context(), scoping.bypass("test: more to show"):
        reseller = db.session.get(Account, a["reseller_a"].id)
        customer_a = db.session.get(Account, a["customer_a"].id)
        basic = db.session.get(factories.Product, billed.rows["products"]["basic"])
        exchange = db.session.get(factories.Product, billed.rows["products"]["exchange"])
        for n in range(6):
            factories.subscription(customer_a, basic if n % 2 else exchange, 2 + n)
        for n in range(8):
            customer = create_account(CUSTOMER, f"More {n} Ltd", reseller)
            factories.subscription(customer, basic, 1 + n)
            factories.subscription(customer, exchange, 1 + n)
        db.session.commit()
    december = dt.date(2026, 12, 1)
    with (
        time_machine.travel(dt.datetime(2026, 12, 10, 1, 0, tzinfo=dt.UTC), tick=False),
        app.app_context(),
        scoping.bypass("test: December"),
    ):
        billing.run(december)
    assert lines_of(december, "operator", "reseller_a") >= lines_of(MONTH, "operator", "reseller_a") + 20
    assert lines_of(december, "reseller_a", "customer_a") >= lines_of(MONTH, "reseller_a", "customer_a") + 6
    assert _count(Invoice, Invoice.issuer_id == a["reseller_a"].id) == 10  # 1 in November, 9 in December
    large = measure(december)
    assert large == small


def test_the_issuers_month_links_to_its_accounting_export_and_operator_staff_to_reconciliation(billed, login, app):
    """Other helpers' views, linked only when the app has them (the pages work without)."""
    a = billed.accounts
    has_export = "BillingExportView.xero" in app.view_functions
    has_reconciliation = "BillingReconciliationView.index" in app.view_functions
    admin = login(billed.users["reseller_a_admin"].email)
    month_page = admin.get(f"/billing/accounts/{a['reseller_a'].id}/?month=2026-11").text
    assert ('data-test="xero-export"' in month_page) == has_export
    if has_export:
        assert re.search(rf'action="[^"]*/{a["reseller_a"].id}/2026-11"[^>]*data-test="xero-export"', month_page)
    assert 'data-test="xero-export"' not in admin.get(f"/billing/accounts/{a['reseller_a'].id}/").text  # no month
    user = login(billed.users["reseller_a_user"].email)
    assert 'data-test="xero-export"' not in user.get(f"/billing/accounts/{a['reseller_a'].id}/?month=2026-11").text
    ops = login(billed.users["ops_admin"].email).get("/billing/all/?month=2026-11").text
    assert ('data-test="xero-export"' in ops) == has_export
    assert ('data-test="billing-reconciliation"' in ops) == has_reconciliation

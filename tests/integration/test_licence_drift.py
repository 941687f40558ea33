"""Issue 14, item 6: Reports ▸ Licence drift — seats bought, assigned and billed per subscription, the monthly cost of
the unused seats (customer's price and buy price, half up to the cent), totals; a reseller sees its own customers,
operator staff everyone's, customer sign-ins nothing (404); the page costs the same statements however many
customers; the workbook keeps text as text."""

from __future__ import annotations

import html
import re
from decimal import ROUND_HALF_UP, Decimal
from io import BytesIO

import openpyxl
from sqlalchemy import select, update

from app.models.accounts import CUSTOMER, Account
from app.models.events import Event
from app.models.subscriptions import Subscription
from app.services.accounts import create_account
from tests import factories
from tests.conftest import count_statements, csrf_token, unscoped

PAGE = "/reports/licence-drift/"
CENT = Decimal("0.01")
MONTHS = {"monthly": 1, "annual": 12, "triennial": 36}  # per billing period, written out (not the code's table)
DEMO_PASSWORD = "demo-password-for-tests"


def _money(text: str) -> Decimal:
    return Decimal(html.unescape(text).strip().replace("$", "").replace(",", ""))


def _half_up(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _expected(customer_ids) -> dict[int, tuple]:
    """Worked out from the database, not by the code under test: subscription id -> (bought, assigned, unused, the
    unused seats a month at the customer's price, at the buy price), for active subscriptions with unused seats."""
    with unscoped() as session:
        subs = session.scalars(
            select(Subscription).where(Subscription.account_id.in_(customer_ids), Subscription.status == "active")
        ).all()
        return {
            s.id: (
                s.quantity,
                s.assigned,
                s.quantity - s.assigned,
                _half_up((s.quantity - s.assigned) * s.unit_price / MONTHS[s.billing_cycle]),
                _half_up((s.quantity - s.assigned) * s.unit_cost / MONTHS[s.billing_cycle]),
            )
            for s in subs
            if s.quantity > s.assigned
        }


def _page_rows(page: str) -> dict[int, dict]:
    """subscription id -> the row's figures, as the page shows them."""
    rows = {}
    for customer, sub, body in re.findall(
        r'<tr data-customer="(\d+)" data-subscription="(\d+)">(.*?)</tr>', page, flags=re.DOTALL
    ):
        plain = re.findall(r'<td class="text-right[^"]*">([^<]*)</td>', body)
        rows[int(sub)] = {
            "customer": int(customer),
            "bought": int(plain[0]),
            "assigned": int(plain[1]),
            "billed": plain[2],
            "billed_differs": 'class="text-right danger"' in body,
            "unused": int(plain[3]),
            "unused_price": _money(re.search(r'data-col="unused_price">([^<]*)<', body).group(1)),
            "unused_cost": (
                _money(found.group(1)) if (found := re.search(r'data-col="unused_cost">([^<]*)<', body)) else None
            ),
        }
    return rows


def _footer(page: str) -> dict[str, Decimal | None]:
    foot = re.search(r'<tr id="drift-totals">(.*?)</tr>', page, flags=re.DOTALL).group(1)
    cost = re.search(r'data-col="unused_cost">([^<]*)<', foot)
    return {
        "unused_price": _money(re.search(r'data-col="unused_price">([^<]*)<', foot).group(1)),
        "unused_cost": _money(cost.group(1)) if cost else None,
    }


# -- the demo ------------------------------------------------------------------------------------------------------


def test_the_demos_figures_for_each_reseller_and_for_operator_staff(app, login):
    result = app.test_cli_runner().invoke(args=["portal", "seed-demo", "--password", DEMO_PASSWORD])
    assert result.exit_code == 0, result.output
    with unscoped() as session:
        tree = [(a.name, a.id, a.parent_id) for a in session.scalars(select(Account))]
    ids = {name: aid for name, aid, _parent in tree}
    demo_expected = _expected([aid for _n, aid, parent in tree if parent == ids["Demo Reseller Ltd"]])
    other_expected = _expected([aid for _n, aid, parent in tree if parent == ids["Other Reseller Ltd"]])
    with unscoped() as session:  # the demo has unused seats: Contoso's
        assert ids["Contoso NZ"] in {session.get(Subscription, sid).account_id for sid in demo_expected}

    simon = login("simon@demoreseller.co.nz", DEMO_PASSWORD)  # Demo Reseller's CSP Admin: sees costs
    page = simon.get(PAGE)
    assert page.status_code == 200
    rows = _page_rows(page.text)
    assert set(rows) == set(demo_expected)
    for sid, (bought, assigned, unused, price, cost) in demo_expected.items():
        row = rows[sid]
        assert (row["bought"], row["assigned"], row["unused"]) == (bought, assigned, unused)
        assert (row["unused_price"], row["unused_cost"]) == (price, cost)
        assert row["billed"] == str(bought) and not row["billed_differs"]  # the ledger agrees in the demo
    assert _footer(page.text) == {
        "unused_price": sum((v[3] for v in demo_expected.values()), Decimal("0")),
        "unused_cost": sum((v[4] for v in demo_expected.values()), Decimal("0")),
    }
    assert "Contoso NZ" in page.text and "Rival Corp" not in page.text

    # The other reseller sees its own customers only.
    pat = login("pat@otherreseller.example", DEMO_PASSWORD)
    theirs = pat.get(PAGE).text
    assert set(_page_rows(theirs)) == set(other_expected)
    assert "Contoso NZ" not in theirs and "Enet Ltd" not in theirs

    # Operator staff: every reseller's customers, one footer over all of them.
    everyone = login("ops@mycloudstore.co.nz", DEMO_PASSWORD).get(PAGE).text
    assert set(_page_rows(everyone)) == set(demo_expected) | set(other_expected)
    both = {**demo_expected, **other_expected}
    assert _footer(everyone)["unused_price"] == sum((v[3] for v in both.values()), Decimal("0"))

    # A customer's sign-in: the report does not exist for it.
    customer = login("admin@contosonz.example", DEMO_PASSWORD)
    assert customer.get(PAGE).status_code == 404


# -- who sees what -------------------------------------------------------------------------------------------------


def test_another_resellers_customers_are_not_shown_and_customers_get_404(
    app, world, reseller_a_admin_client, reseller_b_admin_client, customer_a_master_admin_client
):
    a_customers = [world.accounts["customer_a"].id, world.accounts["customer_a2"].id]
    b_customers = [world.accounts["customer_b"].id]
    a_page, b_page = reseller_a_admin_client.get(PAGE).text, reseller_b_admin_client.get(PAGE).text
    assert set(_page_rows(a_page)) == set(_expected(a_customers)) != set()
    assert set(_page_rows(b_page)) == set(_expected(b_customers)) != set()
    assert world.accounts["customer_a"].name not in b_page
    assert world.accounts["customer_b"].name not in a_page
    assert customer_a_master_admin_client.get(PAGE).status_code == 404
    # The Reports menu shows it to partner users, never to a customer's sign-in.
    assert "Licence drift</a>" in reseller_a_admin_client.get("/").text
    assert "Licence drift</a>" not in customer_a_master_admin_client.get("/", follow_redirects=True).text
    answer = customer_a_master_admin_client.post(
        f"{PAGE}licence-drift.xlsx", data={"csrf_token": csrf_token(customer_a_master_admin_client)}
    )
    assert answer.status_code == 404


def test_a_partner_user_sees_what_customers_pay_never_the_buy_price(world, reseller_a_user_client):
    page = reseller_a_user_client.get(PAGE).text
    rows = _page_rows(page)
    assert rows and all(row["unused_cost"] is None for row in rows.values())
    assert "buy price" not in page.lower()
    assert _footer(page)["unused_cost"] is None


def test_a_billed_count_that_differs_from_bought_is_shown(world, reseller_a_admin_client):
    sub = world.rows["a"]["subscription"]  # 4 bought, 3 assigned, 4 in the charge ledger
    with unscoped() as session:
        # Moved without a billable event (a bulk UPDATE skips the ledger's mapper events): bought 3, billed still 4.
        session.execute(update(Subscription).where(Subscription.id == sub).values(quantity=3))
        session.commit()
    row = _page_rows(reseller_a_admin_client.get(PAGE).text)[sub]
    assert (row["bought"], row["assigned"], row["unused"], row["billed"]) == (3, 3, 0, "4")
    assert row["billed_differs"] and row["unused_price"] == Decimal("0.00")


def test_pages_of_customers_with_totals_over_all_of_them(world, ops_admin_client, monkeypatch):
    monkeypatch.setattr("app.services.licence_drift.CUSTOMERS_PER_PAGE", 1)
    everyone = _expected([world.accounts[k].id for k in ("customer_a", "customer_a2", "customer_b")])
    first, second = ops_admin_client.get(PAGE).text, ops_admin_client.get(PAGE, query_string={"page": 2}).text
    rows_first, rows_second = _page_rows(first), _page_rows(second)
    assert len({r["customer"] for r in rows_first.values()}) == len({r["customer"] for r in rows_second.values()}) == 1
    assert set(rows_first) | set(rows_second) == set(everyone) and not set(rows_first) & set(rows_second)
    total = sum((v[3] for v in everyone.values()), Decimal("0"))
    assert _footer(first)["unused_price"] == _footer(second)["unused_price"] == total
    assert "Page 1 of 2" in first and "Showing 2 to 2 of 2 entries" in second


# -- scale ---------------------------------------------------------------------------------------------------------


def _shapes(statements: list[str]) -> list[str]:
    """The statements, an IN list's length aside; the session store's own writes come and go with the clock."""
    return [
        re.sub(r"IN \((?:%\(\w+\)s|\?)(?:, (?:%\(\w+\)s|\?))*\)", "IN (…)", s)
        for s in statements
        if "server_session" not in s
    ]


def test_the_page_costs_the_same_statements_for_few_and_many_customers(app, world, ops_admin_client):
    ops_admin_client.get(PAGE)  # warm: FAB's own first-request work
    with count_statements(app) as few:
        before = _page_rows(ops_admin_client.get(PAGE).text)
    with unscoped() as session:
        reseller = session.get(Account, world.accounts["reseller_a"].id)
        item = factories.product("Drift Annual", "DRIFT-A", "120.00", "100.00", cycle="annual")
        for i in range(8):
            customer = create_account(CUSTOMER, f"Drift Customer {i:02d}", reseller)
            factories.subscription(customer, item, 3 + i)  # none assigned
        session.commit()
    with count_statements(app) as many:
        after = _page_rows(ops_admin_client.get(PAGE).text)
    assert len(after) == len(before) + 8
    assert _shapes(many) == _shapes(few)


# -- the workbook --------------------------------------------------------------------------------------------------


def test_the_workbook_has_the_pages_rows_keeps_text_as_text_and_is_audited(world, reseller_a_admin_client):
    customer = world.accounts["customer_a"].id
    evil = '=HYPERLINK("http://evil.example","Click")'
    with unscoped() as session:
        session.get(Account, customer).name = evil
        session.commit()
    page_rows = _page_rows(reseller_a_admin_client.get(PAGE).text)
    response = reseller_a_admin_client.post(
        f"{PAGE}licence-drift.xlsx", data={"csrf_token": csrf_token(reseller_a_admin_client)}
    )
    assert response.status_code == 200
    sheet = openpyxl.load_workbook(BytesIO(response.data))["Licence drift"]
    headers = [c.value for c in sheet[2]]
    assert "Unused seats per month (buy price)" in headers
    data = [dict(zip(headers, (c for c in row), strict=True)) for row in sheet.iter_rows(min_row=3)]
    assert len(data) == len(page_rows)
    by_customer = [row for row in data if row["Customer"].value == evil]
    assert by_customer and all(r["Customer"].data_type == "s" and r["Customer"].quotePrefix for r in by_customer)
    page_total = sum((r["unused_price"] for r in page_rows.values()), Decimal("0"))
    book_total = sum(Decimal(str(r["Unused seats per month (customer's price)"].value)) for r in data)
    assert _half_up(book_total) == page_total
    with unscoped() as session:
        event = session.scalars(select(Event).where(Event.action == "report.exported")).one()
        assert event.account_id == world.accounts["reseller_a"].id and "Licence drift" in event.summary
    # GET serves no file.
    assert reseller_a_admin_client.get(f"{PAGE}licence-drift.xlsx").status_code == 405

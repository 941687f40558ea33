"""Issue 13, reports: subscription money per billing period — the CSP Report page and its workbook agree on every
money column to the cent for monthly, annual and triennial billing; who sees which column; the cancellation window's
end and the change scheduled at renewal; monthly totals of the landing page, the widgets and the usage chart; the
Subscriptions list; a constant number of statements per page; and the demo's item-10 shapes.

Rounding (app/services/csp_report.py): per licence per month = period price ÷ months, half up; a subscription's
monthly total = unit price × quantity ÷ months, half up; totals add the rounded subscription totals."""

from __future__ import annotations

import datetime as dt
import html
import re
from decimal import ROUND_HALF_UP, Decimal
from io import BytesIO

import openpyxl
from sqlalchemy import select

from app import clock
from app.formatting import local_time
from app.models.accounts import Account
from app.models.catalog import PERIOD_MONTHS
from app.models.csp import SandboxSeatBatch, SandboxSubscription
from app.models.subscriptions import SeatBatch, Subscription, UsagePoint
from app.services import catalogue, csp_report, subscriptions, widgets
from security import scoping
from tests import factories
from tests.conftest import count_statements, csrf_token, unscoped

CENT = Decimal("0.01")
# name, sku, term, billing frequency, price, buy price (cost), Microsoft's cost — per licence per billing period —,
# quantity. Chosen so that half up, half even and truncation give different cents.
SHAPES = [
    ("Shape Monthly", "SHAPE-M", "P1M", "monthly", "9.00", "7.65", "7.10", 4),
    ("Shape Annual", "SHAPE-A", "P1Y", "annual", "12.30", "10.14", "9.66", 5),
    ("Shape Triennial", "SHAPE-T", "P3Y", "triennial", "36.18", "30.06", "27.54", 3),
]
# The same figures worked out by hand (not by the code under test).
BY_HAND = {
    "Shape Annual": {
        "price": "12.30",
        "price_month": "1.03",  # 12.30 / 12 = 1.025
        "total_month": "5.13",  # 61.50 / 12 = 5.125
        "cost_month": "0.85",  # 10.14 / 12 = 0.845
        "cost_total_month": "4.23",  # 50.70 / 12 = 4.225
        "margin_month": "0.18",
        "margin_total_month": "0.90",
        "ms_cost_month": "0.81",  # 9.66 / 12 = 0.805
        "ms_cost_total_month": "4.03",  # 48.30 / 12 = 4.025
    },
    "Shape Triennial": {
        "price": "36.18",
        "price_month": "1.01",  # 36.18 / 36 = 1.005
        "total_month": "3.02",  # 108.54 / 36 = 3.015
        "cost_month": "0.84",  # 30.06 / 36 = 0.835
        "cost_total_month": "2.51",  # 90.18 / 36 = 2.505
        "margin_month": "0.17",
        "margin_total_month": "0.51",
        "ms_cost_month": "0.77",  # 27.54 / 36 = 0.765
        "ms_cost_total_month": "2.30",  # 82.62 / 36 = 2.295
    },
    "Shape Monthly": {"price": "9.00", "price_month": "9.00", "total_month": "36.00", "margin_total_month": "5.40"},
}


def _half_up(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _add_shapes(customer_id: int) -> dict[str, int]:
    """The three shapes as subscriptions of ``customer_id``; their ids by name."""
    made = {}
    with unscoped() as session:
        customer = session.get(Account, customer_id)
        for name, sku, term, cycle, price, cost, ms_cost, quantity in SHAPES:
            item = factories.product(name, sku, price, cost, cycle=cycle, term=term)
            sub = factories.subscription(customer, item, quantity)
            sub.unit_price, sub.unit_cost, sub.ms_unit_cost = Decimal(price), Decimal(cost), Decimal(ms_cost)
            made[name] = sub.id
        session.commit()
    return made


def _expected_month_total(customer_ids) -> Decimal:
    """The monthly total of every subscription of these customers, worked out here in Python."""
    with unscoped() as session:
        subs = session.scalars(select(Subscription).where(Subscription.account_id.in_(customer_ids))).all()
        return sum((_half_up(s.unit_price * s.quantity / PERIOD_MONTHS[s.billing_cycle]) for s in subs), Decimal("0"))


def _money(text: str) -> Decimal:
    return Decimal(text.replace("$", "").replace(",", "").split()[0])


def _page(client, account_id: int) -> str:
    response = client.get(f"/accounts/{account_id}/products/csp-report")
    assert response.status_code == 200
    return response.text


def _page_table(page: str) -> tuple[list[str], dict[str, str], dict[str, dict[str, str]]]:
    """(headers, header of each money column key, each row's cells by data-col — by product name)."""
    table = page.split('class="table table-condensed subscriptions-report"')[1].split("</table>")[0]
    head = table.split("</thead>")[0]
    headers = [html.unescape(h) for h in re.findall(r"<th[^>]*>([^<]*)</th>", head)]
    money_headers = dict(re.findall(r'<th data-col="([a-z_]+)">([^<]*)</th>', head))
    rows = {}
    for row in re.findall(r'<tr data-subscription="\d+">(.*?)</tr>', table, re.S):
        name = re.search(r"<td>([^<]+?) <(?:span|button)", row).group(1)
        rows[name] = {k: html.unescape(v).strip() for k, v in re.findall(r'<td data-col="([a-z_-]+)">(.*?)</td>', row)}
    return headers, money_headers, rows


def _workbook(client, account_id: int):
    response = client.post(
        f"/accounts/{account_id}/reports/subscriptions.xlsx", data={"csrf_token": csrf_token(client)}
    )
    assert response.status_code == 200, response.text[:300]
    sheet = openpyxl.load_workbook(BytesIO(response.data)).active
    headers = [c.value for c in sheet[2]]
    rows = {row[3]: dict(zip(headers, row, strict=True)) for row in sheet.iter_rows(min_row=3, values_only=True)}
    return headers, rows


# -- money: the page and the workbook, to the cent -------------------------------------------------------------


def test_page_and_workbook_agree_on_every_money_column_for_each_billing_frequency(world, ops_admin_client):
    customer = world.accounts["customer_a2"].id
    _add_shapes(customer)
    page = _page(ops_admin_client, customer)
    _, money_headers, page_rows = _page_table(page)
    book_headers, book_rows = _workbook(ops_admin_client, customer)
    assert set(money_headers.values()) <= set(book_headers)  # every money column of the page, by the same name
    for name, *_ in SHAPES:
        for key, header in money_headers.items():
            on_page = _money(page_rows[name][key])
            in_book = Decimal(str(book_rows[name][header])).quantize(CENT)
            assert on_page == in_book, (name, header, on_page, in_book)
        for key, value in BY_HAND[name].items():
            assert _money(page_rows[name][key]) == Decimal(value), (name, key)
            assert Decimal(str(book_rows[name][csp_report_header(key)])).quantize(CENT) == Decimal(value)
    # Per billing period in the workbook only: the buy price and Microsoft's cost as stored.
    assert Decimal(str(book_rows["Shape Annual"]["Cost (per licence per billing period)"])) == Decimal("10.14")
    assert Decimal(str(book_rows["Shape Annual"]["Microsoft cost (per licence per billing period)"])) == Decimal("9.66")
    assert book_rows["Shape Annual"]["Term"] == "1 year" and book_rows["Shape Annual"]["Billing frequency"] == "Annual"
    assert page_rows["Shape Triennial"]["term"] == "3 years" and page_rows["Shape Triennial"]["billing-frequency"] == (
        "Triennial"
    )
    assert page_rows["Shape Monthly"]["term"] == "1 month"
    # The footer adds the rounded subscription totals: 36.00 + 5.13 + 3.02.
    total = re.search(r'data-test="monthly-total">([^<]+)<', page).group(1)
    assert _money(total) == Decimal("44.15") == _expected_month_total([customer])
    assert sum(Decimal(str(r["Price per month in total"])).quantize(CENT) for r in book_rows.values()) == Decimal(
        "44.15"
    )
    margin = _money(re.search(r'data-test="monthly-margin">([^<]+)<', page).group(1))
    assert margin == sum(_money(r["margin_total_month"]) for r in page_rows.values()) == Decimal("6.81")


def csp_report_header(key: str) -> str:
    return next(c.header for c in csp_report.MONEY_COLUMNS if c.key == key)


def test_reseller_footer_adds_every_customers_rounded_totals(world, reseller_a_admin_client):
    _add_shapes(world.accounts["customer_a2"].id)
    page = _page(reseller_a_admin_client, world.accounts["reseller_a"].id)
    expected = _expected_month_total([world.accounts["customer_a"].id, world.accounts["customer_a2"].id])
    assert _money(re.search(r'data-test="monthly-total">([^<]+)<', page).group(1)) == expected
    assert expected == Decimal("36.00") + Decimal("16.50") + Decimal("44.15")  # customer A's 4 × 9.00 + 3 × 5.50


# -- who sees what ----------------------------------------------------------------------------------------------


def _cost_headers(headers) -> set[str]:
    return {h for h in headers if h and (h.startswith(("Cost", "Margin", "Microsoft cost")))}


def test_each_role_sees_its_columns_on_the_page_and_in_the_workbook(world, login):
    customer = world.accounts["customer_a2"].id
    _add_shapes(customer)
    costs = {
        "Cost per licence per month",
        "Cost per month in total",
        "Margin per licence per month",
        "Margin per month in total",
    }
    microsoft = {"Microsoft cost per licence per month", "Microsoft cost per month in total"}
    per_period = {"Cost (per licence per billing period)"}
    ms_per_period = {"Microsoft cost (per licence per billing period)"}
    for who, page_expected, book_expected in (
        ("reseller_a_user", set(), set()),
        ("reseller_a_admin", costs, costs | per_period),
        ("ops_admin", costs | microsoft, costs | per_period | microsoft | ms_per_period),
    ):
        client = login(world.users[who].email)
        page = _page(client, customer)
        headers, _, rows = _page_table(page)
        assert _cost_headers(headers) == page_expected, who
        assert {"Price", "Price per licence per month"} <= set(headers)
        book_headers, _ = _workbook(client, customer)
        assert _cost_headers(book_headers) == book_expected, who
        if who == "reseller_a_user":
            assert "$10.14" not in page and "$0.85" not in page and 'data-test="monthly-margin"' not in page
        if who == "reseller_a_admin":
            assert "ms_cost" not in "".join(rows["Shape Annual"]) and "$0.81" not in page


def test_a_background_export_keeps_each_roles_columns(app, world, login, monkeypatch):
    from tests.integration.test_reports import _join_job_thread, _start_job

    monkeypatch.setitem(app.config, "EXPORT_JOB_THRESHOLD", 0)
    customer = world.accounts["customer_a2"].id
    _add_shapes(customer)
    for who, microsoft in (("ops_admin", True), ("reseller_a_admin", False)):
        client = login(world.users[who].email)
        job_id = _start_job(client, customer, "subscriptions")
        _join_job_thread(job_id)
        status = client.get(f"/reports/jobs/{job_id}").get_json()
        assert status["status"] == "done", status
        response = client.post(status["download_url"], data={"csrf_token": csrf_token(client)})
        sheet = openpyxl.load_workbook(BytesIO(response.data)).active
        headers = [c.value for c in sheet[2]]
        assert ("Microsoft cost per licence per month" in headers) is microsoft, who
        assert "Margin per month in total" in headers
        rows = {r[3]: dict(zip(headers, r, strict=True)) for r in sheet.iter_rows(min_row=3, values_only=True)}
        assert Decimal(str(rows["Shape Annual"]["Price per month in total"])) == Decimal("5.13")


# -- the window's end and the change at renewal -----------------------------------------------------------------


def test_window_end_and_scheduled_change_on_the_page_and_in_the_workbook(world, reseller_a_admin_client):
    customer = world.accounts["customer_a2"].id
    ids = _add_shapes(customer)
    now = clock.utcnow().replace(microsecond=0)
    with unscoped() as session:
        sub = session.get(Subscription, ids["Shape Annual"])
        for hours_ago, seats, refundable in ((30, 1, 1), (10, 2, 2), (5, 1, 0)):
            added = now - dt.timedelta(hours=hours_ago)
            session.add(
                SeatBatch(
                    account_id=customer,
                    subscription_id=sub.id,
                    kind="increase",
                    quantity=seats,
                    refundable=refundable,  # the newest was given back already: its window no longer counts
                    added_at=added,
                    refundable_until=subscriptions.window_end(added),
                    unit_price=sub.unit_price,
                )
            )
        sub.quantity += 4
        item = sub.product
        sub.next_availability_id = catalogue.ensure_availability(item, "P1Y", "monthly").id
        sub.next_quantity = 8
        other = session.get(Subscription, ids["Shape Triennial"])
        other.next_quantity = 1  # the same SKU and term, fewer seats
        session.commit()
    latest_open = subscriptions.window_end(now - dt.timedelta(hours=10))
    page = _page(reseller_a_admin_client, customer)
    _, _, rows = _page_table(page)
    shown = local_time(latest_open).strftime("%d/%m/%Y %I:%M %p")
    assert rows["Shape Annual"]["window-end"] == shown
    assert rows["Shape Monthly"]["window-end"] == ""  # bought 30 days ago: closed
    change = "At renewal: Shape Annual, 1 year billed monthly, 8 licences"
    assert change in rows["Shape Annual"]["scheduled-change"]
    assert (
        "At renewal: Shape Triennial, 3 years billed triennially, 1 licence"
        in rows["Shape Triennial"]["scheduled-change"]
    )
    assert rows["Shape Monthly"]["scheduled-change"] == ""
    _, book = _workbook(reseller_a_admin_client, customer)
    assert book["Shape Annual"]["Change at renewal"] == change
    assert book["Shape Monthly"]["Change at renewal"] is None and book["Shape Monthly"]["Cancellable until"] is None
    assert book["Shape Annual"]["Cancellable until"] == local_time(latest_open).replace(tzinfo=None, second=0)


# -- landing page, widgets, usage chart -------------------------------------------------------------------------


def test_landing_and_widget_monthly_totals_divide_by_the_billing_period(world, reseller_a_admin_client, app):
    customer = world.accounts["customer_a2"].id
    _add_shapes(customer)
    page = reseller_a_admin_client.get("/").text
    spend = re.search(r'data-stat="spend">([^<]*)<', page).group(1)
    expected = _expected_month_total([world.accounts["customer_a"].id, customer])
    assert _money(spend) == expected == Decimal("96.65")
    with app.app_context(), scoping.bypass("test: the widget's figure"):
        assert widgets.monthly_spend(customer) == Decimal("44.15")


def test_usage_chart_spend_divides_point_prices_by_the_period(world, app, reseller_a_admin_client):
    customer = world.accounts["customer_a2"].id
    ids = _add_shapes(customer)
    with unscoped() as session:
        # An annual subscription's history: 5 licences at $12.30 a year each, the same as today.
        points = session.scalars(select(UsagePoint).where(UsagePoint.subscription_id == ids["Shape Annual"])).all()
        assert [p.unit_price for p in points] == [Decimal("12.30")] * len(points)
    with app.app_context(), scoping.bypass("test: the usage chart's figures"):
        series = widgets.usage_series([customer])
    assert series["spend"][-1] == Decimal("44.15")
    client = reseller_a_admin_client
    response = client.post(f"/accounts/{customer}/products/usage-chart.xlsx", data={"csrf_token": csrf_token(client)})
    assert response.status_code == 200
    spend = openpyxl.load_workbook(BytesIO(response.data))["Monthly spend"]
    assert Decimal(str(list(spend.iter_rows(min_row=3, values_only=True))[-1][1])).quantize(CENT) == Decimal("44.15")


# -- the Subscriptions list ---------------------------------------------------------------------------------------


def test_subscriptions_list_names_term_frequency_period_price_and_words(world, reseller_a_admin_client):
    ids = _add_shapes(world.accounts["customer_a2"].id)
    with unscoped() as session:
        sub = session.get(Subscription, ids["Shape Annual"])
        sub.auto_renew = False
        sub.next_quantity = 6
        session.commit()
    page = reseller_a_admin_client.get("/subscriptionview/list/?psize_SubscriptionView=100").text
    for label in ("Term", "Billing frequency", "Price (per billing period)", "Price per month", "Change at renewal"):
        assert label in page, label
    row = next(r for r in re.findall(r"<tr[^>]*>(.*?)</tr>", page, re.S) if "Shape Annual" in r)
    cells = [
        re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    ]
    assert "1 year" in cells and "Annual" in cells and "$12.30" in cells and "$1.03" in cells
    assert "Off" in cells and "True" not in cells and "False" not in cells
    assert "At renewal: Shape Annual, 1 year billed annually, 6 licences" in cells


def test_subscription_show_page_and_the_customers_pages_name_term_and_price_per_month(
    world, reseller_a_admin_client, customer_a_master_admin_client
):
    customer = world.accounts["customer_a"].id
    ids = _add_shapes(customer)
    show = reseller_a_admin_client.get(f"/subscriptionview/show/{ids['Shape Triennial']}")
    assert show.status_code == 200 and "3 years" in show.text and "Triennial" in show.text and "$1.01" in show.text
    csp = customer_a_master_admin_client.get(f"/portal/{customer}/services/microsoft-csp").text
    row = re.search(rf'<tr data-subscription="{ids["Shape Annual"]}">(.*?)</tr>', csp, re.S).group(1)
    assert "1 year, billed annually" in row and "$12.30" in row and "a licence per year, $1.03 a month" in row
    monthly = re.search(rf'<tr data-subscription="{ids["Shape Monthly"]}">(.*?)</tr>', csp, re.S).group(1)
    assert "1 month, billed monthly" in monthly and "$9.00" in monthly and "a licence a month" in monthly
    page = customer_a_master_admin_client.get(
        f"/portal/{customer}/services/microsoft-csp/subscriptions/{ids['Shape Triennial']}"
    ).text
    assert "3 years, billed triennially" in page and "$36.18 a licence per 3 years ($1.01 a month)" in page


# -- statements per page ------------------------------------------------------------------------------------------


def test_the_report_costs_the_same_statements_for_few_and_many_rows(app, world, ops_admin_client):
    reseller = world.accounts["reseller_a"].id
    _add_shapes(world.accounts["customer_a2"].id)
    _page(ops_admin_client, reseller)  # warm: FAB's own first-request work
    with count_statements(app) as few:
        _page(ops_admin_client, reseller)
    with unscoped() as session:
        customer = session.get(Account, world.accounts["customer_a"].id)
        now = clock.utcnow()
        for i in range(12):
            item = factories.product(f"More {i:02d}", f"MORE-{i:02d}", "120.00", "100.00", cycle="annual")
            sub = factories.subscription(customer, item, 2 + i)
            sub.next_availability_id = catalogue.ensure_availability(item, "P1Y", "monthly").id
            session.add(
                SeatBatch(
                    account_id=customer.id,
                    subscription_id=sub.id,
                    kind="increase",
                    quantity=1,
                    refundable=1,
                    added_at=now,
                    refundable_until=subscriptions.window_end(now),
                    unit_price=sub.unit_price,
                )
            )
            sub.quantity += 1
        session.commit()
    with count_statements(app) as many:
        page = _page(ops_admin_client, reseller)
    assert page.count("At renewal: More") == 12
    assert _shapes(many) == _shapes(few)


def _shapes(statements: list[str]) -> list[str]:
    """The statements, an IN list's length aside (one statement however many ids); the session store's own write of
    a renewed expiry comes and goes with the clock: not the page's."""
    return [
        re.sub(r"IN \((?:%\(\w+\)s|\?)(?:, (?:%\(\w+\)s|\?))*\)", "IN (…)", s)
        for s in statements
        if "server_session" not in s
    ]


# -- the demo -------------------------------------------------------------------------------------------------------


def test_the_demo_has_terms_frequencies_an_open_window_and_a_change_at_renewal(app):
    result = app.test_cli_runner().invoke(args=["portal", "seed-demo", "--password", "demo-password-for-tests"])
    assert result.exit_code == 0, result.output
    now = clock.utcnow()
    with unscoped() as session:
        accounts = {a.name: a.id for a in session.scalars(select(Account))}
        subs = {
            (s.account_id, s.product.name): s
            for s in session.scalars(
                select(Subscription).where(Subscription.account_id.in_([accounts["Enet Ltd"], accounts["Contoso NZ"]]))
            )
        }
        contoso = {name: s for (account, name), s in subs.items() if account == accounts["Contoso NZ"]}
        shapes = {(s.term, s.billing_cycle) for s in contoso.values()}
        assert {("P1M", "monthly"), ("P1Y", "annual"), ("P1Y", "monthly")} <= shapes
        annual = next(s for s in contoso.values() if s.billing_cycle == "annual")
        assert annual.monthly_total == _half_up(annual.unit_price * annual.quantity / 12)
        open_batches = session.scalars(
            select(SeatBatch).where(
                SeatBatch.account_id == accounts["Contoso NZ"],
                SeatBatch.kind == "increase",
                SeatBatch.refundable > 0,
                SeatBatch.refundable_until > now,
            )
        ).all()
        assert len(open_batches) == 1
        increased = open_batches[0].subscription
        batches = session.scalars(select(SeatBatch).where(SeatBatch.subscription_id == increased.id)).all()
        assert sum(b.quantity for b in batches) == increased.quantity
        premium = subs[(accounts["Enet Ltd"], "Office 365 Business Premium")]
        assert (premium.assigned, premium.quantity, premium.unit_price) == (1, 1, Decimal("17.30"))
        assert premium.has_scheduled_change
        assert (
            premium.scheduled_change_label
            == "At renewal: Office 365 Business Premium, 1 year billed annually, 2 licences"
        )
        # The sandbox ("Microsoft") has the same: the increase's window and the instructions for the next term.
        mirrored = session.scalars(
            select(SandboxSeatBatch).where(SandboxSeatBatch.subscription_id == increased.provider_subscription_id)
        ).all()
        assert sorted((b.quantity, b.allowed_until) for b in mirrored) == sorted(
            (b.quantity, b.refundable_until) for b in batches
        )
        ms = session.scalars(
            select(SandboxSubscription).where(SandboxSubscription.subscription_id == premium.provider_subscription_id)
        ).one()
        assert (ms.next_offer_id, ms.next_term, ms.next_billing_cycle, ms.next_quantity) == (
            premium.product.sku,
            "P1Y",
            "annual",
            2,
        )
        ms_monthly = session.scalars(
            select(SandboxSubscription).where(
                SandboxSubscription.subscription_id == contoso["Microsoft Teams Essentials"].provider_subscription_id
            )
        ).one()
        assert ms_monthly.term == "P1M" and contoso["Microsoft Teams Essentials"].term == "P1M"
    # Seeding again changes none of it.
    again = app.test_cli_runner().invoke(args=["portal", "seed-demo"])
    assert again.exit_code == 0, again.output
    with unscoped() as session:
        assert session.scalar(select(SeatBatch.id).where(SeatBatch.kind == "increase").limit(2).offset(1)) is None

"""Readable lists (issue 15, item 5): Accounts ▸ List all — names that open the account, each customer's licences
and monthly spend, filters (reseller, Microsoft tenant, renews within), bad filters answered in words, another
reseller's customers never listed nor counted, statements that do not grow with the page; words, never True/False,
in every model list and page; the Event Log's actions in words, for every action the code records."""

from __future__ import annotations

import datetime as dt
import html
import pathlib
import re
from decimal import ROUND_HALF_UP, Decimal
from io import BytesIO

import openpyxl
import pytest
from sqlalchemy import select

from app import clock
from app.extensions import appbuilder
from app.models.accounts import Account
from app.models.events import Event
from app.models.subscriptions import Subscription
from app.services.events import ACTION_NAMES, TARGET_NAMES, action_name, target_name
from tests import factories
from tests.conftest import count_statements, csrf_token, unscoped
from tests.integration.test_scoping import A_ROW_OF_VIEW, database_fingerprint
from tests.recorded_actions import recorded_actions
from views.base import ScopedModelView

LIST = "/accountview/list/"
CENT = Decimal("0.01")


# -- reading the list -------------------------------------------------------------------------------------------------


def _cells(row_html: str) -> list[str]:
    return [
        html.unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in re.findall(r"<td>(.*?)</td>", row_html, re.S)
    ]


def _rows(page: str) -> dict[str, dict[str, str]]:
    """The list's rows by account name: {name: {column label: text}} (the show button's cell left out)."""
    if '<table class="table table-bordered table-hover">' not in page:
        assert "No records found" in page
        return {}
    table = page.split('<table class="table table-bordered table-hover">')[1].split("</table>")[0]
    head = [html.unescape(re.sub(r"<[^>]+>", "", h)).strip() for h in re.findall(r"<th[^>]*>(.*?)</th>", table, re.S)]
    rows = {}
    for body in re.findall(r"<tr>(.*?)</tr>", table.split("</thead>")[1], re.S):
        cells = _cells(body.split("</center></td>", 1)[1])
        row = dict(zip(head[1:], cells, strict=True))
        rows[row["Name"]] = row
    return rows


def _names(page: str) -> set[str]:
    return set(_rows(page))


def _money(value: Decimal) -> str:
    return f"${value.quantize(CENT, ROUND_HALF_UP):,.2f}"


# -- names open the account -------------------------------------------------------------------------------------------


def test_each_name_is_a_link_that_opens_the_accounts_screen(world, reseller_a_admin_client):
    client = reseller_a_admin_client
    page = client.get(LIST)
    assert page.status_code == 200
    links = {
        html.unescape(name): href
        for href, name in re.findall(r'<a href="(/accounts/\d+/details)" data-account="\d+">([^<]+)</a>', page.text)
    }
    ids = {"Aardvark Farms": world.accounts["customer_a"].id, "Anchor Marine": world.accounts["customer_a2"].id}
    assert links == {name: f"/accounts/{account_id}/details" for name, account_id in ids.items()}
    for name, href in links.items():
        screen = client.get(href)
        assert screen.status_code == 200 and "account-title" in screen.text and name in screen.text


# -- licences and monthly spend ---------------------------------------------------------------------------------------


def _more_subscriptions(world) -> dict[str, Decimal]:
    """Aardvark gets an annual and a triennial subscription (a per-month figure that needs rounding) and a cancelled
    one (not counted); returns the prices the test expects, worked out here from the rows."""
    with unscoped() as session:
        aardvark = session.get(Account, world.accounts["customer_a"].id)
        annual = factories.product("Annual Thing", "TEST-ANNUAL", "100.00", "80.00", cycle="annual", term="P1Y")
        triennial = factories.product("Three Years", "TEST-P3Y", "1000.00", "900.00", cycle="triennial", term="P3Y")
        factories.subscription(aardvark, annual, 1)
        factories.subscription(aardvark, triennial, 2)
        gone = factories.subscription(aardvark, annual, 7)
        gone.status = "cancelled"
        session.commit()
        subs = session.scalars(select(Subscription).where(Subscription.account_id == aardvark.id)).all()
        active = [s for s in subs if s.status == "active"]
        months = {"monthly": 1, "annual": 12, "triennial": 36}
        spend = sum(
            ((s.unit_price * s.quantity) / months[s.billing_cycle]).quantize(CENT, ROUND_HALF_UP) for s in active
        )
        return {
            "assigned": sum(s.assigned for s in active),
            "bought": sum(s.quantity for s in active),
            "spend": spend,
            "periods": sorted({s.billing_cycle for s in active}),
        }


def test_licences_and_monthly_spend_are_those_of_the_active_subscriptions(world, reseller_a_admin_client):
    expected = _more_subscriptions(world)
    assert expected["periods"] == ["annual", "monthly", "triennial"]
    # By hand: 4 × $9.00 + 3 × $5.50 + $100.00 ÷ 12 ($8.33) + 2 × $1,000.00 ÷ 36 ($55.56) = $116.39.
    assert expected["spend"] == Decimal("116.39")
    rows = _rows(reseller_a_admin_client.get(LIST).text)
    aardvark = rows["Aardvark Farms"]
    assert aardvark["Licences (used/bought)"] == f"{expected['assigned']}/{expected['bought']}" == "4/10"
    assert aardvark["Monthly spend (excl. GST)"] == _money(expected["spend"])
    assert rows["Anchor Marine"]["Licences (used/bought)"] == "0/0"
    assert rows["Anchor Marine"]["Monthly spend (excl. GST)"] == "$0.00"
    assert rows["Anchor Marine"]["Microsoft tenant"] == "None yet"
    assert aardvark["Microsoft tenant"] == "aardvark.onmicrosoft.com"


def test_operator_staff_see_resellers_without_figures_and_customers_with_them(world, ops_admin_client):
    rows = _rows(ops_admin_client.get(LIST).text)
    assert rows["Alpha Partners Ltd"]["Type"] == "Reseller"
    alpha = rows["Alpha Partners Ltd"]
    assert alpha["Licences (used/bought)"] == alpha["Monthly spend (excl. GST)"] == ""
    # Bluebird: 3 licences of $9.00 (2 used) and 2 of $5.50 (1 used).
    assert rows["Bluebird Bakery"]["Licences (used/bought)"] == "3/5"
    assert rows["Bluebird Bakery"]["Monthly spend (excl. GST)"] == "$38.00"


# -- filters ----------------------------------------------------------------------------------------------------------


def test_filter_by_microsoft_tenant(world, reseller_a_admin_client):
    client = reseller_a_admin_client
    assert _names(client.get(f"{LIST}?tenant=yes").text) == {"Aardvark Farms"}
    assert _names(client.get(f"{LIST}?tenant=no").text) == {"Anchor Marine"}
    assert _names(client.get(f"{LIST}?tenant=").text) == {"Aardvark Farms", "Anchor Marine"}


def test_filter_by_renewal_counts_active_subscriptions_renewing_in_the_window(world, reseller_a_admin_client):
    with unscoped() as session:
        anchor = session.get(Account, world.accounts["customer_a2"].id)
        basic = session.get(factories.Product, world.rows["products"]["basic"])
        factories.subscription(anchor, basic, 2, renew_in_days=45)
        soon = factories.subscription(anchor, basic, 1, renew_in_days=3)
        soon.status = "cancelled"  # a cancelled subscription renews never
        session.commit()
    client = reseller_a_admin_client
    # Aardvark's Business Basic renews in 10 days, Anchor's live one in 45.
    assert _names(client.get(f"{LIST}?renews=7").text) == set()
    assert _names(client.get(f"{LIST}?renews=14").text) == {"Aardvark Farms"}
    assert _names(client.get(f"{LIST}?renews=30").text) == {"Aardvark Farms"}
    assert _names(client.get(f"{LIST}?renews=60").text) == {"Aardvark Farms", "Anchor Marine"}
    assert _names(client.get(f"{LIST}?renews=30&tenant=no").text) == set()
    page = client.get(f"{LIST}?renews=60&tenant=no").text
    assert _names(page) == {"Anchor Marine"}
    assert 'option selected value="60"' in page and 'option selected value="no"' in page  # the form says what is on


def test_a_renewal_today_is_within_the_window_and_yesterdays_is_not(world, reseller_a_admin_client):
    with unscoped() as session:
        sub = session.get(Subscription, world.rows["a"]["subscription"])
        sub.renew_on = clock.today()
        other = session.get(Subscription, world.rows["a"]["subscription2"])
        other.renew_on = clock.today() - dt.timedelta(days=1)
        session.commit()
    assert _names(reseller_a_admin_client.get(f"{LIST}?renews=7").text) == {"Aardvark Farms"}
    with unscoped() as session:
        session.get(Subscription, world.rows["a"]["subscription"]).renew_on = clock.today() - dt.timedelta(days=1)
        session.commit()
    assert _names(reseller_a_admin_client.get(f"{LIST}?renews=90").text) == set()


def test_operator_staff_filter_by_reseller(world, ops_admin_client):
    b = world.accounts["reseller_b"].id
    a = world.accounts["reseller_a"].id
    assert _names(ops_admin_client.get(f"{LIST}?reseller={b}").text) == {"Bluebird Bakery"}
    assert _names(ops_admin_client.get(f"{LIST}?reseller={a}&tenant=yes").text) == {"Aardvark Farms"}
    assert _names(ops_admin_client.get(f"{LIST}?tenant=yes").text) == {"Aardvark Farms", "Bluebird Bakery"}
    page = ops_admin_client.get(LIST).text
    assert 'id="reseller"' in page and ">Bravo IT Ltd</option>" in page


def test_the_filters_keep_the_name_search_and_the_search_keeps_working(world, ops_admin_client):
    page = ops_admin_client.get(f"{LIST}?_flt_0_name=Aardvark&tenant=yes").text
    assert _names(page) == {"Aardvark Farms"}
    assert '<input type="hidden" name="_flt_0_name" value="Aardvark">' in page  # the filter form carries it


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("renews=31", "renews"),
        ("renews=abc", "renews"),
        ("renews=99999999999999999999", "renews"),
        ("renews=-7", "renews"),
        ("tenant=maybe", "tenant"),
        ("tenant=True", "tenant"),
        ("reseller=abc", "reseller"),
        ("reseller=99999999", "reseller"),
        ("reseller=%00", "reseller"),
    ],
)
def test_bad_filter_values_get_a_message_beside_the_field_and_no_rows(world, ops_admin_client, query, field):
    response = ops_admin_client.get(f"{LIST}?{query}")
    assert response.status_code in (400,), response.status_code
    if "%00" in query:
        return  # refused before the view (app/web.py): NUL characters never reach a page
    assert f'data-error-for="{field}"' in response.text
    assert _names(response.text) == set()


def test_a_reseller_cannot_choose_another_reseller(world, reseller_a_admin_client):
    before = database_fingerprint()
    response = reseller_a_admin_client.get(f"{LIST}?reseller={world.accounts['reseller_b'].id}")
    assert response.status_code == 400 and 'data-error-for="reseller"' in response.text
    assert "Bluebird Bakery" not in response.text and "Bravo IT Ltd" not in response.text
    assert 'id="reseller"' not in reseller_a_admin_client.get(LIST).text  # a partner's list has one reseller: its own
    assert database_fingerprint() == before


# -- another reseller -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["", "?tenant=yes", "?tenant=no", "?renews=30", "?renews=90&tenant=yes"])
def test_another_reseller_never_sees_nor_counts_reseller_as_customers(world, reseller_b_admin_client, query):
    before = database_fingerprint()
    page = reseller_b_admin_client.get(f"{LIST}{query}").text
    assert not {"Aardvark Farms", "Anchor Marine", "Alpha Partners Ltd"} & _names(page)
    assert "aardvark" not in page.lower() and "Anchor Marine" not in page
    count = int(re.search(r"Record Count:</strong>\s*(\d+)", page).group(1))
    assert count == len(_names(page)) <= 1
    aardvark = world.accounts["customer_a"].id
    assert reseller_b_admin_client.get(f"/accountview/show/{aardvark}").status_code == 404
    assert reseller_b_admin_client.get(f"/accounts/{aardvark}/details").status_code == 404
    assert database_fingerprint() == before


# -- statements -------------------------------------------------------------------------------------------------------


def _add_customers(world, how_many: int) -> None:
    with unscoped() as session:
        reseller = session.get(Account, world.accounts["reseller_a"].id)
        basic = session.get(factories.Product, world.rows["products"]["basic"])
        for i in range(how_many):
            customer = Account(kind="customer", name=f"Bulk Customer {i:03d}", parent=reseller)
            session.add(customer)
            session.flush()
            factories.tenant(customer, f"bulk{i:03d}")
            factories.subscription(customer, basic, 3, renew_in_days=5 + i % 50)
        session.commit()


@pytest.mark.parametrize("query", ["", "&tenant=yes&renews=60", "&reseller={reseller_a}"])
def test_statements_per_page_do_not_grow_with_the_rows_shown(app, world, ops_admin_client, query):
    _add_customers(world, 60)
    query = query.format(reseller_a=world.accounts["reseller_a"].id)
    counts, shown = [], []
    for size in (5, 25, 50):
        path = f"{LIST}?psize_AccountView={size}{query}"
        ops_admin_client.get(path)  # warm up: first-request work is not what we measure
        with count_statements(app) as statements:
            page = ops_admin_client.get(path)
        assert page.status_code == 200
        counts.append(len(statements))
        shown.append(len(_rows(page.text)))
    assert shown == [5, 25, 50]
    assert counts[0] == counts[1] == counts[2], counts
    assert counts[0] <= 20, counts


# -- words, never True/False ------------------------------------------------------------------------------------------

_BOOLEAN_TEXT = re.compile(r">\s*(True|False|None)\s*<")


def _model_views() -> list[ScopedModelView]:
    return [v for v in appbuilder.baseviews if isinstance(v, ScopedModelView)]


def test_every_boolean_of_every_model_view_is_shown_in_words(app):
    checked = 0
    for view in _model_views():
        for name in {*(view.list_columns or []), *(view.show_columns or [])}:
            if view.datamodel.is_boolean(name):
                formatter = view.formatters_columns[name]
                assert {formatter(True), formatter(False)} in ({"Yes", "No"}, {"On", "Off"}), (view, name)
                checked += 1
    assert checked >= 1  # the Subscriptions list's Auto-renew at least


@pytest.mark.parametrize("who", ["ops_admin_client", "reseller_a_admin_client", "reseller_a_user_client"])
def test_no_list_or_page_of_a_model_view_shows_true_or_false(request, world, who):
    client = request.getfixturevalue(who)
    with unscoped() as session:
        session.get(Subscription, world.rows["a"]["subscription"]).auto_renew = False
        session.commit()
    seen = 0
    for view in _model_views():
        name = type(view).__name__
        row = A_ROW_OF_VIEW.get(name)
        paths = [f"{view.route_base}/list/"]
        if row is not None:
            paths.append(f"{view.route_base}/show/{row(world)}")
        for path in paths:
            response = client.get(path, follow_redirects=True)
            if response.status_code == 403 or "/login" in response.request.path:
                continue  # not this user's list
            assert response.status_code == 200, path
            assert not _BOOLEAN_TEXT.search(response.text), (path, _BOOLEAN_TEXT.search(response.text))
            seen += 1
    assert seen >= 3
    if who != "reseller_a_admin_client":
        return
    subscriptions = client.get("/subscriptionview/list/").text
    assert "<td>Off</td>" in subscriptions and "<td>On</td>" in subscriptions  # Auto-renew, in words
    shown = client.get(f"/subscriptionview/show/{world.rows['a']['subscription']}").text
    assert not _BOOLEAN_TEXT.search(shown) and ">Off<" in re.sub(r"\s+", "", shown)


# -- the Event Log's actions in words ---------------------------------------------------------------------------------

# f-strings that build action names, and what they stand for (a new one fails the test below until listed here).
TEMPLATES = {
    "f'{kind}.created'": {"reseller.created", "customer.created"},
    "f'{account.kind}.{verb}'": {f"{k}.{v}" for k in ("reseller", "customer") for v in ("enabled", "disabled")},
    "f'user.{verb}'": {"user.enabled", "user.disabled"},
    "f'm365_user.{verb}'": {"m365_user.enabled", "m365_user.disabled"},
    "f'{noun}.unconfirmed'": {"subscription.unconfirmed", "licence.unconfirmed", "m365_user.unconfirmed"},
    "f'{name}.{verb}'": set(),  # ScopedModelView's own events: from the registered views, below
}


def _model_view_actions() -> set[str]:
    """What ScopedModelView records for each registered view: created/updated/deleted for the routes it has, and
    each ``self._event("<verb>", ...)`` of the view's module."""
    found = set()
    for view in _model_views():
        name = view.event_name or view.datamodel.obj.__name__.lower()
        routes = set(view.include_route_methods or ())
        verbs = {
            verb for route, verb in (("add", "created"), ("edit", "updated"), ("delete", "deleted")) if route in routes
        }
        source = pathlib.Path(__import__(type(view).__module__, fromlist=["_"]).__file__).read_text()
        verbs |= set(re.findall(r'self\._event\(\s*"([a-z_]+)"', source))
        found |= {f"{name}.{verb}" for verb in verbs}
    return found


def test_every_action_the_code_records_has_words(app):
    literals, templates = recorded_actions(pathlib.Path(__file__).resolve().parents[2])
    unknown = set(templates) - set(TEMPLATES)
    assert not unknown, f"list what these build in TEMPLATES: {sorted((t, sorted(templates[t])) for t in unknown)}"
    actions = literals | set().union(*TEMPLATES.values()) | _model_view_actions()
    assert {"m365_user.created", "tenant.created", "auth.login", "product.retired"} <= actions
    missing = sorted(a for a in actions if a not in ACTION_NAMES)
    assert not missing, f"add words for these to ACTION_NAMES (app/services/events.py): {missing}"
    for action in actions:
        assert "." not in action_name(action) and "_" not in action_name(action), action


def test_words_for_an_unknown_action_are_readable():
    assert action_name("m365_user.created") == "Added a Microsoft 365 user"
    assert action_name("m365_user.renamed_twice") == "Microsoft 365 user renamed twice"
    assert action_name("tenant.frobbed") == "Microsoft tenant frobbed"
    assert action_name("mfa.reenrolled") == "Two-factor authentication reenrolled"
    assert action_name("user.cp3_revoked") == "User (CP3) revoked"
    assert action_name("") == "Something"
    assert target_name("M365User") == TARGET_NAMES["M365User"] == "Microsoft 365 user"
    assert target_name("SomeNewThing") == "Some new thing"
    for name in [*ACTION_NAMES.values(), *TARGET_NAMES.values()]:
        assert name and not re.search(r"[a-z]\.[a-z]|_", name), name


def _event(account_id: int, action: str, summary: str) -> None:
    with unscoped() as session:
        session.add(
            Event(
                account_id=account_id,
                action=action,
                actor_label="tester@example.com",
                summary=summary,
                target_type="M365User",
                target_id="1",
                occurred_at=dt.datetime(2025, 6, 1),
            )
        )
        session.commit()


_DOTTED = re.compile(r'class="event-action">\s*[^<]*[a-z0-9]\.[a-z]')


def test_every_event_log_shows_actions_in_words_and_filters_by_them(world, reseller_a_admin_client, login):
    customer = world.accounts["customer_a"].id
    _event(customer, "m365_user.created", "marker added")
    _event(customer, "m365_user.password_reset", "marker reset")
    _event(customer, "m365_user.renamed_twice", "marker unknown")
    client = reseller_a_admin_client
    master = login(world.users["customer_a_master_admin"].email)
    logs = [
        (client, "/eventview/list/"),
        (client, f"/accounts/{customer}/events"),
        (master, f"/portal/{customer}/events"),
    ]
    for who, path in logs:
        page = who.get(path).text
        assert '<td class="event-action">Added a Microsoft 365 user</td>' in page, path
        assert '<td class="event-action">Reset a Microsoft 365 user&#39;s password</td>' in page, path
        assert '<td class="event-action">Microsoft 365 user renamed twice</td>' in page, path
        assert not _DOTTED.search(page), path
        assert "m365_user.created" not in page.replace('value="m365_user.created"', ""), path  # only the filter's value
        filtered = who.get(f"{path}?action=m365_user.created").text
        assert "marker added" in filtered and "marker reset" not in filtered, path
        assert '<option selected value="m365_user.created">Added a Microsoft 365 user</option>' in filtered, path


def test_the_event_log_export_names_actions_in_words(world, reseller_a_admin_client):
    customer = world.accounts["customer_a"].id
    _event(customer, "m365_user.created", "marker added")
    _event(customer, "tenant.credentials_sent", "marker sent")
    client = reseller_a_admin_client
    response = client.post(f"/accounts/{customer}/events.xlsx", data={"csrf_token": csrf_token(client)})
    assert response.status_code == 200
    book = openpyxl.load_workbook(BytesIO(response.data))
    rows = [row for row in book["Event log"].iter_rows(min_row=3, values_only=True) if row[6] and "marker" in row[6]]
    actions = {row[6]: row[4] for row in rows}
    assert actions == {
        "marker added": "Added a Microsoft 365 user",
        "marker sent": ACTION_NAMES["tenant.credentials_sent"],
    }
    assert all(row[5] == "Microsoft 365 user 1" for row in rows)

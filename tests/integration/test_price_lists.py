"""The price lists' pages: who sees what (Partner Users nothing, CSP Admins their buy price and margin, operator staff
Microsoft's cost too), changes by POST with messages beside the fields, another reseller's ids answered 404 with the
database unchanged, and statements per page that do not grow with rows."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models.accounts import Account
from app.models.catalog import PriceRule
from app.models.events import Event
from app.models.subscriptions import Subscription, UsagePoint
from app.services import catalogue, price_lists
from security import scoping
from tests.conftest import count_statements, csrf_token, unscoped

D = Decimal


def _add_rule(app, level, owner_key, world, basis, percent, **kw) -> int:
    with app.app_context(), scoping.bypass("test: price rule"):
        owner = db.session.get(Account, world.accounts[owner_key].id)
        rule = price_lists.create_rule(level, owner, basis=basis, percent=percent, **kw)
        db.session.commit()
        return rule.id


def _snapshot():
    """What a refused request must leave as it was."""
    with unscoped() as session:
        return (
            sorted(
                (r.account_id, r.level, r.reach, str(r.basis), str(r.percent), r.below_cost_intended)
                for r in session.scalars(select(PriceRule))
            ),
            sorted((s.id, str(s.unit_price)) for s in session.scalars(select(Subscription))),
            session.scalar(select(func.count(Event.id))),
            session.scalar(select(func.count(UsagePoint.id))),
        )


def _monthly_term(app, world) -> int:
    """A monthly-term availability of the world's Basic SKU (cost 9.18, retail 10.80)."""
    with app.app_context(), scoping.bypass("test: catalogue"):
        from app.models.catalog import Product

        basic = db.session.get(Product, world.rows["products"]["basic"])
        av = catalogue.ensure_availability(basic, "P1M", "monthly")
        catalogue.set_price(av, "9.18", "10.80")
        db.session.commit()
        return av.id


# -- who sees what ---------------------------------------------------------------------------------------------------


def test_a_csp_admin_sees_buy_price_and_margin_never_microsofts_cost(app, world, reseller_a_admin_client):
    _add_rule(app, "buy", "operator", world, "cost", "8")
    _add_rule(app, "sell", "reseller_a", world, "buy", "15")
    a = world.accounts["reseller_a"].id
    assert reseller_a_admin_client.get("/prices/").location.endswith(f"/prices/{a}/")
    page = reseller_a_admin_client.get(f"/prices/{a}/?customer={world.accounts['customer_a'].id}")
    assert page.status_code == 200
    # Basic P1Y monthly: cost 7.65 → buy 8.26 → sell 9.50, margin 1.24 per licence per month
    assert "Buy price per licence per month" in page.text and "Margin per licence per month" in page.text
    assert ">$8.26<" in page.text and ">$9.50<" in page.text and ">$1.24<" in page.text
    assert "Microsoft's cost" not in page.text and "$7.65" not in page.text and 'class="ms-cost"' not in page.text
    assert "buy + 15 %" in page.text


def test_operator_staff_see_microsofts_cost_every_buy_price_and_margin(app, world, ops_admin_client):
    _add_rule(app, "buy", "operator", world, "cost", "8")
    a = world.accounts["reseller_a"].id
    page = ops_admin_client.get(f"/prices/{a}/")
    assert page.status_code == 200 and 'class="ms-cost">$7.65<' in page.text and ">$8.26<" in page.text
    page = ops_admin_client.get(f"/reseller-prices/?reseller={a}")
    assert page.status_code == 200
    assert 'class="ms-cost">$7.65<' in page.text and 'class="buy">$8.26<' in page.text
    assert 'class="margin-month">$0.61<' in page.text  # the operator's margin: 8.26 − 7.65
    assert ops_admin_client.get("/prices/").status_code == 200  # the reseller chooser


@pytest.mark.parametrize(
    "path",
    ["/prices/", "/prices/{a}/", "/prices/{a}/?customer={c}", "/reseller-prices/", "/reseller-prices/?reseller={a}"],
)
def test_partner_users_and_customers_get_404_on_every_price_page(app, world, login, path):
    a, c = world.accounts["reseller_a"].id, world.accounts["customer_a"].id
    for email in ("user@alpha.example", "master@aardvark.example"):
        client = login(email)
        response = client.get(path.format(a=a, c=c))
        assert response.status_code == 404, (email, path)
        assert "$" not in response.text


@pytest.mark.parametrize("value", ["99999999999999999999", "2147483648", "-1", "abc", "1.5"])
def test_ids_no_row_could_have_answer_404(app, world, reseller_a_admin_client, ops_admin_client, value):
    a = world.accounts["reseller_a"].id
    assert reseller_a_admin_client.get(f"/prices/{a}/?customer={value}").status_code == 404
    assert ops_admin_client.get(f"/reseller-prices/?reseller={value}").status_code == 404


def test_csp_admins_get_404_on_reseller_prices(app, world, reseller_a_admin_client):
    assert reseller_a_admin_client.get("/reseller-prices/").status_code == 404


def test_partner_users_cannot_post_either(app, world, login):
    client = login("user@alpha.example")
    token = csrf_token(client)
    before = _snapshot()
    a = world.accounts["reseller_a"].id
    response = client.post(f"/prices/{a}/rules", data={"csrf_token": token, "basis": "buy", "percent": "1"})
    assert response.status_code == 404
    assert _snapshot() == before


def test_the_menu_offers_price_pages_only_to_who_may_read_them(app, world, login):
    assert "Customer prices" in login("admin@alpha.example").get(f"/prices/{world.accounts['reseller_a'].id}/").text
    ops = login("ops@operator.example").get("/reseller-prices/").text
    assert "Customer prices" in ops and "Reseller prices" in ops
    user_home = login("user@alpha.example").get("/", follow_redirects=True).text
    assert "Customer prices" not in user_home and "Reseller prices" not in user_home


# -- changes ---------------------------------------------------------------------------------------------------------


def test_simon_sets_a_default_markup_and_a_customer_override(app, world, reseller_a_admin_client):
    """The issue's "Done when", on the test world: 15 % for every customer, 10 % for one."""
    client = reseller_a_admin_client
    a, c1, c2 = (world.accounts[k].id for k in ("reseller_a", "customer_a", "customer_a2"))
    token = csrf_token(client, f"/prices/{a}/")
    response = client.post(
        f"/prices/{a}/rules", data={"csrf_token": token, "applies_to": "", "basis": "buy", "percent": "15"}
    )
    assert response.status_code == 302
    response = client.post(
        f"/prices/{a}/rules",
        data={"csrf_token": token, "customer_id": c1, "applies_to": "", "basis": "buy", "percent": "10"},
    )
    assert response.status_code == 302
    # Basic P1Y monthly: buy 7.65; + 10 % = 8.42 (8.415 half up) for Aardvark, + 15 % = 8.80 for Anchor
    page1 = client.get(f"/prices/{a}/?customer={c1}").text
    page2 = client.get(f"/prices/{a}/?customer={c2}").text
    assert 'class="sell">$8.42<' in page1 and 'class="margin-month">$0.77<' in page1
    assert 'class="sell">$8.80<' in page2 and 'class="margin-month">$1.15<' in page2
    with unscoped() as session:
        events = session.scalars(select(Event).where(Event.action == "price_rule.created").order_by(Event.id)).all()
        assert [e.actor_label for e in events] == ["admin@alpha.example"] * 2
        assert "none → buy + 10 %" in events[1].summary and "Aardvark Farms" in events[1].summary


def test_change_and_delete_a_rule(app, world, reseller_a_admin_client):
    client = reseller_a_admin_client
    a = world.accounts["reseller_a"].id
    rule_id = _add_rule(app, "sell", "reseller_a", world, "buy", "15")
    token = csrf_token(client, f"/prices/{a}/")
    response = client.post(
        f"/prices/{a}/rules/{rule_id}", data={"csrf_token": token, "basis": "retail", "percent": "2"}
    )
    assert response.status_code == 302
    with unscoped() as session:
        rule = session.get(PriceRule, rule_id)
        assert (rule.basis, rule.percent) == ("retail", D("2.00"))
    deleted = client.post(f"/prices/{a}/rules/{rule_id}/delete", data={"csrf_token": token, "confirmed": "yes"})
    assert deleted.status_code == 302
    with unscoped() as session:
        assert session.get(PriceRule, rule_id) is None
        actions = session.scalars(select(Event.action).where(Event.action.like("price_rule.%"))).all()
        assert set(actions) >= {"price_rule.changed", "price_rule.deleted"}


def test_a_bad_change_is_answered_beside_that_rule_and_nothing_saved(app, world, reseller_a_admin_client):
    client = reseller_a_admin_client
    a = world.accounts["reseller_a"].id
    rule_id = _add_rule(app, "sell", "reseller_a", world, "buy", "15")
    token = csrf_token(client, f"/prices/{a}/")
    before = _snapshot()
    for data, field in (
        ({"percent": "fifteen"}, "percent"),
        ({"basis": "retail", "percent": "-40"}, "below_cost_intended"),
    ):
        response = client.post(f"/prices/{a}/rules/{rule_id}", data={"csrf_token": token, "basis": "buy", **data})
        assert response.status_code == 400
        row = response.text[response.text.index(f'id="rule-{rule_id}"') :]
        assert f'data-error-for="{field}"' in row[: row.index("</tr>")]
    assert _snapshot() == before


@pytest.mark.parametrize(
    "data, field, message",
    [
        ({"percent": "abc"}, "percent", "Enter a percentage"),
        ({"percent": "١٢"}, "percent", "Enter a percentage"),  # Arabic-Indic digits: Decimal would read 12
        ({"percent": "1000"}, "percent", "above -100 and below 1000"),
        ({"percent": "-100"}, "percent", "above -100 and below 1000"),
        ({"percent": "1.234"}, "percent", "at most 2 decimal places"),
        ({"applies_to": "product:NOPE"}, "applies_to", "not in the catalogue"),
        ({"applies_to": "product:%"}, "applies_to", "not in the catalogue"),
        ({"applies_to": "sku:999999"}, "applies_to", "not in the catalogue"),
        ({"applies_to": "nonsense"}, "applies_to", "Choose what the rule applies to"),
        ({"basis": "cost"}, "basis", "Choose"),
        ({"basis": "retail", "percent": "-30"}, "below_cost_intended", "under Alpha Partners Ltd's buy price"),
    ],
)
def test_bad_input_is_answered_beside_the_field_with_400_and_nothing_saved(
    app, world, reseller_a_admin_client, data, field, message
):
    client = reseller_a_admin_client
    a = world.accounts["reseller_a"].id
    token = csrf_token(client, f"/prices/{a}/")
    before = _snapshot()
    form = {"csrf_token": token, "applies_to": "", "basis": "buy", "percent": "10", **data}
    response = client.post(f"/prices/{a}/rules", data=form)
    assert response.status_code == 400
    error = re.search(rf'data-error-for="{field}">([^<]*)<', response.text)
    assert error and message in error.group(1).replace("&#39;", "'")
    assert _snapshot() == before


def test_below_cost_intended_is_accepted_when_ticked(app, world, reseller_a_admin_client):
    client = reseller_a_admin_client
    a = world.accounts["reseller_a"].id
    token = csrf_token(client, f"/prices/{a}/")
    form = {"csrf_token": token, "applies_to": "", "basis": "retail", "percent": "-30", "below_cost_intended": "y"}
    assert client.post(f"/prices/{a}/rules", data=form).status_code == 302
    with unscoped() as session:
        assert session.scalars(select(PriceRule.below_cost_intended)).one() is True


def test_a_subscription_override_and_apply_now_to_monthly_terms(app, world, reseller_a_admin_client):
    client = reseller_a_admin_client
    a, c1 = world.accounts["reseller_a"].id, world.accounts["customer_a"].id
    annual = world.rows["a"]["subscription"]
    monthly_av = _monthly_term(app, world)
    monthly = _monthly_subscription(app, c1, monthly_av)
    token = csrf_token(client, f"/prices/{a}/")
    form = {"csrf_token": token, "customer_id": c1, "applies_to": f"subscription:{monthly}", "basis": "buy"}
    assert client.post(f"/prices/{a}/rules", data={**form, "percent": "10"}).status_code == 302
    before = dict(_prices())
    # Locked: the rule changed no subscription's price.
    assert before[monthly] == D("10.80") and before[annual] == D("9.00")
    applied = client.post(f"/prices/{a}/apply-now", data={"csrf_token": token, "customer_id": c1, "confirmed": "yes"})
    assert applied.status_code == 302
    after = dict(_prices())
    assert after[monthly] == D("10.10")  # 9.18 + 10 % = 10.098
    assert after[annual] == D("9.00")  # an annual term keeps its price to renewal
    page = client.get(f"/prices/{a}/?customer={c1}").text
    assert f'data-subscription="{monthly}"' in page


def _monthly_subscription(app, customer_id: int, availability_id: int) -> int:
    """A monthly-term subscription bought today at Microsoft's retail price (10.80)."""
    import datetime as dt

    from app import clock
    from app.models.catalog import Availability
    from app.services import subscriptions

    with app.app_context(), scoping.bypass("test: a monthly term"):
        today = clock.today()
        sub = subscriptions.new_subscription(
            db.session.get(Account, customer_id),
            db.session.get(Availability, availability_id),
            2,
            unit_price=D("10.80"),
            unit_cost=D("9.18"),
            ms_unit_cost=D("9.18"),
            provider_subscription_id=None,
            term_started_on=today,
            renew_on=subscriptions.renewal_date(today, "P1M"),
            added_at=dt.datetime.combine(today, dt.time(9)),
        )
        db.session.commit()
        return sub.id


def _prices():
    with unscoped() as session:
        return session.execute(select(Subscription.id, Subscription.unit_price)).all()


def test_operator_sets_a_resellers_buy_price(app, world, ops_admin_client):
    client = ops_admin_client
    a, operator = world.accounts["reseller_a"].id, world.accounts["operator"].id
    token = csrf_token(client, "/reseller-prices/")
    form = {"csrf_token": token, "owner_id": a, "reseller_id": a, "applies_to": "", "basis": "cost", "percent": "5"}
    assert client.post("/reseller-prices/rules", data=form).status_code == 302
    form = {**form, "owner_id": operator, "percent": "8"}
    assert client.post("/reseller-prices/rules", data=form).status_code == 302
    page = client.get(f"/reseller-prices/?reseller={a}").text
    assert 'class="buy">$8.03<' in page  # the reseller's own rule wins: 7.65 + 5 % = 8.0325
    bad = client.post("/reseller-prices/rules", data={**form, "basis": "buy", "percent": "1"})
    assert bad.status_code == 400 and 'data-error-for="basis"' in bad.text
    with unscoped() as session:
        assert session.scalar(select(func.count(PriceRule.id)).where(PriceRule.level == "buy")) == 2


def test_a_buy_price_under_microsofts_cost_is_refused_unless_intended(app, world, ops_admin_client):
    """The operator's floor: a reseller's buy price under what Microsoft charges the operator loses money on every
    licence; refused beside the tick, with the product and both prices, and nothing saved — unless ticked."""
    client = ops_admin_client
    a = world.accounts["reseller_a"].id
    token = csrf_token(client, "/reseller-prices/")
    form = {"csrf_token": token, "owner_id": a, "reseller_id": a, "applies_to": "", "basis": "retail", "percent": "-20"}
    before = _snapshot()
    refused = client.post("/reseller-prices/rules", data=form)
    assert refused.status_code == 400
    error = re.search(r'data-error-for="below_cost_intended">([^<]*)<', refused.text)
    assert error and "under Microsoft's cost of $4.68" in error.group(1).replace("&#39;", "'")
    assert _snapshot() == before
    assert client.post("/reseller-prices/rules", data={**form, "below_cost_intended": "y"}).status_code == 302
    with unscoped() as session:
        assert session.scalars(select(PriceRule.below_cost_intended).where(PriceRule.level == "buy")).one() is True


# -- another reseller: 404, nothing changed ---------------------------------------------------------------------------


def test_another_reseller_gets_404_on_every_route_and_nothing_changes(app, world, reseller_b_admin_client):
    client = reseller_b_admin_client
    a, b = world.accounts["reseller_a"].id, world.accounts["reseller_b"].id
    c_a = world.accounts["customer_a"].id
    sub_a = world.rows["a"]["subscription"]
    rule_a = _add_rule(app, "sell", "customer_a", world, "buy", "10")
    token = csrf_token(client, f"/prices/{b}/")
    before = _snapshot()
    rule = {"csrf_token": token, "applies_to": "", "basis": "buy", "percent": "50"}
    attempts = [
        ("get", f"/prices/{a}/", None),
        ("get", f"/prices/{b}/?customer={c_a}", None),
        ("post", f"/prices/{a}/rules", rule),
        ("post", f"/prices/{b}/rules", {**rule, "customer_id": c_a}),
        ("post", f"/prices/{b}/rules", {**rule, "applies_to": f"subscription:{sub_a}"}),
        (
            "post",
            f"/prices/{b}/rules",
            {**rule, "customer_id": world.accounts["customer_b"].id, "applies_to": f"subscription:{sub_a}"},
        ),
        ("post", f"/prices/{a}/rules/{rule_a}", rule),
        ("post", f"/prices/{b}/rules/{rule_a}", rule),
        ("post", f"/prices/{b}/rules/{rule_a}/delete", {"csrf_token": token}),
        ("post", f"/prices/{a}/apply-now", {"csrf_token": token}),
        ("post", f"/prices/{b}/apply-now", {"csrf_token": token, "customer_id": c_a}),
    ]
    for method, path, data in attempts:
        response = getattr(client, method)(path, data=data) if data else getattr(client, method)(path)
        assert response.status_code == 404, (method, path, data)
    assert _snapshot() == before


def test_every_price_route_answers_another_reseller_404_and_changes_nothing(app, world, reseller_b_admin_client):
    """Walk every route of both price views with reseller A's ids, as reseller B's CSP Admin."""
    from tests.integration.test_scoping import database_fingerprint

    client = reseller_b_admin_client
    values = {
        "reseller_id": world.accounts["reseller_a"].id,
        "rule_id": _add_rule(app, "sell", "customer_a", world, "buy", "10"),
    }
    buy_rule = _add_rule(app, "buy", "reseller_a", world, "cost", "5")
    token = csrf_token(client)
    before = database_fingerprint()
    checked = 0
    for rule in app.url_map.iter_rules():
        if rule.endpoint.split(".")[0] not in ("CustomerPricesView", "ResellerPricesView"):
            continue
        for rule_id in (values["rule_id"], buy_rule):
            ids = {**values, "rule_id": rule_id}
            url = re.sub(r"<(?:int:)?(\w+)>", lambda m, ids=ids: str(ids[m.group(1)]), rule.rule)
            if url in ("/prices/", "/reseller-prices/") and "GET" in rule.methods:
                continue  # no id: B's own chooser (or 404 for the operator's page, checked elsewhere)
            if "GET" in rule.methods:
                assert client.get(url).status_code == 404, url
            if "POST" in rule.methods:
                data = {
                    "csrf_token": token,
                    "customer_id": world.accounts["customer_a"].id,
                    "owner_id": world.accounts["reseller_a"].id,
                    "applies_to": "",
                    "basis": "buy",
                    "percent": "50",
                }
                assert client.post(url, data=data).status_code == 404, url
            checked += 1
    assert checked >= 10
    assert database_fingerprint() == before


def test_changes_need_post_and_csrf(app, world, reseller_a_admin_client):
    client = reseller_a_admin_client
    a = world.accounts["reseller_a"].id
    before = _snapshot()
    assert client.get(f"/prices/{a}/rules").status_code == 405
    assert client.get(f"/prices/{a}/apply-now").status_code == 405
    response = client.post(f"/prices/{a}/rules", data={"applies_to": "", "basis": "buy", "percent": "5"})
    assert response.status_code == 400
    assert _snapshot() == before


# -- statements do not grow with rows ---------------------------------------------------------------------------------


def _more_catalogue(app, count: int, start: int = 0) -> None:
    with app.app_context(), scoping.bypass("test: catalogue"):
        for i in range(start, start + count):
            item = catalogue.ensure_product(f"Extra {i:02}", f"EXTRA{i:02}:0001")
            for term, frequency in (("P1M", "monthly"), ("P1Y", "annual")):
                catalogue.set_price(catalogue.ensure_availability(item, term, frequency), "1.0000", "2.0000")
        db.session.commit()


def test_statements_per_page_do_not_grow_with_rows(app, world, reseller_a_admin_client, ops_admin_client):
    a, c = world.accounts["reseller_a"].id, world.accounts["customer_a"].id
    _add_rule(app, "buy", "operator", world, "cost", "8")
    _add_rule(app, "sell", "reseller_a", world, "buy", "15")
    _add_rule(app, "sell", "customer_a", world, "buy", "10")
    pages = [
        (reseller_a_admin_client, f"/prices/{a}/?customer={c}"),
        (ops_admin_client, f"/reseller-prices/?reseller={a}"),
    ]
    counts = []
    for start, extra in ((0, 2), (2, 10)):
        _more_catalogue(app, extra, start)
        row = []
        for client, path in pages:
            client.get(path)  # warm: the first request of a client loads what every later one shares
            with count_statements(app) as statements:
                assert client.get(path).status_code == 200
            row.append(len(statements))
        counts.append(row)
    assert counts[0] == counts[1], counts


# -- the demo ---------------------------------------------------------------------------------------------------------


def test_the_demo_seeds_its_price_lists_once_and_simon_sees_his_margin_jane_nothing(app, login):
    for _ in range(2):
        result = app.test_cli_runner().invoke(args=["portal", "seed-demo", "--password", "demo-password-for-tests"])
        assert result.exit_code == 0, result.output
    with unscoped() as session:
        rules = {
            (session.get(Account, r.account_id).name, r.level, r.describe()) for r in session.scalars(select(PriceRule))
        }
        assert rules == {
            ("Mycloudstore", "buy", "cost + 8 %"),
            ("Demo Reseller Ltd", "sell", "buy + 15 %"),
            ("Enet Ltd", "sell", "buy + 10 %"),
        }
        demo = session.scalars(select(Account).where(Account.name == "Demo Reseller Ltd")).one()
        enet = session.scalars(select(Account).where(Account.name == "Enet Ltd")).one()
        contoso = session.scalars(select(Account).where(Account.name == "Contoso NZ")).one()
        # Rules never rewrite a subscription: Enet's Office 365 Business Premium keeps the guide's $17.30.
        locked = session.execute(
            select(Subscription.unit_price).where(Subscription.account_id == enet.id).order_by(Subscription.id)
        ).scalars()
        assert D("17.30") in list(locked)
        ids = demo.id, enet.id, contoso.id
    simon = login("simon@demoreseller.co.nz", "demo-password-for-tests")
    enet_page = simon.get(f"/prices/{ids[0]}/?customer={ids[1]}")
    contoso_page = simon.get(f"/prices/{ids[0]}/?customer={ids[2]}")
    assert enet_page.status_code == contoso_page.status_code == 200
    assert "buy + 10 %" in enet_page.text and "buy + 15 %" in contoso_page.text
    assert "Margin per licence per month" in enet_page.text and 'class="ms-cost"' not in enet_page.text
    sells = [re.findall(r'class="sell">([^<]+)<', page.text) for page in (enet_page, contoso_page)]
    assert sells[0] and sells[0] != sells[1]  # the override changes the prices Enet sees
    jane = login("jane@demoreseller.co.nz", "demo-password-for-tests")
    for path in (f"/prices/{ids[0]}/", f"/prices/{ids[0]}/?customer={ids[1]}", "/reseller-prices/"):
        assert jane.get(path).status_code == 404


def test_the_event_log_hides_price_rule_events_from_whoever_may_not_see_costs(app, world):
    from flask import g
    from flask_login import login_user

    from security.models import PortalUser

    for key, hidden in (("reseller_a_user", True), ("reseller_a_admin", False), ("ops_admin", False)):
        with app.test_request_context(), scoping.bypass("test: the caller's permissions"):
            user = db.session.get(PortalUser, world.users[key].id)
            login_user(user)
            g.user = user
            criterion = price_lists.event_log_criterion()
            assert (criterion is not None) == hidden, key
            if hidden:
                assert "price_rule" in str(criterion.compile(compile_kwargs={"literal_binds": True}))

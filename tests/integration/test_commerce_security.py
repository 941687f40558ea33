"""Issue 13's new routes attacked (ordering, seat windows, renewals and upgrades, the price lists, the catalogue's
price changes): another reseller's ids anywhere (path, form, hidden fields) answer 404 and change nothing; every role
gets what the app gives it elsewhere; GET changes nothing; a POST without CSRF is refused; fuzzed fields answer 400
(never a 500) and write nothing."""

from __future__ import annotations

import io
import re
import zipfile
from decimal import Decimal

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models.accounts import Account
from app.models.catalog import PriceRule, Product
from app.models.operations import ProviderOperation
from app.models.subscriptions import LicenceAssignment, Subscription
from app.services import catalogue
from security import scoping
from tests import factories, ordering_steps
from tests.conftest import csrf_token, unscoped
from tests.integration.test_scoping import database_fingerprint

COMMERCE_VIEWS = (
    "CustomerOrderingView",
    "CustomerSeatWindowsView",
    "CustomerRenewalsView",
    "CustomerPricesView",
    "ResellerPricesView",
    "PriceChangesView",
)
CUSTOMER_VIEWS = COMMERCE_VIEWS[:3]

# What a field may be sent as by someone typing, pasting or forging it.
FUZZ = [
    "",
    " ",
    "0",
    "-1",
    "-0",
    "+5",
    "1.5",
    "abc",
    "NaN",
    "sNaN",
    "Infinity",
    "-Infinity",
    "1e309",
    "1e3",
    "9" * 400,
    "2147483648",
    "999999",
    "10001",
    "99999999999999999999",
    "١٢",  # Arabic-Indic digits: isdigit() but not ASCII
    "²",  # a superscript: isdigit() but int() refuses it
    "𝟙",
    "' OR 1=1 --",
    "1; DROP TABLE subscription",
    "<script>alert(1)</script>",
    "\u202e5",
    "x" * 5000,
]


@pytest.fixture
def ids(app, world) -> dict[str, int]:
    """The world plus what issue 13's pages act on: a monthly-term availability of Business Basic, Business Standard
    (an eligible upgrade), price rules of both resellers at both levels, and the world's ids."""
    with app.app_context(), scoping.bypass("test: commerce world"):
        basic = db.session.get(Product, world.rows["products"]["basic"])
        monthly = catalogue.ensure_availability(basic, "P1M", "monthly")
        catalogue.set_price(monthly, "9.18", "10.80")
        standard = factories.product("Microsoft 365 Business Standard", "TEST-STD", "15.00", "12.75")
        rules = {}
        for key, account, level, basis in [
            ("sell_a", "reseller_a", "sell", "buy"),
            ("sell_ca", "customer_a", "sell", "buy"),
            ("buy_a", "reseller_a", "buy", "cost"),
            ("sell_b", "reseller_b", "sell", "buy"),
            ("sell_cb", "customer_b", "sell", "buy"),
        ]:
            rule = PriceRule(account_id=world.accounts[account].id, level=level, basis=basis, percent=Decimal("10"))
            db.session.add(rule)
            db.session.flush()
            rules[key] = rule.id
        db.session.commit()
        found = {
            "monthly": monthly.id,
            "standard": factories.availability(standard).id,
            "basic_availability": factories.availability(basic).id,
            **rules,
        }
    return found | {
        "basic": world.rows["products"]["basic"],
        "reseller_a": world.accounts["reseller_a"].id,
        "reseller_b": world.accounts["reseller_b"].id,
        "customer_a": world.accounts["customer_a"].id,
        "customer_b": world.accounts["customer_b"].id,
        "sub_a": world.rows["a"]["subscription"],
        "sub_b": world.rows["b"]["subscription"],
        "user_a": world.rows["a"]["m365_user"],
        "user_b": world.rows["b"]["m365_user"],
        "operator": world.accounts["operator"].id,
    }


def launch(client, membership_id: int):
    """Launch (CP3) ``client`` into a customer as the login of ``membership_id``."""
    answer = client.post(f"/impersonation/start/{membership_id}", data={"csrf_token": csrf_token(client)})
    assert answer.status_code in (302, 303), answer.status_code
    return client


def _commerce_rules(app, views=COMMERCE_VIEWS):
    return [r for r in app.url_map.iter_rules() if r.endpoint.split(".")[0] in views]


def _url(rule, values: dict[str, int]) -> str:
    return re.sub(r"<(?:int:)?(\w+)>", lambda m: str(values[m.group(1)]), rule.rule)


def _customer_form(ids, customer: str, sub: str, user: str, token: str) -> dict:
    """Every field any customer-portal commerce form takes, filled with the ids of ``customer``'s rows."""
    return {
        "csrf_token": token,
        "product": "Microsoft 365 Business Basic",
        "sku": str(ids["basic"]),
        "term": "P1M",
        "billing_frequency": "monthly",
        "quantity": "2",
        "coterm": str(ids[sub]),
        "availability_id": str(ids["monthly"]),
        "reviewed_price": "10.80",
        "submission_key": "5" * 32,
        "give_back": "1",
        "confirmed": "1",
        "product_id": str(ids["basic"]),
        "m365_user_id": str(ids[user]),
        "subscription_id": str(ids[sub]),
        "customer_id": str(ids[customer]),
    }


# -- another reseller: 404 everywhere, nothing changed ----------------------------------------------------------------


@pytest.mark.parametrize("who", ["customer_b_master_admin", "reseller_b_admin_launched"])
def test_another_resellers_ids_in_every_customer_route_answer_404_and_change_nothing(app, world, ids, login, who):
    if who == "reseller_b_admin_launched":
        client = launch(
            login(world.users["reseller_b_admin"].email), world.users["customer_b_master_admin"].membership_id
        )
    else:
        client = login(world.users[who].email)
    token = csrf_token(client, f"/portal/{ids['customer_b']}/")
    before = database_fingerprint()
    foreign = _customer_form(ids, "customer_a", "sub_a", "user_a", token)
    checked = 0
    for rule in _commerce_rules(app, CUSTOMER_VIEWS):
        # A's customer in the path; and B's own customer with A's subscription in the path.
        for values in (
            {"customer_id": ids["customer_a"], "subscription_id": ids["sub_a"]},
            {"customer_id": ids["customer_b"], "subscription_id": ids["sub_a"]},
        ):
            if "subscription_id" not in rule.arguments and values["customer_id"] == ids["customer_b"]:
                continue  # B's own order pages (A's hidden ids in them: below)
            url = _url(rule, values)
            if "GET" in rule.methods:
                assert client.get(url, query_string=foreign).status_code == 404, url
            if "POST" in rule.methods:
                assert client.post(url, data=foreign).status_code == 404, url
            checked += 1
    assert checked >= 12
    assert database_fingerprint() == before


def test_another_resellers_hidden_ids_in_ones_own_forms_change_nothing(app, world, ids, login):
    """Customer B's own pages, with A's subscription, Microsoft 365 user and co-terming subscription in the fields."""
    client = login(world.users["customer_b_master_admin"].email)
    base = f"/portal/{ids['customer_b']}/services/microsoft-csp"
    own_sub = f"{base}/subscriptions/{ids['sub_b']}"
    token = csrf_token(client, f"/portal/{ids['customer_b']}/")
    before = database_fingerprint()
    # Co-terming with A's subscription: not one of B's, told beside the field.
    form = {
        "product": "Microsoft 365 Business Basic",
        "sku": str(ids["basic"]),
        "term": "P1M",
        "billing_frequency": "monthly",
        "quantity": "2",
        "coterm": str(ids["sub_a"]),
    }
    review = client.get(f"{base}/orders/review", query_string=form)
    assert review.status_code == 400 and "Choose one of your active subscriptions" in review.text
    placed = client.post(
        f"{base}/orders",
        data={
            **form,
            "availability_id": str(ids["monthly"]),
            "reviewed_price": "10.80",
            "submission_key": "6" * 32,
            "csrf_token": token,
        },
    )
    assert placed.status_code == 400 and "Choose one of your active subscriptions" in placed.text
    # Upgrading B's own subscription while moving A's user: 404.
    upgrade = {"csrf_token": token, "availability_id": str(ids["standard"]), "quantity": "1"}
    assert client.post(f"{own_sub}/upgrade", data={**upgrade, "m365_user_id": str(ids["user_a"])}).status_code == 404
    two = [str(ids["user_b"]), str(ids["user_a"])]
    assert client.post(f"{own_sub}/upgrade", data={**upgrade, "m365_user_id": two}).status_code == 404
    assert database_fingerprint() == before


def test_another_resellers_ids_in_every_price_route_answer_404_and_change_nothing(app, world, ids, login):
    client = login(world.users["reseller_b_admin"].email)
    b = ids["reseller_b"]
    token = csrf_token(client, f"/prices/{b}/")
    before = database_fingerprint()
    rule = {"csrf_token": token, "applies_to": "", "basis": "buy", "percent": "50"}
    attempts = [
        # A's ids in the path
        ("post", f"/prices/{ids['reseller_a']}/rules", rule),
        ("post", f"/prices/{b}/rules/{ids['sell_a']}", rule),
        ("post", f"/prices/{b}/rules/{ids['sell_ca']}", rule),
        ("post", f"/prices/{b}/rules/{ids['sell_ca']}/delete", {"csrf_token": token}),
        ("post", f"/prices/{b}/rules/{ids['buy_a']}", rule),
        ("post", f"/prices/{b}/rules/{ids['buy_a']}/delete", {"csrf_token": token}),
        # A's ids in B's own forms
        ("post", f"/prices/{b}/rules", {**rule, "customer_id": ids["customer_a"]}),
        ("post", f"/prices/{b}/rules", {**rule, "customer_id": [str(ids["customer_a"]), str(ids["customer_b"])]}),
        (
            "post",
            f"/prices/{b}/rules",
            {**rule, "customer_id": ids["customer_b"], "applies_to": f"subscription:{ids['sub_a']}"},
        ),
        ("post", f"/prices/{b}/rules/{ids['sell_b']}", {**rule, "customer_id": ids["customer_a"]}),
        ("post", f"/prices/{b}/rules/{ids['sell_cb']}/delete", {"csrf_token": token, "customer_id": ids["customer_a"]}),
        ("post", f"/prices/{b}/apply-now", {"csrf_token": token, "customer_id": ids["customer_a"]}),
        ("get", f"/prices/{b}/?customer={ids['customer_a']}", None),
        # the operator's list: not B's to see or change
        ("get", "/reseller-prices/", None),
        ("get", f"/reseller-prices/?reseller={b}", None),
        ("post", "/reseller-prices/rules", {**rule, "owner_id": b, "basis": "cost"}),
        ("post", f"/reseller-prices/rules/{ids['buy_a']}", {**rule, "basis": "cost"}),
        ("post", f"/reseller-prices/rules/{ids['buy_a']}/delete", {"csrf_token": token}),
    ]
    for method, path, data in attempts:
        answer = client.post(path, data=data) if method == "post" else client.get(path)
        assert answer.status_code == 404, (method, path, data)
    assert database_fingerprint() == before


# -- roles -------------------------------------------------------------------------------------------------------------


def _role_clients(world, login, app) -> dict:
    """Every kind of sign-in, and a partner launched into customer A (as its Master Admin)."""
    with unscoped() as session:
        customer = session.get(Account, world.accounts["customer_a"].id)
        factories.user(customer, "cadmin@aardvark.example", admin=True, cp3_enabled=True)
        factories.user(customer, "cuser@aardvark.example", cp3_enabled=True)
        session.commit()
    membership = world.users["customer_a_master_admin"].membership_id
    return {
        "operator_admin": login(world.users["ops_admin"].email),
        "csp_admin": login(world.users["reseller_a_admin"].email),
        "partner_user": login(world.users["reseller_a_user"].email),
        "master_admin": login(world.users["customer_a_master_admin"].email),
        "customer_admin": login("cadmin@aardvark.example"),
        "customer_user": login("cuser@aardvark.example"),
        "csp_admin_launched": launch(login(world.users["reseller_a_admin"].email), membership),
        "partner_user_launched": launch(login(world.users["reseller_a_user"].email), membership),
    }


# Who may use the customer portal's commerce routes (Orders): the Master Admin and a CSP Admin launched as it.
ORDERS_ALLOWED = {"master_admin", "csp_admin_launched"}
# Who may see the price lists: customer prices (CSP Admins, operator staff), reseller prices (operator staff),
# price changes (operator staff).
PAGE_ALLOWED = {
    "CustomerPricesView": {"operator_admin", "csp_admin"},
    "ResellerPricesView": {"operator_admin"},
    "PriceChangesView": {"operator_admin"},
}


def test_each_role_gets_what_the_app_gives_it_elsewhere_and_refusals_change_nothing(app, world, ids, login):
    clients = _role_clients(world, login, app)
    tokens = {
        name: csrf_token(c, f"/portal/{ids['customer_a']}/" if "launched" in name else "/")
        for name, c in clients.items()
    }
    values = {
        "customer_id": ids["customer_a"],
        "subscription_id": ids["sub_a"],
        "reseller_id": ids["reseller_a"],
        "rule_id": ids["sell_ca"],
    }
    before = database_fingerprint()
    checked = 0
    for rule in _commerce_rules(app):
        view = rule.endpoint.split(".")[0]
        url = _url(rule, values)
        if view == "ResellerPricesView" and "rule_id" in rule.arguments:
            url = _url(rule, {**values, "rule_id": ids["buy_a"]})
        for name, client in clients.items():
            if view in CUSTOMER_VIEWS:  # staff outside a launch, and logins without Orders: 403
                allowed, refused = name in ORDERS_ALLOWED, {403}
            else:
                allowed = name in PAGE_ALLOWED[view]
                refused = {403, 404}
            if "GET" in rule.methods:
                answer = client.get(url)
                if allowed:  # (Review order without a choice: the form again, 400)
                    ok = (200, 302, 400) if rule.endpoint.endswith(".review") else (200, 302)
                    assert answer.status_code in ok, (name, url, answer.status_code)
                else:
                    assert answer.status_code in refused, (name, url, answer.status_code)
            if "POST" in rule.methods and not allowed:
                # a form that would change something if it were let through
                data = {
                    **_customer_form(ids, "customer_a", "sub_a", "user_a", tokens[name]),
                    "applies_to": "",
                    "basis": "buy",
                    "percent": "50",
                    "owner_id": str(ids["reseller_a"]),
                    "market": "NZ",
                }
                answer = client.post(url, data=data)
                assert answer.status_code in refused, (name, url, answer.status_code)
            checked += 1
    assert checked >= 8 * 20
    assert database_fingerprint() == before


def test_launched_partners_get_no_price_lists_inside_the_customer_portal(app, world, ids, login):
    membership = world.users["customer_a_master_admin"].membership_id
    client = launch(login(world.users["reseller_a_admin"].email), membership)
    for path in (f"/prices/{ids['reseller_a']}/", "/reseller-prices/", "/catalogue/price-changes/"):
        assert client.get(path).status_code in (403, 404), path


# -- GET never changes anything, and CSRF ------------------------------------------------------------------------------


def _allowed_client(name: str, world, login):
    if name == "customer":
        return login(world.users["customer_a_master_admin"].email)
    if name == "reseller":
        return login(world.users["reseller_a_admin"].email)
    return login(world.users["ops_admin"].email)


def _actor_of(view: str) -> str:
    return "customer" if view in CUSTOMER_VIEWS else ("reseller" if view == "CustomerPricesView" else "operator")


def _valid_forms(ids) -> dict[str, dict]:
    """A form each POST route would act on, were its CSRF token there."""
    return {
        "CustomerOrderingView.place": {
            "product": "Microsoft 365 Business Basic",
            "sku": str(ids["basic"]),
            "term": "P1M",
            "billing_frequency": "monthly",
            "availability_id": str(ids["monthly"]),
            "quantity": "2",
            "reviewed_price": "10.10",
            "submission_key": "7" * 32,
        },
        "CustomerSeatWindowsView.reduce": {"give_back": "1", "confirmed": "1"},
        "CustomerSeatWindowsView.cancel": {"confirmed": "1"},
        "CustomerRenewalsView.change_at_renewal": {
            "product_id": str(ids["basic"]),
            "term": "P1M",
            "billing_frequency": "monthly",
            "quantity": "4",
        },
        "CustomerRenewalsView.clear_renewal_change": {},
        "CustomerRenewalsView.upgrade": {"availability_id": str(ids["standard"]), "quantity": "4"},
        "CustomerPricesView.add_rule": {"applies_to": "", "basis": "buy", "percent": "20", "customer_id": ""},
        "CustomerPricesView.change_rule": {"basis": "buy", "percent": "20"},
        "CustomerPricesView.delete_rule": {},
        "CustomerPricesView.apply_now": {},
        "ResellerPricesView.add_rule": {
            "applies_to": f"sku:{ids['basic']}",
            "basis": "cost",
            "percent": "3",
            "owner_id": str(ids["reseller_a"]),
        },
        "ResellerPricesView.change_rule": {"basis": "cost", "percent": "3"},
        "ResellerPricesView.delete_rule": {},
        "PriceChangesView.upload": {"market": "NZ"},
    }


def _values(ids, endpoint: str) -> dict[str, int]:
    rule_id = ids["buy_a"] if endpoint.startswith("ResellerPricesView") else ids["sell_ca"]
    return {
        "customer_id": ids["customer_a"],
        "subscription_id": ids["sub_a"],
        "reseller_id": ids["reseller_a"],
        "rule_id": rule_id,
    }


def test_every_change_is_a_post_get_is_refused_and_changes_nothing(app, world, ids, login):
    forms = _valid_forms(ids)
    posts = [r for r in _commerce_rules(app) if "POST" in r.methods and "GET" not in r.methods]
    assert {r.endpoint for r in posts} | {"CustomerRenewalsView.change_at_renewal"} == set(forms)
    clients = {name: _allowed_client(name, world, login) for name in ("customer", "reseller", "operator")}
    for client in clients.values():
        client.get("/", follow_redirects=True)  # the first page (choosing the account is an event)
    before = database_fingerprint()
    for rule in posts:
        client = clients[_actor_of(rule.endpoint.split(".")[0])]
        url = _url(rule, _values(ids, rule.endpoint))
        answer = client.get(url, query_string=forms[rule.endpoint])
        assert answer.status_code == 405, (url, answer.status_code)
    # The one page that is both: its GET draws the form (a ?quantity= prefills it) and schedules nothing.
    page = f"/portal/{ids['customer_a']}/services/microsoft-csp/subscriptions/{ids['sub_a']}/renewal"
    shown = clients["customer"].get(page, query_string=forms["CustomerRenewalsView.change_at_renewal"])
    assert shown.status_code == 200
    # Review order is a GET: it orders nothing.
    review = f"/portal/{ids['customer_a']}/services/microsoft-csp/orders/review"
    assert clients["customer"].get(review, query_string=forms["CustomerOrderingView.place"]).status_code == 200
    assert database_fingerprint() == before


@pytest.mark.parametrize(
    "endpoint", sorted(_valid_forms(dict.fromkeys(["basic", "monthly", "standard", "reseller_a"], 0)))
)
def test_a_post_without_its_csrf_token_is_refused_and_changes_nothing(app, world, ids, login, endpoint):
    [rule] = [r for r in _commerce_rules(app) if r.endpoint == endpoint]
    client = _allowed_client(_actor_of(endpoint.split(".")[0]), world, login)
    client.get("/")  # the first page (choosing the account) before the snapshot
    url = _url(rule, _values(ids, endpoint))
    data = dict(_valid_forms(ids)[endpoint])
    if endpoint == "PriceChangesView.upload":
        data["sheet"] = (io.BytesIO(b"a,b\n1,2\n"), "sheet.csv")
    before = database_fingerprint()
    for token in (None, "", "forged-token"):
        sent = dict(data) if token is None else {**data, "csrf_token": token}
        if "sheet" in sent:
            sent["sheet"] = (io.BytesIO(b"a,b\n1,2\n"), "sheet.csv")
        answer = client.post(url, data=sent)
        assert answer.status_code == 400 and "CSRF" in answer.text, (url, token, answer.status_code)
    assert database_fingerprint() == before


# -- fuzzing every field -------------------------------------------------------------------------------------------


def _fuzz_cases(ids) -> list[tuple[str, str, dict, list[str]]]:
    """(actor, URL, the form's other fields, the fields fuzzed)."""
    c, s = ids["customer_a"], ids["sub_a"]
    csp = f"/portal/{c}/services/microsoft-csp"
    forms = _valid_forms(ids)
    a = ids["reseller_a"]
    return [
        (
            "customer",
            f"{csp}/orders",
            forms["CustomerOrderingView.place"],
            list(forms["CustomerOrderingView.place"]) + ["coterm"],
        ),
        (
            "customer",
            f"{csp}/subscriptions/{s}/reduce",
            {"confirmed": "1", "give_back": "1"},
            ["give_back", "confirmed"],
        ),
        ("customer", f"{csp}/subscriptions/{s}/cancel", {"confirmed": "1"}, ["confirmed"]),
        (
            "customer",
            f"{csp}/subscriptions/{s}/renewal",
            forms["CustomerRenewalsView.change_at_renewal"],
            list(forms["CustomerRenewalsView.change_at_renewal"]),
        ),
        (
            "customer",
            f"{csp}/subscriptions/{s}/upgrade",
            forms["CustomerRenewalsView.upgrade"] | {"m365_user_id": str(ids["user_a"])},
            ["availability_id", "quantity", "m365_user_id"],
        ),
        (
            "reseller",
            f"/prices/{a}/rules",
            forms["CustomerPricesView.add_rule"],
            ["applies_to", "basis", "percent", "customer_id", "below_cost_intended"],
        ),
        (
            "reseller",
            f"/prices/{a}/rules/{ids['sell_ca']}",
            forms["CustomerPricesView.change_rule"] | {"customer_id": str(c)},
            ["basis", "percent", "customer_id", "below_cost_intended"],
        ),
        ("reseller", f"/prices/{a}/rules/{ids['sell_ca']}/delete", {}, ["customer_id"]),
        ("reseller", f"/prices/{a}/apply-now", {}, ["customer_id"]),
        (
            "operator",
            "/reseller-prices/rules",
            forms["ResellerPricesView.add_rule"],
            ["applies_to", "basis", "percent", "owner_id", "reseller_id"],
        ),
        (
            "operator",
            f"/reseller-prices/rules/{ids['buy_a']}",
            forms["ResellerPricesView.change_rule"],
            ["basis", "percent", "reseller_id"],
        ),
        ("operator", f"/reseller-prices/rules/{ids['buy_a']}/delete", {}, ["reseller_id"]),
        ("operator", "/catalogue/price-changes/import", {"market": "NZ"}, ["market"]),
    ]


# Fuzzed values a field may legitimately take (then the change may happen: a 302).
MAY_ACCEPT = {
    ("confirmed", "0"),
    ("confirmed", ""),
    ("confirmed", " "),  # not confirmed: the confirmation page
    ("customer_id", ""),
    ("customer_id", " "),
    ("reseller_id", ""),
    ("reseller_id", " "),
    ("below_cost_intended", ""),
    ("below_cost_intended", " "),
    ("coterm", ""),
    ("coterm", " "),
}


def test_fuzzed_fields_answer_4xx_never_500_and_write_nothing(app, world, ids, login):
    clients = {name: _allowed_client(name, world, login) for name in ("customer", "reseller", "operator")}
    tokens = {
        name: csrf_token(c, f"/portal/{ids['customer_a']}/" if name == "customer" else "/")
        for name, c in clients.items()
    }
    problems = []
    for actor, url, form, fields in _fuzz_cases(ids):
        for field in fields:
            for value in FUZZ + ["[dup]"]:
                before = database_fingerprint()
                data = {
                    **form,
                    field: [form.get(field) or "1", "2"] if value == "[dup]" else value,
                    "csrf_token": tokens[actor],
                }
                if url.endswith("/import"):
                    data["sheet"] = (io.BytesIO(b"nothing,here\n"), "sheet.csv")
                try:
                    answer = clients[actor].post(url, data=data)
                except Exception as exc:  # the test app propagates what would be a 500
                    problems.append((url, field, value[:20], repr(exc)[:80]))
                    continue
                code = answer.status_code
                if code >= 500 or "Traceback" in answer.text:
                    problems.append((url, field, value[:20], code))
                    continue
                legit = (field, value) in MAY_ACCEPT or value == "[dup]" or field == "below_cost_intended"
                if field == "percent" and value.strip() in ("0", "-0", "+5", "1.5", "-1"):
                    legit = True  # a percentage (digits of other scripts are refused: the form takes 0-9)
                if code in (200, 302) and legit:
                    continue
                if code not in (400, 403, 404, 409):
                    problems.append((url, field, value[:20], code))
                elif database_fingerprint() != before:
                    problems.append((url, field, value[:20], code, "changed the database"))
    assert problems == []


@pytest.mark.parametrize("price", ["NaN", "sNaN", "Infinity", "-Infinity", "1e309", "-1e309", "1e-400", "9" * 60])
def test_a_reviewed_price_that_is_no_amount_is_told_not_a_500(app, world, ids, login, price):
    client = login(world.users["customer_a_master_admin"].email)
    form = _valid_forms(ids)["CustomerOrderingView.place"] | {"reviewed_price": price}
    token = csrf_token(client, f"/portal/{ids['customer_a']}/")
    before = database_fingerprint()
    answer = client.post(
        f"/portal/{ids['customer_a']}/services/microsoft-csp/orders", data={**form, "csrf_token": token}
    )
    assert answer.status_code in (400, 409), answer.status_code
    assert database_fingerprint() == before


def test_a_duplicated_user_in_an_upgrade_moves_each_user_once(app, world, ids, login):
    """One Microsoft 365 user sent twice is one user moved: one licence move, one licence on the new subscription."""
    client = login(world.users["customer_a_master_admin"].email)
    token = csrf_token(client, f"/portal/{ids['customer_a']}/")
    path = f"/portal/{ids['customer_a']}/services/microsoft-csp/subscriptions/{ids['sub_a']}/upgrade"
    with unscoped() as session:
        sub = session.get(Subscription, ids["sub_a"])
        assert (sub.quantity, sub.assigned) == (4, 3)
    # 2 of 4 seats move: 2 stay for the 3 holders, so 1 or 2 of them move.
    form = {"csrf_token": token, "availability_id": str(ids["standard"]), "quantity": "2"}
    answer = client.post(path, data={**form, "m365_user_id": [str(ids["user_a"])] * 2})
    assert answer.status_code == 302, answer.status_code
    with unscoped() as session:
        held = session.scalars(select(LicenceAssignment).where(LicenceAssignment.m365_user_id == ids["user_a"])).all()
        assert sorted(a.subscription_id for a in held) == sorted({a.subscription_id for a in held})
        assert ids["sub_a"] not in {a.subscription_id for a in held}
        moves = session.scalars(select(ProviderOperation).where(ProviderOperation.kind == "licence_move")).all()
        assert len(moves) == 1, [m.params for m in moves]


# -- the price sheet's upload -----------------------------------------------------------------------------------------


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("sheet.csv", b""),
        ("sheet.csv", b"\xff\xfe\x00garbage"),
        ("sheet.csv", b"\x00" * 10),
        ("sheet.csv", b'"unterminated\n' * 3),
        ("sheet.csv", ("x" * 200_000).encode()),
        ("sheet.zip", b"PK\x03\x04 not really a zip"),
        ("sheet.zip", _zip({})),
        ("sheet.zip", _zip({"a.csv": b"a", "b.csv": b"b"})),
        ("sheet.zip", _zip({"dir/../../evil.csv": b"Market\n"})),
        ("sheet.zip", _zip({"nested.zip": _zip({"a.csv": b"a"})})),
        ("../../etc/passwd", b"Market,UnitPrice\nNZ,1\n"),
        ("sheet.csv", "Market,ProductId\n\u202eNZ,' OR 1=1 --\n".encode()),
    ],
)
def test_an_upload_that_is_no_price_sheet_is_refused_beside_the_field(app, world, ids, login, name, data):
    client = login(world.users["ops_admin"].email)
    token = csrf_token(client)
    before = database_fingerprint()
    answer = client.post(
        "/catalogue/price-changes/import",
        data={"csrf_token": token, "market": "NZ", "sheet": (io.BytesIO(data), name)},
    )
    assert answer.status_code == 400, answer.status_code
    assert "nothing was imported" in answer.text or "Choose Microsoft" in answer.text
    assert database_fingerprint() == before


def test_a_zip_that_would_unzip_larger_than_any_sheet_is_refused_unread(app, world, ids, login, monkeypatch):
    from app.services import pricesheet

    monkeypatch.setattr(pricesheet, "MAX_UNZIPPED_BYTES", 1000)
    client = login(world.users["ops_admin"].email)
    token = csrf_token(client)
    bomb = _zip({"sheet.csv": b"0" * 5000})  # a few dozen bytes zipped
    read = []
    monkeypatch.setattr(zipfile.ZipFile, "read", lambda self, *a: read.append(a) or b"")
    answer = client.post(
        "/catalogue/price-changes/import",
        data={"csrf_token": token, "market": "NZ", "sheet": (io.BytesIO(bomb), "sheet.zip")},
    )
    assert answer.status_code == 400 and "too large" in answer.text
    assert read == []


def test_fuzzed_query_strings_of_the_pages_answer_4xx_or_the_page_and_change_nothing(app, world, ids, login):
    clients = {name: _allowed_client(name, world, login) for name in ("customer", "reseller", "operator")}
    for client in clients.values():
        client.get("/", follow_redirects=True)
    csp = f"/portal/{ids['customer_a']}/services/microsoft-csp"
    pages = [
        ("customer", f"{csp}/orders/new", ["product", "sku", "term", "billing_frequency", "quantity", "coterm"]),
        ("customer", f"{csp}/orders/review", ["product", "sku", "term", "availability_id", "quantity", "coterm"]),
        ("customer", f"{csp}/subscriptions/{ids['sub_a']}/renewal", ["quantity"]),
        ("reseller", f"/prices/{ids['reseller_a']}/", ["customer", "page"]),
        ("operator", "/reseller-prices/", ["reseller", "page"]),
        ("operator", "/catalogue/price-changes/", ["page"]),
    ]
    before = database_fingerprint()
    problems = []
    for actor, path, fields in pages:
        for field in fields:
            for value in FUZZ:
                try:
                    answer = clients[actor].get(path, query_string={field: value})
                except Exception as exc:  # the test app propagates what would be a 500
                    problems.append((path, field, value[:20], repr(exc)[:80]))
                    continue
                if answer.status_code not in (200, 400, 404) or "<script>alert(1)" in answer.text:
                    problems.append((path, field, value[:20], answer.status_code))
    assert problems == []
    assert database_fingerprint() == before


def test_only_operator_staff_change_catalogue_products(app, world, ids, login):
    clients = _role_clients(world, login, app)
    tokens = {name: csrf_token(c) for name, c in clients.items()}
    product = ids["basic"]
    before = database_fingerprint()
    for name, client in clients.items():
        if name == "operator_admin":
            continue
        token = tokens[name]
        form = {"csrf_token": token, "product_title": "Hijacked", "name": "Hijacked", "sku": "HIJACK:1"}
        for path, data in [
            ("/productview/add", form),
            (f"/productview/edit/{product}", form),
            ("/productview/action_post", {"csrf_token": token, "action": "retire", "rowid": str(product)}),
        ]:
            answer = client.post(path, data=data)
            assert answer.status_code == 403, (name, path, answer.status_code)
    assert database_fingerprint() == before


def test_fuzzed_reductions_of_seats_still_in_their_window_write_nothing(app, world, ids, login):
    """A subscription bought just now (its window open): what is given back is checked before anything is sent."""
    client = login(world.users["customer_a_master_admin"].email)
    customer = ids["customer_a"]
    assert ordering_steps.order(client, customer, ordering_steps.product_form(ids["basic"]), 3).status_code == 302
    with unscoped() as session:
        sub_id = max(s.id for s in session.scalars(select(Subscription).where(Subscription.account_id == customer)))
    token = csrf_token(client, f"/portal/{customer}/")
    base = f"/portal/{customer}/services/microsoft-csp/subscriptions/{sub_id}"
    before = database_fingerprint()
    for value in [*FUZZ, "3", "4"]:  # (3 of 3: that is cancelling)
        answer = client.post(f"{base}/reduce", data={"csrf_token": token, "give_back": value, "confirmed": "1"})
        assert answer.status_code == 400, (value, answer.status_code)
    assert database_fingerprint() == before
    assert client.post(f"{base}/reduce", data={"csrf_token": token, "give_back": "1"}).status_code == 200
    assert database_fingerprint() == before  # the confirmation page changes nothing


@pytest.mark.parametrize(
    ("quantity", "message"),
    [("abc", "Enter how many licences to upgrade."), ("5", "Upgrade between 1 and 4 licences.")],
)
def test_a_refused_upgrade_is_told_beside_its_form_with_400(app, world, ids, login, quantity, message):
    client = login(world.users["customer_a_master_admin"].email)
    token = csrf_token(client, f"/portal/{ids['customer_a']}/")
    path = f"/portal/{ids['customer_a']}/services/microsoft-csp/subscriptions/{ids['sub_a']}/upgrade"
    before = database_fingerprint()
    answer = client.post(
        path, data={"csrf_token": token, "availability_id": str(ids["standard"]), "quantity": quantity}
    )
    assert answer.status_code == 400
    assert re.search(r'data-error-for="upgrade"[^>]*>' + re.escape(message), answer.text)
    assert 'data-test="upgrade-form"' in answer.text
    assert database_fingerprint() == before

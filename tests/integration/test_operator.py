"""Operator screens: a new reseller with its first partner user (welcome email, never a password), disabling a
reseller, and the product catalogue."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from app.models.accounts import Account
from app.models.catalog import Product
from app.models.subscriptions import Subscription
from tests import factories
from tests.conftest import csrf_token, unscoped
from tests.integration.test_scoping import database_fingerprint
from tests.mail import body_of, empty_outbox, link_in, outbox_messages


def _new_reseller(client, **fields):
    data = {
        "csrf_token": csrf_token(client),
        "name": "Charlie Cloud Ltd",
        "country": "NZ",
        "it_support_email": "it@charlie.example",
        "first_name": "Cara",
        "last_name": "Charlie",
        "email": "cara@charlie.example",
        **fields,
    }
    return client.post("/resellers/new", data=data)


def test_new_reseller_gets_a_welcome_email_in_the_outbox(app, world, ops_admin_client, login):
    empty_outbox(app)
    response = _new_reseller(ops_admin_client)
    assert response.status_code == 302
    with unscoped() as session:
        reseller = session.scalars(select(Account).where(Account.name == "Charlie Cloud Ltd")).one()
        assert reseller.kind == "reseller" and reseller.parent_id == world.accounts["operator"].id
    messages = outbox_messages(app)
    assert [m["To"] for m in messages] == ["cara@charlie.example"]
    body = body_of(messages[0])
    assert "Welcome" in messages[0]["Subject"] and "cara@charlie.example" in body
    assert "password:" not in body.lower().replace("set your password", "")  # a link, never a password
    link = link_in(messages[0])
    visitor = app.test_client()
    form = visitor.get(link)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', form.text).group(1)
    visitor.post(
        link, data={"csrf_token": token, "password": "harbour bridge sunrise", "confirm": "harbour bridge sunrise"}
    )
    page = login("cara@charlie.example", "harbour bridge sunrise").get("/").text
    assert 'data-test="account-name">Charlie Cloud Ltd<' in page


def test_new_reseller_bad_input(world, ops_admin_client):
    before = database_fingerprint()
    response = _new_reseller(ops_admin_client, name="", email=world.users["reseller_a_admin"].email)
    assert response.status_code == 400 and 'data-error-for="name">Company name is required.' in response.text
    response = _new_reseller(ops_admin_client, email=world.users["reseller_a_admin"].email)
    assert response.status_code == 400 and "is already used by another login" in response.text
    assert database_fingerprint() == before


def test_partners_cannot_add_resellers(world, reseller_a_admin_client):
    assert reseller_a_admin_client.get("/resellers/new").status_code == 403
    assert _new_reseller(reseller_a_admin_client).status_code == 403


def _sign_in_page_after(client, email: str, password: str) -> str:
    page = client.get("/login/")
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
    data = {"csrf_token": token, "username": email, "password": password}
    return client.post("/login/", data=data, follow_redirects=True).text


def test_disabling_a_reseller_stops_its_users_and_deletes_nothing(app, world, ops_admin_client, login):
    partner = login(world.users["reseller_a_admin"].email)
    before_rows = database_fingerprint()
    reseller = world.accounts["reseller_a"]
    response = ops_admin_client.post(
        f"/resellers/{reseller.id}/disable", data={"csrf_token": csrf_token(ops_admin_client)}
    )
    assert response.status_code == 302
    assert partner.get("/").status_code == 302  # its signed-in partner users are out
    with pytest.raises(AssertionError):
        login(world.users["reseller_a_user"].email)
    told = _sign_in_page_after(app.test_client(), world.users["reseller_a_user"].email, factories.PASSWORD)
    assert "Alpha Partners Ltd is disabled, so its sign-ins are too." in told
    guessed = _sign_in_page_after(app.test_client(), world.users["reseller_a_user"].email, "a wrong guess")
    assert "is disabled" not in guessed and "Invalid login" in guessed  # no hint without the password
    assert "account disabled" in ops_admin_client.get(f"/accounts/{reseller.id}/users").text
    customer = login(world.users["customer_a_master_admin"].email)
    assert customer.get("/", follow_redirects=True).status_code == 200  # its customers carry on
    with unscoped() as session:
        assert session.get(Account, reseller.id).status == "disabled"
    ops_admin_client.post(f"/resellers/{reseller.id}/enable", data={"csrf_token": csrf_token(ops_admin_client)})
    assert login(world.users["reseller_a_user"].email).get("/").status_code == 200
    assert database_fingerprint() != before_rows  # status and events changed, nothing else went


def test_product_catalogue_add_and_retire_keeps_subscriptions(world, ops_admin_client):
    response = ops_admin_client.post(
        "/productview/add",
        data={
            "csrf_token": csrf_token(ops_admin_client),
            "product_title": "Microsoft 365 E5",
            "name": "Microsoft 365 E5 (no Teams)",
            "sku": "CFQ7TTC0LFK5:0001",
        },
    )
    assert response.status_code == 302 and response.location.endswith("/productview/list/")  # not the landing page
    assert "Product added." in ops_admin_client.get(response.location).text
    with unscoped() as session:
        product = session.scalars(select(Product).where(Product.sku == "CFQ7TTC0LFK5:0001")).one()
        assert (product.product_title, product.name) == ("Microsoft 365 E5", "Microsoft 365 E5 (no Teams)")
    basic = world.rows["products"]["basic"]
    token = csrf_token(ops_admin_client, "/productview/list/")
    retired = ops_admin_client.post(
        "/productview/action_post", data={"csrf_token": token, "action": "retire", "rowid": str(basic)}
    )
    assert retired.location.endswith("/productview/list/")
    with unscoped() as session:
        assert session.get(Product, basic).retired_on is not None
        subs = session.scalars(select(Subscription).where(Subscription.product_id == basic)).all()
        assert len(subs) == 2 and all(s.status == "active" for s in subs)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("product_title", "", "Product is required."),
        ("name", "", "Name is required."),
        ("name", "x" * 161, "longer than 160 characters"),
        ("sku", "", "SKU is required."),
        ("sku", "TEST-BASIC", "Already exists."),
        ("sku", "bad sku!", "Use letters, digits"),
        ("sku", "X" * 65, "longer than 64 characters"),
    ],
)
def test_product_bad_input(world, ops_admin_client, field, value, message):
    before = database_fingerprint()
    data = {
        "csrf_token": csrf_token(ops_admin_client),
        "product_title": "Odd product",
        "name": "Odd product",
        "sku": "ODD-1",
        field: value,
    }
    response = ops_admin_client.post("/productview/add", data=data)
    assert response.status_code == 200 and message in response.text
    assert database_fingerprint() == before


@pytest.mark.parametrize(
    "who, sees_cost", [("reseller_a_user", False), ("reseller_a_admin", False), ("ops_admin", True)]
)
def test_microsofts_cost_only_for_operator_staff(world, login, who, sees_cost):
    """Everyone who reads the catalogue reads Microsoft's estimated retail price; Microsoft's cost is operator staff's
    (a CSP Admin sees its own buy price, on its price list, not Microsoft's)."""
    page = login(world.users[who].email).get(f"/productview/show/{world.rows['products']['basic']}")
    assert page.status_code == 200 and "ERP price" in page.text and "$9.00" in page.text
    assert ("Microsoft's cost" in page.text) is sees_cost and ("7.65" in page.text) is sees_cost


def test_product_edit_bad_input_keeps_the_form_and_the_row(world, ops_admin_client):
    product_id = world.rows["products"]["basic"]
    before = database_fingerprint()
    response = ops_admin_client.post(
        f"/productview/edit/{product_id}",
        data={
            "csrf_token": csrf_token(ops_admin_client),
            "product_title": "Microsoft 365 Business Basic",
            "name": "Renamed",
            "sku": "bad sku!",
        },
    )
    assert response.status_code == 200 and "Use letters, digits" in response.text and 'value="Renamed"' in response.text
    assert database_fingerprint() == before

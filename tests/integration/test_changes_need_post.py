"""DESIGN.md rules 2 and 3: GET never changes anything, every change needs a CSRF token and records an event."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.models.accounts import Account
from app.models.catalog import Product
from app.models.events import Event
from tests.conftest import csrf_token, unscoped
from tests.integration.test_scoping import database_fingerprint


def test_delete_and_actions_refuse_get(app, world, ops_admin_client):
    changing = [r for r in app.url_map.iter_rules() if r.endpoint.split(".")[-1] in ("delete", "action", "action_post")]
    assert changing, "no delete or action routes to check"
    before = database_fingerprint()
    for rule in changing:
        assert "GET" not in rule.methods, rule.rule
    product_id = world.rows["products"]["basic"]
    assert ops_admin_client.get(f"/productview/action/retire/{product_id}").status_code in (404, 405)
    assert ops_admin_client.get("/productview/action_post?action=retire&rowid=1").status_code == 405
    assert database_fingerprint() == before


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/productview/action_post", {"action": "retire", "rowid": "1"}),
        ("/accounts/4/details", {"name": "Changed", "country": "NZ"}),
        ("/productview/add", {"product_title": "Free stuff", "name": "Free stuff", "sku": "FREE"}),
    ],
)
def test_post_without_csrf_token_is_refused(world, ops_admin_client, path, data):
    before = database_fingerprint()
    response = ops_admin_client.post(path, data=data)
    assert response.status_code == 400
    assert "CSRF" in response.text
    assert database_fingerprint() == before


def test_retiring_a_product_is_a_post_with_an_event(world, ops_admin_client):
    product_id = world.rows["products"]["basic"]
    response = ops_admin_client.post(
        "/productview/action_post",
        data={"csrf_token": csrf_token(ops_admin_client), "action": "retire", "rowid": str(product_id)},
    )
    assert response.status_code == 302
    with unscoped() as session:
        assert session.get(Product, product_id).retired_on is not None
        event = session.scalars(select(Event).where(Event.action == "product.retired")).one()
        assert event.actor_label == world.users["ops_admin"].email
        assert event.account_id == world.accounts["operator"].id


def test_editing_an_account_records_what_changed(world, reseller_a_admin_client):
    customer = world.accounts["customer_a"]
    response = reseller_a_admin_client.post(
        f"/accounts/{customer.id}/details",
        data={"csrf_token": csrf_token(reseller_a_admin_client), "name": "Aardvark Farms 2025", "country": "NZ"},
    )
    assert response.status_code == 302
    with unscoped() as session:
        assert session.get(Account, customer.id).name == "Aardvark Farms 2025"
        event = session.scalars(select(Event).where(Event.action == "account.updated")).one()
        assert "Aardvark Farms" in event.summary and "Aardvark Farms 2025" in event.summary
        assert event.account_id == customer.id and event.actor_id == world.users["reseller_a_admin"].id


def test_a_role_without_write_cannot_act(world, reseller_a_admin_client):
    before = database_fingerprint()
    response = reseller_a_admin_client.post(
        "/productview/action_post",
        data={
            "csrf_token": csrf_token(reseller_a_admin_client),
            "action": "retire",
            "rowid": str(world.rows["products"]["basic"]),
        },
    )
    assert response.status_code == 403
    assert database_fingerprint() == before

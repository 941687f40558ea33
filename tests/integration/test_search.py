"""The search box: suggestions and Enter, by name, onmicrosoft domain or contact email — accounts in scope only."""

from __future__ import annotations

import pytest

from app.models.accounts import Account
from tests.conftest import unscoped


def _names(client, query: str) -> list[str]:
    response = client.get("/search/suggest", query_string={"q": query})
    assert response.status_code == 200
    return [a["name"] for a in response.get_json()["accounts"]]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("aard", ["Aardvark Farms"]),
        ("AARDVARK", ["Aardvark Farms"]),
        ("aardvark.onmicrosoft", ["Aardvark Farms"]),  # the Microsoft tenant's domain
        ("ops@aardvark.example", ["Aardvark Farms"]),  # the contact email
        ("ar", ["Aardvark Farms", "Alpha Partners Ltd", "Anchor Marine"]),
        ("%", []),  # LIKE wildcards are text, not patterns
        ("_", []),
        ("zebra", []),
    ],
)
def test_suggestions(world, reseller_a_admin_client, query, expected):
    assert _names(reseller_a_admin_client, query) == expected


def test_names_starting_with_the_text_come_first(world, reseller_a_admin_client):
    with unscoped() as session:
        session.add(Account(kind="customer", name="Aaa Anchor Ltd", parent_id=world.accounts["reseller_a"].id))
        session.commit()
    assert _names(reseller_a_admin_client, "anchor") == ["Anchor Marine", "Aaa Anchor Ltd"]


def test_suggestions_carry_the_details_link(world, reseller_a_admin_client):
    account = reseller_a_admin_client.get("/search/suggest?q=aard").get_json()["accounts"][0]
    assert account["url"] == f"/accounts/{world.accounts['customer_a'].id}/details"
    assert account["domain"] == "aardvark.onmicrosoft.com"


@pytest.mark.parametrize("query", ["a", "aardvark", "anchor", "alpha", "ops@aardvark", "aardvark.onmicrosoft.com"])
def test_reseller_b_never_finds_reseller_a(world, reseller_b_admin_client, query):
    assert not set(_names(reseller_b_admin_client, query)) & {"Aardvark Farms", "Anchor Marine", "Alpha Partners Ltd"}
    page = reseller_b_admin_client.get("/search/", query_string={"q": query}).text
    assert "Aardvark" not in page and "Anchor Marine" not in page


def test_operator_finds_both_resellers_customers(world, ops_admin_client):
    assert {"Aardvark Farms", "Bluebird Bakery"} <= set(_names(ops_admin_client, "a"))
    assert "Mycloudstore" not in _names(ops_admin_client, "mycloud")


def test_enter_with_one_match_opens_the_account(world, reseller_a_admin_client):
    response = reseller_a_admin_client.get("/search/?q=aardvark")
    assert response.status_code == 302
    assert response.location == f"/accounts/{world.accounts['customer_a'].id}/details"


def test_enter_with_no_match_says_so(world, reseller_a_admin_client):
    page = reseller_a_admin_client.get("/search/?q=zebra").text
    assert "No accounts match" in page


def test_enter_with_several_matches_lists_them(world, reseller_a_admin_client):
    page = reseller_a_admin_client.get("/search/?q=ar").text
    assert "Anchor Marine" in page and "Alpha Partners Ltd" in page and "Aardvark Farms" in page


def test_the_search_box_is_on_every_partner_page(world, reseller_a_admin_client):
    for path in ("/", "/accountview/list/", f"/accounts/{world.accounts['customer_a'].id}/users"):
        assert 'id="account-search"' in reseller_a_admin_client.get(path).text


def test_customers_have_no_search(world, customer_a_master_admin_client):
    assert 'id="account-search"' not in customer_a_master_admin_client.get("/").text
    assert customer_a_master_admin_client.get("/search/suggest?q=a").status_code == 403


def test_signed_out_search_is_refused(world, client):
    response = client.get("/search/suggest?q=a")
    assert response.status_code == 401 and response.is_json

"""The first screen: each named user signs in and sees who they are and which account; menus follow roles."""

import pytest

from tests.conftest import csrf_token


@pytest.mark.parametrize(
    ("who", "account"),
    [
        ("ops_admin", "Mycloudstore"),
        ("reseller_a_admin", "Alpha Partners Ltd"),
        ("reseller_a_user", "Alpha Partners Ltd"),
        ("reseller_b_admin", "Bravo IT Ltd"),
        ("customer_a_master_admin", "Aardvark Farms"),
    ],
)
def test_landing_page_says_who_and_which_account(world, login, who, account):
    user = world.users[who]
    page = login(user.email).get("/", follow_redirects=True)  # customer users land in the customer portal
    assert page.status_code == 200
    assert f'data-test="user-email">{user.email}<' in page.text
    assert f'data-test="account-name">{account}<' in page.text


def test_anonymous_visitor_is_sent_to_sign_in(client):
    response = client.get("/")
    assert response.status_code == 302
    assert "/login/" in response.location


def test_every_page_carries_a_csrf_token(reseller_a_admin_client):
    assert len(csrf_token(reseller_a_admin_client)) > 20

"""The account details screen and its tabs: Details, Sub-Accounts, Products & Services, Event Log — and the
cross-tenant case for every route under /accounts/<id>/ (another reseller gets 404, the database is unchanged)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from app.models.accounts import Account, PlaceholderUser
from app.models.events import Event
from tests.conftest import csrf_token, unscoped
from tests.integration.test_scoping import database_fingerprint

SCREEN_VIEWS = (
    "AccountScreenView",
    "AccountUsersView",
    "PartnerUsersView",
    "AccountEventsView",
    "TenantSetupView",
    "DomainCheckView",
)


def _url(rule, values: dict) -> str:
    return re.sub(r"<(?:int:)?(\w+)>", lambda m: str(values[m.group(1)]), rule.rule)


def _routes(app):
    return [r for r in app.url_map.iter_rules() if r.endpoint.split(".")[0] in SCREEN_VIEWS]


@pytest.mark.parametrize("target", ["customer_a", "reseller_a"])
def test_another_reseller_gets_404_on_every_account_route(app, world, reseller_b_admin_client, target):
    client = reseller_b_admin_client
    values = {
        "account_id": world.accounts[target].id,
        "user_id": world.users["customer_a_master_admin"].id
        if target == "customer_a"
        else world.users["reseller_a_user"].id,
        "placeholder_id": world.rows["a"]["placeholder"],
    }
    token = csrf_token(client)
    before = database_fingerprint()
    checked = 0
    for rule in _routes(app):
        url = _url(rule, values)
        if "GET" in rule.methods:
            assert client.get(url).status_code == 404, url
        if "POST" in rule.methods:
            data = {
                "csrf_token": token,
                "name": "Hijack",
                "first_name": "H",
                "last_name": "J",
                "email": "hijack@bravo.example",
                "password": "a perfectly long password",
                "confirm": "a perfectly long password",
                "country": "NZ",
            }
            assert client.post(url, data=data).status_code == 404, url
        checked += 1
    assert checked >= 20
    assert database_fingerprint() == before


def test_customer_users_cannot_open_partner_screens(world, customer_a_master_admin_client):
    own = world.accounts["customer_a"].id
    for path in (f"/accounts/{own}/details", f"/accounts/{own}/users", f"/accounts/{own}/events"):
        assert customer_a_master_admin_client.get(path).status_code == 403


def test_the_operator_account_has_no_screen(world, ops_admin_client):
    assert ops_admin_client.get(f"/accounts/{world.accounts['operator'].id}/details").status_code == 404


def test_tabs_as_in_the_guide(world, reseller_a_admin_client):
    reseller = reseller_a_admin_client.get(f"/accounts/{world.accounts['reseller_a'].id}/details").text
    for tab in ("Details", "Users", "Sub-Accounts", "Products &amp; Services", "CSP Report", "Event Log"):
        assert tab in reseller
    customer = reseller_a_admin_client.get(f"/accounts/{world.accounts['customer_a'].id}/details").text
    assert "Sub-Accounts" not in customer and "Microsoft tenant" in customer and "aardvark.onmicrosoft.com" in customer


def test_details_are_editable_with_an_event(world, reseller_a_admin_client):
    customer = world.accounts["customer_a"]
    response = reseller_a_admin_client.post(
        f"/accounts/{customer.id}/details",
        data={
            "csrf_token": csrf_token(reseller_a_admin_client),
            "name": "Aardvark Farms Ltd",
            "contact_first_name": "Ann",
            "contact_last_name": "Aardvark",
            "contact_email": "Ann@Aardvark.Example",
            "phone": "+64 9 555 0000",
            "address_line1": "1 Farm Road",
            "city": "Hamilton",
            "postcode": "3200",
            "country": "nz",
        },
    )
    assert response.status_code == 302
    with unscoped() as session:
        account = session.get(Account, customer.id)
        assert (account.name, account.contact_email, account.country) == (
            "Aardvark Farms Ltd",
            "ann@aardvark.example",
            "NZ",
        )
        event = session.scalars(select(Event).where(Event.action == "account.updated")).one()
        assert "Aardvark Farms Ltd" in event.summary and event.actor_id == world.users["reseller_a_admin"].id


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "", "Company name is required."),
        ("name", "x" * 161, "Company name must be at most 160 characters."),
        ("name", "!!!", "Company name needs at least one letter or digit."),
        ("contact_email", "not-an-email", "Enter a valid email address"),
        ("phone", "call me", "Use digits, spaces and + ( ) - . only"),
        ("country", "New Zealand", "Use the two-letter country code"),
    ],
)
def test_bad_details_show_beside_the_field_and_save_nothing(world, reseller_a_admin_client, field, value, message):
    customer = world.accounts["customer_a"]
    data = {"csrf_token": csrf_token(reseller_a_admin_client), "name": "Aardvark Farms", "country": "NZ", field: value}
    before = database_fingerprint()
    response = reseller_a_admin_client.post(f"/accounts/{customer.id}/details", data=data)
    assert response.status_code == 400
    assert re.search(rf'data-error-for="{field}">[^<]*{re.escape(message)}', response.text)
    assert database_fingerprint() == before


def test_sub_accounts_list_the_resellers_customers(world, reseller_a_admin_client):
    page = reseller_a_admin_client.get(f"/accounts/{world.accounts['reseller_a'].id}/sub-accounts").text
    assert "Add Sub Account" in page and "Aardvark Farms" in page and "Anchor Marine" in page
    assert "Bluebird" not in page
    assert "Showing 1 to 2 of 2 entries" in page
    assert "aardvark.onmicrosoft.com" in page and "4/7" in page


def test_customers_have_no_sub_accounts(world, reseller_a_admin_client):
    assert reseller_a_admin_client.get(f"/accounts/{world.accounts['customer_a'].id}/sub-accounts").status_code == 404


def test_add_sub_account_suggests_the_it_support_address(world, reseller_a_admin_client):
    page = reseller_a_admin_client.get(f"/accounts/{world.accounts['reseller_a'].id}/sub-accounts/new").text
    assert 'value="it@alpha.example"' in page


@pytest.mark.parametrize(
    ("master_email", "expected"),
    [("", "default.masteradmin@mycloudstore.co.nz"), ("ITsupport@Alpha.example", "itsupport@alpha.example")],
)
def test_add_sub_account(world, reseller_a_admin_client, master_email, expected):
    reseller = world.accounts["reseller_a"]
    response = reseller_a_admin_client.post(
        f"/accounts/{reseller.id}/sub-accounts/new",
        data={
            "csrf_token": csrf_token(reseller_a_admin_client),
            "name": "Kiwi Kitchens",
            "contact_first_name": "Kim",
            "contact_last_name": "Kitchen",
            "contact_email": "kim@kiwikitchens.example",
            "phone": "09 555 1234",
            "country": "NZ",
            "master_admin_name": "IT Support" if master_email else "",
            "master_admin_email": master_email,
        },
    )
    assert response.status_code == 302
    with unscoped() as session:
        customer = session.scalars(select(Account).where(Account.name == "Kiwi Kitchens")).one()
        assert customer.parent_id == reseller.id and customer.kind == "customer"
        placeholder = session.scalars(select(PlaceholderUser).where(PlaceholderUser.account_id == customer.id)).one()
        assert placeholder.email == expected and placeholder.is_master_admin
        logged_in = set(
            session.scalars(
                select(Event.account_id).where(Event.action == "customer.created", Event.target_id == str(customer.id))
            )
        )
        assert logged_in == {customer.id, reseller.id}  # both event logs show it
    assert "Kiwi Kitchens" in reseller_a_admin_client.get(f"/accounts/{reseller.id}/sub-accounts").text
    landing = reseller_a_admin_client.get("/").text
    assert "Kiwi Kitchens" in landing.split('data-test="recent-tenants"')[1].split("</table>")[0]


def test_add_sub_account_with_bad_input_saves_nothing(world, reseller_a_admin_client):
    before = database_fingerprint()
    response = reseller_a_admin_client.post(
        f"/accounts/{world.accounts['reseller_a'].id}/sub-accounts/new",
        data={
            "csrf_token": csrf_token(reseller_a_admin_client),
            "name": "",
            "country": "NZ",
            "master_admin_email": "nobody at all",
        },
    )
    assert response.status_code == 400
    assert 'data-error-for="name">Company name is required.' in response.text
    assert 'data-error-for="master_admin_email">Enter a valid email address' in response.text
    assert database_fingerprint() == before


def test_the_same_it_support_address_may_be_master_admin_of_several_customers_of_one_reseller_only(
    app, world, reseller_a_admin_client, reseller_b_admin_client
):
    """The guide's usual master admin is the reseller's IT support: one login that is Master Admin of several of that
    reseller's customers (Add Sub Account takes the address again; each Activate (CP3) gives the same login access to
    one more customer). Any other reseller hears at once, at Add Sub Account, that the address is unavailable (with a
    plus address that reaches the same mailbox), not at Activate (CP3)."""
    from security.models import Membership, PortalUser

    def add(client, reseller_key, name, email):
        return client.post(
            f"/accounts/{world.accounts[reseller_key].id}/sub-accounts/new",
            data={
                "csrf_token": csrf_token(client),
                "name": name,
                "country": "NZ",
                "master_admin_name": "IT Support",
                "master_admin_email": email,
            },
        )

    assert add(reseller_a_admin_client, "reseller_a", "Kiwi Kitchens", "it@alpha.example").status_code == 302
    assert add(reseller_a_admin_client, "reseller_a", "Harbour Hops", "it@alpha.example").status_code == 302

    # Another reseller: refused with the one "unavailable" answer, nothing saved.
    before = database_fingerprint()
    other = add(reseller_b_admin_client, "reseller_b", "Harbour Brewing", "it@alpha.example")
    assert other.status_code == 400
    assert 'data-error-for="master_admin_email">it@alpha.example is already used by another login' in other.text
    assert "it+harbourbrewing@alpha.example" in other.text
    assert "Alpha" not in other.text  # never whose address it is
    assert database_fingerprint() == before
    plus = add(reseller_b_admin_client, "reseller_b", "Harbour Brewing", "it+harbourbrewing@alpha.example")
    assert plus.status_code == 302

    # Logins of their own are unavailable as well: this reseller's staff, and another reseller's customer login.
    for email in ("admin@alpha.example", "master@bluebird.example"):
        before = database_fingerprint()
        refused = add(reseller_a_admin_client, "reseller_a", "Other Co", email)
        assert refused.status_code == 400, email
        assert f'data-error-for="master_admin_email">{email} is already used by another login' in refused.text
        assert database_fingerprint() == before

    # Activate (CP3) on both placeholders: one login (its reseller's), Master Admin of both customers.
    with unscoped() as session:
        names = ["Kiwi Kitchens", "Harbour Hops"]
        customers = dict(session.execute(select(Account.name, Account.id).where(Account.name.in_(names))).all())
        placeholders = {
            name: session.scalars(select(PlaceholderUser.id).where(PlaceholderUser.account_id == cid)).one()
            for name, cid in customers.items()
        }
    for name in ("Kiwi Kitchens", "Harbour Hops"):
        activated = reseller_a_admin_client.post(
            f"/accounts/{customers[name]}/users/placeholder/{placeholders[name]}/activate",
            data={"csrf_token": csrf_token(reseller_a_admin_client)},
        )
        assert activated.status_code == 302 and activated.location == f"/accounts/{customers[name]}/users", name
    with unscoped() as session:
        login = session.scalars(select(PortalUser).where(PortalUser.email == "it@alpha.example")).one()
        assert (login.portal, login.account_id) == ("customer", world.accounts["reseller_a"].id)
        memberships = session.scalars(select(Membership).where(Membership.user_id == login.id)).all()
        assert sorted(m.account_id for m in memberships) == sorted(customers.values())
        assert all(m.is_master_admin and m.cp3_enabled and m.active for m in memberships)
        assert session.scalar(select(func.count(PlaceholderUser.id)).where(PlaceholderUser.email == login.email)) == 0


def test_products_and_services_menu(world, reseller_a_admin_client):
    customer = world.accounts["customer_a"].id
    report = reseller_a_admin_client.get(f"/accounts/{customer}/products/csp-report").text
    assert "CSP REPORT" in report and ".xlsx" in report
    tenant = reseller_a_admin_client.get(f"/accounts/{customer}/products/microsoft-tenant").text
    assert "aardvark.onmicrosoft.com" in tenant


def test_event_log_tab_newest_first_and_paginated(world, reseller_a_admin_client):
    customer = world.accounts["customer_a"]
    with unscoped() as session:
        for i in range(30):
            session.add(
                Event(account_id=customer.id, action=f"test.step{i:02d}", actor_label="tester", summary=f"step {i:02d}")
            )
        session.commit()
        total = session.scalar(select(func.count(Event.id)).where(Event.account_id == customer.id))
    first = reseller_a_admin_client.get(f"/accounts/{customer.id}/events").text
    steps = re.findall(r"step (\d\d)<", first)
    assert steps[:3] == ["29", "28", "27"]
    assert f"Showing 1 to 25 of {total} entries" in first
    second = reseller_a_admin_client.get(f"/accounts/{customer.id}/events?page=2").text
    assert f"Showing 26 to {total} of {total} entries" in second
    assert "Bluebird" not in first


def test_one_resellers_customers_have_different_names_others_may_share_them(world, reseller_a_admin_client, login):
    reseller = world.accounts["reseller_a"].id
    before = database_fingerprint()
    same = reseller_a_admin_client.post(
        f"/accounts/{reseller}/sub-accounts/new",
        data={"csrf_token": csrf_token(reseller_a_admin_client), "name": "aardvark farms", "country": "NZ"},
    )
    assert same.status_code == 400
    assert 'data-error-for="name">Alpha Partners Ltd already has a customer named aardvark farms' in same.text
    renamed = reseller_a_admin_client.post(
        f"/accounts/{world.accounts['customer_a2'].id}/details",
        data={"csrf_token": csrf_token(reseller_a_admin_client), "name": "Aardvark Farms", "country": "NZ"},
    )
    assert renamed.status_code == 400 and "already has a customer named Aardvark Farms" in renamed.text
    assert database_fingerprint() == before
    # Another reseller may have a customer of that name, and is told nothing about reseller A's.
    other = login(world.users["reseller_b_admin"].email)
    response = other.post(
        f"/accounts/{world.accounts['reseller_b'].id}/sub-accounts/new",
        data={"csrf_token": csrf_token(other), "name": "Aardvark Farms", "country": "NZ"},
    )
    assert response.status_code == 302

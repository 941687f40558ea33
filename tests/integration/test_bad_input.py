"""Input no browser would send — ids past any row, NUL characters, unknown list filters, ``sNaN`` prices, partial
forms, a form sent twice — answers a clear 4xx or is handled once, never a 500, and nothing saved is lost."""

from __future__ import annotations

import functools
import io
import uuid

import pytest
from sqlalchemy import func, select

from app.models.accounts import Account
from app.models.dashboards import DashboardWidget
from app.models.events import Event
from app.models.subscriptions import Subscription
from tests import ordering_steps
from tests.conftest import at_once, csrf_token, unscoped
from tests.integration.test_impersonation import _launch
from tests.integration.test_scoping import database_fingerprint

HUGE = "99999999999999999999"


@pytest.mark.parametrize(
    "path",
    [
        f"/accounts/{HUGE}/details",
        f"/accounts/{HUGE}/users",
        f"/accounts/{HUGE}/products/csp-report",
        f"/portal/{HUGE}/",
        f"/accountview/show/{HUGE}",
        f"/productview/edit/{HUGE}",
        f"/subscriptionview/show/{HUGE}",
    ],
)
def test_an_id_past_any_row_is_a_404(ops_admin_client, path):
    assert ops_admin_client.get(path).status_code == 404


def test_an_id_field_past_any_row_is_a_404_and_changes_nothing(world, ops_admin_client, customer_a_master_admin_client):
    client = customer_a_master_admin_client
    customer_token = csrf_token(client)  # a customer login's first page chooses its account (an event): before
    before = database_fingerprint()
    token = csrf_token(ops_admin_client)
    assert ops_admin_client.post(f"/accounts/{HUGE}/details", data={"csrf_token": token}).status_code == 404
    response = ops_admin_client.post(
        "/productview/action_post", data={"csrf_token": token, "action": "retire", "rowid": HUGE}
    )
    assert response.status_code == 404
    customer, sub = world.accounts["customer_a"].id, world.rows["a"]["subscription"]
    response = client.post(
        f"/portal/{customer}/services/microsoft-csp/subscriptions/{sub}/assign",
        data={"csrf_token": customer_token, "m365_user_id": HUGE},
    )
    assert response.status_code == 404
    assert database_fingerprint() == before


@pytest.mark.parametrize("page", [HUGE, "abc", "-1", "1.5"])
def test_a_page_number_that_is_not_one_is_a_400(world, reseller_a_admin_client, page):
    for path in ("events", "sub-accounts", "products/csp-report"):
        response = reseller_a_admin_client.get(f"/accounts/{world.accounts['reseller_a'].id}/{path}?page={page}")
        assert response.status_code == 400, path


@pytest.mark.parametrize("query", ["_flt_9_auto_renew=x", "_flt_4_renew_on=x", "_flt_0_nonexistent=x"])
def test_an_unknown_list_filter_is_a_400(reseller_a_admin_client, query):
    assert reseller_a_admin_client.get(f"/subscriptionview/list/?{query}").status_code == 400


def test_a_known_list_filter_still_filters(world, reseller_a_admin_client):
    page = reseller_a_admin_client.get("/accountview/list/?_flt_0_name=Aardvark").text
    assert "Aardvark Farms" in page and "Anchor Marine" not in page


def test_nul_characters_are_refused_before_anything_is_saved(world, reseller_a_admin_client):
    before = database_fingerprint()
    customer = world.accounts["customer_a"].id
    response = reseller_a_admin_client.post(
        f"/accounts/{customer}/details",
        data={"csrf_token": csrf_token(reseller_a_admin_client), "name": "bad\x00name", "country": "NZ"},
    )
    assert response.status_code == 400 and "NUL" in response.text
    assert database_fingerprint() == before


def _upload_sheet(client, unit_price: str, erp_price: str = "9.00"):
    """Catalogue ▸ Price changes ▸ Import price sheet: a one-row sheet in Microsoft's columns."""
    from tests.integration.test_pricesheet import _row, _sheet

    sheet = _sheet(_row(UnitPrice=unit_price, **{"ERP Price": erp_price}))
    return client.post(
        "/catalogue/price-changes/import",
        data={
            "csrf_token": csrf_token(client, "/catalogue/price-changes/"),
            "market": "NZ",
            "sheet": (io.BytesIO(sheet), "sheet.csv"),
        },
        content_type="multipart/form-data",
    )


@pytest.mark.parametrize("amount", ["sNaN", "NaN", "Infinity", "-Infinity", "", "5,50", "$5.50"])
def test_a_price_that_is_not_an_amount_is_told_beside_the_field(ops_admin_client, amount):
    """Prices now come from Microsoft's price sheet: a bad one refuses the upload, with its line, beside the field."""
    before = database_fingerprint()
    response = _upload_sheet(ops_admin_client, amount)
    assert response.status_code == 400 and 'data-error-for="sheet">line 2: ' in response.text
    assert ("empty UnitPrice" if not amount else "is not a number") in response.text
    assert database_fingerprint() == before


@pytest.mark.parametrize(
    ("field", "amount", "message"),
    [
        ("unit_cost", "1e309", "is too large"),
        ("erp", "9" * 40, "is too large"),
        ("erp", "-0.01", "is negative"),
        ("unit_cost", "-1e-30", "is negative"),
    ],
)
def test_an_out_of_range_price_is_told_beside_the_field(ops_admin_client, field, amount, message):
    """The outside review's finding: 1e309 or forty nines answered 500."""
    before = database_fingerprint()
    response = _upload_sheet(ops_admin_client, *((amount,) if field == "unit_cost" else ("1", amount)))
    assert response.status_code == 400 and message in response.text and "line 2: " in response.text
    assert database_fingerprint() == before


def test_a_partial_details_post_keeps_what_it_does_not_carry(world, reseller_a_admin_client):
    customer = world.accounts["customer_a"].id
    with unscoped() as session:
        account = session.get(Account, customer)
        kept = (account.contact_email, account.country)
    response = reseller_a_admin_client.post(
        f"/accounts/{customer}/details",
        data={"csrf_token": csrf_token(reseller_a_admin_client), "name": "Aardvark Farms Ltd", "phone": "+64 4 555"},
    )
    assert response.status_code == 302
    with unscoped() as session:
        account = session.get(Account, customer)
        assert (account.name, account.phone) == ("Aardvark Farms Ltd", "+64 4 555")
        assert (account.contact_email, account.country) == kept == ("ops@aardvark.example", "NZ")


def _orders(world) -> int:
    with unscoped() as session:
        return session.scalar(
            select(func.count(Subscription.id)).where(Subscription.account_id == world.accounts["customer_a"].id)
        )


def test_an_order_without_a_quantity_or_an_unclear_auto_renew_changes_nothing(world, customer_a_master_admin_client):
    client, customer = customer_a_master_admin_client, world.accounts["customer_a"].id
    token = csrf_token(client)  # a customer login's first page chooses its account (an event): before the snapshot
    before = database_fingerprint()
    client.post(
        f"/portal/{customer}/services/microsoft-csp/orders",
        data={"csrf_token": token, "product_id": str(world.rows["products"]["exchange"])},
    )
    sub = world.rows["a"]["subscription"]
    for value in ("", "maybe", "2"):
        client.post(
            f"/portal/{customer}/services/microsoft-csp/subscriptions/{sub}/auto-renew",
            data={"csrf_token": token, "enabled": value},
        )
    for quantity in ("1_0", "+4", "٣", "1e3"):
        client.post(
            f"/portal/{customer}/services/microsoft-csp/subscriptions/{sub}/quantity",
            data={"csrf_token": token, "quantity": quantity},
        )
    assert database_fingerprint() == before
    page = client.get(f"/portal/{customer}/services/microsoft-csp").text
    assert "Enter the number of licences as a whole number." in page or "Enter how many licences." in page


def test_an_order_sent_twice_is_placed_once(world, customer_a_master_admin_client):
    client, customer = customer_a_master_admin_client, world.accounts["customer_a"].id
    data = ordering_steps.reviewed(client, customer, world.rows["products"]["exchange"], 3)
    ordered = _orders(world)
    for _ in range(2):
        assert ordering_steps.place(client, customer, data)
    assert _orders(world) == ordered + 1
    assert "was already placed" in client.get(f"/portal/{customer}/services/microsoft-csp").text
    # a refused order releases its key: the same form, corrected, goes through
    other = uuid.uuid4().hex
    ordering_steps.place(client, customer, data, quantity="0", submission_key=other)
    ordering_steps.place(client, customer, data, submission_key=other)
    assert _orders(world) == ordered + 2


def test_concurrent_copies_of_one_sub_account_form_add_one_customer(app, world, login):
    reseller = world.accounts["reseller_a"].id
    clients = [login(world.users["reseller_a_admin"].email) for _ in range(3)]
    key = uuid.uuid4().hex
    forms = [
        {"csrf_token": csrf_token(c), "name": "Double Submit Co", "country": "NZ", "submission_key": key}
        for c in clients
    ]
    statuses = [
        r.status_code
        for r in at_once(
            *(
                functools.partial(c.post, f"/accounts/{reseller}/sub-accounts/new", data=f)
                for c, f in zip(clients, forms, strict=True)
            )
        )
    ]
    assert statuses == [302, 302, 302]
    with unscoped() as session:
        assert session.scalar(select(func.count(Account.id)).where(Account.name == "Double Submit Co")) == 1


def test_a_launched_edit_without_an_email_is_told_not_a_500(world, reseller_a_admin_client):
    client = reseller_a_admin_client
    _launch(client, world)
    customer, target = world.accounts["customer_a"].id, world.users["customer_a_master_admin"]
    response = client.post(
        f"/portal/{customer}/users/{target.id}/edit",
        data={"csrf_token": csrf_token(client, f"/portal/{customer}/"), "first_name": "Mara", "last_name": "Master"},
    )
    assert response.status_code == 400 and "Email is required" in response.text


@pytest.mark.parametrize("body", ['{"order": [1.5]}', '{"order": [true]}', '{"order": ["1_0"]}', "[" * 5000])
def test_a_widget_order_that_is_not_ids_is_a_400(world, customer_a_master_admin_client, body):
    client = customer_a_master_admin_client
    response = client.post(
        f"/portal/{world.accounts['customer_a'].id}/widgets/order",
        data=body,
        headers={"Content-Type": "application/json", "X-CSRFToken": csrf_token(client)},
    )
    assert response.status_code == 400 and response.is_json


def test_error_pages_are_the_portals_own_with_a_way_home(world, reseller_a_admin_client, reseller_b_admin_client):
    missing = reseller_b_admin_client.get(f"/accounts/{world.accounts['customer_a'].id}/details")
    assert missing.status_code == 404 and 'data-test="error-page"' in missing.text and 'href="/"' in missing.text
    assert "Aardvark" not in missing.text
    membership = world.users["customer_a_master_admin"].membership_id
    wrong_method = reseller_a_admin_client.get(f"/impersonation/start/{membership}")
    assert wrong_method.status_code == 405 and "POST" in wrong_method.headers["Allow"]
    assert 'data-test="error-page"' in wrong_method.text


def test_the_json_endpoints_answer_errors_in_json_whatever_is_accepted(world, reseller_b_admin_client):
    response = reseller_b_admin_client.get(
        f"/accounts/{world.accounts['customer_a'].id}/microsoft-tenant/check?prefix=x"
    )
    assert response.status_code == 404 and response.is_json and response.get_json()["status"] == 404
    assert reseller_b_admin_client.get("/reports/jobs/not-a-job").is_json


def test_customer_portal_forms_show_errors_beside_their_fields_and_keep_the_input(
    world, customer_a_master_admin_client
):
    client, customer = customer_a_master_admin_client, world.accounts["customer_a"].id
    token = csrf_token(client)  # a customer login's first page chooses its account (an event): before the snapshot
    before = database_fingerprint()
    order = client.post(
        f"/portal/{customer}/services/microsoft-csp/orders",
        data={"csrf_token": token, "product_id": str(world.rows["products"]["exchange"]), "quantity": "0"},
    )
    assert order.status_code == 400
    assert 'data-error-for="quantity">Licences: Order between 1 and 10,000 licences.' in order.text
    person = client.post(
        f"/portal/{customer}/services/microsoft-csp/users",
        data={"csrf_token": token, "first_name": "Hemi", "last_name": "", "username": "hemi"},
    )
    assert person.status_code == 400
    assert 'data-error-for="last_name">Last name: Last name is required.' in person.text
    assert 'value="Hemi"' in person.text and 'value="hemi"' in person.text
    assert database_fingerprint() == before


def test_repeated_clicks_change_nothing_twice(world, ops_admin_client, customer_a_master_admin_client):
    client, customer = customer_a_master_admin_client, world.accounts["customer_a"].id
    token = csrf_token(client)
    for _ in range(2):
        client.post(f"/portal/{customer}/widgets", data={"csrf_token": token, "widget": "spend"})
    assert "Monthly spend is already on your dashboard." in client.get(f"/portal/{customer}/").text
    with unscoped() as session:
        assert session.scalar(select(func.count(DashboardWidget.id)).where(DashboardWidget.widget == "spend")) == 1
        disabled_before = session.scalar(select(func.count(Event.id)).where(Event.action == "user.disabled"))
    target = world.users["reseller_a_user"].id
    ops_token = csrf_token(ops_admin_client)
    for _ in range(2):
        ops_admin_client.post(
            f"/accounts/{world.accounts['reseller_a'].id}/users/partner/{target}/disable",
            data={"csrf_token": ops_token, "confirmed": "yes"},
        )
    with unscoped() as session:
        after = session.scalar(select(func.count(Event.id)).where(Event.action == "user.disabled"))
        assert after == disabled_before + 1


def test_two_different_orders_at_once_both_go_through(app, world, login):
    customer = world.accounts["customer_a"].id
    clients = [login(world.users["customer_a_master_admin"].email) for _ in range(2)]
    forms = [
        {
            **ordering_steps.reviewed(c, customer, world.rows["products"]["exchange"], 2),
            "csrf_token": csrf_token(c),
        }
        for c in clients
    ]
    ordered = _orders(world)
    path = f"/portal/{customer}/services/microsoft-csp/orders"
    statuses = [
        r.status_code
        for r in at_once(*(functools.partial(c.post, path, data=f) for c, f in zip(clients, forms, strict=True)))
    ]
    assert statuses == [302, 302]
    assert _orders(world) == ordered + 2


def test_a_form_key_from_someone_elses_form_is_not_a_resend(world, login):
    simon, pat = login(world.users["reseller_a_admin"].email), login(world.users["reseller_b_admin"].email)
    key = uuid.uuid4().hex
    mine = {"csrf_token": csrf_token(simon), "name": "Keyed Co", "country": "NZ", "submission_key": key}
    assert simon.post(f"/accounts/{world.accounts['reseller_a'].id}/sub-accounts/new", data=mine).status_code == 302
    theirs = {"csrf_token": csrf_token(pat), "name": "Other Keyed Co", "country": "NZ", "submission_key": key.upper()}
    response = pat.post(f"/accounts/{world.accounts['reseller_b'].id}/sub-accounts/new", data=theirs)
    assert response.status_code == 302
    assert "This form is out of date: open it again." in pat.get(response.location).text
    with unscoped() as session:
        assert session.scalar(select(func.count(Account.id)).where(Account.name == "Other Keyed Co")) == 0

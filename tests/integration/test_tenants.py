"""New Microsoft tenants on the sandbox provider: the live check endpoint, the form's rules, idempotent creation,
the race for one name, linking an existing tenant, and the cross-tenant case."""

from __future__ import annotations

import datetime as dt
import functools
import re
import threading

import pytest
from sqlalchemy import func, select

from app import clock
from app.extensions import limiter
from app.models.accounts import CUSTOMER, Account, MicrosoftTenant
from app.models.csp import SandboxCustomer, SandboxDomain
from app.models.events import Event
from app.services.accounts import create_account
from tests.conftest import at_once, csrf_token, login_to, make_app, unscoped
from tests.integration.test_scoping import database_fingerprint


@pytest.fixture
def taken_at_microsoft(world):
    with unscoped() as session:
        session.add_all([SandboxDomain(prefix=p) for p in ("enet123", "contoso", "microsoft")])
        session.commit()


def _check(client, account_id, prefix):
    response = client.get(
        f"/accounts/{account_id}/microsoft-tenant/check",
        query_string={"prefix": prefix},
        headers={"Accept": "application/json"},
    )
    return response.status_code, response.get_json()


# -- the check endpoint ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "state", "message"),
    [
        ("enet123", "taken", "enet123.onmicrosoft.com is not available"),  # taken at Microsoft
        ("aardvark", "taken", "aardvark.onmicrosoft.com is not available"),  # a tenant in the portal already
        ("Enet123456", "available", "enet123456.onmicrosoft.com is available"),
        ("enet-123", "invalid", "Use letters and digits only"),
        ("a" * 28, "invalid", "Use at most 27 characters."),
        ("", "invalid", "Enter the domain name"),
    ],
)
def test_check(world, taken_at_microsoft, reseller_a_admin_client, prefix, state, message):
    status, body = _check(reseller_a_admin_client, world.accounts["customer_a2"].id, prefix)
    assert status == 200
    assert body["state"] == state and message in body["message"]


def test_a_provider_failure_is_never_available(world, reseller_a_admin_client, sandbox):
    sandbox.fail_rate = 1.0
    status, body = _check(reseller_a_admin_client, world.accounts["customer_a2"].id, "enet123456")
    assert status == 200 and body["state"] == "error"
    assert body["message"] == "Couldn't check availability — try again"


def test_check_needs_sign_in_permission_and_scope(world, client, reseller_a_user_client, reseller_b_admin_client):
    customer = world.accounts["customer_a2"].id
    assert _check(client, customer, "enet123456")[0] == 401
    assert _check(reseller_a_user_client, customer, "enet123456")[0] == 403  # a Partner User sets up no tenants
    status, body = _check(reseller_b_admin_client, customer, "enet123456")
    assert status == 404 and body["status"] == 404  # another reseller's customer: JSON 404


def test_check_is_rate_limited_per_user(world, tmp_path, database_url):
    limited = make_app(
        tmp_path,
        database_url,
        RATELIMIT_ENABLED=True,
        RATELIMIT_STORAGE_URI="memory://",
        DOMAIN_CHECK_RATE_LIMIT="3 per minute",
    )
    a = login_to(limited, world.users["reseller_a_admin"].email)
    b = login_to(limited, world.users["reseller_b_admin"].email)
    answers = [_check(a, world.accounts["customer_a2"].id, f"free{i}")[0] for i in range(4)]
    assert answers == [200, 200, 200, 429]
    assert _check(b, world.accounts["customer_b"].id, "free9")[0] == 200  # the limit is per user
    limiter.reset()


# -- the form ---------------------------------------------------------------------------------------------------


def _form(client, account_id, **fields):
    page = client.get(f"/accounts/{account_id}/microsoft-tenant/new").text
    key = re.search(r'name="idempotency_key" type="hidden" value="([^"]+)"', page).group(1)
    data = {
        "csrf_token": csrf_token(client),
        "idempotency_key": key,
        "domain_prefix": "anchormarine",
        "company_name": "Anchor Marine",
        "contact_first_name": "Ana",
        "contact_last_name": "Anchor",
        "contact_email": "ana@anchormarine.example",
        "phone": "+64 9 555 0111",
        "address_line1": "1 Wharf Road",
        "city": "Auckland",
        "postcode": "1010",
        "country": "NZ",
        "signer_first_name": "Ana",
        "signer_last_name": "Anchor",
        "signer_email": "ana@anchormarine.example",
        "accepted_on": clock.today().isoformat(),
        "agreement": "y",
        **fields,
    }
    return data


def _submit(client, account_id, data):
    return client.post(f"/accounts/{account_id}/microsoft-tenant/new", data=data)


def test_the_form_shows_the_field_and_the_rules(world, reseller_a_admin_client):
    page = reseller_a_admin_client.get(f"/accounts/{world.accounts['customer_a2'].id}/microsoft-tenant/new").text
    assert "Primary Domain Name *" in page and ".onmicrosoft.com</span>" in page
    assert "&#34;maxLength&#34;: 27" in page or '"maxLength": 27' in page


def test_create_a_tenant(world, taken_at_microsoft, reseller_a_admin_client):
    customer = world.accounts["customer_a2"].id
    response = _submit(reseller_a_admin_client, customer, _form(reseller_a_admin_client, customer))
    assert response.status_code == 200 and 'data-test="admin-password"' in response.text  # shown once (issue 15)
    with unscoped() as session:
        tenant = session.scalars(select(MicrosoftTenant).where(MicrosoftTenant.account_id == customer)).one()
        assert (tenant.domain_prefix, tenant.status, tenant.link_type) == ("anchormarine", "active", "created")
        assert tenant.tenant_guid and tenant.agreement_signer_name == "Ana Anchor"
        assert tenant.agreement_date == clock.today()
        at_microsoft = session.scalars(select(SandboxCustomer).where(SandboxCustomer.domain_prefix == "anchormarine"))
        assert at_microsoft.one().agreement_accepted_on == clock.today()
        actions = set(session.scalars(select(Event.action).where(Event.account_id == customer)))
        assert {"tenant.requested", "tenant.created"} <= actions
    page = reseller_a_admin_client.get(f"/accounts/{customer}/products/microsoft-tenant").text
    assert "anchormarine.onmicrosoft.com" in page and 'data-test="tenant-status">Active' in page


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("domain_prefix", "enet123", "enet123.onmicrosoft.com is not available"),  # the check again at submit
        ("domain_prefix", "anchor-marine", "Use letters and digits only"),
        ("company_name", "LLC", "legal-form abbreviation"),
        ("company_name", "1 2 3", "single characters separated by spaces"),
        ("contact_first_name", "test", "placeholder"),
        ("contact_last_name", "9", "more than a single character"),
        ("contact_email", "ana@microsoft.com", "cannot be a microsoft.com address"),
        ("contact_email", "ana@alpha.example", "not on your own domain"),
        ("agreement", "", "must accept the Microsoft Customer Agreement"),
        ("agreement", "0", "must accept the Microsoft Customer Agreement"),
        ("agreement", "off", "must accept the Microsoft Customer Agreement"),
        ("accepted_on", (clock.today() + dt.timedelta(days=3)).isoformat(), "cannot be accepted in the future"),
        ("accepted_on", "0001-01-01", "dates from 2019"),
        ("signer_first_name", "a", "signatory&#39;s first name must be more than a single character"),
        ("signer_last_name", "Test", "placeholder"),
        ("signer_email", "ana@alpha.example", "not on your own domain"),
        ("signer_email", "ana@microsoft.com", "cannot be a microsoft.com address"),
    ],
)
def test_refused_before_any_provider_call(world, taken_at_microsoft, reseller_a_admin_client, field, value, message):
    customer = world.accounts["customer_a2"].id
    data = _form(reseller_a_admin_client, customer, **{field: value})
    if not value:
        data.pop(field)
    before = database_fingerprint()
    response = _submit(reseller_a_admin_client, customer, data)
    assert response.status_code in (400, 409)
    assert re.search(rf'data-error-for="{field}">[^<]*{re.escape(message)}', response.text), response.text[-3000:]
    assert database_fingerprint() == before
    assert 'value="Ana"' in response.text  # nothing typed is lost


def test_a_double_submission_creates_one_tenant(world, reseller_a_admin_client):
    customer = world.accounts["customer_a2"].id
    data = _form(reseller_a_admin_client, customer)
    assert _submit(reseller_a_admin_client, customer, data).status_code == 200  # created: the admin's password, once
    assert _submit(reseller_a_admin_client, customer, data).status_code == 302  # the same form again: no password
    with unscoped() as session:
        assert session.scalar(select(func.count(MicrosoftTenant.id)).where(MicrosoftTenant.account_id == customer)) == 1
        assert (
            session.scalar(
                select(func.count(SandboxCustomer.id)).where(SandboxCustomer.domain_prefix == "anchormarine")
            )
            == 1
        )


def test_two_resellers_racing_for_one_name_make_one_tenant(app, world, login):
    """Two partner users submit the same new name for two customers at the same moment (real threads, real
    database): exactly one tenant; the other is told the name was just taken."""
    a, b = login(world.users["reseller_a_admin"].email), login(world.users["reseller_b_admin"].email)
    with unscoped() as session:  # customer_b has a tenant in the test world: free it for this race
        session.query(MicrosoftTenant).filter_by(account_id=world.accounts["customer_b"].id).delete()
        session.commit()
    forms = [(a, world.accounts["customer_a2"].id), (b, world.accounts["customer_b"].id)]
    prepared = [(client, customer, _form(client, customer, domain_prefix="racedname")) for client, customer in forms]
    barrier = threading.Barrier(2)
    answers = {}

    def submit(client, customer, data):
        barrier.wait()
        response = _submit(client, customer, data)
        answers[customer] = (response.status_code, response.text)

    threads = [threading.Thread(target=submit, args=item) for item in prepared]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    codes = sorted(code for code, _ in answers.values())
    assert codes == [200, 409], answers
    loser = next(text for code, text in answers.values() if code == 409)
    assert "racedname.onmicrosoft.com was just taken" in loser or "is not available" in loser
    with unscoped() as session:
        assert (
            session.scalar(select(func.count(MicrosoftTenant.id)).where(MicrosoftTenant.domain_prefix == "racedname"))
            == 1
        )
        assert (
            session.scalar(select(func.count(SandboxCustomer.id)).where(SandboxCustomer.domain_prefix == "racedname"))
            == 1
        )


def test_provider_failure_keeps_everything_and_retry_finishes(world, reseller_a_admin_client, sandbox):
    customer = world.accounts["customer_a2"].id
    data = _form(reseller_a_admin_client, customer)
    # The check at submit answers; creating the customer at Microsoft fails (CSP_SANDBOX_FAIL_OPERATIONS).
    sandbox.fail_rate, sandbox.fail_operations = 1.0, frozenset({"create_customer"})
    response = _submit(reseller_a_admin_client, customer, data)
    sandbox.fail_rate = 0.0
    assert response.status_code == 302
    page = reseller_a_admin_client.get(f"/accounts/{customer}/products/microsoft-tenant").text
    assert 'data-test="tenant-status">Failed' in page and ">Retry<" in page and "correlation id" in page
    with unscoped() as session:
        tenant = session.scalars(select(MicrosoftTenant).where(MicrosoftTenant.account_id == customer)).one()
        assert (
            tenant.status == "failed" and tenant.tenant_guid is None and "Anchor Marine" in tenant.provisioning_request
        )
    retried = reseller_a_admin_client.post(
        f"/accounts/{customer}/microsoft-tenant/retry", data={"csrf_token": csrf_token(reseller_a_admin_client)}
    )
    assert retried.status_code == 200 and 'data-test="admin-password"' in retried.text  # created by Retry
    with unscoped() as session:
        tenant = session.scalars(select(MicrosoftTenant).where(MicrosoftTenant.account_id == customer)).one()
        assert tenant.status == "active" and tenant.tenant_guid
        assert {"tenant.failed", "tenant.retried", "tenant.created"} <= set(
            session.scalars(select(Event.action).where(Event.account_id == customer))
        )


def test_link_an_existing_tenant(world, reseller_a_admin_client):
    customer = world.accounts["customer_a2"].id
    token = csrf_token(reseller_a_admin_client)
    response = reseller_a_admin_client.post(
        f"/accounts/{customer}/microsoft-tenant/link",
        data={"csrf_token": token, "domain_prefix": "anchorexisting.onmicrosoft.com"},
    )
    assert response.status_code == 302
    page = reseller_a_admin_client.get(f"/accounts/{customer}/products/microsoft-tenant").text
    assert 'data-test="tenant-status">Invited' in page and "invType=ResellerRelationship" in page
    reseller_a_admin_client.post(f"/accounts/{customer}/microsoft-tenant/accepted", data={"csrf_token": token})
    with unscoped() as session:
        tenant = session.scalars(select(MicrosoftTenant).where(MicrosoftTenant.account_id == customer)).one()
        assert (tenant.domain_prefix, tenant.link_type, tenant.status) == ("anchorexisting", "linked", "active")


def test_another_reseller_cannot_create_or_touch_tenants_of_my_customers(
    world, reseller_a_admin_client, reseller_b_admin_client
):
    customer = world.accounts["customer_a2"].id
    data = _form(reseller_a_admin_client, customer)
    data["csrf_token"] = csrf_token(reseller_b_admin_client)
    before = database_fingerprint()
    for path in ("new", "retry", "discard", "link", "accepted"):
        assert (
            reseller_b_admin_client.post(f"/accounts/{customer}/microsoft-tenant/{path}", data=data).status_code == 404
        )
    for path in ("new", "link"):
        assert reseller_b_admin_client.get(f"/accounts/{customer}/microsoft-tenant/{path}").status_code == 404
    assert reseller_b_admin_client.get(f"/accounts/{customer}/products/microsoft-tenant").status_code == 404
    assert database_fingerprint() == before


def test_add_sub_account_can_lead_to_the_tenant_form(world, reseller_a_admin_client):
    response = reseller_a_admin_client.post(
        f"/accounts/{world.accounts['reseller_a'].id}/sub-accounts/new",
        data={
            "csrf_token": csrf_token(reseller_a_admin_client),
            "name": "Harbour Hops",
            "country": "NZ",
            "setup_tenant": "y",
        },
    )
    assert response.status_code == 302 and response.location.endswith("/microsoft-tenant/new")
    form = reseller_a_admin_client.get(response.location).text
    assert "Primary Domain Name *" in form and 'value="Harbour Hops"' in form


def test_linking_another_resellers_domain_says_nothing_of_whose_it_is(world, reseller_b_admin_client):
    with unscoped() as session:
        newcomer = create_account(CUSTOMER, "Bramble Books", session.get(Account, world.accounts["reseller_b"].id))
        session.commit()
        customer = newcomer.id
    before = database_fingerprint()
    response = reseller_b_admin_client.post(
        f"/accounts/{customer}/microsoft-tenant/link",
        data={"csrf_token": csrf_token(reseller_b_admin_client), "domain_prefix": "aardvark"},
    )
    assert response.status_code == 400
    assert "aardvark.onmicrosoft.com can&#39;t be linked here" in response.text
    assert "another customer" not in response.text and "Aardvark Farms" not in response.text
    assert database_fingerprint() == before


def test_retry_clicked_three_times_at_once_asks_microsoft_once(app, world, reseller_a_admin_client, sandbox, login):
    customer = world.accounts["customer_a2"].id
    sandbox.fail_rate, sandbox.fail_operations = 1.0, frozenset({"create_customer"})
    _submit(reseller_a_admin_client, customer, _form(reseller_a_admin_client, customer))
    sandbox.fail_rate = 0.0
    clients = [login(world.users["reseller_a_admin"].email) for _ in range(3)]
    tokens = [csrf_token(c) for c in clients]
    path = f"/accounts/{customer}/microsoft-tenant/retry"
    statuses = at_once(
        *(functools.partial(c.post, path, data={"csrf_token": t}) for c, t in zip(clients, tokens, strict=True))
    )
    assert len(statuses) == 3 and all(r.status_code < 500 for r in statuses)
    with unscoped() as session:
        actions = list(session.scalars(select(Event.action).where(Event.account_id == customer)))
        assert actions.count("tenant.retried") == 1 and actions.count("tenant.created") == 1
        created = select(func.count(SandboxCustomer.id)).where(SandboxCustomer.domain_prefix == "anchormarine")
        assert session.scalar(created) == 1


def test_a_tenant_form_key_works_only_for_its_own_customer(world, reseller_a_admin_client):
    first, second = world.accounts["customer_a2"].id, world.accounts["customer_a"].id
    data = _form(reseller_a_admin_client, first)
    assert _submit(reseller_a_admin_client, first, data).status_code == 200
    with unscoped() as session:
        session.execute(MicrosoftTenant.__table__.delete().where(MicrosoftTenant.account_id == second))
        session.commit()
    before = database_fingerprint()
    response = _submit(reseller_a_admin_client, second, {**data, "domain_prefix": "aardvarknew"})
    assert response.status_code in (400, 409) and "opened for another customer" in response.text
    assert database_fingerprint() == before

"""The whole new-tenant flow with CSP_PROVIDER=partner_center, over HTTPS to the local fake Partner Center."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.csp.partner_center import PartnerCenterProvider
from app.models.accounts import MicrosoftTenant
from app.models.subscriptions import M365User
from tests.conftest import csrf_token, unscoped
from tests.integration.test_operations_recovery import _nowhere
from tests.integration.test_tenants import _check, _form, _submit


@pytest.fixture
def partner_center(app, fake_partner_center):
    """The app talks to the fake Partner Center (as it would with CSP_PROVIDER=partner_center)."""
    saved = app.extensions.get("csp_provider")
    app.extensions["csp_provider"] = PartnerCenterProvider.from_config({**app.config, **fake_partner_center.config()})
    yield fake_partner_center
    app.extensions["csp_provider"] = saved


def test_check_and_create_over_http(world, partner_center, reseller_a_admin_client):
    customer = world.accounts["customer_a2"].id
    assert _check(reseller_a_admin_client, customer, "enet123")[1]["state"] == "taken"
    assert _check(reseller_a_admin_client, customer, "enet123456")[1]["state"] == "available"
    heads = partner_center.calls("HEAD", "/v1/domains/*")
    assert [r.path for r in heads] == ["/v1/domains/enet123.onmicrosoft.com", "/v1/domains/enet123456.onmicrosoft.com"]

    response = _submit(
        reseller_a_admin_client, customer, _form(reseller_a_admin_client, customer, domain_prefix="enet123456")
    )
    assert response.status_code == 200  # created: the first admin's credentials, once
    tenant_id = next(iter(partner_center.customers))
    assert "admin@enet123456.onmicrosoft.com" in response.text
    assert partner_center.admin_passwords[tenant_id] in response.text
    _nowhere(partner_center.admin_passwords[tenant_id])  # shown once, stored nowhere in clear
    with unscoped() as session:  # the admin listed with the tenant's users, linked to Microsoft's id (asked by name)
        admin = session.scalars(
            select(M365User).where(M365User.user_principal_name == "admin@enet123456.onmicrosoft.com")
        ).one()
        assert admin.provider_user_id == next(iter(partner_center.users[tenant_id]))
    (created,) = partner_center.calls("POST", "/v1/customers")
    assert created.json["companyProfile"]["domain"] == "enet123456.onmicrosoft.com"
    assert created.json["billingProfile"]["companyName"] == "Anchor Marine"
    (agreement,) = partner_center.calls("POST", "/v1/customers/*/agreements")
    assert agreement.json["type"] == "MicrosoftCustomerAgreement"
    assert agreement.json["primaryContact"]["email"] == "ana@anchormarine.example"
    # One user operation, one correlation id, on both calls; a request id each.
    assert created.header("MS-CorrelationId") == agreement.header("MS-CorrelationId")
    assert created.header("MS-RequestId") != agreement.header("MS-RequestId")
    with unscoped() as session:
        tenant = session.scalars(select(MicrosoftTenant).where(MicrosoftTenant.account_id == customer)).one()
        assert tenant.status == "active" and tenant.tenant_guid == created_tenant_id(partner_center)


def created_tenant_id(fake) -> str:
    return next(iter(fake.customers))


def test_a_failure_midway_keeps_the_tenant_failed_and_retry_does_not_create_it_twice(
    world, partner_center, reseller_a_admin_client
):
    customer = world.accounts["customer_a2"].id
    partner_center.fail("POST", "/v1/customers/*/agreements", 500)  # a POST that records: not retried
    response = _submit(
        reseller_a_admin_client, customer, _form(reseller_a_admin_client, customer, domain_prefix="anchormarine")
    )
    assert response.status_code == 302
    with unscoped() as session:
        tenant = session.scalars(select(MicrosoftTenant).where(MicrosoftTenant.account_id == customer)).one()
        assert tenant.status == "failed" and tenant.tenant_guid  # the customer exists at Microsoft already
        correlation = partner_center.calls("POST", "/v1/customers")[0].header("MS-CorrelationId")
        assert correlation in tenant.last_error
    page = reseller_a_admin_client.get(f"/accounts/{customer}/products/microsoft-tenant").text
    assert ">Retry<" in page and "Change the domain name" not in page
    reseller_a_admin_client.post(
        f"/accounts/{customer}/microsoft-tenant/retry", data={"csrf_token": csrf_token(reseller_a_admin_client)}
    )
    assert len(partner_center.calls("POST", "/v1/customers")) == 1
    with unscoped() as session:
        tenant = session.scalars(select(MicrosoftTenant).where(MicrosoftTenant.account_id == customer)).one()
        assert tenant.status == "active"


def test_credentials_refused_is_an_error_never_available(world, partner_center, reseller_a_admin_client):
    partner_center.fail("HEAD", "/v1/domains/*", 401)
    state = _check(reseller_a_admin_client, world.accounts["customer_a2"].id, "enet123456")[1]
    assert state["state"] == "error" and state["message"] == "Couldn't check availability — try again"

"""PartnerCenterProvider against a real HTTPS server standing in for Partner Center and its token authority
(tests/fake_partner_center.py): what goes over the wire, retries and their pauses (from the server's own arrival
times), the App+User calls, and every way of failing ending as a ProviderError that never means "available"."""

from __future__ import annotations

import datetime as dt
import logging
import uuid

import pytest

from app.csp.base import AgreementAcceptance, CompanyProfile, DomainTaken, ProviderError, new_correlation_id
from app.csp.partner_center import MCA_TEMPLATE_ID, PartnerCenterProvider

PROFILE = CompanyProfile(
    domain_prefix="kiwibikes",
    company_name="Kiwi Bikes Ltd",
    contact_first_name="Aroha",
    contact_last_name="Ngata",
    contact_email="aroha@kiwibikes.example",
    phone="+64 9 555 0100",
    address_line1="1 Queen Street",
    address_line2="Level 2",
    city="Auckland",
    region="Auckland",
    postcode="1010",
    country="NZ",
)
OFFER = "CFQ7TTC0LDPB:0001"


@pytest.fixture
def pc(fake_partner_center):
    return fake_partner_center


def provider(pc, **overrides) -> PartnerCenterProvider:
    return PartnerCenterProvider.from_config(pc.config(**overrides))


def gaps(requests) -> list[float]:
    return [b.at - a.at for a, b in zip(requests, requests[1:], strict=False)]


def is_uuid(value: str | None) -> bool:
    try:
        uuid.UUID(value or "")
    except ValueError:
        return False
    return True


def customer_with_subscription(pc, client, quantity: int = 5):
    tenant = client.create_customer(PROFILE, correlation_id=new_correlation_id()).tenant_id
    subscription = client.create_order(tenant, OFFER, quantity, "monthly", correlation_id=new_correlation_id())
    return tenant, subscription


# --- configuration ----------------------------------------------------------------------------------------------


def test_from_config_reads_the_partner_center_settings(pc):
    client = provider(pc, PARTNER_CENTER_TIMEOUT_S=1.5, PARTNER_CENTER_MAX_TRIES=4)
    assert client.base_url == pc.base_url
    assert client.authority == f"{pc.authority}/{pc.tenant_id}"
    assert client.timeout_s == 1.5 and client.max_tries == 4
    assert client.session.verify == pc.ca_bundle
    assert client.name == "partner_center"


def test_without_the_test_ca_the_server_is_not_trusted(pc):
    client = provider(pc, PARTNER_CENTER_CA_BUNDLE="")  # the default trust store does not know the test CA
    with pytest.raises(ProviderError):
        client.check_domain("freshname", correlation_id=new_correlation_id())
    assert pc.requests == []


# --- domain check -----------------------------------------------------------------------------------------------


def test_existing_domain_is_not_available(pc):
    correlation_id = new_correlation_id()
    assert provider(pc).check_domain("enet123", correlation_id=correlation_id) is False
    [call] = pc.requests
    assert (call.method, call.path, call.status, call.token) == (
        "HEAD",
        "/v1/domains/enet123.onmicrosoft.com",
        200,
        "app",
    )
    assert call.header("Authorization").startswith("Bearer app-")
    assert call.header("Accept") == "application/json"
    assert call.header("X-Locale") == "en-NZ"
    assert call.header("MS-CorrelationId") == correlation_id
    assert is_uuid(call.header("MS-RequestId"))


def test_unknown_domain_is_available(pc):
    assert provider(pc).check_domain("kiwibikes", correlation_id=new_correlation_id()) is True
    assert [(r.path, r.status) for r in pc.requests] == [("/v1/domains/kiwibikes.onmicrosoft.com", 404)]


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_are_an_error_not_an_answer(pc, status):
    pc.fail("HEAD", "/v1/domains/*", status)
    correlation_id = new_correlation_id()
    with pytest.raises(ProviderError) as caught:
        provider(pc).check_domain("kiwibikes", correlation_id=correlation_id)
    assert str(caught.value) == "Partner Center refused our credentials"
    assert (caught.value.status, caught.value.correlation_id) == (status, correlation_id)
    assert len(pc.requests) == 1  # not retried


def test_server_error_on_every_try_is_an_error(pc):
    pc.fail("HEAD", "/v1/domains/*", 500, times=5)
    with pytest.raises(ProviderError) as caught:
        provider(pc).check_domain("kiwibikes", correlation_id=new_correlation_id())
    assert caught.value.status == 500
    assert len(pc.requests) == 3  # PARTNER_CENTER_MAX_TRIES


def test_no_answer_in_time_is_an_error(pc):
    pc.slow("HEAD", "/v1/domains/*", times=5)
    client = provider(pc, PARTNER_CENTER_TIMEOUT_S=0.3, PARTNER_CENTER_MAX_TRIES=2)
    with pytest.raises(ProviderError) as caught:
        client.check_domain("kiwibikes", correlation_id=new_correlation_id())
    assert caught.value.status is None
    assert "in time" in str(caught.value)
    assert len(pc.requests) == 2


def test_a_timeout_then_an_answer_is_retried(pc):
    pc.slow("HEAD", "/v1/domains/*", times=1)
    assert provider(pc).check_domain("enet123", correlation_id=new_correlation_id()) is False
    assert len(pc.requests) == 2


# --- retries ----------------------------------------------------------------------------------------------------


def test_busy_with_retry_after_is_retried_after_the_pause(pc):
    pc.fail("HEAD", "/v1/domains/*", 429, retry_after=1)
    correlation_id = new_correlation_id()
    assert provider(pc).check_domain("kiwibikes", correlation_id=correlation_id) is True
    first, second = pc.requests
    assert (first.status, second.status) == (429, 404)
    assert 1.0 <= second.at - first.at < 1.8  # Retry-After: 1, not the 0.01 s backoff
    assert first.header("MS-CorrelationId") == second.header("MS-CorrelationId") == correlation_id
    # One call's tries share its MS-RequestId (Microsoft's idempotency key); a new call gets a new one.
    assert first.header("MS-RequestId") == second.header("MS-RequestId")
    assert is_uuid(first.header("MS-RequestId"))
    provider(pc).check_domain("kiwibikes", correlation_id=correlation_id)
    assert pc.requests[-1].header("MS-RequestId") != first.header("MS-RequestId")


def test_a_long_retry_after_is_capped(pc):
    pc.fail("HEAD", "/v1/domains/*", 429, retry_after=30)
    client = provider(pc, PARTNER_CENTER_RETRY_AFTER_CAP_S=0.3)
    assert client.check_domain("kiwibikes", correlation_id=new_correlation_id()) is True
    [gap] = gaps(pc.requests)
    assert 0.3 <= gap < 1.5


def test_still_busy_after_the_last_try(pc):
    pc.fail("HEAD", "/v1/domains/*", 429, times=10, retry_after=0)
    correlation_id = new_correlation_id()
    with pytest.raises(ProviderError) as caught:
        provider(pc, PARTNER_CENTER_MAX_TRIES=4).check_domain("kiwibikes", correlation_id=correlation_id)
    assert str(caught.value) == "Partner Center is busy"
    assert (caught.value.status, caught.value.correlation_id) == (429, correlation_id)
    assert len(pc.requests) == 4
    assert len({r.header("MS-RequestId") for r in pc.requests}) == 1  # four tries of one request
    assert {r.header("MS-CorrelationId") for r in pc.requests} == {correlation_id}


def test_server_errors_back_off_exponentially(pc):
    client = provider(pc)
    tenant, subscription = customer_with_subscription(pc, client)
    pc.requests.clear()
    pc.fail("GET", "/v1/customers/*/subscriptions/*", 503, times=2)
    client.backoff_s = 0.1
    got = client.get_subscription(tenant, subscription.subscription_id, correlation_id=new_correlation_id())
    assert got == subscription
    assert [r.status for r in pc.requests] == [503, 503, 200]
    first, second = gaps(pc.requests)
    assert first >= 0.1 and second >= 0.2  # 0.1 s x 2^n


def test_a_failed_create_is_not_repeated(pc):
    pc.fail("POST", "/v1/customers", 500)
    with pytest.raises(ProviderError) as caught:
        provider(pc).create_customer(PROFILE, correlation_id=new_correlation_id())
    assert caught.value.status == 500
    assert "may have been done" in str(caught.value)
    assert not isinstance(caught.value, DomainTaken)
    assert len(pc.requests) == 1


def test_a_create_that_times_out_is_not_repeated(pc):
    pc.slow("POST", "/v1/customers/*/orders")
    client = provider(pc)
    tenant = client.create_customer(PROFILE, correlation_id=new_correlation_id()).tenant_id
    with pytest.raises(ProviderError) as caught:
        client.create_order(tenant, OFFER, 3, "monthly", correlation_id=new_correlation_id())
    assert "may have been done" in str(caught.value)
    assert len(pc.calls("POST", "/v1/customers/*/orders")) == 1


def test_a_busy_create_is_retried(pc):
    pc.fail("POST", "/v1/customers", 429, retry_after=0)
    tenant = provider(pc).create_customer(PROFILE, correlation_id=new_correlation_id())
    assert [r.status for r in pc.requests] == [429, 201]
    assert tenant.tenant_id in pc.customers


# --- the calls --------------------------------------------------------------------------------------------------


def test_create_customer(pc):
    correlation_id = new_correlation_id()
    client = provider(pc)
    tenant = client.create_customer(PROFILE, correlation_id=correlation_id)
    assert tenant.domain == "kiwibikes.onmicrosoft.com"
    assert pc.customers[tenant.tenant_id]["companyProfile"]["tenantId"] == tenant.tenant_id
    [call] = pc.requests
    assert (call.method, call.path, call.token, call.status) == ("POST", "/v1/customers", "app", 201)
    assert call.header("MS-CorrelationId") == correlation_id
    assert call.json == {
        "companyProfile": {"domain": "kiwibikes.onmicrosoft.com"},
        "billingProfile": {
            "email": "aroha@kiwibikes.example",
            "culture": "en-NZ",
            "language": "en",
            "companyName": "Kiwi Bikes Ltd",
            "defaultAddress": {
                "country": "NZ",
                "city": "Auckland",
                "state": "Auckland",
                "addressLine1": "1 Queen Street",
                "addressLine2": "Level 2",
                "postalCode": "1010",
                "firstName": "Aroha",
                "lastName": "Ngata",
                "phoneNumber": "+64 9 555 0100",
            },
        },
    }
    assert client.check_domain("kiwibikes", correlation_id=new_correlation_id()) is False


def test_create_customer_with_a_taken_domain(pc):
    profile = CompanyProfile(**{**PROFILE.__dict__, "domain_prefix": "contoso"})
    correlation_id = new_correlation_id()
    with pytest.raises(DomainTaken) as caught:
        provider(pc).create_customer(profile, correlation_id=correlation_id)
    assert (caught.value.status, caught.value.correlation_id) == (409, correlation_id)
    assert pc.customers == {}


def test_create_customer_bad_request_naming_the_domain_is_domain_taken(pc):
    pc.fail("POST", "/v1/customers", 400, body={"code": 2001, "description": "Domain kiwibikes already exists"})
    with pytest.raises(DomainTaken):
        provider(pc).create_customer(PROFILE, correlation_id=new_correlation_id())


def test_create_customer_other_bad_request_is_not_domain_taken(pc):
    pc.fail("POST", "/v1/customers", 400, body={"code": 2000, "description": "Postal code is invalid"})
    with pytest.raises(ProviderError) as caught:
        provider(pc).create_customer(PROFILE, correlation_id=new_correlation_id())
    assert not isinstance(caught.value, DomainTaken)
    assert caught.value.status == 400
    assert "Postal code is invalid" in str(caught.value)


def test_accept_agreement(pc):
    client = provider(pc)
    tenant = client.create_customer(PROFILE, correlation_id=new_correlation_id()).tenant_id
    acceptance = AgreementAcceptance("Aroha", "Ngata", "aroha@kiwibikes.example", dt.date(2025, 3, 4), "+64 21 555")
    client.accept_agreement(tenant, acceptance, correlation_id=new_correlation_id())
    call = pc.requests[-1]
    assert (call.method, call.path, call.token) == ("POST", f"/v1/customers/{tenant}/agreements", "app")
    assert call.json == {
        "primaryContact": {
            "firstName": "Aroha",
            "lastName": "Ngata",
            "email": "aroha@kiwibikes.example",
            "phoneNumber": "+64 21 555",
        },
        "templateId": MCA_TEMPLATE_ID,
        "dateAgreed": "2025-03-04T00:00:00",
        "type": "MicrosoftCustomerAgreement",
        "agreementLink": "https://aka.ms/customeragreement",
    }
    assert pc.agreements[tenant] == [call.json]


def test_order_then_subscription(pc):
    client = provider(pc)
    tenant, subscription = customer_with_subscription(pc, client, quantity=5)
    order, get = pc.requests[-2:]
    assert (order.method, order.path) == ("POST", f"/v1/customers/{tenant}/orders")
    assert order.json == {
        "lineItems": [{"lineItemNumber": 0, "offerId": OFFER, "quantity": 5}],
        "billingCycle": "monthly",
    }
    assert (get.method, get.path) == ("GET", f"/v1/customers/{tenant}/subscriptions/{subscription.subscription_id}")
    assert order.header("MS-CorrelationId") == get.header("MS-CorrelationId")  # one user operation
    assert (subscription.offer_id, subscription.quantity, subscription.billing_cycle) == (OFFER, 5, "monthly")
    assert subscription.auto_renew is True and subscription.status == "active"
    today = dt.datetime.now(dt.UTC).date()
    assert subscription.commitment_end == subscription.renew_on == today.replace(year=today.year + 1)
    until = subscription.cancellation_allowed_until
    assert isinstance(until, dt.datetime) and until.tzinfo is not None
    assert dt.timedelta(days=6) < until - dt.datetime.now(dt.UTC) <= dt.timedelta(days=7)


def test_get_subscription_parses_dates_and_a_missing_cancellation_window(pc):
    client = provider(pc)
    tenant, subscription = customer_with_subscription(pc, client)
    stored = pc.subscriptions[tenant][subscription.subscription_id]
    stored.update(commitmentEndDate="2026-02-28T00:00:00Z", billingCycle="annual", status="suspended")
    del stored["cancellationAllowedUntilDate"]
    got = client.get_subscription(tenant, subscription.subscription_id, correlation_id=new_correlation_id())
    assert got.commitment_end == got.renew_on == dt.date(2026, 2, 28)
    assert got.cancellation_allowed_until is None
    assert (got.billing_cycle, got.status) == ("annual", "suspended")

    stored["cancellationAllowedUntilDate"] = "2025-11-30T13:45:10.1234567Z"  # Partner Center's 7 decimals
    got = client.get_subscription(tenant, subscription.subscription_id, correlation_id=new_correlation_id())
    assert got.cancellation_allowed_until == dt.datetime(2025, 11, 30, 13, 45, 10, 123456, tzinfo=dt.UTC)


def test_partner_center_answers_the_same_order_request_with_its_first_order(pc):
    """MS-RequestId is Microsoft's idempotency key: the same order request sent again (after a timeout, a crash)
    answers with the order the first one made; a new request buys again."""
    client = provider(pc)
    tenant, _ = customer_with_subscription(pc, client, quantity=1)
    first = client.create_order(tenant, "offer-x", 3, "monthly", correlation_id=new_correlation_id(), request_id="r-1")
    again = client.create_order(tenant, "offer-x", 3, "monthly", correlation_id=new_correlation_id(), request_id="r-1")
    other = client.create_order(tenant, "offer-x", 3, "monthly", correlation_id=new_correlation_id(), request_id="r-2")
    assert first.subscription_id == again.subscription_id != other.subscription_id
    posts = [r for r in pc.requests if r.method == "POST" and r.path.endswith("/orders")]
    assert [r.header("MS-RequestId") for r in posts[-3:]] == ["r-1", "r-1", "r-2"]


def test_change_quantity_and_auto_renew(pc):
    client = provider(pc)
    tenant, subscription = customer_with_subscription(pc, client, quantity=5)
    changed = client.change_quantity(tenant, subscription.subscription_id, 12, correlation_id=new_correlation_id())
    assert changed.quantity == 12
    call = pc.requests[-1]
    assert (call.method, call.json, call.token) == ("PATCH", {"quantity": 12}, "app")
    renewed = client.set_auto_renew(tenant, subscription.subscription_id, False, correlation_id=new_correlation_id())
    assert renewed.auto_renew is False and renewed.quantity == 12
    assert pc.requests[-1].json == {"autoRenewEnabled": False}
    assert pc.subscriptions[tenant][subscription.subscription_id]["autoRenewEnabled"] is False


def test_a_patch_is_retried_after_a_server_error(pc):
    client = provider(pc)
    tenant, subscription = customer_with_subscription(pc, client)
    pc.fail("PATCH", "/v1/customers/*/subscriptions/*", 502)
    changed = client.change_quantity(tenant, subscription.subscription_id, 7, correlation_id=new_correlation_id())
    assert changed.quantity == 7
    assert [r.status for r in pc.calls("PATCH")] == [502, 200]


def test_subscribed_skus(pc):
    client = provider(pc)
    pc.add_offer(OFFER, "3b555118-da6a-4418-894f-7df1e2096870", "O365_BUSINESS_ESSENTIALS")
    tenant, _ = customer_with_subscription(pc, client, quantity=5)
    [sku] = client.list_subscribed_skus(tenant, correlation_id=new_correlation_id())
    assert (sku.sku_id, sku.sku_part_number, sku.consumed, sku.total) == (
        "3b555118-da6a-4418-894f-7df1e2096870",
        "O365_BUSINESS_ESSENTIALS",
        0,
        5,
    )
    assert pc.requests[-1].path == f"/v1/customers/{tenant}/subscribedskus"


def test_users_and_licences_use_app_plus_user_and_the_rest_app_only(pc):
    client = provider(pc)
    tenant, _ = customer_with_subscription(pc, client, quantity=5)
    [sku] = client.list_subscribed_skus(tenant, correlation_id=new_correlation_id())
    user_id = client.create_user(
        tenant,
        first_name="Mere",
        last_name="Tane",
        user_principal_name="mere@kiwibikes.nz",
        password="Str0ng-Passw0rd!",
        usage_location="NZ",
        correlation_id=new_correlation_id(),
    )
    client.assign_licences(
        tenant, user_id, add_sku_ids=[sku.sku_id], remove_sku_ids=["old-sku"], correlation_id=new_correlation_id()
    )
    create, assign = pc.requests[-2:]
    assert (create.method, create.path, create.token, create.status) == (
        "POST",
        f"/v1/customers/{tenant}/users",
        "user",
        201,
    )
    assert create.header("Authorization").startswith("Bearer user-")
    assert create.json == {
        "usageLocation": "NZ",
        "userPrincipalName": "mere@kiwibikes.nz",
        "firstName": "Mere",
        "lastName": "Tane",
        "displayName": "Mere Tane",
        "passwordProfile": {"password": "Str0ng-Passw0rd!", "forceChangePassword": True},
    }
    assert (assign.path, assign.token) == (f"/v1/customers/{tenant}/users/{user_id}/licenseupdates", "user")
    assert assign.json == {"licensesToAssign": [{"skuId": sku.sku_id}], "licensesToRemove": ["old-sku"]}
    assert {r.token for r in pc.requests[:-2]} == {"app"}
    [sku] = client.list_subscribed_skus(tenant, correlation_id=new_correlation_id())
    assert sku.consumed == 1

    # One token of each kind, from the right grant, reused from msal's cache ever after.
    client.create_user(
        tenant,
        first_name="Hemi",
        last_name="Tane",
        user_principal_name="hemi@kiwibikes.nz",
        password="Str0ng-Passw0rd!",
        usage_location="NZ",
        correlation_id=new_correlation_id(),
    )
    assert [t.grant for t in pc.token_requests] == ["client_credentials", "refresh_token"]
    assert "https://api.partnercenter.microsoft.com/.default" in pc.token_requests[0].scope
    assert "https://api.partnercenter.microsoft.com/user_impersonation" in pc.token_requests[1].scope
    assert {t.client_id for t in pc.token_requests} == {pc.client_id}


def test_a_users_licences_are_read_back_with_app_plus_user(pc):
    """What Microsoft says a user holds: the read that settles a licence change whose answer was lost."""
    client = provider(pc)
    tenant, _ = customer_with_subscription(pc, client, quantity=5)
    [sku] = client.list_subscribed_skus(tenant, correlation_id=new_correlation_id())
    user_id = client.create_user(
        tenant,
        first_name="Ari",
        last_name="Tane",
        user_principal_name="ari@kiwibikes.nz",
        password="Str0ng-Passw0rd!",
        usage_location="NZ",
        correlation_id=new_correlation_id(),
    )
    assert client.get_user_licences(tenant, user_id, correlation_id=new_correlation_id()) == []
    client.assign_licences(tenant, user_id, add_sku_ids=[sku.sku_id], remove_sku_ids=[], correlation_id="c-1")
    assert client.get_user_licences(tenant, user_id, correlation_id=new_correlation_id()) == [sku.sku_id]
    read = pc.requests[-1]
    assert (read.method, read.path, read.token) == ("GET", f"/v1/customers/{tenant}/users/{user_id}/licenses", "user")
    with pytest.raises(ProviderError):
        client.get_user_licences(tenant, "no-such-user", correlation_id=new_correlation_id())


def test_user_calls_without_a_refresh_token_fail_before_sending(pc):
    tenant = provider(pc).create_customer(PROFILE, correlation_id=new_correlation_id()).tenant_id
    client = provider(pc, PARTNER_CENTER_REFRESH_TOKEN="")
    with pytest.raises(ProviderError) as caught:
        client.create_user(
            tenant,
            first_name="Mere",
            last_name="Tane",
            user_principal_name="mere@kiwibikes.nz",
            password="Str0ng-Passw0rd!",
            usage_location="NZ",
            correlation_id=new_correlation_id(),
        )
    assert "REFRESH_TOKEN" in str(caught.value)
    assert pc.calls("POST", "*/users") == []


def test_the_fake_refuses_an_app_only_token_for_user_calls(pc):
    """Why the App+User grant matters: like Partner Center, the fake answers 403 to an app-only token there."""
    client = provider(pc)
    tenant = client.create_customer(PROFILE, correlation_id=new_correlation_id()).tenant_id
    app_token = pc.requests[0].header("Authorization")
    answer = client.session.post(
        f"{pc.base_url}/v1/customers/{tenant}/users",
        json={},
        verify=pc.ca_bundle,
        headers={"Authorization": app_token},
        timeout=5,
    )
    assert answer.status_code == 403
    assert pc.requests[-1].token == "app"


# --- tokens and unexpected answers ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 500])
def test_token_failure_is_a_provider_error(pc, status):
    pc.fail_token(status, times=5)
    correlation_id = new_correlation_id()
    with pytest.raises(ProviderError) as caught:
        provider(pc).check_domain("kiwibikes", correlation_id=correlation_id)
    assert caught.value.correlation_id == correlation_id
    assert "sign-in failed" in str(caught.value)
    assert pc.requests == []  # no API call without a token


def test_a_revoked_refresh_token_is_a_provider_error(pc):
    tenant = provider(pc).create_customer(PROFILE, correlation_id=new_correlation_id()).tenant_id
    client = provider(pc, PARTNER_CENTER_REFRESH_TOKEN="revoked")
    with pytest.raises(ProviderError) as caught:
        client.create_user(
            tenant,
            first_name="Mere",
            last_name="Tane",
            user_principal_name="mere@kiwibikes.nz",
            password="Str0ng-Passw0rd!",
            usage_location="NZ",
            correlation_id=new_correlation_id(),
        )
    assert "invalid_grant" in str(caught.value)


def test_unexpected_json_is_a_provider_error(pc):
    client = provider(pc)
    tenant, subscription = customer_with_subscription(pc, client)
    pc.fail("GET", "/v1/customers/*/subscriptions/*", 200, body={"unexpected": True})
    with pytest.raises(ProviderError) as caught:
        client.get_subscription(tenant, subscription.subscription_id, correlation_id=new_correlation_id())
    assert caught.value.status == 200
    pc.fail("GET", "/v1/customers/*/subscribedskus", 200, body=["not", "an", "object"])
    with pytest.raises(ProviderError):
        client.list_subscribed_skus(tenant, correlation_id=new_correlation_id())


def test_json_without_a_byte_order_mark_is_read_too(pc):
    pc.bom = False
    client = provider(pc)
    tenant, subscription = customer_with_subscription(pc, client)
    assert subscription.quantity == 5 and tenant in pc.customers


def test_failures_are_logged_with_the_correlation_id(pc, caplog):
    caplog.set_level(logging.WARNING, logger="app.csp.partner_center")
    pc.fail("HEAD", "/v1/domains/*", 503, times=5)
    correlation_id = new_correlation_id()
    with pytest.raises(ProviderError):
        provider(pc).check_domain("kiwibikes", correlation_id=correlation_id)
    records = [r for r in caplog.records if r.name == "app.csp.partner_center"]
    assert len(records) == 3  # two retried tries, then the failure
    assert all(correlation_id in r.getMessage() for r in records)
    assert all("HEAD /v1/domains/kiwibikes.onmicrosoft.com" in r.getMessage() for r in records)
    assert all("503" in r.getMessage() for r in records)
    assert records[-1].levelno == logging.ERROR


def test_token_failures_are_logged_with_the_correlation_id(pc, caplog):
    caplog.set_level(logging.WARNING, logger="app.csp.partner_center")
    pc.fail_token(401)
    correlation_id = new_correlation_id()
    with pytest.raises(ProviderError):
        provider(pc).check_domain("kiwibikes", correlation_id=correlation_id)
    assert any(correlation_id in r.getMessage() for r in caplog.records if r.name == "app.csp.partner_center")
    assert all(pc.client_secret not in r.getMessage() for r in caplog.records)

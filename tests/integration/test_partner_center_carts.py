"""The Partner Center client's carts and checkout (issue 13) against the local HTTPS fake: the requests carry
Microsoft's documented bodies and the order step's MS-RequestId, and the answers become the new subscriptions with
their term and refundable quantities.

Microsoft's documented request (https://learn.microsoft.com/partner-center/developer/create-a-cart, cart-resources):
``{"lineItems": [{"id": 0, "catalogItemId": "CFQ7TTC0LH0Z:0001:CFQ7TTC0K18P", "quantity": 1, "billingCycle":
"monthly", "termDuration": "P1M", "customTermEndDate": "2022-02-19T00:00:00Z"}, …]}``; checkout
(https://learn.microsoft.com/partner-center/developer/checkout-a-cart) answers orders → lineItems → subscriptionId."""

from __future__ import annotations

import datetime as dt

import pytest

from app.csp.base import CartLineItem, ProviderError, new_correlation_id
from tests.integration.test_partner_center_client import PROFILE, provider

# The documented sample's keys and types, per line item (customTermEndDate only when co-terming).
DOCUMENTED = {"id": int, "catalogItemId": str, "quantity": int, "billingCycle": str, "termDuration": str}


@pytest.fixture
def pc(fake_partner_center):
    return fake_partner_center


def test_create_cart_and_checkout_send_microsofts_documented_bodies(pc):
    client = provider(pc)
    tenant = client.create_customer(PROFILE, correlation_id=new_correlation_id()).tenant_id
    end = dt.date.today().replace(day=1) + dt.timedelta(days=400)
    lines = [
        CartLineItem("CFQ7TTC0LH0Z:0001", 5, "P1Y", "monthly", availability_id="CFQ7TTC0K18P"),
        CartLineItem("CFQ7TTC0LFLS:0002", 2, "P1Y", "annual", custom_term_end=end),
    ]
    cid = new_correlation_id()
    cart = client.create_cart(tenant, lines, correlation_id=cid, request_id="11111111-1111-4111-8111-111111111111")
    sent = pc.requests[-1]
    assert (sent.method, sent.path) == ("POST", f"/v1/customers/{tenant}/carts")
    assert sent.header("MS-RequestId") == "11111111-1111-4111-8111-111111111111"
    assert sent.header("MS-CorrelationId") == cid
    assert list(sent.json) == ["lineItems"]
    first, second = sent.json["lineItems"]
    for item in (first, second):
        assert {k: type(item[k]) for k in DOCUMENTED} == DOCUMENTED
    assert first == {
        "id": 0,
        "catalogItemId": "CFQ7TTC0LH0Z:0001:CFQ7TTC0K18P",
        "quantity": 5,
        "billingCycle": "monthly",
        "termDuration": "P1Y",
    }
    assert second["catalogItemId"] == "CFQ7TTC0LFLS:0002" and second["id"] == 1
    assert second["customTermEndDate"] == f"{end.isoformat()}T00:00:00Z"
    assert dt.timedelta(days=6, hours=23) < cart.expires_at - dt.datetime.now(dt.UTC).replace(tzinfo=None)

    bought = client.checkout_cart(
        tenant, cart.cart_id, correlation_id=cid, request_id="22222222-2222-4222-8222-222222222222"
    )
    checkout = next(r for r in pc.requests if r.path.endswith("/checkout"))
    assert checkout.path == f"/v1/customers/{tenant}/carts/{cart.cart_id}/checkout"
    assert checkout.header("MS-RequestId") == "22222222-2222-4222-8222-222222222222"
    assert [(s.offer_id, s.quantity, s.term, s.billing_cycle) for s in bought] == [
        ("CFQ7TTC0LH0Z:0001", 5, "P1Y", "monthly"),
        ("CFQ7TTC0LFLS:0002", 2, "P1Y", "annual"),
    ]
    assert bought[1].renew_on == end and bought[0].term_started_on is not None
    assert [r.quantity for r in bought[0].refundable] == [5]


def test_the_same_requests_again_answer_with_the_first_cart_and_subscriptions(pc):
    client = provider(pc)
    tenant = client.create_customer(PROFILE, correlation_id=new_correlation_id()).tenant_id
    line = [CartLineItem("CFQ7TTC0LH0Z:0001", 3, "P1M", "monthly")]
    first = client.create_cart(tenant, line, correlation_id="c1", request_id="r-cart")
    again = client.create_cart(tenant, line, correlation_id="c2", request_id="r-cart")
    assert again.cart_id == first.cart_id and len(pc.carts) == 1
    bought = client.checkout_cart(tenant, first.cart_id, correlation_id="c1", request_id="r-checkout")
    repeated = client.checkout_cart(tenant, first.cart_id, correlation_id="c2", request_id="r-checkout")
    assert [s.subscription_id for s in repeated] == [s.subscription_id for s in bought]
    assert len(pc.subscriptions[tenant]) == 1


def test_an_expired_or_unknown_cart_is_refused(pc):
    client = provider(pc)
    tenant = client.create_customer(PROFILE, correlation_id=new_correlation_id()).tenant_id
    cart = client.create_cart(tenant, [CartLineItem("CFQ7TTC0LH0Z:0001", 1, "P1Y", "annual")], correlation_id="c")
    pc.carts[cart.cart_id]["expirationTimeStamp"] = "2020-01-01T00:00:00Z"
    with pytest.raises(ProviderError) as expired:
        client.checkout_cart(tenant, cart.cart_id, correlation_id="c")
    assert expired.value.status == 400 and "expired" in str(expired.value)
    with pytest.raises(ProviderError) as unknown:
        client.checkout_cart(tenant, "no-such-cart", correlation_id="c")
    assert unknown.value.status == 404
    assert pc.subscriptions[tenant] == {}


def test_custom_term_end_dates_are_month_ends_and_existing_term_ends(pc):
    client = provider(pc)
    tenant = client.create_customer(PROFILE, correlation_id=new_correlation_id()).tenant_id
    cart = client.create_cart(tenant, [CartLineItem("CFQ7TTC0LH0Z:0001", 1, "P1Y", "annual")], correlation_id="c")
    (existing,) = client.checkout_cart(tenant, cart.cart_id, correlation_id="c")
    dates = client.custom_term_end_dates(tenant, "P1Y", "monthly", correlation_id="c")
    sent = pc.requests[-1]
    assert sent.path == f"/v1/customers/{tenant}/subscriptions/customTermEndDates"
    assert existing.renew_on in dates
    month_ends = {d for d in dates if (d + dt.timedelta(days=1)).day == 1}
    assert len(month_ends) == 12 and set(dates) - month_ends <= {existing.renew_on}

"""Orders with a review (issue 13, item 3): Add a subscription ▸ Review order ▸ Place order, through Microsoft's cart
and checkout. The review's numbers come from pricing.quote to the cent; the window ends 168 hours ahead in New Zealand
time; Place order places once, re-quotes first, and co-terming takes only the dates Microsoft allows."""

from __future__ import annotations

import datetime as dt
import functools
import json
from decimal import Decimal

import pytest
import time_machine
from sqlalchemy import func, select

from app import clock
from app.csp import get_provider
from app.csp.base import CartLineItem, ProviderError, new_correlation_id
from app.extensions import db
from app.models.accounts import Account
from app.models.catalog import Availability, PriceRule, Product
from app.models.csp import SandboxCart, SandboxSeatBatch, SandboxSubscription
from app.models.events import Event
from app.models.operations import ProviderOperation
from app.models.subscriptions import SeatBatch, Subscription
from app.services import catalogue, ordering, subscriptions
from security import scoping
from tests import factories, ordering_steps
from tests.conftest import at_once, count_statements, csrf_token, unscoped
from tests.integration.test_scoping import database_fingerprint

# (term, billing frequency, Microsoft's cost, retail) per licence per billing period; with the reseller's "buy + 15 %"
# the customer pays cents(cost × 1.15).
OFFERS = {
    ("P1M", "monthly"): ("9.18", "10.80"),
    ("P1Y", "monthly"): ("7.65", "9.00"),  # the world's own
    ("P1Y", "annual"): ("91.80", "108.00"),
    ("P3Y", "annual"): ("88.00", "100.00"),
    ("P3Y", "triennial"): ("250.00", "300.00"),
}
# (unit price, per month, per term, first charge for 5, locked)
EXPECTED = {
    ("P1M", "monthly"): ("10.56", "10.56", "10.56", "52.80", False),
    ("P1Y", "monthly"): ("8.80", "8.80", "105.60", "44.00", True),
    ("P1Y", "annual"): ("105.57", "8.80", "105.57", "527.85", True),
    ("P3Y", "annual"): ("101.20", "8.43", "303.60", "506.00", True),
    ("P3Y", "triennial"): ("287.50", "7.99", "287.50", "1437.50", True),
}


def _catalogue(world, valid_from: dt.date | None = None) -> dict[tuple[str, str], int]:
    """Every availability of OFFERS on the world's Business Basic SKU, priced from ``valid_from``; and reseller A's
    markup "buy + 15 %" for its customers."""
    with unscoped() as session:
        basic = session.get(Product, world.rows["products"]["basic"])
        ids = {}
        for (term, frequency), (cost, erp) in OFFERS.items():
            offer = catalogue.ensure_availability(basic, term, frequency)
            catalogue.set_price(offer, cost, erp, valid_from)
            ids[(term, frequency)] = offer.id
        session.add(
            PriceRule(account_id=world.accounts["reseller_a"].id, level="sell", basis="buy", percent=Decimal("15"))
        )
        session.commit()
        return ids


def _form(app, availability_id: int) -> dict[str, str]:
    """The order form's values for an availability."""
    with app.app_context():
        offer = db.session.get(Availability, availability_id)
        return {
            "product": offer.product.product_title,
            "sku": str(offer.product_id),
            "term": offer.term,
            "billing_frequency": offer.billing_frequency,
        }


def _review(app, world, availability_id: int, quantity: int = 5, coterm=None) -> ordering.Review:
    with app.app_context(), scoping.bypass("test: a review"):
        customer = db.session.get(Account, world.accounts["customer_a"].id)
        if isinstance(coterm, int):
            coterm = db.session.get(Subscription, coterm)
        review = ordering.review(customer, db.session.get(Availability, availability_id), quantity, coterm)
        review.availability.product  # noqa: B018 (loaded for the assertions)
        return review


@pytest.mark.parametrize("offer", list(EXPECTED))
def test_the_review_shows_the_quote_to_the_cent_for_every_term_and_frequency(app, world, offer):
    ids = _catalogue(world)
    review = _review(app, world, ids[offer])
    unit, month, term, first, locked = EXPECTED[offer]
    assert (review.unit_price, review.per_month, review.per_term, review.first_charge) == tuple(
        Decimal(v) for v in (unit, month, term, first)
    )
    assert review.price_locked is locked
    assert review.quote.sell_rule == "buy + 15 %"  # the reseller's price list, not Microsoft's retail price
    with app.app_context():
        assert review.renew_on == subscriptions.renewal_date(clock.today(), offer[0])


def test_the_review_page_shows_the_numbers_and_orders_nothing(app, world, customer_a_master_admin_client):
    ids = _catalogue(world)
    client, customer = customer_a_master_admin_client, world.accounts["customer_a"].id
    csrf_token(client)  # a customer login's first page chooses its account (an event): before the snapshot
    before = database_fingerprint()
    offer = _form(app, ids[("P1Y", "annual")])
    page = ordering_steps.review(client, customer, offer, 5)
    assert page.status_code == 200
    text = page.text
    for test_id, value in (
        ("unit-price", "$105.57"),
        ("per-month", "$8.80"),
        ("per-term", "$105.57"),
        ("first-charge", "$527.85"),
    ):
        assert f'data-test="{test_id}">{value}<' in text, test_id
    assert "The price is locked for the 1 year term." in text and "can be cancelled or reduced until" in text
    assert "Place order" in text
    assert database_fingerprint() == before  # reading the review orders nothing


WINDOWS = [
    # 23:00 NZDT on 1 Dec 2026 (10:00 UTC): the window ends at 23:00 NZDT on 8 Dec.
    (dt.datetime(2026, 12, 1, 10, 0), "08/12/2026 11:00 PM"),
    # 00:30 NZDT on 2 Dec (11:30 UTC on 1 Dec, past New Zealand's midnight): 00:30 on 9 Dec.
    (dt.datetime(2026, 12, 1, 11, 30), "09/12/2026 12:30 AM"),
    # 10:00 NZST on 22 Sep 2026; daylight saving starts on 27 Sep: 168 hours later it is 11:00 NZDT on 29 Sep.
    (dt.datetime(2026, 9, 21, 22, 0), "29/09/2026 11:00 AM"),
    # 10:00 NZDT on 1 Apr 2026; daylight saving ends on 5 Apr: 168 hours later it is 09:00 NZST on 8 Apr.
    (dt.datetime(2026, 3, 31, 21, 0), "08/04/2026 09:00 AM"),
]


@pytest.mark.parametrize(("moment", "shown"), WINDOWS)
def test_the_window_ends_168_hours_ahead_in_new_zealand_time(app, world, moment, shown):
    with time_machine.travel(moment.replace(tzinfo=dt.UTC), tick=False):
        with app.app_context():
            month = clock.today().replace(day=1)
        ids = _catalogue(world, month)
        review = _review(app, world, ids[("P1Y", "monthly")])
        assert review.window_end == moment + dt.timedelta(hours=168)
        with app.app_context():
            assert review.window_text == f"can be cancelled or reduced until {shown}"


def _subs(customer_id: int) -> tuple[int, int]:
    """(the portal's subscriptions of the customer, the sandbox's of its tenant)."""
    with unscoped() as session:
        tenant = session.get(Account, customer_id).tenant.tenant_guid
        portal = session.scalar(select(func.count(Subscription.id)).where(Subscription.account_id == customer_id))
        sandbox = session.scalar(
            select(func.count(SandboxSubscription.id)).where(SandboxSubscription.tenant_id == tenant)
        )
        return portal, sandbox


def test_place_order_buys_once_through_a_cart_and_its_checkout(app, world, customer_a_master_admin_client):
    ids = _catalogue(world)
    client, customer = customer_a_master_admin_client, world.accounts["customer_a"].id
    before = _subs(customer)
    offer = _form(app, ids[("P1Y", "monthly")])
    page = ordering_steps.review(client, customer, offer, 5)
    fields = ordering_steps.hidden_fields(page.text)
    first = ordering_steps.place(client, customer, fields)
    assert first.status_code == 302
    again = ordering_steps.place(client, customer, fields)  # a double submit: the same form key
    assert again.status_code == 302
    assert _subs(customer) == (before[0] + 1, before[1] + 1)
    listed = client.get(f"/portal/{customer}/services/microsoft-csp").text
    assert "was already placed (5 × Microsoft 365 Business Basic)" in listed
    with unscoped() as session:
        sub = session.scalars(
            select(Subscription).where(Subscription.account_id == customer).order_by(Subscription.id.desc())
        ).first()
        assert (sub.quantity, sub.term, sub.billing_cycle, sub.unit_price) == (5, "P1Y", "monthly", Decimal("8.80"))
        assert sub.renew_on == subscriptions.renewal_date(sub.term_started_on, "P1Y")
        batch = session.scalars(select(SeatBatch).where(SeatBatch.subscription_id == sub.id)).one()
        assert batch.quantity == 5 and batch.refundable_until - batch.added_at == dt.timedelta(hours=168)
        at_microsoft = session.scalars(
            select(SandboxSubscription).where(SandboxSubscription.subscription_id == sub.provider_subscription_id)
        ).one()
        assert (at_microsoft.term, at_microsoft.term_end, at_microsoft.quantity) == ("P1Y", sub.renew_on, 5)
        cart = session.scalars(select(SandboxCart).where(SandboxCart.cart_id == at_microsoft.cart_id)).one()
        assert cart.status == "Ordered" and json.loads(cart.line_items)[0]["termDuration"] == "P1Y"
        assert (
            session.scalars(
                select(SandboxSeatBatch).where(SandboxSeatBatch.subscription_id == sub.provider_subscription_id)
            )
            .one()
            .quantity
            == 5
        )
        operation = session.scalars(select(ProviderOperation).where(ProviderOperation.kind == "order")).one()
        assert operation.state == "succeeded" and json.loads(operation.result)["cart_id"] == cart.cart_id
        assert session.scalar(select(func.count(Event.id)).where(Event.action == "subscription.ordered")) == 1


def test_a_price_changed_since_the_review_is_refused_with_the_new_review(app, world, customer_a_master_admin_client):
    ids = _catalogue(world)
    client, customer = customer_a_master_admin_client, world.accounts["customer_a"].id
    offer = _form(app, ids[("P1Y", "monthly")])
    page = ordering_steps.review(client, customer, offer, 5)
    fields = ordering_steps.hidden_fields(page.text)
    assert fields["reviewed_price"] == "8.80"
    with unscoped() as session:
        rule = session.scalars(select(PriceRule).where(PriceRule.level == "sell")).one()
        rule.percent = Decimal("20")  # buy 7.65 + 20 % = 9.18
        session.commit()
    before = _subs(customer)
    refused = ordering_steps.place(client, customer, fields)
    assert refused.status_code == 409
    assert "The price changed since your review" in refused.text and 'data-test="unit-price">$9.18<' in refused.text
    assert _subs(customer) == before
    placed = ordering_steps.place(client, customer, ordering_steps.hidden_fields(refused.text))
    assert placed.status_code == 302 and _subs(customer) == (before[0] + 1, before[1] + 1)


def test_an_order_not_reviewed_or_of_a_combination_not_sold_is_told_beside_the_field(
    app, world, customer_a_master_admin_client
):
    client, customer = customer_a_master_admin_client, world.accounts["customer_a"].id
    token = csrf_token(client)
    before = database_fingerprint()
    with app.app_context():
        basic = db.session.get(Product, world.rows["products"]["basic"])
        form = {"product": basic.product_title, "sku": str(basic.id), "term": "P3Y", "billing_frequency": "triennial"}
    page = ordering_steps.review(client, customer, form, 5)
    assert page.status_code == 400
    assert 'data-error-for="billing_frequency">Billing frequency: This SKU is not sold for 3 years' in page.text
    page = ordering_steps.review(client, customer, {**form, "term": "P1Y", "billing_frequency": "monthly"}, "0")
    assert page.status_code == 400 and 'data-error-for="quantity">Licences: Order between 1 and 10,000' in page.text
    # the old one-click order (a product and a quantity, no review) orders nothing
    old = client.post(
        ordering_steps.place_url(customer), data={"csrf_token": token, "product_id": str(basic.id), "quantity": "3"}
    )
    assert old.status_code == 400 and "Review the order before placing it." in old.text
    assert database_fingerprint() == before


def _coterm_offer(world, ids):
    with unscoped() as session:
        exchange = session.get(Subscription, world.rows["a"]["subscription2"])  # renews in 200 days
        return exchange.id, exchange.renew_on, ids[("P1Y", "monthly")]


def test_coterming_ends_the_term_with_the_chosen_subscription_and_prorates_the_first_charge(
    app, world, customer_a_master_admin_client
):
    ids = _catalogue(world)
    coterm_id, renew_on, offer_id = _coterm_offer(world, ids)
    review = _review(app, world, offer_id, 5, coterm_id)
    with app.app_context():
        today = clock.today()
    assert review.renew_on == renew_on and review.coterm_end == renew_on
    start, end = ordering.first_billing_period(today, renew_on, 1)
    assert end == review.first_period_end and start <= today < end and (end - start).days in (28, 29, 30, 31)
    expected = (Decimal("8.80") * 5 * (end - today).days / (end - start).days).quantize(Decimal("0.01"))
    assert review.first_charge == expected
    client, customer = customer_a_master_admin_client, world.accounts["customer_a"].id
    offer = _form(app, offer_id)
    page = ordering_steps.review(client, customer, offer, 5, coterm=str(coterm_id))
    assert page.status_code == 200 and "prorated by the day" in page.text
    assert ordering_steps.place(client, customer, ordering_steps.hidden_fields(page.text)).status_code == 302
    with unscoped() as session:
        sub = session.scalars(select(Subscription).order_by(Subscription.id.desc())).first()
        assert sub.renew_on == renew_on
        at_microsoft = session.scalars(
            select(SandboxSubscription).where(SandboxSubscription.subscription_id == sub.provider_subscription_id)
        ).one()
        assert at_microsoft.term_end == renew_on


def test_coterming_takes_only_the_dates_microsoft_allows(app, world):
    ids = _catalogue(world)
    with app.app_context(), scoping.bypass("test: co-terming"):
        customer = db.session.get(Account, world.accounts["customer_a"].id)
        today = clock.today()
        monthly = db.session.get(Availability, ids[("P1M", "monthly")])
        yearly = db.session.get(Availability, ids[("P1Y", "monthly")])
        long_sub = db.session.get(Subscription, world.rows["a"]["subscription2"])  # renews in 200 days
        month_end = ordering.month_ends(today, subscriptions.renewal_date(today, "P1Y"))[-1]
        assert ordering.review(customer, yearly, 1, month_end).renew_on == month_end
        for bad, availability in (
            (long_sub, monthly),  # ends after a one-month term would
            (today + dt.timedelta(days=40 if (today + dt.timedelta(days=40)).day < 28 else 45), yearly),  # mid-month
            (subscriptions.renewal_date(today, "P1Y") + dt.timedelta(days=31), yearly),  # after the term
        ):
            with pytest.raises(ordering.OrderInputError) as refused:
                ordering.review(customer, availability, 1, bad)
            assert refused.value.field == "coterm"
        # the sandbox refuses a customTermEndDate Microsoft would not allow, as Microsoft does
        provider, tenant = get_provider(), customer.tenant.tenant_guid
        line = CartLineItem("TEST-BASIC", 1, "P1Y", "monthly", custom_term_end=today + dt.timedelta(days=41))
        if line.custom_term_end in ordering.allowed_term_ends(customer, "P1Y"):
            line = CartLineItem("TEST-BASIC", 1, "P1Y", "monthly", custom_term_end=today + dt.timedelta(days=42))
        with pytest.raises(ProviderError) as sandbox_refused:
            provider.create_cart(tenant, [line], correlation_id=new_correlation_id())
        assert sandbox_refused.value.status == 400 and "customTermEndDate" in str(sandbox_refused.value)
        allowed = provider.custom_term_end_dates(tenant, "P1Y", "monthly", correlation_id=new_correlation_id())
        assert long_sub.renew_on in allowed and month_end in allowed


def test_the_sandbox_refuses_an_expired_cart_and_answers_a_repeated_request_with_its_first_answer(app, world):
    with app.app_context(), scoping.bypass("test: sandbox carts"):
        provider = get_provider()
        tenant = db.session.get(Account, world.accounts["customer_a"].id).tenant.tenant_guid
        line = CartLineItem("TEST-BASIC", 3, "P1Y", "annual")
        cart = provider.create_cart(tenant, [line], correlation_id=new_correlation_id(), request_id="cart-1")
        assert provider.create_cart(tenant, [line], correlation_id="c", request_id="cart-1").cart_id == cart.cart_id
        assert cart.expires_at - clock.utcnow() <= dt.timedelta(days=7)
        stale = provider.create_cart(tenant, [line], correlation_id=new_correlation_id(), request_id="cart-2")
        later = clock.utcnow().replace(tzinfo=dt.UTC) + dt.timedelta(days=7, minutes=1)
        with time_machine.travel(later), pytest.raises(ProviderError) as expired:
            provider.checkout_cart(tenant, stale.cart_id, correlation_id=new_correlation_id())
        assert expired.value.status == 400 and "expired" in str(expired.value)
        bought = provider.checkout_cart(tenant, cart.cart_id, correlation_id=new_correlation_id(), request_id="co-1")
        again = provider.checkout_cart(tenant, cart.cart_id, correlation_id=new_correlation_id(), request_id="co-1")
        assert [s.subscription_id for s in again] == [s.subscription_id for s in bought]
        (sub,) = bought
        assert (sub.quantity, sub.term, sub.billing_cycle, sub.term_started_on) == (3, "P1Y", "annual", clock.today())
        assert sub.renew_on == subscriptions.renewal_date(clock.today(), "P1Y")
        assert [r.quantity for r in sub.refundable] == [3]
        assert sub.refundable[0].allowed_until - clock.utcnow() <= dt.timedelta(hours=168)
        with pytest.raises(ProviderError) as bad:
            provider.create_cart(tenant, [CartLineItem("TEST-BASIC", 1, "P1M", "annual")], correlation_id="c")
        assert bad.value.status == 400


def test_who_may_not_order_is_refused(app, world, login):
    ids = _catalogue(world)
    customer = world.accounts["customer_a"].id
    with unscoped() as session:
        factories.user(session.get(Account, customer), "admin2@aardvark.example", admin=True, cp3_enabled=True)
        session.commit()
    offer = _form(app, ids[("P1Y", "monthly")])
    fields = {
        "availability_id": str(ids[("P1Y", "monthly")]),
        "quantity": "2",
        "coterm": "",
        "reviewed_price": "8.80",
        "submission_key": "0" * 32,
    }
    admin = login("admin2@aardvark.example")  # a Customer Admin: no Orders
    assert ordering_steps.review(admin, customer, offer, 2).status_code == 403
    assert admin.get(f"/portal/{customer}/services/microsoft-csp/orders/new").status_code == 403
    assert ordering_steps.place(admin, customer, fields).status_code == 403
    partner_user = login(world.users["reseller_a_user"].email)  # launched as the Master Admin: still no Orders
    membership = world.users["customer_a_master_admin"].membership_id
    partner_user.post(f"/impersonation/start/{membership}", data={"csrf_token": csrf_token(partner_user)})
    assert "Add a subscription" not in partner_user.get(f"/portal/{customer}/services/microsoft-csp").text
    assert ordering_steps.review(partner_user, customer, offer, 2).status_code == 403
    assert ordering_steps.place(partner_user, customer, fields).status_code == 403
    with unscoped() as session:
        assert session.scalar(select(func.count(ProviderOperation.id))) == 0


def test_another_reseller_gets_404_on_every_ordering_route_and_nothing_changes(app, world, login):
    ids = _catalogue(world)
    customer = world.accounts["customer_a"].id
    offer = _form(app, ids[("P1Y", "monthly")])
    outsider = login(world.users["reseller_b_admin"].email)
    membership = world.users["customer_b_master_admin"].membership_id
    outsider.post(f"/impersonation/start/{membership}", data={"csrf_token": csrf_token(outsider)})
    other = login(world.users["customer_b_master_admin"].email)
    token_b = csrf_token(other)
    before = database_fingerprint()
    for client in (outsider, other):
        assert client.get(f"/portal/{customer}/services/microsoft-csp/orders/new").status_code == 404
        with app.app_context():
            assert ordering_steps.review(client, customer, offer, 2).status_code == 404
        fields = {
            "availability_id": str(ids[("P1Y", "monthly")]),
            "quantity": "2",
            "reviewed_price": "8.80",
            "submission_key": "1" * 32,
        }
        token = csrf_token(client, f"/portal/{world.accounts['customer_b'].id}/") if client is outsider else token_b
        answer = client.post(ordering_steps.place_url(customer), data={**fields, "csrf_token": token})
        assert answer.status_code == 404
    assert database_fingerprint() == before


def test_the_order_form_reads_the_catalogue_in_a_fixed_number_of_statements(app, world, customer_a_master_admin_client):
    client, customer = customer_a_master_admin_client, world.accounts["customer_a"].id
    path = f"/portal/{customer}/services/microsoft-csp/orders/new"
    client.get(path)

    def statements() -> int:
        with count_statements(app) as seen:
            assert client.get(path).status_code == 200
        return len(seen)

    small = statements()
    with unscoped() as session:
        for n in range(15):
            factories.product(f"Extra SKU {n}", f"EXTRA{n}:0001")
            catalogue.ensure_product(f"Extra SKU {n}", f"EXTRA{n}:0001").product_title = f"Extra product {n}"
        session.commit()
    page = client.get(path).text
    assert "Extra product 14" in page
    assert statements() == small


def test_two_clicks_at_once_on_place_order_buy_once(app, world, login):
    ids = _catalogue(world)
    customer = world.accounts["customer_a"].id
    clients = [login(world.users["customer_a_master_admin"].email) for _ in range(2)]
    fields = ordering_steps.hidden_fields(
        ordering_steps.review(clients[0], customer, _form(app, ids[("P1Y", "annual")]), 3).text
    )
    before = _subs(customer)
    forms = [{**fields, "csrf_token": csrf_token(c, f"/portal/{customer}/")} for c in clients]
    answers = at_once(
        *(
            functools.partial(c.post, ordering_steps.place_url(customer), data=f)
            for c, f in zip(clients, forms, strict=True)
        )
    )
    assert [a.status_code for a in answers] == [302, 302]
    assert _subs(customer) == (before[0] + 1, before[1] + 1)


def test_a_resend_after_the_price_changed_is_told_it_was_placed_not_re_quoted(
    app, world, customer_a_master_admin_client
):
    ids = _catalogue(world)
    client, customer = customer_a_master_admin_client, world.accounts["customer_a"].id
    fields = ordering_steps.hidden_fields(
        ordering_steps.review(client, customer, _form(app, ids[("P1M", "monthly")]), 2).text
    )
    assert ordering_steps.place(client, customer, fields).status_code == 302
    with unscoped() as session:
        session.scalars(select(PriceRule)).one().percent = Decimal("30")
        session.commit()
    again = ordering_steps.place(client, customer, fields)
    assert again.status_code == 302
    assert "was already placed (2 × Microsoft 365 Business Basic)" in client.get(again.location).text


def test_the_review_shows_no_cost_or_margin_even_to_a_launched_csp_admin(app, world, login):
    """In the customer portal a launched CSP Admin has only what the customer user has: the customer's price."""
    ids = _catalogue(world)
    customer, form = world.accounts["customer_a"].id, _form(app, ids[("P1Y", "monthly")])
    admin = login(world.users["reseller_a_admin"].email)
    membership = world.users["customer_a_master_admin"].membership_id
    admin.post(f"/impersonation/start/{membership}", data={"csrf_token": csrf_token(admin)})
    launched = ordering_steps.review(admin, customer, form, 1).text
    assert 'data-test="unit-price">$8.80<' in launched
    assert "$7.65" not in launched and "margin" not in launched.lower()

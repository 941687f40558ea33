"""Issue 13's "Done when", end to end on the demo data over HTTP: Contoso NZ's master admin adds Microsoft 365
Business Basic (1 year, billed monthly, 5 licences); the review shows Demo Reseller's price and the 168-hour window;
the order is placed once; reducing it by 2 the next day refunds, and eight days later a reduction is refused and
offered at renewal. Simon sees his margin; Jane no cost or margin anywhere."""

from __future__ import annotations

import datetime as dt
import re

import time_machine
from sqlalchemy import select

from app.models.accounts import Account
from app.models.catalog import Availability, Product
from app.models.subscriptions import Subscription
from app.services import pricing
from tests import ordering_steps
from tests.conftest import csrf_token, unscoped

PASSWORD = "demo-password-for-tests"
# 3 December 2026, 2:15 PM in New Zealand (01:15 UTC).
ORDERED = dt.datetime(2026, 12, 3, 1, 15, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def _at(moment: dt.datetime):
    return time_machine.travel(moment, tick=False)


def test_order_review_place_reduce_next_day_then_refused_and_offered_at_renewal(app, login):
    with _at(ORDERED - DAY):
        result = app.test_cli_runner().invoke(args=["portal", "seed-demo", "--password", PASSWORD])
        assert result.exit_code == 0, result.output
    with unscoped() as session:
        contoso = session.scalars(select(Account).where(Account.name == "Contoso NZ")).one()
        basic = session.scalars(
            select(Availability)
            .join(Product)
            .where(Product.name == "Microsoft 365 Business Basic", Availability.term == "P1Y")
            .where(Availability.billing_frequency == "monthly")
        ).one()
        with _at(ORDERED):
            quote = pricing.quote(contoso, basic)
        basic_id = basic.id
        contoso_id, offer = (
            contoso.id,
            {
                "product": basic.product.product_title,
                "sku": str(basic.product_id),
                "term": "P1Y",
                "billing_frequency": "monthly",
            },
        )
    # Demo Reseller's price list: the operator's cost + 8 %, then its own + 15 % — above Microsoft's cost.
    assert quote.buy > quote.ms_cost and quote.sell > quote.buy and quote.sell_rule == "buy + 15 %"

    with _at(ORDERED):
        customer = login("admin@contosonz.example", PASSWORD)
        review = ordering_steps.review(customer, contoso_id, offer, 5)
        assert review.status_code == 200
        price = f"${quote.sell:,.2f}"
        assert price in review.text
        # 168 hours ahead, in New Zealand's time.
        assert "can be cancelled or reduced until 10/12/2026 02:15 PM" in review.text
        fields = ordering_steps.hidden_fields(review.text)
        placed = ordering_steps.place(customer, contoso_id, fields)
        again = ordering_steps.place(customer, contoso_id, fields)  # the same form again: bought once
        assert placed.status_code == again.status_code == 302
    with unscoped() as session:
        (sub,) = session.scalars(
            select(Subscription).where(Subscription.account_id == contoso_id, Subscription.availability_id == basic_id)
        ).all()
        assert (sub.quantity, sub.unit_price, sub.term, sub.billing_cycle) == (5, quote.sell, "P1Y", "monthly")
        sub_id = sub.id
        path = f"/portal/{contoso_id}/services/microsoft-csp/subscriptions/{sub_id}"

    with _at(ORDERED + DAY):
        customer = login("admin@contosonz.example", PASSWORD)
        token = csrf_token(customer, path)
        confirm = customer.post(f"{path}/reduce", data={"csrf_token": token, "give_back": "2"})
        assert confirm.status_code == 200 and re.search(r"\$\d+\.\d\d", confirm.text)  # the refund it would give
        done = customer.post(f"{path}/reduce", data={"csrf_token": token, "give_back": "2", "confirmed": "1"})
        assert done.status_code == 302
    with unscoped() as session:
        assert session.get(Subscription, sub_id).quantity == 3

    with _at(ORDERED + 8 * DAY):
        customer = login("admin@contosonz.example", PASSWORD)
        token = csrf_token(customer, path)
        refused = customer.post(f"{path}/reduce", data={"csrf_token": token, "give_back": "1", "confirmed": "1"})
        assert refused.status_code == 400
        assert "can be given back now" in refused.text and "Change at renewal to 2 licences" in refused.text
    with unscoped() as session:
        assert session.get(Subscription, sub_id).quantity == 3

    with _at(ORDERED + 8 * DAY):
        simon = login("simon@demoreseller.co.nz", PASSWORD)
        jane = login("jane@demoreseller.co.nz", PASSWORD)
        report = f"/accounts/{contoso_id}/products/csp-report"
        assert "Margin per licence per month" in simon.get(report).text
        for page in (report, "/subscriptionview/list/"):
            text = jane.get(page).text
            assert "Margin" not in text and "Cost per" not in text and "Microsoft cost" not in text

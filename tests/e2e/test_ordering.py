"""Ordering in a real browser (issue 13's "done when"): as Contoso NZ's master admin, Add a subscription ▸ Microsoft 365
Business Basic, Term 1 year, Billing frequency Monthly, 5 licences ▸ Review order shows the price with Demo Reseller's
markup and "can be cancelled or reduced until" a time 168 hours ahead ▸ Place order → the new subscription is listed."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from app import clock
from app.extensions import db
from app.formatting import format_money, local_time
from app.models.accounts import Account
from app.models.catalog import Availability, Product
from app.models.subscriptions import Subscription
from app.services import pricing
from app.services.demo import seed_demo
from app.services.subscriptions import WINDOW
from security import scoping
from tests.factories import PASSWORD

try:
    from playwright.sync_api import expect
except ImportError:  # the ``browser`` fixture skips these tests (or fails them under REQUIRE_E2E=1)
    expect = None

ADMIN = "admin@contosonz.example"
SKU = "Microsoft 365 Business Basic"


def _demo(app) -> dict:
    """The demo data; Contoso NZ's id, its subscription count, and the price its reseller's list gives the SKU."""
    with app.app_context(), scoping.bypass("test: demo data"):
        seed_demo(password=PASSWORD)
        db.session.commit()
        contoso = db.session.scalars(select(Account).where(Account.name == "Contoso NZ")).one()
        offer = db.session.scalars(
            select(Availability)
            .join(Availability.product)
            .where(Product.name == SKU, Availability.term == "P1Y", Availability.billing_frequency == "monthly")
        ).one()
        count = db.session.scalar(select(func.count(Subscription.id)).where(Subscription.account_id == contoso.id))
        return {"id": contoso.id, "count": count, "price": format_money(pricing.quote(contoso, offer).sell)}


def test_add_a_subscription_review_it_and_place_it(app, page, sign_in):
    demo = _demo(app)
    sign_in(page, ADMIN)
    page.goto(f"/portal/{demo['id']}/services/microsoft-csp")
    page.get_by_role("link", name="Add a subscription").click()
    expect(page.locator('[data-test="add-subscription"]')).to_be_visible()
    option = page.locator("#sku option", has_text=SKU).first
    product = option.evaluate("o => o.parentElement.label")
    page.get_by_label("Product").select_option(label=product)
    page.get_by_label("SKU").select_option(value=option.get_attribute("value"))
    page.get_by_label("Term").select_option(label="1 year")
    page.get_by_label("Billing frequency").select_option(label="Monthly")
    page.get_by_label("Licences").fill("5")
    page.get_by_role("button", name="Review order").click()

    review = page.locator('[data-test="review-order"]')
    expect(review).to_be_visible()
    expect(review.locator('[data-test="order-line"]')).to_have_text(f"5 × {SKU}, 1 year, billed monthly")
    expect(review.locator('[data-test="unit-price"]')).to_have_text(demo["price"])
    with app.app_context():
        until = local_time(clock.utcnow() + WINDOW).strftime("%d/%m/%Y")
    expect(review.locator('[data-test="window"]')).to_contain_text(
        re.compile(rf"can be cancelled or reduced until {re.escape(until)} \d\d:\d\d [AP]M")
    )
    page.get_by_role("button", name="Place order").click()

    expect(page).to_have_url(re.compile(rf"/portal/{demo['id']}/services/microsoft-csp$"))
    expect(page.locator(".alert")).to_contain_text(f"Ordered 5 × {SKU}.")
    rows = page.locator('[data-test="subscriptions"] tbody tr[data-subscription]')
    expect(rows).to_have_count(demo["count"] + 1)
    expect(rows.filter(has_text=SKU).filter(has=page.locator('[data-test="licences"]', has_text="0/5"))).to_have_count(
        1
    )

"""Ask before what cannot be taken back, in a real browser (issue 15, item 6): with JavaScript, Delete asks in a dialog
and goes ahead at once; without it, the server's confirmation page asks, and its Cancel changes nothing. And Logout
while launched returns to the partner portal, still signed in."""

from __future__ import annotations

import re

import pytest

from app.extensions import db
from app.models.accounts import Account
from security import scoping
from tests import factories
from tests.e2e.conftest import TIMEOUT_MS
from tests.integration.test_scoping import database_fingerprint

try:
    from playwright.sync_api import expect
except ImportError:  # the ``browser`` fixture skips these tests (or fails them under REQUIRE_E2E=1)
    expect = None

WORKER = "worker@aardvark.example"


@pytest.fixture
def worker(app, world) -> int:
    """A second customer portal user of Aardvark Farms, free to be deleted."""
    with app.app_context(), scoping.bypass("test: a user to delete"):
        customer = db.session.get(Account, world.accounts["customer_a"].id)
        user = factories.user(customer, WORKER, "Wes", "Worker", cp3_enabled=True)
        db.session.commit()
        return user.id


@pytest.fixture
def page_without_javascript(browser, live_server, _live_server):
    """A page in a browser context of its own with JavaScript turned off (portal.js never runs)."""
    context = browser.new_context(base_url=live_server, java_script_enabled=False)
    context.set_default_timeout(TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()
        assert _live_server.in_flight.wait_idle(TIMEOUT_MS / 1000), "the live server still has requests in flight"


def test_with_javascript_delete_asks_in_a_dialog_and_goes_ahead(page, sign_in, world, worker):
    sign_in(page, world.users["reseller_a_admin"].email)
    page.goto(f"/accounts/{world.accounts['customer_a'].id}/users")
    row = page.locator(f'tr[data-user="{worker}"]')
    questions = []
    page.on("dialog", lambda dialog: (questions.append(dialog.message), dialog.accept()))
    row.get_by_role("button", name="Delete").click()
    expect(page.locator(".alert-success")).to_contain_text(f"{WORKER} is deleted from this account")
    expect(page.locator(f'tr[data-user="{worker}"]')).to_have_count(0)
    assert questions and questions[0].startswith(f"Delete {WORKER} from Aardvark Farms?")
    expect(page.locator('[data-test="confirm-page"]')).to_have_count(0)  # one question, not two


def test_without_javascript_the_confirmation_page_asks_and_cancel_changes_nothing(
    page_without_javascript, sign_in, world, worker
):
    page = page_without_javascript
    sign_in(page, world.users["reseller_a_admin"].email)
    users = f"/accounts/{world.accounts['customer_a'].id}/users"
    page.goto(users)
    before = database_fingerprint()
    page.locator(f'tr[data-user="{worker}"]').get_by_role("button", name="Delete").click()
    confirm = page.locator('[data-test="confirm-page"]')
    expect(confirm.get_by_role("heading")).to_have_text(f"Delete {WORKER} from Aardvark Farms?")
    expect(confirm).to_contain_text("They lose access to Aardvark Farms for good")
    assert database_fingerprint() == before
    confirm.get_by_role("link", name="Cancel").click()
    expect(page).to_have_url(re.compile(rf"{users}$"))
    expect(page.locator(f'tr[data-user="{worker}"]')).to_contain_text("Active")
    assert database_fingerprint() == before

    page.locator(f'tr[data-user="{worker}"]').get_by_role("button", name="Delete").click()
    page.locator('[data-test="confirm-page"]').get_by_role("button", name="Delete user").click()
    expect(page.locator(".alert-success")).to_contain_text(f"{WORKER} is deleted from this account")
    expect(page.locator(f'tr[data-user="{worker}"]')).to_have_count(0)


def test_logout_while_launched_returns_to_the_partner_portal(page, sign_in, world):
    customer = world.accounts["customer_a"].id
    sign_in(page, world.users["reseller_a_admin"].email)
    page.goto(f"/accounts/{customer}/users")
    page.locator(f'tr[data-user="{world.users["customer_a_master_admin"].id}"]').get_by_role(
        "button", name="Launch (CP3)"
    ).click()
    expect(page).to_have_url(re.compile(rf"/portal/{customer}/$"))
    expect(page.locator('[data-test="impersonation-banner"]')).to_be_visible()
    page.locator(".customer-navbar").get_by_role("button", name="Logout").click()
    expect(page).to_have_url(re.compile(rf"/accounts/{customer}/users$"))
    expect(page.locator(".alert-info")).to_contain_text("back in the partner portal, still signed in")
    expect(page.locator('[data-table="customer-portal-users"]')).to_be_visible()
    expect(page.locator('[data-test="impersonation-banner"]')).to_have_count(0)
    page.goto("/")
    expect(page).not_to_have_url(re.compile(r"/login/"))

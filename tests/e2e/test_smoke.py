"""Smoke tests in a real browser: signing in shows who you are and which account you act for; anonymous visitors
and wrong passwords end on the sign-in page."""

from __future__ import annotations

import re

try:
    from playwright.sync_api import expect
except ImportError:  # the ``browser`` fixture skips these tests (or fails them under REQUIRE_E2E=1)
    expect = None

SIGN_IN_URL = re.compile(r"/login/(\?.*)?$")


def test_reseller_admin_signs_in_and_sees_who_and_which_account(page, sign_in, world):
    admin = world.users["reseller_a_admin"]

    sign_in(page, admin.email)

    expect(page.locator('[data-test="user-email"]')).to_have_text(admin.email)
    expect(page.locator('[data-test="account-name"]')).to_have_text("Alpha Partners Ltd")


def test_anonymous_visit_ends_on_sign_in_and_wrong_password_stays_there(page, world):
    admin = world.users["reseller_a_admin"]

    page.goto("/")
    expect(page).to_have_url(SIGN_IN_URL)
    expect(page.locator("#username")).to_be_visible()
    expect(page.get_by_text("Invalid login")).to_have_count(0)

    page.locator("#username").fill(admin.email)
    page.locator("#password").fill("not the password")
    page.get_by_role("button", name="Sign In").click()

    expect(page.locator(".alert", has_text="Invalid login. Please try again.")).to_be_visible()
    expect(page).to_have_url(SIGN_IN_URL)
    expect(page.locator("#password")).to_be_visible()
    expect(page.locator('[data-test="user-email"]')).to_have_count(0)

"""Two-factor authentication in a real browser: enrol from the name menu with a code computed from the shown secret,
a wrong code, a replayed code, a recovery code once, required mode's redirect, and a reset by an admin.

The clock is the real one (the browser and the live server run beside the test): codes are computed for the step
after the current one, which the portal accepts (one step either side) and which is always later than the last
accepted one, so no test waits for a new step."""

from __future__ import annotations

import re
import time

import pyotp

try:
    from playwright.sync_api import expect
except ImportError:  # the ``browser`` fixture skips these tests (or fails them under REQUIRE_E2E=1)
    expect = None

from app.extensions import db
from app.services import mfa as mfa_service
from security import mfa, scoping
from security.models import PortalUser
from tests.conftest import unscoped


def _next_code(secret: str) -> str:
    return pyotp.TOTP(secret).at(time.time(), counter_offset=1)


def _wrong_code(secret: str) -> str:
    totp = pyotp.TOTP(secret)
    valid = {totp.at(time.time(), counter_offset=n) for n in (-1, 0, 1, 2)}
    return next(c for c in ("000000", "111111", "222222") if c not in valid)


def _enter(page, value: str) -> None:
    page.locator("#code").fill(value)
    page.get_by_role("button", name="Verify").click()


def _sign_out(page) -> None:
    """The name menu opens by Bootstrap's script: a click on a page whose script has not run yet (just navigated to)
    opens nothing, so the menu is opened again until its Logout shows."""
    toggle, logout = page.locator(".navbar-right .dropdown-toggle"), page.get_by_role("button", name="Logout")
    for _ in range(3):
        page.wait_for_load_state("load")
        toggle.click()
        try:
            expect(logout).to_be_visible(timeout=2_000)
            break
        except AssertionError:
            continue
    logout.click()
    expect(page).to_have_url(re.compile(r"/login/$"))


def test_enrol_then_sign_in_with_a_code_a_replay_and_a_recovery_code(page, sign_in, world):
    email = world.users["reseller_a_admin"].email
    sign_in(page, email)
    page.locator(".navbar-right .dropdown-toggle", has_text="Ari Admin").click()
    page.get_by_role("link", name="Two-factor authentication").click()
    expect(page.locator('[data-test="mfa-qr"] svg')).to_be_visible()
    secret = page.locator('[data-test="mfa-secret"]').inner_text().replace(" ", "")

    page.locator("#code").fill(_wrong_code(secret))
    page.get_by_role("button", name="Turn on").click()
    expect(page.locator('[data-error-for="code"]')).to_contain_text("does not match")
    page.locator("#code").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Turn on").click()
    expect(page.locator(".alert-success")).to_contain_text("Two-factor authentication is on")
    codes = page.locator('[data-test="mfa-recovery-codes"] code').all_inner_texts()
    assert len(codes) == 10

    page.get_by_role("link", name=re.compile("continue")).click()
    _sign_out(page)  # and back in: password, then the code
    sign_in(page, email)
    expect(page).to_have_url(re.compile(r"/login/code/$"))
    _enter(page, _wrong_code(secret))
    expect(page.locator('[data-error-for="code"]')).to_contain_text("not right")
    used = _next_code(secret)
    _enter(page, used)
    expect(page.locator('[data-test="navbar-account"]')).to_contain_text("Alpha Partners Ltd")

    _sign_out(page)
    sign_in(page, email)
    _enter(page, used)  # the same code again
    expect(page.locator('[data-error-for="code"]')).to_contain_text("used already")
    _enter(page, codes[0])
    expect(page.locator(".alert-info")).to_contain_text("recovery code")
    expect(page.locator('[data-test="navbar-account"]')).to_contain_text("Alpha Partners Ltd")

    _sign_out(page)
    sign_in(page, email)
    _enter(page, codes[0])  # each recovery code works once
    expect(page.locator('[data-error-for="code"]')).to_contain_text("not right")
    expect(page).to_have_url(re.compile(r"/login/code/$"))


def test_required_mode_sends_a_partner_user_to_enrolment(app, page, sign_in, world):
    app.config["MFA_REQUIRED"] = True
    try:
        sign_in(page, world.users["reseller_a_user"].email)
        expect(page).to_have_url(re.compile(r"/profile/two-factor/$"))
        expect(page.locator('[data-test="mfa-required"]')).to_be_visible()
        page.goto(f"/accounts/{world.accounts['customer_a'].id}/users")
        expect(page).to_have_url(re.compile(r"/profile/two-factor/$"))
        secret = page.locator('[data-test="mfa-secret"]').inner_text().replace(" ", "")
        page.locator("#code").fill(pyotp.TOTP(secret).now())
        page.get_by_role("button", name="Turn on").click()
        page.get_by_role("link", name=re.compile("continue")).click()
        expect(page.locator('[data-test="navbar-account"]')).to_contain_text("Alpha Partners Ltd")
    finally:
        app.config["MFA_REQUIRED"] = False


def test_an_admin_resets_a_partner_users_two_factor(app, page, sign_in, world):
    user = world.users["reseller_a_user"]
    with app.test_request_context(), scoping.bypass("test set-up"):
        secret = mfa.new_secret()
        mfa_service.enrol(db.session.get(PortalUser, user.id), secret, pyotp.TOTP(secret).now())
    sign_in(page, world.users["reseller_a_admin"].email)
    page.goto(f"/accounts/{user.account_id}/users")
    row = page.locator('[data-table="partner-portal-users"] tr', has_text=user.email)
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Reset two-factor").click()
    expect(page.locator(".alert-success")).to_contain_text(f"Reset the two-factor authentication of {user.email}")
    expect(row.get_by_role("button", name="Reset two-factor")).to_have_count(0)
    with unscoped() as session:
        assert session.get(PortalUser, user.id).mfa is None

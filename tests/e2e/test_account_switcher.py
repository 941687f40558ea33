"""One login, many customers, in a real browser (issue 11's "done when"): as Simon, two Add Sub Accounts in a row
keep the pre-filled IT-support master admin; after activation that one login opens either customer's portal from its
account switcher, as Master Admin of each; removing it from one customer leaves the other untouched."""

from __future__ import annotations

import re

from app.extensions import db
from app.services.demo import seed_demo
from security import scoping
from tests.factories import PASSWORD

try:
    from playwright.sync_api import expect
except ImportError:  # the ``browser`` fixture skips these tests (or fails them under REQUIRE_E2E=1)
    expect = None

SIMON = "simon@demoreseller.co.nz"
IT = "itsupport@demoreseller.co.nz"


def _demo(app) -> None:
    with app.app_context(), scoping.bypass("test: demo data"):
        seed_demo(password=PASSWORD)
        db.session.commit()


def _ids(app) -> dict:
    """Account ids by name."""
    from sqlalchemy import select

    from app.models.accounts import Account

    with app.app_context(), scoping.bypass("test: account ids"):
        return dict(db.session.execute(select(Account.name, Account.id)).all())


def _add_sub_account(page, reseller_id: int, name: str) -> None:
    page.goto(f"/accounts/{reseller_id}/sub-accounts/new")
    expect(page.locator("#master_admin_email")).to_have_value(IT)  # the reseller's IT support, pre-filled
    page.locator("#name").fill(name)
    page.get_by_role("button", name="Add Sub Account").click()
    expect(page.locator(".alert-success")).to_contain_text(f"Added sub-account {name}")


def _activate_master_admin(page, account_id: int) -> None:
    page.goto(f"/accounts/{account_id}/users")
    page.locator("tr[data-placeholder]").get_by_role("button", name="Activate (CP3)").click()
    expect(page.locator(".alert-success")).to_contain_text(IT)
    expect(page.locator(f'tr[data-user] >> text="{IT}"')).to_have_count(1)


def test_the_it_support_master_admin_works_for_every_customer(app, browser, live_server, sign_in):
    _demo(app)
    accounts = _ids(app)
    simon = browser.new_page(base_url=live_server)
    sign_in(simon, SIMON)
    for name in ("Kiwi Kitchens", "Harbour Hops"):
        _add_sub_account(simon, accounts["Demo Reseller Ltd"], name)
    ids = _ids(app)
    for name in ("Kiwi Kitchens", "Harbour Hops"):
        _activate_master_admin(simon, ids[name])

    it = browser.new_page(base_url=live_server)
    sign_in(it, IT)
    expect(it).to_have_url(re.compile(r"/account/choose"))
    choices = it.locator('[data-test="account-choices"]')
    for name in ("Enet Ltd", "Contoso NZ", "Kiwi Kitchens", "Harbour Hops"):
        expect(choices).to_contain_text(name)
    choices.get_by_role("button", name="Kiwi Kitchens").click()
    expect(it.locator('[data-test="account-name"]')).to_have_text("Kiwi Kitchens")
    expect(it.get_by_role("link", name="Users")).to_be_visible()  # Master Admin here
    it.locator('[data-test="switch-account"]').click()
    it.locator('[data-test="account-choices"]').get_by_role("button", name="Harbour Hops").click()
    expect(it.locator('[data-test="account-name"]')).to_have_text("Harbour Hops")
    expect(it.get_by_role("link", name="Users")).to_be_visible()  # and Master Admin here too
    # Kiwi Kitchens' pages are not this session's any more.
    response = it.goto(f"/portal/{ids['Kiwi Kitchens']}/")
    assert response.status == 404

    # Simon removes it from Kiwi Kitchens (which needs another Master Admin first).
    simon.goto(f"/accounts/{ids['Kiwi Kitchens']}/users/customer/new")
    simon.locator("#first_name").fill("Kiri")
    simon.locator("#last_name").fill("Cook")
    simon.locator("#email").fill("kiri@kiwikitchens.example")
    simon.locator("#master_admin").check()
    simon.get_by_role("button", name="Save").click()
    expect(simon.locator(".alert-success")).to_contain_text("kiri@kiwikitchens.example")
    simon.once("dialog", lambda dialog: dialog.accept())
    row = simon.locator("tr[data-user]", has_text=IT)
    row.get_by_role("button", name="Delete").click()
    expect(simon.locator(".alert-success")).to_contain_text(f"{IT} is deleted from this account")
    expect(simon.locator("tr[data-user]", has_text=IT)).to_have_count(0)

    # Harbour Hops is untouched: the session working there goes on, and the switcher lists it without Kiwi Kitchens.
    it.goto(f"/portal/{ids['Harbour Hops']}/")
    expect(it.locator('[data-test="account-name"]')).to_have_text("Harbour Hops")
    it.locator('[data-test="switch-account"]').click()
    choices = it.locator('[data-test="account-choices"]')
    expect(choices).to_contain_text("Harbour Hops")
    expect(choices).not_to_contain_text("Kiwi Kitchens")

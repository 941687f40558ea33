"""The partner portal in a real browser: search suggestions as you type, Add Sub Account, the Users tab."""

from __future__ import annotations

import re

try:
    from playwright.sync_api import expect
except ImportError:  # the ``browser`` fixture skips these tests (or fails them under REQUIRE_E2E=1)
    expect = None

from tests.mail import empty_outbox, link_in, outbox_messages


def test_search_suggests_as_you_type_and_enter_opens_the_account(page, sign_in, world):
    sign_in(page, world.users["reseller_a_admin"].email)
    box = page.locator("#account-search")
    box.press_sequentially("aard", delay=30)
    suggestions = page.locator("#account-search-list li[data-url]")
    expect(suggestions).to_have_count(1)
    expect(suggestions.first).to_contain_text("Aardvark Farms")
    expect(suggestions.first).to_contain_text("aardvark.onmicrosoft.com")
    box.press("ArrowDown")
    box.press("Enter")
    expect(page).to_have_url(re.compile(rf"/accounts/{world.accounts['customer_a'].id}/details$"))
    expect(page.locator("h2.account-title")).to_contain_text("Aardvark Farms")


def test_search_says_when_nothing_matches_and_never_shows_another_reseller(page, sign_in, world):
    sign_in(page, world.users["reseller_a_admin"].email)
    box = page.locator("#account-search")
    box.fill("bluebird")  # reseller B's customer
    expect(page.locator("#account-search-list .no-match")).to_have_text("No accounts match")
    box.fill("")
    box.press_sequentially("zebra")
    expect(page.locator("#account-search-list .no-match")).to_be_visible()
    expect(page.locator("#account-search-list li[data-url]")).to_have_count(0)


def test_a_click_on_a_suggestion_opens_it_and_enter_alone_lists_matches(page, sign_in, world):
    sign_in(page, world.users["reseller_a_admin"].email)
    box = page.locator("#account-search")
    box.press_sequentially("anch")
    page.locator("#account-search-list li[data-url] a", has_text="Anchor Marine").click()
    expect(page).to_have_url(re.compile(rf"/accounts/{world.accounts['customer_a2'].id}/details$"))
    page.locator("#account-search").fill("ar")
    page.locator("#account-search").press("Enter")
    expect(page).to_have_url(re.compile(r"/search/\?q=ar$"))
    expect(page.locator("table")).to_contain_text("Aardvark Farms")
    expect(page.locator("table")).to_contain_text("Alpha Partners Ltd")


def test_add_sub_account_then_see_it_in_the_list(page, sign_in, world):
    sign_in(page, world.users["reseller_a_admin"].email)
    page.goto(f"/accounts/{world.accounts['reseller_a'].id}/sub-accounts")
    page.get_by_role("link", name="Add Sub Account").click()
    expect(page.locator("#master_admin_email")).to_have_value("it@alpha.example")
    page.locator("#name").fill("Tui Transport")
    page.locator("#country").fill("")
    page.get_by_role("button", name="Add Sub Account").click()
    expect(page.locator('[data-error-for="country"]')).to_contain_text("Country is required.")
    page.locator("#country").fill("NZ")
    page.get_by_role("button", name="Add Sub Account").click()
    expect(page.locator(".alert-success")).to_contain_text("Added sub-account Tui Transport")
    expect(page.locator("table")).to_contain_text("Tui Transport")


def test_add_new_customer_user_and_activate_from_the_email(app, page, sign_in, world):
    empty_outbox(app)
    sign_in(page, world.users["reseller_a_admin"].email)
    page.goto(f"/accounts/{world.accounts['customer_a'].id}/users")
    page.locator('[data-table="customer-portal-users"]').get_by_role("link", name="Add New").click()
    page.locator("#first_name").fill("Rua")
    page.locator("#last_name").fill("Rangi")
    page.locator("#email").fill("rua@aardvark.example")
    page.get_by_role("button", name="Save").click()
    row = page.locator("tr", has_text="rua@aardvark.example")
    expect(row).to_contain_text("Last Login N/A")
    expect(row.get_by_role("button", name="Launch (CP3)")).to_be_visible()

    (message,) = outbox_messages(app)
    page.goto(link_in(message))
    page.locator("#password").fill("pohutukawa summer beach")
    page.locator("#confirm").fill("pohutukawa summer beach")
    page.get_by_role("button", name="Set password").click()
    expect(page.locator(".alert-success")).to_contain_text("Your password is set")


def test_delete_asks_first(page, sign_in, world):
    sign_in(page, world.users["reseller_a_admin"].email)
    page.goto(f"/accounts/{world.accounts['customer_a'].id}/users")
    placeholder = page.locator(f'tr[data-placeholder="{world.rows["a"]["placeholder"]}"]')
    page.once("dialog", lambda dialog: dialog.dismiss())
    placeholder.get_by_role("button", name="Delete").click()
    expect(placeholder).to_be_visible()
    page.once("dialog", lambda dialog: dialog.accept())
    placeholder.get_by_role("button", name="Delete").click()
    expect(page.locator(".alert-success")).to_contain_text("Removed the master admin placeholder")
    expect(page.locator(f'tr[data-placeholder="{world.rows["a"]["placeholder"]}"]')).to_have_count(0)

"""The customer portal in a real browser: Launch (CP3) → banner → Return, widgets that survive a new sign-in (drag
and drop and the arrow buttons), one failing widget spoiling nothing, the chart, and assigning a licence."""

from __future__ import annotations

import re

try:
    from playwright.sync_api import expect
except ImportError:  # the ``browser`` fixture skips these tests (or fails them under REQUIRE_E2E=1)
    expect = None


def _launch(page, sign_in, world):
    sign_in(page, world.users["reseller_a_admin"].email)
    page.goto(f"/accounts/{world.accounts['customer_a'].id}/users")
    row = page.locator(f'tr[data-user="{world.users["customer_a_master_admin"].id}"]')
    row.get_by_role("button", name="Launch (CP3)").click()
    expect(page).to_have_url(re.compile(rf"/portal/{world.accounts['customer_a'].id}/$"))


def test_launch_banner_and_return(page, sign_in, world):
    _launch(page, sign_in, world)
    banner = page.locator('[data-test="impersonation-banner"]')
    expect(banner).to_contain_text("Signed in to Aardvark Farms as Mara Master")
    expect(banner).to_contain_text("by Ari Admin")
    page.get_by_role("link", name="Microsoft CSP").click()
    expect(banner).to_be_visible()
    expect(page.locator('[data-test="subscriptions"]')).to_contain_text("Microsoft 365 Business Basic")
    banner.get_by_role("button", name="Return to partner portal").click()
    expect(page).to_have_url(re.compile(rf"/accounts/{world.accounts['customer_a'].id}/users$"))
    expect(page.locator('[data-table="customer-portal-users"]')).to_be_visible()
    expect(page.locator('[data-test="impersonation-banner"]')).to_have_count(0)


def _widget_names(page):
    return page.locator("#widget-board .widget").evaluate_all("items => items.map(i => i.dataset.widget)")


def test_widgets_survive_a_new_sign_in(browser, live_server, sign_in, world):
    context = browser.new_context(base_url=live_server)
    page = context.new_page()
    sign_in(page, world.users["customer_a_master_admin"].email)
    expect(page.locator('[data-test="empty-dashboard"]')).to_be_visible()
    for title in ("Licences", "Monthly spend", "Recent activity"):
        page.get_by_role("button", name="Widgets").click()
        page.locator("#widget-catalogue").get_by_role("button", name=title).click()
        expect(page.locator("#widget-board .widget")).to_have_count(
            ["Licences", "Monthly spend", "Recent activity"].index(title) + 1
        )
    expect(page.locator('[data-widget="spend"] [data-test="monthly-spend"]')).to_have_text("$52.50")
    # Keyboard: move "Recent activity" up twice; mouse: drag "Licences" below "Monthly spend".
    page.get_by_role("button", name="Move Recent activity up").click()
    page.get_by_role("button", name="Move Recent activity up").click()
    expect(page.locator("#widget-board")).to_have_attribute("data-saving", "done")
    assert _widget_names(page) == ["activity", "licences", "spend"]
    page.locator('[data-widget="licences"] .drag-handle').drag_to(
        page.locator('[data-widget="spend"] .panel-body'), target_position={"x": 10, "y": 60}
    )
    expect(page.locator("#widget-board")).to_have_attribute("data-saving", "done")
    assert _widget_names(page) == ["activity", "spend", "licences"]
    page.get_by_role("button", name="Remove Monthly spend").click()
    expect(page.locator("#widget-board .widget")).to_have_count(2)
    context.close()

    again = browser.new_context(base_url=live_server)  # a new sign-in, a new browser
    page = again.new_page()
    sign_in(page, world.users["customer_a_master_admin"].email)
    expect(page.locator("#widget-board .widget")).to_have_count(2)
    assert _widget_names(page) == ["activity", "licences"]
    again.close()


def test_a_failing_widget_spoils_nothing_and_the_chart_draws(page, sign_in, world):
    sign_in(page, world.users["customer_a_master_admin"].email)
    for title, name in (("Licences", "licences"), ("Usage chart", "usage_chart")):
        page.get_by_role("button", name="Widgets").click()
        page.locator("#widget-catalogue").get_by_role("button", name=title).click()
        expect(page.locator(f'[data-widget="{name}"]')).to_be_visible()  # the page after the add, not the one before
    licences_id = page.locator('[data-widget="licences"]').get_attribute("data-widget-id")
    page.route(f"**/widgets/{licences_id}/data", lambda route: route.fulfill(status=500, body="boom"))
    page.reload()
    expect(page.locator('[data-widget="licences"] .widget-error')).to_contain_text("could not load")
    expect(page.locator('[data-widget="usage_chart"] .usage-chart .main-svg').first).to_be_visible()
    expect(page.locator('[data-widget="usage_chart"] table.usage-table')).to_contain_text(
        "Microsoft 365 Business Basic"
    )
    page.unroute(f"**/widgets/{licences_id}/data")
    page.locator('[data-widget="licences"]').get_by_role("button", name="Try again").click()
    expect(page.locator('[data-widget="licences"] .widget-licences')).to_contain_text("3/4")


def _add_person(page, first, username):
    page.locator('[data-test="m365-users"]').get_by_role("link", name="Add a user").click()
    page.get_by_label("First name").fill(first)
    page.get_by_label("Last name").fill("Turei")
    page.get_by_label("User name").fill(username)
    page.get_by_role("button", name="Add user").click()
    expect(page.locator('[data-test="added"]')).to_contain_text(f"Added Microsoft 365 user {username}")
    page.get_by_role("link", name="Back to Microsoft CSP").click()  # its temporary password was shown once


def test_assign_a_licence_after_raising_the_quantity(page, sign_in, world):
    _launch(page, sign_in, world)
    page.get_by_role("link", name="Microsoft CSP").click()
    _add_person(page, "Tia", "tia")
    _add_person(page, "Rua", "rua")
    row = page.locator(f'tr[data-subscription="{world.rows["a"]["subscription"]}"]')
    expect(row.locator('[data-test="licences"]')).to_have_text("3/4")
    row.get_by_role("link", name="Users & quantity").click()
    assign = page.get_by_role("button", name="Assign", exact=True)
    page.get_by_label("Microsoft 365 user").select_option(label="Tia Turei (tia@aardvark.onmicrosoft.com)")
    assign.click()
    expect(page.locator('[data-test="licences"]')).to_have_text("4/4")
    page.get_by_label("Microsoft 365 user").select_option(label="Rua Turei (rua@aardvark.onmicrosoft.com)")
    assign.click()
    expect(page.locator(".alert-danger")).to_contain_text("All 4 licences of Microsoft 365 Business Basic are assigned")
    page.locator("#quantity").fill("5")
    page.get_by_role("button", name="Change quantity").click()
    expect(page.locator('[data-test="licences"]')).to_have_text("4/5")
    page.get_by_label("Microsoft 365 user").select_option(label="Rua Turei (rua@aardvark.onmicrosoft.com)")
    assign.click()
    expect(page.locator('[data-test="licences"]')).to_have_text("5/5")
    expect(page.locator(".holders")).to_contain_text("rua@aardvark.onmicrosoft.com")

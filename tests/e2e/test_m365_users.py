"""Microsoft 365 users as in Microsoft's admin centre, in a real browser (issue 15): as Aardvark Farms' master admin,
Add a user (its temporary password shown once), Edit it, Reset its password, Import users from a small CSV and read the
report, and Delete — asked on a confirmation page of its own when the page's script is not there."""

from __future__ import annotations

import re

try:
    from playwright.sync_api import expect
except ImportError:  # the ``browser`` fixture skips these tests (or fails them under REQUIRE_E2E=1)
    expect = None

DOMAIN = "aardvark.onmicrosoft.com"
CSV = (
    b"User Name,First Name,Last Name,Display Name,Usage Location\n"
    b"wiremu,Wiremu,Tane,,NZ\n"
    b"kiri@contoso.com,Kiri,Tane,,NZ\n"
)


def _users_screen(page, world):
    page.goto(f"/portal/{world.accounts['customer_a'].id}/services/microsoft-csp")
    return page.locator('[data-test="m365-users"]')


def _password(page) -> str:
    password = page.locator('[data-test="temporary-password"] [data-test="password"]').inner_text()
    assert len(password) >= 16
    return password


def test_add_edit_reset_and_import_microsoft_365_users(page, sign_in, world):
    sign_in(page, world.users["customer_a_master_admin"].email)
    users = _users_screen(page, world)

    # Add a user: as the admin centre asks it; the portal makes the temporary password and shows it once.
    users.get_by_role("link", name="Add a user").click()
    expect(page.get_by_label("Usage location")).to_have_value("NZ")  # the customer's country
    page.get_by_label("First name").fill("Aroha")
    page.get_by_label("Last name").fill("Ngata")
    page.get_by_label("User name").fill("aroha")
    page.get_by_label("Usage location").select_option("AU")
    page.get_by_role("button", name="Add user").click()
    expect(page.locator('[data-test="added"]')).to_contain_text(
        f"Added Microsoft 365 user aroha@{DOMAIN} (Aroha Ngata, usage location AU)"
    )
    first = _password(page)
    page.get_by_role("link", name="Back to Microsoft CSP").click()
    row = users.locator("tr", has_text=f"aroha@{DOMAIN}")
    expect(row.locator('[data-test="usage-location"]')).to_have_text("AU")
    expect(page.locator("body")).not_to_contain_text(first)  # once

    # Edit: the display name and usage location, at Microsoft first.
    row.get_by_role("link", name="Edit").click()
    expect(page.get_by_label("Display name")).to_have_value("Aroha Ngata")
    page.get_by_label("Display name").fill("Aroha Ngata (Finance)")
    page.get_by_label("Usage location").select_option("NZ")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".alert-success")).to_contain_text(
        f"aroha@{DOMAIN} is changed at Microsoft: Aroha Ngata (Finance), usage location NZ."
    )
    row = users.locator("tr", has_text=f"aroha@{DOMAIN}")
    expect(row).to_contain_text("Aroha Ngata (Finance)")
    expect(row.locator('[data-test="usage-location"]')).to_have_text("NZ")

    # Reset password: asked in a dialog; a new temporary password, shown once.
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Reset password").click()
    expect(page.locator('[data-test="temporary-password"]')).to_contain_text(f"aroha@{DOMAIN}")
    assert _password(page) != first
    page.get_by_role("link", name="Back to Microsoft CSP").click()

    # Import users: a small CSV, one line refused with its reason.
    users.get_by_role("link", name="Import users").click()
    page.get_by_label("CSV file").set_input_files(files=[{"name": "team.csv", "mimeType": "text/csv", "buffer": CSV}])
    page.get_by_role("button", name="Import users").click()
    expect(page.locator('[data-test="import-summary"]')).to_contain_text("team.csv: 1 user added, 1 refused.")
    report = page.locator('[data-test="import-report"]')
    expect(report.locator('tr[data-line="2"]')).to_contain_text(f"wiremu@{DOMAIN}")
    expect(report.locator('tr[data-line="2"] [data-test="password"]')).to_have_text(re.compile(r"^\S{16,}$"))
    expect(report.locator('tr[data-line="3"]')).to_contain_text(
        f"contoso.com is not this tenant's domain: use kiri@{DOMAIN}, or kiri alone."
    )
    report.get_by_role("link", name="Back to Microsoft CSP").click()
    expect(users.locator("tr", has_text=f"wiremu@{DOMAIN}")).to_contain_text("Wiremu Tane")


def test_delete_asks_on_a_page_of_its_own_without_javascript(browser, live_server, sign_in, world):
    """Without the page's script (not loaded yet, or blocked) Delete is asked on a confirmation page naming what
    happens; Cancel changes nothing, Delete user deletes."""
    context = browser.new_context(base_url=live_server, java_script_enabled=False)
    try:
        page = context.new_page()
        sign_in(page, world.users["customer_a_master_admin"].email)
        users = _users_screen(page, world)
        row = users.locator("tr", has_text=f"p2@{DOMAIN}")
        row.get_by_role("button", name="Delete").click()
        asked = page.locator('[data-test="confirm-page"]')
        expect(asked.locator("h2")).to_have_text(f"Delete p2@{DOMAIN}?")
        expect(asked).to_contain_text("can no longer sign in")
        asked.get_by_role("link", name="Cancel").click()
        expect(users.locator("tr", has_text=f"p2@{DOMAIN}")).to_have_count(1)

        users.locator("tr", has_text=f"p2@{DOMAIN}").get_by_role("button", name="Delete").click()
        page.get_by_role("button", name="Delete user").click()
        expect(page.locator(".alert-success")).to_contain_text(f"p2@{DOMAIN} is deleted at Microsoft")
        expect(users.locator("tr", has_text=f"p2@{DOMAIN}")).to_have_count(0)
    finally:
        context.close()

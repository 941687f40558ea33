"""The CSP Report in a real browser: downloads that open as workbooks, the Usage Chart drawn by the app's own
plotly, and a background export whose progress bar turns into a download link."""

from __future__ import annotations

import openpyxl

try:
    from playwright.sync_api import expect
except ImportError:  # the ``browser`` fixture skips these tests (or fails them under REQUIRE_E2E=1)
    expect = None


def test_export_subscription_downloads_a_workbook(page, sign_in, world, tmp_path):
    sign_in(page, world.users["reseller_a_admin"].email)
    page.goto(f"/accounts/{world.accounts['customer_a'].id}/users")
    page.locator(".account-tabs").get_by_text("Products & Services").click()
    page.get_by_role("link", name="CSP Report").click()
    expect(page.locator(".csp-report-bar")).to_contain_text("CSP REPORT")
    with page.expect_download() as download:
        page.get_by_role("button", name="Export Subscription").click()
    assert download.value.suggested_filename.startswith("aardvark-farms-subscriptions-")
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    sheet = openpyxl.load_workbook(path).active
    assert sheet["D2"].value == "Product" and sheet.max_row == 4


def test_usage_chart_is_drawn_from_the_apps_own_files(page, sign_in, world):
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    sign_in(page, world.users["reseller_a_admin"].email)
    page.goto(f"/accounts/{world.accounts['reseller_a'].id}/products/csp-report")
    page.get_by_role("link", name="Usage Chart").click()
    expect(page.locator(".usage-chart .main-svg").first).to_be_visible()
    expect(page.locator(".spend-chart .main-svg").first).to_be_visible()
    expect(page.locator("table.usage-table")).to_contain_text("Microsoft 365 Business Basic")
    base = page.url.split("/accounts/")[0]
    assert all(url.startswith(base) for url in requests), [u for u in requests if not u.startswith(base)]


def test_a_background_export_shows_progress_then_a_download(app, page, sign_in, world, monkeypatch):
    monkeypatch.setitem(app.config, "EXPORT_JOB_THRESHOLD", 0)
    sign_in(page, world.users["reseller_a_admin"].email)
    page.goto(f"/accounts/{world.accounts['reseller_a'].id}/products/csp-report")
    page.get_by_role("button", name="Export Users").click()
    expect(page.locator(".alert-info")).to_contain_text("prepared in the background")
    link = page.locator('[data-test="job-download"]')
    expect(link).to_be_visible(timeout=20_000)
    expect(page.locator(".export-jobs .progress-bar").first).to_have_attribute("aria-valuenow", "100")
    with page.expect_download() as download:
        link.click()
    assert download.value.suggested_filename.startswith("alpha-partners-ltd-users-")

"""The Content-Security-Policy in a real browser: the walkthrough's pages of both portals run their scripts (FAB's
inline ones by their nonce) with no violation — the ``page`` fixture fails the test on any — and no other site can
frame the portal's buttons."""

from __future__ import annotations

try:
    from playwright.sync_api import expect
except ImportError:  # the ``browser`` fixture skips these tests (or fails them under REQUIRE_E2E=1)
    expect = None


def test_the_walkthrough_runs_under_the_policy(page, sign_in, world, csp_violations):
    customer, reseller = world.accounts["customer_a"].id, world.accounts["reseller_a"].id
    sign_in(page, world.users["reseller_a_admin"].email)
    for path in (
        "/",
        f"/accounts/{reseller}/details",
        f"/accounts/{reseller}/sub-accounts",
        f"/accounts/{customer}/users",
        f"/accounts/{customer}/events",
        f"/accounts/{customer}/products/csp-report",
        f"/accounts/{customer}/microsoft-tenant/new",
        "/subscriptionview/list/",
        "/eventview/list/",
        "/profile/password",
    ):
        assert page.goto(path).ok, path
    # FAB's list page draws its active filters with ab_filters.js, started by an inline script that needs the nonce.
    page.goto("/accountview/list/?_flt_0_name=Aardvark")
    expect(page.locator("#filter_form table.filters tbody tr")).to_have_count(1)
    expect(page.locator("#filter_form table.filters input[name='_flt_0_name']")).to_have_value("Aardvark")
    assert csp_violations == []


def test_the_customer_portal_runs_under_the_policy(page, sign_in, world, csp_violations):
    customer = world.accounts["customer_a"].id
    sign_in(page, world.users["customer_a_master_admin"].email)
    for path in (f"/portal/{customer}/", f"/portal/{customer}/services/microsoft-csp", f"/portal/{customer}/users"):
        assert page.goto(path).ok, path
    assert csp_violations == []


def test_another_site_cannot_frame_the_portal(page, live_server, csp_violations):
    page.set_content(f'<iframe id="framed" src="{live_server}/login/" width="600" height="400"></iframe>')
    frame = page.frame_locator("#framed")
    expect(frame.locator("#username")).to_have_count(0)
    assert any("frame-ancestors" in message for message in csp_violations), csp_violations
    csp_violations.clear()  # the refusal was the point of this test

"""Keyboards and screen readers (issue 15): axe-core finds no serious or critical violation on any main screen of
either portal (tests/e2e/screens.py lists them); Tab reaches the top menu's Event Log link, and what has the
keyboard's focus shows it. On the way: no page asks for anything the server does not have (the favicon's old 404),
and the customer portal's tab title names it."""

from __future__ import annotations

import re

from tests.e2e import screens

try:
    from playwright.sync_api import expect
except ImportError:  # the ``browser`` fixture skips these tests (or fails them under REQUIRE_E2E=1)
    expect = None


def _missing(page) -> list[str]:
    """Every response of this page that was not found (the favicon's 404 before issue 15)."""
    missing: list[str] = []
    page.on("response", lambda r: missing.append(f"{r.status} {r.url}") if r.status == 404 else None)
    return missing


def test_partner_portal_screens_have_no_serious_axe_violation(app, page, sign_in):
    demo = screens.seed(app)
    missing = _missing(page)
    problems = []
    for name, url in demo.urls(screens.SIGNED_OUT_SCREENS):
        screens.visit(page, name, url)
        problems += screens.serious_violations(page, name)
    sign_in(page, screens.OPS)
    for name, url in demo.urls(screens.PARTNER_SCREENS):
        screens.visit(page, name, url, settle="usage-chart" in url)
        problems += screens.serious_violations(page, name)
    assert problems == [], "axe-core found:\n" + "\n".join(problems)
    assert missing == []
    icon = page.locator('link[rel="icon"]').get_attribute("href")
    assert page.request.get(icon).ok


def test_customer_portal_screens_have_no_serious_axe_violation_and_name_the_portal(app, page, sign_in):
    demo = screens.seed(app)
    missing = _missing(page)
    sign_in(page, screens.CUSTOMER_ADMIN)
    problems = []
    for name, url in demo.urls(screens.CUSTOMER_SCREENS):
        screens.visit(page, name, url, settle=name == "Dashboard")
        expect(page).to_have_title("Contoso NZ — Customer portal")
        problems += screens.serious_violations(page, name)
        if name == "Dashboard":  # and with its catalogue of widgets open
            page.get_by_role("button", name="Widgets").click()
            expect(page.locator("#widget-catalogue")).to_be_visible()
            problems += screens.serious_violations(page, "Dashboard, widgets to add")
    assert problems == [], "axe-core found:\n" + "\n".join(problems)
    assert missing == []


def test_tab_reaches_the_top_menus_event_log_and_focus_shows(app, page, sign_in):
    screens.seed(app)
    sign_in(page, screens.OPS)
    page.goto("/")
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to main content")
    expect(skip).to_be_focused()
    expect(skip).to_be_visible()
    event_log = page.locator("header").get_by_role("link", name="Event Log")
    expect(event_log).not_to_have_attribute("tabindex", "-1")
    for _ in range(40):
        page.keyboard.press("Tab")
        if event_log.evaluate("link => link === document.activeElement"):
            break
    expect(event_log).to_be_focused()
    outline = event_log.evaluate(
        "link => { const s = getComputedStyle(link); return [s.outlineStyle, parseFloat(s.outlineWidth)]; }"
    )
    assert outline[0] != "none" and outline[1] >= 2, f"the focused link shows no outline: {outline}"
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/eventview/list/$"))

"""Phones and tablets (issue 15): at 390 px (a phone) and 768 px (a tablet) wide no main screen of either portal
scrolls sideways — wide tables scroll inside their panels — and at 390 px the account search is one tap away."""

from __future__ import annotations

import re

from tests.e2e import screens

try:
    from playwright.sync_api import expect
except ImportError:  # the ``browser`` fixture skips these tests (or fails them under REQUIRE_E2E=1)
    expect = None

WIDTHS = (390, 768)
_PAGE_WIDTH = "[document.documentElement.scrollWidth, window.innerWidth]"


def _sideways(page, demo, screen_list, axe_on_phone: bool = False) -> list[str]:
    """The screens wider than the window, at each width: 'screen at 390 px: 694 px wide'; with ``axe_on_phone``
    also axe-core's serious and critical findings at 390 px (the folded menus and card-like layout)."""
    wide = []
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 800})
        for name, url in demo.urls(screen_list):
            screens.visit(page, name, url, settle="usage-chart" in url)
            scroll_width, window_width = page.evaluate(_PAGE_WIDTH)
            if scroll_width > window_width:
                wide.append(f"{name} at {width} px: {scroll_width} px wide")
            if axe_on_phone and width == 390:
                wide.extend(screens.serious_violations(page, f"{name} at 390 px"))
    return wide


def test_no_partner_portal_screen_scrolls_sideways(app, page, sign_in):
    demo = screens.seed(app)
    sign_in(page, screens.OPS)
    assert "Enet Ltd ▸ Users" in dict(screens.PARTNER_SCREENS)  # 694 px wide at 390 px before issue 15
    assert _sideways(page, demo, screens.SIGNED_OUT_SCREENS + screens.PARTNER_SCREENS) == []


def test_no_customer_portal_screen_scrolls_sideways(app, page, sign_in):
    demo = screens.seed(app)
    sign_in(page, screens.CUSTOMER_ADMIN)
    assert _sideways(page, demo, screens.CUSTOMER_SCREENS, axe_on_phone=True) == []


def test_the_users_tab_scrolls_inside_its_panel_and_search_is_one_tap_away_on_a_phone(app, page, sign_in):
    demo = screens.seed(app)
    page.set_viewport_size({"width": 390, "height": 800})
    sign_in(page, screens.OPS)
    page.goto(f"/accounts/{demo.ids['enet']}/users")
    table = page.locator('[data-table="customer-portal-users"] .table-responsive')
    inner, outer = table.evaluate("box => [box.scrollWidth, box.clientWidth]")
    assert inner > outer, "the users table fits a phone now: this test no longer shows it scrolling in its panel"
    assert page.evaluate(_PAGE_WIDTH)[0] <= 390

    search = page.locator("#account-search")
    expect(search).to_be_hidden()  # folded into the menu
    page.get_by_role("button", name="Menu").click()
    expect(search).to_be_visible()
    search.press_sequentially("contoso")
    expect(page.locator("#account-search-list li[data-url]").first).to_contain_text("Contoso NZ")
    assert screens.serious_violations(page, "the menu and the search suggestions open on a phone") == []
    assert page.evaluate(_PAGE_WIDTH)[0] <= 390
    search.press("ArrowDown")
    search.press("Enter")
    expect(page).to_have_url(re.compile(rf"/accounts/{demo.ids['contoso']}/details$"))

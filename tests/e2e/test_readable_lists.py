"""Readable lists in a real browser: Accounts ▸ List all from the menu, its filters, a name that opens the account;
the Event Log's actions in words; no True/False on the Subscriptions list."""

from __future__ import annotations

import datetime as dt
import re

try:
    from playwright.sync_api import expect
except ImportError:  # the ``browser`` fixture skips these tests (or fails them under REQUIRE_E2E=1)
    expect = None

from app.models.accounts import Account
from app.models.events import Event
from tests import factories
from tests.conftest import unscoped


def test_list_all_filters_and_a_name_opens_the_account(page, sign_in, world):
    with unscoped() as session:  # a customer with a tenant that renews later, and one without a tenant
        reseller = session.get(Account, world.accounts["reseller_a"].id)
        basic = session.get(factories.Product, world.rows["products"]["basic"])
        later = Account(kind="customer", name="Kea Kitchens", parent=reseller)
        session.add(later)
        session.flush()
        factories.tenant(later, "keakitchens")
        factories.subscription(later, basic, 2, renew_in_days=75)
        session.commit()
    sign_in(page, world.users["reseller_a_admin"].email)
    page.locator(".navbar .dropdown-toggle", has_text="Accounts").first.click()  # the top menu, as a person would
    page.locator(".navbar .dropdown-menu").get_by_role("link", name="List all").click()
    expect(page).to_have_url(re.compile(r"/accountview/list/$"))
    table = page.locator("table.table-bordered")
    for name in ("Aardvark Farms", "Anchor Marine", "Kea Kitchens"):
        expect(table.get_by_role("link", name=name)).to_be_visible()
    aardvark = table.locator("tr", has=page.get_by_role("link", name="Aardvark Farms"))
    expect(aardvark).to_contain_text("4/7")  # 3 of 4 Business Basic licences used, 1 of 3 Exchange
    expect(aardvark).to_contain_text("$52.50")  # 4 × $9.00 + 3 × $5.50 a month

    filters = page.locator("form.account-filters")
    filters.get_by_label("Renews").select_option(label="Within 30 days")
    filters.get_by_label("Microsoft tenant").select_option(label="Has a Microsoft tenant")
    filters.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"tenant=yes"))
    expect(page).to_have_url(re.compile(r"renews=30"))
    expect(table.get_by_role("link", name="Aardvark Farms")).to_be_visible()
    expect(table.get_by_role("link", name="Anchor Marine")).to_have_count(0)  # no tenant
    expect(table.get_by_role("link", name="Kea Kitchens")).to_have_count(0)  # renews in 75 days
    expect(filters.get_by_label("Renews")).to_have_value("30")

    table.get_by_role("link", name="Aardvark Farms").click()
    expect(page).to_have_url(re.compile(rf"/accounts/{world.accounts['customer_a'].id}/details$"))
    expect(page.locator("h2.account-title")).to_contain_text("Aardvark Farms")


def test_the_event_log_shows_actions_in_words_and_lists_show_no_true_or_false(page, sign_in, world):
    with unscoped() as session:
        session.add(
            Event(
                account_id=world.accounts["customer_a"].id,
                action="m365_user.created",
                actor_label="tester@example.com",
                summary="Added p9@aardvark.onmicrosoft.com",
                target_type="M365User",
                target_id=str(world.rows["a"]["m365_user"]),
                occurred_at=dt.datetime(2025, 6, 1),
            )
        )
        session.commit()
    sign_in(page, world.users["reseller_a_admin"].email)
    page.locator(".navbar").get_by_role("link", name="Event Log").first.click()
    expect(page).to_have_url(re.compile(r"/eventview/list/"))
    actions = page.locator("td.event-action")
    expect(actions.filter(has_text="Added a Microsoft 365 user")).to_have_count(1)
    expect(actions.filter(has_text="Signed in").first).to_be_visible()
    for text in actions.all_inner_texts():
        assert not re.search(r"[a-z0-9]\.[a-z]|_", text), text
    page.locator("#action").select_option(label="Added a Microsoft 365 user")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"action=m365_user\.created"))
    expect(actions).to_have_count(1)

    page.goto("/subscriptionview/list/")
    expect(page.locator("table.table-bordered")).to_contain_text("On")
    body = page.locator("body").inner_text()
    assert not re.search(r"\b(True|False)\b", body), "a list shows True/False"

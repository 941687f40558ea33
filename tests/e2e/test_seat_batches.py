"""The subscription page's seat batches in a real browser: each open window's countdown ticks (the page's own script,
under the portal's Content-Security-Policy), and a reduction beyond the windows is refused with the reason and the
offer to change it at renewal."""

from __future__ import annotations

import datetime as dt
import re

from tests.integration.test_windows import _buy, _page

try:
    from playwright.sync_api import expect
except ImportError:  # the ``browser`` fixture skips these tests (or fails them under REQUIRE_E2E=1)
    expect = None


def test_the_countdown_of_an_open_window_ticks(page, sign_in, world):
    bought = dt.datetime.now(dt.UTC).replace(microsecond=0)  # the portal's clock (TEST_CLOCK_START may move it)
    sub_id = _buy(world, bought, quantity=5)
    page.clock.install(time=bought + dt.timedelta(seconds=30))  # the page's clock: it moves only when told to
    sign_in(page, world.users["customer_a_master_admin"].email)
    page.goto(_page(world, sub_id))
    countdown = page.locator('[data-test="countdown"]')
    expect(countdown).to_have_count(1)
    expect(countdown).to_have_text(re.compile(r"^6d 23h 59m \d+s$"))
    before = countdown.inner_text()
    page.clock.run_for(61_000)  # a minute and a second later, as the page's timers see it
    expect(countdown).not_to_have_text(before)
    after = countdown.inner_text()
    assert after != before and after.startswith("6d 23h")
    expect(page.locator('[data-test="returnable"]')).to_have_text("5")
    expect(page.get_by_role("button", name="Cancel subscription…")).to_be_visible()


def test_a_reduction_beyond_the_windows_is_refused_and_offered_at_renewal(page, sign_in, world):
    sub_id = world.rows["a"]["subscription"]  # bought 30 days ago: every window closed
    sign_in(page, world.users["customer_a_master_admin"].email)
    page.goto(_page(world, sub_id))
    batches = page.locator('[data-test="seat-batches"]')
    expect(batches.locator('[data-test="returnable"]')).to_have_text("0")
    expect(page.locator('[data-test="countdown"]')).to_have_count(0)
    expect(page.get_by_role("button", name="Cancel subscription…")).to_have_count(0)
    form = page.locator('[data-test="reduce-form"]')
    form.locator("#give_back").fill("1")
    form.get_by_role("button", name="Reduce…").click()
    refused = page.locator('[data-test="refused"]')
    expect(refused).to_contain_text("No licences of Microsoft 365 Business Basic can be given back now")
    expect(refused).to_contain_text("You can schedule the reduction to 3 at renewal instead.")
    offer = page.locator('[data-test="renewal-offer"]').get_by_role("link", name="Change at renewal to 3 licences")
    expect(offer).to_have_attribute("href", re.compile(r"/renewal\?quantity=3$"))

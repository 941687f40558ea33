"""The Reconciliation page in a real browser: the menu leads to it, a difference changed behind the portal's back is
listed, and operator staff repair it after confirming the question the button asks."""

from __future__ import annotations

from sqlalchemy import select

from app.models.csp import SandboxSubscription
from app.models.subscriptions import Subscription
from app.services import reconcile
from security import scoping
from tests.conftest import unscoped

try:
    from playwright.sync_api import expect
except ImportError:  # the ``browser`` fixture skips these tests (or fails them under REQUIRE_E2E=1)
    expect = None


def test_operator_staff_find_and_repair_a_difference(app, page, sign_in, world):
    sub_id = world.rows["a"]["subscription"]
    with unscoped() as session:
        provider_id = session.get(Subscription, sub_id).provider_subscription_id
        sandbox = session.scalars(
            select(SandboxSubscription).where(SandboxSubscription.subscription_id == provider_id)
        ).one()
        sandbox.quantity = 11
        session.commit()
    with app.app_context(), scoping.bypass("test: the nightly run"):
        reconcile.reconcile(trigger="test")

    sign_in(page, world.users["ops_admin"].email)
    page.get_by_role("link", name="Reconciliation").first.click()
    rows = page.locator("#drifts tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Licence quantity differs")
    expect(rows.first).to_contain_text("Alpha Partners Ltd")
    rows.first.get_by_role("link", name="Aardvark Farms").click()
    # The button asks through portal.js, loaded at the end of the page: click once the page (its scripts) has loaded,
    # not as soon as the button is parsed.
    page.wait_for_url("**/reconciliation/?customer=*")
    page.wait_for_load_state("load")

    questions = []
    page.on("dialog", lambda dialog: (questions.append(dialog.message), dialog.accept()))
    page.get_by_role("button", name="Repair: match Microsoft").click()
    expect(page.locator(".alert-success")).to_contain_text("1 difference(s) repaired to match Microsoft")
    assert questions and "Aardvark Farms" in questions[0]
    expect(page.locator("#drifts")).to_contain_text("No differences with Microsoft")
    with unscoped() as session:
        assert session.get(Subscription, sub_id).quantity == 11

"""Screenshots of the main screens of both portals on the demo data (issue 15, item 8), for the README.

`make screenshots` runs this module with ``SCREENSHOT_DIR=docs/screenshots``; in the normal run the pictures go to
pytest's temporary directory, so `make test` never rewrites docs/. Either way each screen must have loaded: it
answered 200 and its heading is visible before its picture is taken."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import select

from app import clock
from app.extensions import db
from app.models.billing import Invoice
from app.services import billing
from security import scoping
from tests.e2e import screens

try:
    from playwright.sync_api import expect
except ImportError:  # the ``browser`` fixture skips these tests (or fails them under REQUIRE_E2E=1)
    expect = None

SIMON = "simon@demoreseller.co.nz"  # Demo Reseller Ltd's CSP Admin
WIDE = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

# (file, screen, path, heading): paths as in tests/e2e/screens.py; {invoice}: Contoso NZ's draft invoice.
PARTNER = [
    ("partner-home", "Partner portal home", "/", "Welcome, Simon Tabrum"),
    ("accounts-list", "Accounts ▸ List all", "/accountview/list/", None),
    ("account-users", "Enet Ltd ▸ Users", "/accounts/{enet}/users", "Enet Ltd"),
    ("microsoft-tenant", "Enet Ltd ▸ Microsoft tenant", "/accounts/{enet}/products/microsoft-tenant", "Enet Ltd"),
    ("invoice", "An invoice", "/billing/invoices/{invoice}", None),
    ("event-log", "Event Log", "/eventview/list/", None),
]
CUSTOMER = [
    ("customer-dashboard", "Customer portal dashboard", "/portal/{contoso}/", None),
    ("microsoft-csp", "Microsoft CSP", "/portal/{contoso}/services/microsoft-csp", None),
    ("subscription", "A subscription", "/portal/{contoso}/services/microsoft-csp/subscriptions/{subscription}", None),
]


@pytest.fixture
def shots(tmp_path) -> Path:
    """Where the pictures go: $SCREENSHOT_DIR (docs/screenshots for `make screenshots`), else a temporary directory."""
    folder = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _demo_with_an_invoice(app) -> dict[str, int]:
    """The demo data, and this month's draft invoices (the billing run): Contoso NZ's from Demo Reseller Ltd."""
    demo = screens.seed(app)
    with app.app_context(), scoping.bypass("test: screenshots' invoice"):
        billing.run(clock.today().replace(day=1))
        db.session.commit()
        invoice = db.session.scalars(
            select(Invoice.id).where(
                Invoice.buyer_id == demo.ids["contoso"], Invoice.issuer_id == demo.ids["demo_reseller"]
            )
        ).first()
    assert invoice is not None, "the billing run drafted no invoice for Contoso NZ"
    return {**demo.ids, "invoice": invoice}


def _shoot(page, folder: Path, name: str, screen: str, url: str | None, heading: str | None, settle: bool = False):
    """Open the screen (unless already there), check it loaded, and save its picture as ``name``.png."""
    if url is not None:
        screens.visit(page, screen, url, settle=settle)
    headings = page.locator(":is(h1, h2, h3, h4):visible")
    visible = headings.filter(has_text=heading) if heading else headings
    expect(visible.first).to_be_visible()
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    assert path.stat().st_size > 5_000, f"{screen}: an empty picture"
    return path


def test_screenshots_of_the_main_screens(app, page, sign_in, shots):
    ids = _demo_with_an_invoice(app)
    taken = []
    page.set_viewport_size(WIDE)
    sign_in(page, SIMON)
    for name, screen, path, heading in PARTNER:
        taken.append(_shoot(page, shots, name, screen, path.format(**ids), heading))
    page.set_viewport_size(PHONE)
    taken.append(_shoot(page, shots, "phone-partner-home", "Partner portal home at 390 px", "/", None))

    page.context.clear_cookies()
    page.set_viewport_size(WIDE)
    sign_in(page, screens.CUSTOMER_ADMIN)
    _place_widgets(page, ids["contoso"])
    for name, screen, path, heading in CUSTOMER:
        taken.append(_shoot(page, shots, name, screen, path.format(**ids), heading, settle=name.endswith("dashboard")))
    taken.append(_order_review(page, shots, ids))
    page.set_viewport_size(PHONE)
    url = f"/portal/{ids['contoso']}/"
    taken.append(_shoot(page, shots, "phone-customer-dashboard", "Dashboard at 390 px", url, None, settle=True))
    assert len({p.name for p in taken}) == len(PARTNER) + len(CUSTOMER) + 3


def _place_widgets(page, customer_id: int) -> None:
    """The dashboard as a customer would set it up: its widgets added (the Widgets button's form posts)."""
    screens.visit(page, "Dashboard", f"/portal/{customer_id}/")
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    for widget in ("licences", "spend", "renewals", "usage_chart", "users", "activity"):
        added = page.request.post(
            f"/portal/{customer_id}/widgets", form={"csrf_token": token, "widget": widget}, max_redirects=0
        )
        assert added.status == 302, f"adding the {widget} widget answered {added.status}"


def _order_review(page, folder: Path, ids: dict[str, int]) -> Path:
    """Add a subscription ▸ Review order: 5 licences of Microsoft 365 Business Basic, 1 year, billed monthly."""
    screens.visit(page, "Add a subscription", f"/portal/{ids['contoso']}/services/microsoft-csp/orders/new")
    option = page.locator("#sku option", has_text="Microsoft 365 Business Basic").first
    page.get_by_label("Product").select_option(label=option.evaluate("o => o.parentElement.label"))
    page.get_by_label("SKU").select_option(value=option.get_attribute("value"))
    page.get_by_label("Term").select_option(label="1 year")
    page.get_by_label("Billing frequency").select_option(label="Monthly")
    page.get_by_label("Licences").fill("5")
    page.get_by_role("button", name="Review order").click()
    expect(page.locator('[data-test="review-order"]')).to_be_visible()
    return _shoot(page, folder, "order-review", "Review order", None, None)

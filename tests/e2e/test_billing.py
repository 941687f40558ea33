"""Invoices in a real browser (issue 14): a reseller opens an invoice from its Billing tab, prints it (only the invoice
prints: no menus, no buttons; the lines table on the page), downloads its .xlsx, and issues it."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import openpyxl
import pytest
import time_machine
from sqlalchemy import select

from app.extensions import db
from app.models.billing import Invoice
from app.services import billing
from security import scoping
from tests import factories
from tests.conftest import unscoped

try:
    from playwright.sync_api import expect
except ImportError:  # the ``browser`` fixture skips these tests (or fails them under REQUIRE_E2E=1)
    expect = None

MONTH = dt.date(2026, 11, 1)


@pytest.fixture
def billed(app):
    """The test world billed for November 2026 (built then, so its charges fall in that month)."""
    with (
        time_machine.travel(dt.datetime(2026, 11, 10, 1, 0, tzinfo=dt.UTC), tick=False),
        app.app_context(),
        scoping.bypass("test world"),
    ):
        world = factories.build_world()
        billing.run(MONTH)
        world.invoice_id = db.session.scalars(
            select(Invoice.id).where(
                Invoice.issuer_id == world.accounts["reseller_a"].id,
                Invoice.buyer_id == world.accounts["customer_a"].id,
            )
        ).one()
    return world


def test_a_reseller_prints_downloads_and_issues_an_invoice(page, sign_in, billed, tmp_path):
    invoice_id = billed.invoice_id
    sign_in(page, billed.users["reseller_a_admin"].email)
    page.goto(f"/accounts/{billed.accounts['reseller_a'].id}/details")
    page.locator(".account-tabs").get_by_role("link", name="Billing").click()
    issued = page.locator('[data-panel="issued"]')
    expect(issued).to_contain_text("Aardvark Farms")
    issued.locator(f'tr[data-invoice="{invoice_id}"] a').click()
    lines = page.locator('[data-test="invoice-lines"]')
    expect(lines).to_contain_text("1 year, billed monthly")
    expect(page.locator(".navbar").first).to_be_visible()

    # Printed: the menus, tabs and buttons are gone; the invoice and its lines stay, within the page's width.
    page.emulate_media(media="print")
    expect(page.locator(".navbar").first).to_be_hidden()
    expect(page.locator('[data-test="invoice-actions"]')).to_be_hidden()
    expect(page.get_by_role("button", name="Issue")).to_be_hidden()
    expect(lines).to_be_visible()
    expect(page.locator('[data-test="issuer"]')).to_contain_text("Alpha Partners Ltd")
    expect(page.locator('[data-test="total"]')).to_be_visible()
    width = page.evaluate("document.documentElement.clientWidth")
    box = lines.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width + 1
    assert page.pdf(format="A4", landscape=True)[:4] == b"%PDF"
    page.emulate_media(media="screen")
    expect(page.locator(".navbar").first).to_be_visible()

    # The .xlsx: the lines, money as numbers.
    with page.expect_download() as download:
        page.get_by_role("link", name="Download .xlsx").click()
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    sheet = openpyxl.load_workbook(path).active
    rows = [[cell.value for cell in row] for row in sheet.iter_rows()]
    header = next(i for i, row in enumerate(rows) if row[0] == "Description")
    amount = rows[header].index("Amount")
    with unscoped() as session:
        expected = [line.amount for line in session.get(Invoice, invoice_id).lines]
    assert [Decimal(str(row[amount])) for row in rows[header + 1 : header + 1 + len(expected)]] == expected

    # Issue (after the confirmation): it gets its number and loses the button.
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Issue").click()
    expect(page.locator(".alert-success")).to_contain_text("Issued")
    expect(page.locator('[data-test="number"]')).not_to_have_text("Draft")
    expect(page.get_by_role("button", name="Issue")).to_have_count(0)
    with unscoped() as session:
        assert session.get(Invoice, invoice_id).status == "issued"

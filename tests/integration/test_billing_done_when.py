"""Issue 14's "Done when" for billing, on the demo data: seeded on 2 December 2026 at 9:00 AM in Auckland, the run for
November 2026 (`flask portal billing run --month 2026-11`) drafts Demo Reseller Ltd's invoice from Mycloudstore and
Enet Ltd's and Contoso NZ's invoices from Demo Reseller Ltd — Contoso's mid-month increase prorated by the day to its
charge cycle's end, GST on each invoice's subtotal — and the same for Other Reseller Ltd and Rival Corp.

The expected figures are worked out here from the demo's own subscriptions and seat batch, by Microsoft's rule: unit
price × days ÷ days in the charge cycle, truncated to the cent, × seats."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

import time_machine
from sqlalchemy import select

from app.models.accounts import Account
from app.models.billing import Invoice
from app.models.catalog import Product
from app.models.subscriptions import SeatBatch, Subscription
from app.services.subscriptions import add_months
from tests.conftest import unscoped

D = Decimal
PASSWORD = "demo-password-for-tests"
SEEDED = dt.datetime(2026, 12, 1, 20, 0, tzinfo=dt.UTC)  # 2 December 2026, 9:00 AM in Auckland
NOVEMBER = dt.date(2026, 11, 1)


def prorate(price: Decimal, days: int, cycle_days: int, seats: int) -> Decimal:
    """The rule: price × days ÷ cycle days, truncated to the cent, × seats."""
    return (D(price) * days / cycle_days).quantize(D("0.01"), rounding=ROUND_DOWN) * seats


def gst(subtotal: Decimal) -> Decimal:
    return (subtotal * D("0.15")).quantize(D("0.01"), rounding=ROUND_HALF_UP)


def _cycle(term_started_on: dt.date, day: dt.date) -> tuple[dt.date, dt.date]:
    """The monthly charge cycle holding ``day``: from the term's day of the month to the day before the next."""
    k = (day.year - term_started_on.year) * 12 + day.month - term_started_on.month
    start = add_months(term_started_on, k)
    if start > day:
        k -= 1
        start = add_months(term_started_on, k)
    return start, add_months(term_started_on, k + 1)


def _lines(invoice: Invoice) -> list[tuple]:
    return [
        (line.description, line.charge_type, line.charge_start, line.charge_end, line.days) for line in invoice.lines
    ]


def test_november_2026_on_the_demo(app):
    with time_machine.travel(SEEDED, tick=False):
        seeded = app.test_cli_runner().invoke(args=["portal", "seed-demo", "--password", PASSWORD])
        assert seeded.exit_code == 0, seeded.output
        ran = app.test_cli_runner().invoke(args=["portal", "billing", "run", "--month", "2026-11"])
        assert ran.exit_code == 0, ran.output
        assert "November 2026: 5 draft invoices" in ran.output

    with unscoped() as session:
        invoices = {
            (i.issuer.name, i.buyer.name): i for i in session.scalars(select(Invoice).where(Invoice.month == NOVEMBER))
        }
        assert set(invoices) == {
            ("Mycloudstore", "Demo Reseller Ltd"),
            ("Demo Reseller Ltd", "Enet Ltd"),
            ("Demo Reseller Ltd", "Contoso NZ"),
            ("Mycloudstore", "Other Reseller Ltd"),
            ("Other Reseller Ltd", "Rival Corp"),
        }
        for invoice in invoices.values():
            amounts = [line.amount for line in invoice.lines]
            assert all(type(a) is Decimal for a in amounts)
            assert invoice.status == "draft" and invoice.subtotal == sum(amounts, D("0"))
            assert invoice.tax == gst(invoice.subtotal) and invoice.total == invoice.subtotal + invoice.tax
            operator_side = invoice.issuer.name == "Mycloudstore"
            assert all((line.ms_amount is not None) == operator_side for line in invoice.lines)

        # Contoso's Business Standard (1 year, billed monthly): 10 seats bought, 2 added 48 hours before the seeding.
        contoso = session.scalars(select(Account).where(Account.name == "Contoso NZ")).one()
        standard = session.scalars(
            select(Subscription)
            .join(Product)
            .where(Subscription.account_id == contoso.id, Product.name == "Microsoft 365 Business Standard")
        ).one()
        increase = session.scalars(
            select(SeatBatch).where(SeatBatch.subscription_id == standard.id, SeatBatch.kind == "increase")
        ).one()
        # The batch is dated 20:00 UTC on 29 November — 9:00 AM on 30 November in Auckland: a 29 November charge.
        added_on = increase.added_at.date()
        local = increase.added_at.replace(tzinfo=dt.UTC).astimezone(ZoneInfo("Pacific/Auckland")).date()
        assert (added_on, local) == (dt.date(2026, 11, 29), dt.date(2026, 11, 30))
        cycle_start, next_cycle = _cycle(standard.term_started_on, added_on)
        assert (standard.term_started_on, cycle_start, next_cycle) == (
            dt.date(2026, 1, 16),
            dt.date(2026, 11, 16),
            dt.date(2026, 12, 16),
        )
        days, cycle_days = (next_cycle - added_on).days, (next_cycle - cycle_start).days
        assert (days, cycle_days, increase.quantity) == (17, 30, 2)  # 29 November – 15 December of 16 Nov – 15 Dec
        sell = prorate(standard.unit_price, days, cycle_days, increase.quantity)
        buy = prorate(standard.unit_cost, days, cycle_days, increase.quantity)
        # 20.80 × 17/30 = 11.7866… → 11.78 × 2 = 23.56;  its buy price 17.68 × 17/30 = 10.0186… → 10.01 × 2 = 20.02
        assert (standard.unit_price, sell, standard.unit_cost, buy) == (D("20.80"), D("23.56"), D("17.68"), D("20.02"))

        to_contoso = invoices[("Demo Reseller Ltd", "Contoso NZ")]
        assert _lines(to_contoso) == [
            ("Microsoft 365 Business Standard — Monthly charge", "cycleCharge", cycle_start, dt.date(2026, 12, 15), 30),
            ("Microsoft 365 Business Standard — Seats added", "addQuantity", added_on, dt.date(2026, 12, 15), days),
            # The 1-month Teams Essentials term from 22 November: 22 November – 21 December.
            ("Microsoft Teams Essentials — New purchase", "new", dt.date(2026, 11, 22), dt.date(2026, 12, 21), 30),
        ]
        added = to_contoso.lines[1]
        assert (added.quantity, added.cycle_days, added.unit_price, added.amount) == (2, 30, D("20.80"), sell)
        assert added.effective_unit_price == D("11.786666")
        # 10 × 20.80 = 208.00, + 23.56, + 5 × 9.60 = 48.00: 279.56; GST 279.56 × 0.15 = 41.934 → 41.93; 321.49
        assert [line.amount for line in to_contoso.lines] == [D("208.00"), D("23.56"), D("48.00")]
        assert (to_contoso.subtotal, to_contoso.tax, to_contoso.total) == (D("279.56"), D("41.93"), D("321.49"))

        to_enet = invoices[("Demo Reseller Ltd", "Enet Ltd")]
        # Business Premium 1 × 17.30 from 14 November; Exchange 19 × 5.50 = 104.50 from 11 November: 121.80;
        # GST 18.27 (121.80 × 0.15 = 18.27); 140.07
        assert [(line.charge_type, line.charge_start, line.quantity, line.amount) for line in to_enet.lines] == [
            ("cycleCharge", dt.date(2026, 11, 14), 1, D("17.30")),
            ("cycleCharge", dt.date(2026, 11, 11), 19, D("104.50")),
        ]
        assert (to_enet.subtotal, to_enet.tax, to_enet.total) == (D("121.80"), D("18.27"), D("140.07"))

        to_demo = invoices[("Mycloudstore", "Demo Reseller Ltd")]
        # Both customers' charges at Demo Reseller's buy prices: 14.70 + 19 × 4.68 = 88.92 + 10 × 17.68 = 176.80
        # + 20.02 + 5 × 8.16 = 40.80: 341.24; GST 341.24 × 0.15 = 51.186 → 51.19; 392.43
        assert [(line.description.split(":")[0], line.charge_type, line.amount) for line in to_demo.lines] == [
            ("Enet Ltd", "cycleCharge", D("14.70")),
            ("Enet Ltd", "cycleCharge", D("88.92")),
            ("Contoso NZ", "cycleCharge", D("176.80")),
            ("Contoso NZ", "addQuantity", buy),
            ("Contoso NZ", "new", D("40.80")),
        ]
        assert (to_demo.subtotal, to_demo.tax, to_demo.total) == (D("341.24"), D("51.19"), D("392.43"))
        assert to_demo.lines[3].days == days and to_demo.lines[3].ms_amount == prorate(
            standard.ms_unit_cost, days, cycle_days, 2
        )


def test_the_whole_done_when_from_the_command_line(app, tmp_path):
    """Run, issue, export for Xero, reconcile with the sandbox (0 differences), then change one price in the
    sandbox's file and reconcile that file: exactly 1 difference."""
    import csv
    import gzip
    import io

    from app.csp import get_provider
    from tests.fake_partner_center_billing import json_line

    runner = app.test_cli_runner()
    with time_machine.travel(SEEDED, tick=False):
        assert runner.invoke(args=["portal", "seed-demo", "--password", PASSWORD]).exit_code == 0
        assert "5 draft invoices" in runner.invoke(args=["portal", "billing", "run", "--month", "2026-11"]).output
        assert "Issued 5" in runner.invoke(args=["portal", "billing", "issue", "--month", "2026-11"]).output
        with unscoped() as session:
            reseller_id = session.scalars(select(Account.id).where(Account.name == "Demo Reseller Ltd")).one()
            issued = session.scalars(select(Invoice).where(Invoice.issuer_id == reseller_id)).all()
            subtotal = sum(invoice.subtotal for invoice in issued)
        exported = runner.invoke(
            args=[
                "portal",
                "billing",
                "export",
                "--month",
                "2026-11",
                "--issuer",
                str(reseller_id),
                "--format",
                "xero",
                "--out",
                str(tmp_path),
            ]
        )
        assert exported.exit_code == 0, exported.output
        (path,) = tmp_path.glob("xero-*.csv")
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
        assert list(rows[0])[:3] == ["*ContactName", "EmailAddress", "POAddressLine1"]
        assert {
            "*InvoiceNumber",
            "*InvoiceDate",
            "*DueDate",
            "*Quantity",
            "*UnitAmount",
            "*AccountCode",
            "*TaxType",
        } <= set(rows[0])
        assert sum(D(r["*Quantity"]) * D(r["*UnitAmount"]) for r in rows) == subtotal

        clean = runner.invoke(args=["portal", "billing", "reconcile", "--month", "2026-11"])
        assert clean.exit_code == 0 and "0 difference(s)" in clean.output, clean.output
        with app.app_context():
            lines = list(get_provider().billed_reconciliation_lines("G2026110001"))
        first = dict(lines[0])
        first["unitPrice"] = first["effectiveUnitPrice"] = first["unitPrice"] + D("1")
        first["subtotal"] = first["unitPrice"].quantize(D("0.01")) * first["billableQuantity"]
        changed = tmp_path / "G2026110001.jsonl.gz"
        changed.write_bytes(gzip.compress("".join(json_line(x) + "\n" for x in [first, *lines[1:]]).encode()))
        one = runner.invoke(args=["portal", "billing", "reconcile", "--month", "2026-11", "--file", str(changed)])
        assert one.exit_code == 0 and "1 difference(s)" in one.output and "Price differs: 1" in one.output, one.output

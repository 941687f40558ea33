"""The monthly billing job (issue 14): from the 2nd of a month in New Zealand the maintenance loop drafts last
month's invoices once; the CLI's run and issue print what they did and refuse a bad month."""

from __future__ import annotations

import datetime as dt

import time_machine
from sqlalchemy import func, select

from app.models.accounts import Account
from app.models.billing import Invoice
from app.models.events import Event
from app.services import billing
from tests.conftest import unscoped

PASSWORD = "demo-password-for-tests"
NZ = dt.timezone(dt.timedelta(hours=13))  # New Zealand daylight time, in force in December


def _at(moment: dt.datetime):
    return time_machine.travel(moment, tick=False)


def _invoices(session) -> int:
    return session.scalar(select(func.count(Invoice.id)))


def test_last_month_is_drafted_once_from_the_second(app):
    with _at(dt.datetime(2026, 11, 30, 9, tzinfo=NZ)):
        result = app.test_cli_runner().invoke(args=["portal", "seed-demo", "--password", PASSWORD])
        assert result.exit_code == 0, result.output
    # 1 December, 23:59 in Auckland: not yet (November's last UTC day ended only 11 hours ago).
    with _at(dt.datetime(2026, 12, 1, 23, 59, tzinfo=NZ)), unscoped() as session:
        assert billing.run_if_due() == 0
        assert _invoices(session) == 0
    # 2 December, 00:01: November is drafted — Demo Reseller's two customers, Other Reseller's one, and each
    # reseller's invoice from the operator.
    with _at(dt.datetime(2026, 12, 2, 0, 1, tzinfo=NZ)), unscoped() as session:
        assert billing.run_if_due() == 5
        assert _invoices(session) == 5
        assert {i.month for i in session.scalars(select(Invoice))} == {dt.date(2026, 11, 1)}
        marks = session.scalars(select(Event).where(Event.action == "billing.month")).all()
        assert [(m.target_type, m.target_id) for m in marks] == [("Month", "2026-11")]
    # Later that day and the next: nothing more, the drafts stay as they are.
    for hour in (1, 30):
        with _at(dt.datetime(2026, 12, 2, 0, 1, tzinfo=NZ) + dt.timedelta(hours=hour)), unscoped() as session:
            ids = sorted(session.scalars(select(Invoice.id)))
            assert billing.run_if_due() == 0
            assert sorted(session.scalars(select(Invoice.id))) == ids


def test_the_cli_runs_issues_and_refuses_a_bad_month(app):
    runner = app.test_cli_runner()
    with _at(dt.datetime(2026, 11, 30, 9, tzinfo=NZ)):
        assert runner.invoke(args=["portal", "seed-demo", "--password", PASSWORD]).exit_code == 0
    with _at(dt.datetime(2026, 12, 2, 9, tzinfo=NZ)):
        bad = runner.invoke(args=["portal", "billing", "run", "--month", "2026-13"])
        assert bad.exit_code == 2 and "YYYY-MM" in bad.output
        ran = runner.invoke(args=["portal", "billing", "run", "--month", "2026-11"])
        assert ran.exit_code == 0, ran.output
        assert "November 2026: 5 draft invoices" in ran.output
        again = runner.invoke(args=["portal", "billing", "run", "--month", "2026-11"])
        assert "November 2026: 5 draft invoices" in again.output
        issued = runner.invoke(args=["portal", "billing", "issue", "--month", "2026-11"])
        assert issued.exit_code == 0 and "Issued 5 invoice(s) for November 2026." in issued.output
        after = runner.invoke(args=["portal", "billing", "run", "--month", "2026-11"])
        assert "5 already issued (left as they are)" in after.output
    with unscoped() as session:
        numbers = sorted(session.scalars(select(Invoice.number)))
        assert numbers == ["DRL-000001", "DRL-000002", "MCS-000001", "MCS-000002", "ORL-000001"]
        assert {i.issue_date for i in session.scalars(select(Invoice))} == {dt.date(2026, 12, 2)}
        assert {i.due_date for i in session.scalars(select(Invoice))} == {dt.date(2026, 12, 22)}


def test_generated_customers_have_a_ledger_that_bills_and_reconciles_with_the_sandbox(app):
    """``seed-demo --scale N`` inserts subscriptions in bulk (no ORM flush): it writes their ledger rows itself, the
    sandbox's twins too, so the run bills them and Microsoft's side agrees to the cent."""
    from app.models.billing import ChargeEvent, InvoiceLine
    from app.models.csp import SandboxChargeEvent
    from app.models.subscriptions import Subscription

    runner = app.test_cli_runner()
    with _at(dt.datetime(2026, 12, 2, 9, tzinfo=NZ)):
        seeded = runner.invoke(args=["portal", "seed-demo", "--password", PASSWORD, "--scale", "40"])
        assert seeded.exit_code == 0, seeded.output
        with unscoped() as session:
            subs = session.scalar(select(func.count(Subscription.id)))
            starts = session.scalar(select(func.count(ChargeEvent.id)).where(ChargeEvent.kind.in_(("new", "renew"))))
            assert starts == subs  # one term start a subscription, bulk-inserted or not
            sandbox = session.scalar(select(func.count(SandboxChargeEvent.id)))
            assert sandbox >= session.scalar(
                select(func.count(Subscription.id)).where(Subscription.provider_subscription_id.is_not(None))
            )
        ran = runner.invoke(args=["portal", "billing", "run", "--month", "2026-11"])
        assert ran.exit_code == 0, ran.output
        with unscoped() as session:
            assert _invoices(session) > 5  # the demo's five and the generated customers'
            assert session.scalar(select(func.count(InvoiceLine.id)).where(InvoiceLine.charge_type == "addQuantity"))
        checked = runner.invoke(args=["portal", "billing", "reconcile", "--month", "2026-11"])
        assert checked.exit_code == 0 and " 0 difference(s)" in checked.output, checked.output


def test_a_draft_left_incomplete_by_a_killed_run_is_not_issued(app):
    """A run killed half-way leaves the operator's draft to a reseller with lines but no totals yet: issuing it
    would number and freeze a wrong invoice. It is refused (the others are issued) until the month is run again."""
    from sqlalchemy import update

    runner = app.test_cli_runner()
    with _at(dt.datetime(2026, 11, 30, 9, tzinfo=NZ)):
        assert runner.invoke(args=["portal", "seed-demo", "--password", PASSWORD]).exit_code == 0
    with _at(dt.datetime(2026, 12, 2, 9, tzinfo=NZ)):
        assert runner.invoke(args=["portal", "billing", "run", "--month", "2026-11"]).exit_code == 0
        with unscoped() as session:
            reseller_id = session.scalars(select(Account.id).where(Account.name == "Demo Reseller Ltd")).one()
            draft_id = session.scalars(select(Invoice.id).where(Invoice.buyer_id == reseller_id)).one()
            session.execute(update(Invoice).where(Invoice.id == draft_id).values(subtotal=0, tax=0, total=0))
            session.commit()
        issued = runner.invoke(args=["portal", "billing", "issue", "--month", "2026-11"])
        assert issued.exit_code == 1
        assert "Not issued: Draft invoice to Demo Reseller Ltd for November 2026 is incomplete" in issued.output
        assert "Issued 4 invoice(s)" in issued.output
        with unscoped() as session:
            assert session.get(Invoice, draft_id).status == "draft"
        # Run again: the draft is whole, and issues.
        assert runner.invoke(args=["portal", "billing", "run", "--month", "2026-11"]).exit_code == 0
        again = runner.invoke(args=["portal", "billing", "issue", "--month", "2026-11"])
        assert again.exit_code == 0 and "Issued 1 invoice(s)" in again.output, again.output

"""The portal's calendar is New Zealand's: "today" comes from app/clock.py in Pacific/Auckland, so at 11:30 UTC (already
tomorrow in Auckland) renewals, export file names, the usage chart's month ends and the
tenant form's date are New Zealand dates — and so across a daylight-saving change."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import time_machine
from sqlalchemy import select

from app import clock
from app.models.csp import SandboxSeatBatch
from app.models.subscriptions import SeatBatch, Subscription, UsagePoint
from app.services import landing, licensing, widgets
from tests.conftest import csrf_token, unscoped

# 30 November 2026 is summer (NZDT, UTC+13): 10:30 UTC is 23:30 on the 30th in Auckland, 11:30 UTC 00:30 on 1 December.
BEFORE_NZ_MIDNIGHT = dt.datetime(2026, 11, 30, 10, 30, tzinfo=dt.UTC)
AFTER_NZ_MIDNIGHT = dt.datetime(2026, 11, 30, 11, 30, tzinfo=dt.UTC)
# Winter (NZST, UTC+12): 11:30 UTC is 23:30 in Auckland, the same date; 12:30 UTC is the next day.
WINTER_BEFORE, WINTER_AFTER = (
    dt.datetime(2026, 6, 15, 11, 30, tzinfo=dt.UTC),
    dt.datetime(2026, 6, 15, 12, 30, tzinfo=dt.UTC),
)


@pytest.mark.parametrize(
    ("moment", "nz_date"),
    [
        (BEFORE_NZ_MIDNIGHT, dt.date(2026, 11, 30)),
        (AFTER_NZ_MIDNIGHT, dt.date(2026, 12, 1)),
        (WINTER_BEFORE, dt.date(2026, 6, 15)),
        (WINTER_AFTER, dt.date(2026, 6, 16)),
    ],
)
def test_today_is_new_zealands(app, moment, nz_date):
    with time_machine.travel(moment, tick=False), app.app_context():
        assert clock.today() == nz_date
        assert clock.now().tzinfo is not None and clock.now().date() == nz_date
        assert clock.utcnow() == moment.replace(tzinfo=None)


def test_a_new_zealand_day_starts_at_the_right_utc_moment_across_daylight_saving(app):
    with app.app_context():
        # Daylight saving starts on 27 September 2026 at 02:00 NZST (clocks go to 03:00 NZDT).
        assert clock.start_of_day_utc(dt.date(2026, 9, 27)) == dt.datetime(2026, 9, 26, 12, 0)
        assert clock.start_of_day_utc(dt.date(2026, 9, 28)) == dt.datetime(2026, 9, 27, 11, 0)
        # It ends on 5 April 2026 at 03:00 NZDT (back to 02:00 NZST).
        assert clock.start_of_day_utc(dt.date(2026, 4, 5)) == dt.datetime(2026, 4, 4, 11, 0)
        assert clock.start_of_day_utc(dt.date(2026, 4, 6)) == dt.datetime(2026, 4, 5, 12, 0)


def _set_dates(world, key, **values):
    with unscoped() as session:
        sub = session.get(Subscription, world.rows["a"][key])
        for name, value in values.items():
            setattr(sub, name, value)
        session.commit()


def test_renewals_nearing_are_counted_from_new_zealands_today(app, world):
    # At 11:30 UTC on 30 November it is 1 December in Auckland: a renewal on 30 November has passed, one on
    # 31 December is exactly 30 days away.
    _set_dates(world, "subscription", renew_on=dt.date(2026, 11, 30))
    _set_dates(world, "subscription2", renew_on=dt.date(2026, 12, 31))
    with time_machine.travel(AFTER_NZ_MIDNIGHT, tick=False), app.app_context(), unscoped():
        rows = landing.subscriptions_nearing_renewal(30).rows
        renewing = {s.id for s in rows}
        assert world.rows["a"]["subscription2"] in renewing
        assert world.rows["a"]["subscription"] not in renewing
        customer = world.accounts["customer_a"].id
        assert {s.id for s in widgets.renewals(customer, 30)} & {world.rows["a"]["subscription"]} == set()


def test_the_decrease_window_is_168_hours_whatever_new_zealands_date(app, world):
    # Each seat batch has its own window (app/services/windows.py): 168 real hours, not a New Zealand date. Bought at
    # 11:30 UTC on 23 November (00:30 on the 24th in Auckland): reducible until 11:30 UTC on the 30th — 00:30 on
    # 1 December in Auckland, already "tomorrow" there at the moment it closes.
    bought = dt.datetime(2026, 11, 23, 11, 30)
    with unscoped() as session:
        sub = session.get(Subscription, world.rows["a"]["subscription"])
        [batch] = session.scalars(select(SeatBatch).where(SeatBatch.subscription_id == sub.id)).all()
        batch.added_at, batch.refundable_until, batch.refundable = bought, bought + dt.timedelta(hours=168), 1
        for seats in session.scalars(
            select(SandboxSeatBatch).where(SandboxSeatBatch.subscription_id == sub.provider_subscription_id)
        ):
            seats.added_at, seats.allowed_until, seats.quantity = bought, bought + dt.timedelta(hours=168), 1
        session.commit()
        quantity = sub.quantity
    with time_machine.travel(AFTER_NZ_MIDNIGHT + dt.timedelta(minutes=1), tick=False), unscoped() as session:
        sub = session.get(Subscription, world.rows["a"]["subscription"])
        with pytest.raises(licensing.LicenceError, match="No licences .* can be given back now"):
            licensing.change_quantity(sub, quantity - 1)
    with time_machine.travel(AFTER_NZ_MIDNIGHT - dt.timedelta(minutes=1), tick=False), unscoped() as session:
        sub = session.get(Subscription, world.rows["a"]["subscription"])
        licensing.change_quantity(sub, quantity - 1)  # 1 December in Auckland already, but not 168 hours yet
        session.commit()
        assert session.get(Subscription, world.rows["a"]["subscription"]).quantity == quantity - 1


def test_export_file_names_carry_new_zealands_date(app, world, reseller_a_admin_client):
    customer = world.accounts["customer_a"].id
    with time_machine.travel(AFTER_NZ_MIDNIGHT, tick=False):
        token = csrf_token(reseller_a_admin_client, f"/accounts/{customer}/products/csp-report")
        response = reseller_a_admin_client.post(
            f"/accounts/{customer}/reports/subscriptions.xlsx", data={"csrf_token": token}
        )
    assert response.status_code == 200
    assert response.headers["Content-Disposition"].endswith("aardvark-farms-subscriptions-2026-12-01.xlsx")


def test_the_usage_charts_months_end_at_new_zealand_midnight(app, world):
    sub_id = world.rows["a"]["subscription"]
    with unscoped() as session:
        sub = session.get(Subscription, sub_id)
        session.query(UsagePoint).filter(UsagePoint.subscription_id == sub_id).delete()
        for when, quantity in [
            (dt.datetime(2026, 10, 15, 0, 0), 4),
            (dt.datetime(2026, 11, 30, 10, 0), 6),  # 23:00 on 30 November in Auckland: November's
            (dt.datetime(2026, 11, 30, 11, 15), 9),  # 00:15 on 1 December in Auckland: December's
        ]:
            session.add(
                UsagePoint(
                    account_id=sub.account_id,
                    subscription_id=sub_id,
                    recorded_at=when,
                    quantity=quantity,
                    assigned=1,
                    unit_price=Decimal("9.00"),
                )
            )
        session.commit()
    with time_machine.travel(AFTER_NZ_MIDNIGHT, tick=False), unscoped() as session:
        ends = widgets.month_ends(3)
        assert ends == [dt.date(2026, 10, 31), dt.date(2026, 11, 30), dt.date(2026, 12, 1)]
        series = widgets.usage_series([world.accounts["customer_a"].id], months=3)
        assert series["months"] == ["Oct 2026", "Nov 2026", "Dec 2026"]
        name = session.scalar(select(Subscription).where(Subscription.id == sub_id)).product.name
        assert series["products"][name]["bought"] == [4, 6, 9]


def test_the_tenant_forms_agreement_date_is_new_zealands_today(app, world, reseller_a_admin_client):
    customer = world.accounts["customer_a2"].id
    with time_machine.travel(AFTER_NZ_MIDNIGHT, tick=False):
        page = reseller_a_admin_client.get(f"/accounts/{customer}/microsoft-tenant/new").text
    assert 'value="2026-12-01"' in page

"""The landing page: usage stats, recently created tenants and licences nearing renewal, all within scope."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from sqlalchemy import select

from app import clock
from app.models.accounts import Account
from app.models.catalog import Product
from app.models.subscriptions import M365User, Subscription
from tests import factories
from tests.conftest import unscoped


def _stat(page: str, name: str) -> str:
    return re.search(rf'data-stat="{name}">([^<]*)<', page).group(1)


def _expected(reseller_id: int | None) -> dict:
    """The figures computed here, independently of the app's queries."""
    with unscoped() as session:
        customers = [
            a
            for a in session.scalars(select(Account).where(Account.kind == "customer"))
            if reseller_id is None or a.parent_id == reseller_id
        ]
        ids = {c.id for c in customers}
        subs = [s for s in session.scalars(select(Subscription)) if s.account_id in ids and s.status == "active"]
        users = [u for u in session.scalars(select(M365User)) if u.account_id in ids]
        spend = sum((s.unit_price * s.quantity for s in subs), Decimal("0"))
        return {
            "customers": str(len(customers)),
            "users": str(len(users)),
            "licences": f"{sum(s.assigned for s in subs)}/{sum(s.quantity for s in subs)}",
            "spend": spend,
        }


@pytest.mark.parametrize(
    ("who", "reseller"), [("reseller_a_admin", "reseller_a"), ("reseller_b_admin", "reseller_b"), ("ops_admin", None)]
)
def test_usage_stats_are_the_numbers_in_scope(world, login, who, reseller):
    page = login(world.users[who].email).get("/").text
    expected = _expected(world.accounts[reseller].id if reseller else None)
    assert _stat(page, "customers") == expected["customers"]
    assert _stat(page, "users") == expected["users"]
    assert _stat(page, "licences") == expected["licences"]
    assert _stat(page, "spend") == f"${expected['spend']:,.2f}"


def test_monthly_spend_adds_exact_cents(world, reseller_a_admin_client):
    # 3 × $17.30 + 7 × $0.10 + 1 × $5.55 = $58.15: floats would drift; the page must show exact cents.
    with unscoped() as session:
        customer = session.get(Account, world.accounts["customer_a2"].id)
        for price, quantity in (("17.30", 3), ("0.10", 7), ("5.55", 1)):
            item = factories.product(f"Cents {price}", f"CENTS-{price}", price, "0.01")
            factories.subscription(customer, item, quantity)
        session.commit()
    expected = _expected(world.accounts["reseller_a"].id)["spend"]
    assert _stat(reseller_a_admin_client.get("/").text, "spend") == f"${expected:,.2f}"
    assert expected == Decimal("9.00") * 4 + Decimal("5.50") * 3 + Decimal("58.15")


def test_recently_created_tenants_are_the_newest_ten_in_scope(world, reseller_a_admin_client):
    with unscoped() as session:
        reseller = session.get(Account, world.accounts["reseller_a"].id)
        base = dt.datetime(2026, 1, 1)
        for i in range(12):
            session.add(
                Account(
                    kind="customer",
                    name=f"Newer Customer {i:02d}",
                    parent=reseller,
                    created_on=base + dt.timedelta(days=400 + i),
                )
            )
        session.commit()
    page = reseller_a_admin_client.get("/").text
    panel = page.split('data-test="recent-tenants"')[1].split("</table>")[0]
    names = re.findall(r">(Newer Customer \d\d|Aardvark Farms|Anchor Marine|Bluebird Bakery)</a>", panel)
    assert names == [f"Newer Customer {i:02d}" for i in range(11, 1, -1)]
    assert "/accounts/" in panel


@pytest.mark.parametrize(("days", "renews_in"), [(30, [10]), (60, [10, 45]), (90, [10, 45, 80])])
def test_renewal_window_switch(world, reseller_a_admin_client, days, renews_in):
    with unscoped() as session:
        customer = session.get(Account, world.accounts["customer_a2"].id)
        item = session.get(Product, world.rows["products"]["exchange"])
        for offset in (45, 80, 120):
            sub = factories.subscription(customer, item, 2, renew_in_days=offset)
            sub.auto_renew = offset != 45
        session.commit()
    page = reseller_a_admin_client.get(f"/?renewals={days}").text
    panel = page.split('data-test="renewals"')[1].split("</table>")[0]
    today = clock.today()
    shown = re.findall(r"<td>(\d\d/\d\d/\d{4})</td>", panel)
    assert shown == [(today + dt.timedelta(days=d)).strftime("%d/%m/%Y") for d in renews_in]
    assert f'aria-current="true">{days} days' in page
    assert "Aardvark Farms" in panel  # renews in 10 days (the world's first subscription)
    assert "Bluebird Bakery" not in panel  # reseller B's renews in 10 days too, but is not in scope
    if days >= 60:
        assert "Off" in panel  # the 45-day one does not auto-renew


def test_customer_users_land_in_their_customer_portal(world, customer_a_master_admin_client):
    response = customer_a_master_admin_client.get("/")
    assert response.status_code == 302
    assert response.location == f"/portal/{world.accounts['customer_a'].id}/"
    page = customer_a_master_admin_client.get(response.location).text
    assert 'data-test="account-name">Aardvark Farms<' in page and "usage-stats" not in page

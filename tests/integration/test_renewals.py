"""Renewals (issue 13): Change at renewal (schedule, show, clear), the last moment it is accepted, auto-renew off,
mid-term changes clearing it (at Microsoft too), ``flask portal renew`` renewing by the instructions at a re-quoted
price with a renewal seat batch (or expiring), idempotent, and reconciliation agreeing with the sandbox after it; the
Partner Center client's bodies; another reseller's 404 and the Orders capability."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import time_machine
from sqlalchemy import func, select

from app.csp.base import NextTermInstructions, new_correlation_id
from app.csp.partner_center import PartnerCenterProvider
from app.extensions import db
from app.models.accounts import Account
from app.models.catalog import Availability, PriceRule, Product
from app.models.csp import SandboxSeatBatch, SandboxSubscription, SandboxUser
from app.models.events import Event
from app.models.operations import ProviderOperation
from app.models.subscriptions import LicenceAssignment, SeatBatch, Subscription
from app.services import catalogue, licensing, pricing, reconcile, renewals
from app.services.licensing import LicenceError
from security import scoping
from tests import factories
from tests.conftest import csrf_token, unscoped

UTC = dt.UTC


def _portal(world, key="customer_a"):
    return f"/portal/{world.accounts[key].id}"


def _sub_path(world, key="subscription", customer="customer_a"):
    return f"{_portal(world, customer)}/services/microsoft-csp/subscriptions/{world.rows[customer[-1]][key]}"


@pytest.fixture
def monthly(app, world) -> int:
    """Business Basic also sold on a monthly term (dearer: Microsoft's ladder), the id of that availability."""
    with app.app_context(), scoping.bypass("test catalogue"):
        basic = db.session.get(Product, world.rows["products"]["basic"])
        offer = catalogue.ensure_availability(basic, "P1M", "monthly")
        catalogue.set_price(offer, Decimal("9.18"), Decimal("10.80"))
        db.session.commit()
        return offer.id


def _sandbox(session, sub: Subscription) -> SandboxSubscription:
    return session.scalars(
        select(SandboxSubscription).where(SandboxSubscription.subscription_id == sub.provider_subscription_id)
    ).one()


def _schedule(app, sub_id: int, availability_id: int, quantity: int) -> None:
    with app.app_context(), scoping.bypass("test: schedule"):
        sub = db.session.get(Subscription, sub_id)
        renewals.schedule(sub, db.session.get(Availability, availability_id), quantity)
        db.session.commit()


def _set_renew_on(app, sub_id: int, day: dt.date) -> None:
    """Both sides: the portal's renew date and the sandbox's term end."""
    with app.app_context(), scoping.bypass("test: renew date"):
        sub = db.session.get(Subscription, sub_id)
        sub.renew_on = day
        db.session.commit()
        from app.csp import get_provider

        get_provider().backdate(sub.provider_subscription_id, renew_on=day, auto_renew=sub.auto_renew, term=sub.term)


def _renew(app, *args: str):
    return app.test_cli_runner().invoke(args=["portal", "renew", *args])


def test_change_at_renewal_is_scheduled_shown_and_cleared(app, world, monthly, customer_a_master_admin_client):
    client, sub_id = customer_a_master_admin_client, world.rows["a"]["subscription"]
    page = client.get(_sub_path(world))
    assert page.status_code == 200 and 'data-test="renewal-form"' in page.text and "Accepted until" in page.text
    response = client.post(
        f"{_sub_path(world)}/renewal",
        data={
            "csrf_token": csrf_token(client),
            "product_id": str(world.rows["products"]["basic"]),
            "term": "P1M",
            "billing_frequency": "monthly",
            "quantity": "5",
        },
    )
    assert response.status_code == 302
    with unscoped() as session:
        sub = session.get(Subscription, sub_id)
        assert (sub.next_availability_id, sub.next_quantity) == (monthly, 5)
        at_microsoft = _sandbox(session, sub)
        assert (at_microsoft.next_offer_id, at_microsoft.next_term, at_microsoft.next_quantity) == (
            "TEST-BASIC",
            "P1M",
            5,
        )
        shown = (
            f"At renewal on {sub.renew_on:%d/%m/%Y}: Microsoft 365 Business Basic, 1 month billed monthly, 5 licences"
        )
        assert session.scalars(select(Event).where(Event.action == "subscription.renewal_scheduled")).one()
        operation = session.scalars(select(ProviderOperation).where(ProviderOperation.kind == renewals.SCHEDULE)).one()
        assert operation.state == "succeeded"
    page = client.get(_sub_path(world))
    assert shown in page.text and "This clears the change scheduled for renewal" in page.text
    listing = client.get(f"{_portal(world)}/services/microsoft-csp")
    assert (
        'data-test="scheduled-change"' in listing.text
        and "This clears the change scheduled for renewal" in listing.text
    )
    cleared = client.post(f"{_sub_path(world)}/renewal/clear", data={"csrf_token": csrf_token(client)})
    assert cleared.status_code == 302
    with unscoped() as session:
        sub = session.get(Subscription, sub_id)
        assert not sub.has_scheduled_change and _sandbox(session, sub).next_offer_id is None
        assert session.scalars(select(Event).where(Event.action == "subscription.renewal_cleared")).one()


def test_a_quantity_below_the_assigned_or_an_unsold_combination_is_refused_beside_the_field(
    world, monthly, customer_a_master_admin_client
):
    client = customer_a_master_admin_client
    form = {"product_id": str(world.rows["products"]["basic"]), "term": "P1M", "billing_frequency": "monthly"}
    below = client.post(f"{_sub_path(world)}/renewal", data={"csrf_token": csrf_token(client), **form, "quantity": "2"})
    assert below.status_code == 400 and "3 licences of Microsoft 365 Business Basic are assigned" in below.text
    unsold = client.post(
        f"{_sub_path(world)}/renewal",
        data={"csrf_token": csrf_token(client), **form, "term": "P3Y", "billing_frequency": "annual", "quantity": "4"},
    )
    assert unsold.status_code == 400 and 'data-error-for="product_id"' in unsold.text
    with unscoped() as session:
        assert not session.get(Subscription, world.rows["a"]["subscription"]).has_scheduled_change


@pytest.mark.parametrize(
    "moment, accepted",
    [
        ("2027-01-13T11:30:00Z", True),  # 00:30 on 14/01 in New Zealand: the day before the renewal, accepted
        ("2027-01-13T23:59:00Z", True),  # 12:59 PM on 14/01 NZ: a minute before the lock
        ("2027-01-14T00:00:00Z", False),  # 01:00 PM on 14/01 NZ: 24 hours before 00:00 UTC on 15/01
        ("2027-01-15T10:00:00Z", False),  # the renewal has started
    ],
)
def test_the_last_moment_a_change_for_renewal_is_accepted(app, world, monthly, moment, accepted):
    sub_id = world.rows["a"]["subscription"]
    _set_renew_on(app, sub_id, dt.date(2027, 1, 15))
    with time_machine.travel(moment, tick=False), app.app_context(), scoping.bypass("test"):
        sub = db.session.get(Subscription, sub_id)
        assert renewals.last_change_moment(sub) == dt.datetime(2027, 1, 14, 0, 0)
        if accepted:
            renewals.schedule(sub, db.session.get(Availability, monthly), 4)
            db.session.commit()
            assert sub.next_availability_id == monthly
        else:
            with pytest.raises(LicenceError, match="were accepted until 14/01/27 01:00 PM"):
                renewals.schedule(sub, db.session.get(Availability, monthly), 4)
            assert db.session.scalar(select(func.count(ProviderOperation.id))) == 0


def test_auto_renew_off_refuses_a_change_at_renewal(app, world, monthly, customer_a_master_admin_client):
    sub_id = world.rows["a"]["subscription"]
    with app.app_context(), scoping.bypass("test"):
        licensing.set_auto_renew(db.session.get(Subscription, sub_id), False)
        db.session.commit()
        with pytest.raises(LicenceError, match="Auto-renew of Microsoft 365 Business Basic is off"):
            renewals.schedule(db.session.get(Subscription, sub_id), db.session.get(Availability, monthly), 4)
    page = customer_a_master_admin_client.get(_sub_path(world))
    assert "only while auto-renew is on" in page.text and 'data-test="renewal-form"' not in page.text


@pytest.mark.parametrize("change", ["quantity", "auto_renew"])
def test_a_mid_term_change_clears_the_scheduled_change_here_and_at_microsoft(app, world, monthly, change):
    sub_id = world.rows["a"]["subscription"]
    _schedule(app, sub_id, monthly, 5)
    with app.app_context(), scoping.bypass("test"):
        sub = db.session.get(Subscription, sub_id)
        if change == "quantity":
            licensing.change_quantity(sub, sub.quantity + 1)
        else:
            licensing.set_auto_renew(sub, False)
        db.session.commit()
    with unscoped() as session:
        sub = session.get(Subscription, sub_id)
        assert not sub.has_scheduled_change
        assert _sandbox(session, sub).next_quantity is None  # Microsoft deletes it too
        assert session.scalars(select(Event).where(Event.action == "subscription.renewal_cleared")).one()


def test_no_licence_is_assigned_beyond_the_quantity_scheduled_for_renewal(app, world, monthly):
    sub_id = world.rows["a"]["subscription"]
    _schedule(app, sub_id, monthly, 3)  # 3 assigned, 4 bought: renews with 3
    with app.app_context(), scoping.bypass("test"):
        sub = db.session.get(Subscription, sub_id)
        extra = factories.m365_user(sub.account, "extra@aardvark.onmicrosoft.com")
        db.session.commit()
        with pytest.raises(LicenceError, match="renews on .* with 3 licences"):
            licensing.assign(sub, extra)


def _at(day: dt.date, hour: int) -> str:
    return dt.datetime.combine(day, dt.time(hour), tzinfo=UTC).isoformat()


def test_renew_applies_the_instructions_reprices_adds_a_renewal_batch_and_reconciles(app, world, monthly):
    sub_id = world.rows["a"]["subscription"]
    _schedule(app, sub_id, monthly, 5)
    with unscoped() as session:
        before = session.get(Subscription, sub_id)
        renew_on, unit_price = before.renew_on, before.unit_price
    assert unit_price == Decimal("9.00")
    # 00:30 on the renew date in New Zealand is still the day before in UTC: Microsoft has not started the renewal.
    with time_machine.travel(_at(renew_on - dt.timedelta(days=1), 11), tick=False):
        early = _renew(app)
    assert early.exit_code == 0 and "renewed 0, expired 0, waiting for Microsoft 2" in early.output  # A's and B's
    with unscoped() as session:
        assert session.get(Subscription, sub_id).renew_on == renew_on
    with time_machine.travel(_at(renew_on, 1), tick=False):
        dry = _renew(app, "--dry-run")
        assert "would renew as Microsoft 365 Business Basic, 1 month billed monthly, 5 licences" in dry.output
        with unscoped() as session:
            assert session.get(Subscription, sub_id).renew_on == renew_on  # a dry run changes nothing
        first = _renew(app)
        again = _renew(app)
    assert first.exit_code == 0 and "renewed 2," in first.output, first.output
    assert "renewed 0, expired 0, waiting for Microsoft 0" in again.output  # idempotent
    with unscoped() as session:
        sub = session.get(Subscription, sub_id)
        assert (sub.availability_id, sub.term, sub.billing_cycle, sub.quantity) == (monthly, "P1M", "monthly", 5)
        assert sub.unit_price == Decimal("10.80") and sub.unit_cost == Decimal("9.18")  # re-quoted for the new term
        assert (sub.term_started_on, sub.renew_on) == (renew_on, renew_on + dt.timedelta(days=_month_days(renew_on)))
        assert not sub.has_scheduled_change
        batch = session.scalars(
            select(SeatBatch).where(SeatBatch.subscription_id == sub_id, SeatBatch.kind == "renewal")
        ).one()
        start = dt.datetime.combine(renew_on, dt.time())
        assert (batch.quantity, batch.added_at, batch.refundable_until) == (5, start, start + dt.timedelta(hours=168))
        assert session.scalar(select(func.count(Event.id)).where(Event.action == "subscription.renewed")) == 2
        at_microsoft = _sandbox(session, sub)
        assert (at_microsoft.term, at_microsoft.quantity, at_microsoft.term_end) == ("P1M", 5, sub.renew_on)
        assert (
            session.scalar(
                select(func.count(SandboxSeatBatch.id)).where(
                    SandboxSeatBatch.subscription_id == sub.provider_subscription_id, SandboxSeatBatch.added_at == start
                )
            )
            == 1
        )
    with time_machine.travel(_at(renew_on, 2), tick=False), app.app_context(), scoping.bypass("test"):
        report = reconcile.reconcile(scope_account=db.session.get(Account, world.accounts["customer_a"].id))
        assert report.differences == [] and report.run.customers_unreadable == 0


def test_a_renew_pass_over_several_batches_prices_each_by_its_resellers_list(app, world, monkeypatch):
    """One batch at a time (each committed and let go): the price lists read for a batch are read again for the next,
    and every renewal is priced by its reseller's list."""
    monkeypatch.setattr(renewals, "RENEW_BATCH", 1)
    first_id, second_id = world.rows["a"]["subscription"], world.rows["a"]["subscription2"]
    with unscoped() as session:
        renew_on = session.get(Subscription, first_id).renew_on
        session.add(
            PriceRule(account_id=world.accounts["reseller_a"].id, level="sell", basis="buy", percent=Decimal("20"))
        )
        session.commit()
    _set_renew_on(app, second_id, renew_on)
    with time_machine.travel(_at(renew_on, 1), tick=False):
        done = _renew(app)
    assert done.exit_code == 0 and "renewed 3," in done.output, done.output  # A's two, and B's
    with unscoped() as session:
        for sub_id in (first_id, second_id):
            sub = session.get(Subscription, sub_id)
            assert sub.renew_on > renew_on
            assert sub.unit_price == pricing.cents(sub.unit_cost * Decimal("1.2")), sub.product.name  # buy + 20 %


def _month_days(day: dt.date) -> int:
    from app.services.subscriptions import add_months

    return (add_months(day, 1) - day).days


def test_renew_expires_a_subscription_whose_auto_renew_is_off_and_releases_its_licences(app, world):
    sub_id = world.rows["a"]["subscription"]
    with app.app_context(), scoping.bypass("test"):
        sub = db.session.get(Subscription, sub_id)
        licensing.set_auto_renew(sub, False)
        db.session.commit()
        renew_on = sub.renew_on
    with time_machine.travel(_at(renew_on, 1), tick=False):
        result = _renew(app)
        assert "renewed 1, expired 1," in result.output  # B's renews, A's expires
        with unscoped() as session:
            sub = session.get(Subscription, sub_id)
            assert (sub.status, sub.assigned) == ("expired", 0)
            assert (
                session.scalar(
                    select(func.count(LicenceAssignment.id)).where(LicenceAssignment.subscription_id == sub_id)
                )
                == 0
            )
            assert _sandbox(session, sub).status == "expired"
            tenant = _sandbox(session, sub).tenant_id
            users = session.scalars(select(SandboxUser).where(SandboxUser.tenant_id == tenant)).all()
            assert users and not any("TEST-BASIC" in u.sku_ids.split() for u in users)  # Microsoft took them back
            assert session.scalars(select(Event).where(Event.action == "subscription.expired")).one()
        assert "renewed 0, expired 0," in _renew(app).output
        with app.app_context(), scoping.bypass("test"):
            report = reconcile.reconcile(scope_account=db.session.get(Account, world.accounts["customer_a"].id))
            assert report.differences == []


def test_another_reseller_gets_404_on_every_renewal_route_and_nothing_changes(app, world, monthly, login):
    client = login("master@bluebird.example")  # customer B's master admin: customer A is not in its scope
    base = _sub_path(world)
    token = csrf_token(client)  # its first page (choosing its account is an event) before the snapshot
    with unscoped() as session:
        before = (
            session.scalar(select(func.count(Event.id))),
            session.scalar(select(func.count(ProviderOperation.id))),
        )
        row = session.get(Subscription, world.rows["a"]["subscription"])
        state = (row.product_id, row.quantity, row.next_availability_id, row.next_quantity)
    form = {
        "csrf_token": token,
        "product_id": str(world.rows["products"]["basic"]),
        "term": "P1M",
        "billing_frequency": "monthly",
        "quantity": "5",
        "availability_id": str(monthly),
    }
    assert client.get(f"{base}/renewal").status_code == 404
    for path in ("/renewal", "/renewal/clear", "/upgrade"):
        assert client.post(f"{base}{path}", data=form).status_code == 404, path
    with unscoped() as session:
        after = (session.scalar(select(func.count(Event.id))), session.scalar(select(func.count(ProviderOperation.id))))
        row = session.get(Subscription, world.rows["a"]["subscription"])
        assert (row.product_id, row.quantity, row.next_availability_id, row.next_quantity) == state
        assert after == before


def test_customer_admins_and_launched_partner_users_cannot_schedule(app, world, monthly, login, reseller_a_user_client):
    with unscoped() as session:
        factories.user(
            session.get(Account, world.accounts["customer_a"].id),
            "admin2@aardvark.example",
            admin=True,
            cp3_enabled=True,
        )
        session.commit()
    form = {
        "product_id": str(world.rows["products"]["basic"]),
        "term": "P1M",
        "billing_frequency": "monthly",
        "quantity": "5",
    }
    admin = login("admin2@aardvark.example")
    assert admin.post(f"{_sub_path(world)}/renewal", data={"csrf_token": csrf_token(admin), **form}).status_code == 403
    assert 'data-test="renewal-form"' not in admin.get(_sub_path(world)).text
    partner = reseller_a_user_client
    membership = world.users["customer_a_master_admin"].membership_id
    partner.post(f"/impersonation/start/{membership}", data={"csrf_token": csrf_token(partner)})
    assert (
        partner.post(f"{_sub_path(world)}/renewal", data={"csrf_token": csrf_token(partner), **form}).status_code == 403
    )
    with unscoped() as session:
        assert not session.get(Subscription, world.rows["a"]["subscription"]).has_scheduled_change


def test_the_landing_and_the_renewals_widget_show_the_scheduled_change(
    app, world, monthly, reseller_a_admin_client, customer_a_master_admin_client
):
    _schedule(app, world.rows["a"]["subscription"], monthly, 5)
    page = reseller_a_admin_client.get("/")
    assert "1 month billed monthly, 5 licences" in page.text
    client, base = customer_a_master_admin_client, _portal(world)
    client.post(f"{base}/widgets", data={"csrf_token": csrf_token(client), "widget": "renewals"})
    with unscoped() as session:
        from app.models.dashboards import DashboardWidget

        widget_id = session.scalars(select(DashboardWidget.id)).one()
    assert "1 month billed monthly, 5 licences" in client.get(f"{base}/widgets/{widget_id}/data").text


# -- Partner Center: the documented bodies ----------------------------------------------------------------------------
def test_partner_center_schedules_and_clears_with_the_documented_body(fake_partner_center):
    pc = fake_partner_center
    client = PartnerCenterProvider.from_config(pc.config())
    tenant = pc.add_customer("kiwibikes")
    made = client.create_order(tenant, "CFQ7TTC0LH18:0001", 5, "monthly", correlation_id=new_correlation_id())
    wanted = NextTermInstructions("CFQ7TTC0LH18:0001", "P1M", "monthly", 8, availability_id="CFQ7TTC0K0RM")
    answer = client.schedule_next_term(
        tenant,
        made.subscription_id,
        wanted,
        correlation_id=new_correlation_id(),
        request_id="0f4b5a3e-2c1d-4e5f-8a9b-0c1d2e3f4a5b",
    )
    patch = pc.calls("PATCH")[-1]
    assert patch.json == {
        "scheduledNextTermInstructions": {
            "product": {
                "productId": "CFQ7TTC0LH18",
                "skuId": "0001",
                "availabilityId": "CFQ7TTC0K0RM",
                "billingCycle": "monthly",
                "termDuration": "P1M",
            },
            "quantity": 8,
        }
    }
    assert patch.header("MS-RequestId") == "0f4b5a3e-2c1d-4e5f-8a9b-0c1d2e3f4a5b"
    assert answer.scheduled == NextTermInstructions("CFQ7TTC0LH18:0001", "P1M", "monthly", 8, "CFQ7TTC0K0RM")
    client.change_quantity(tenant, made.subscription_id, 6, correlation_id=new_correlation_id())
    assert client.get_subscription(tenant, made.subscription_id, correlation_id=new_correlation_id()).scheduled is None
    client.schedule_next_term(tenant, made.subscription_id, wanted, correlation_id=new_correlation_id())
    cleared = client.schedule_next_term(tenant, made.subscription_id, None, correlation_id=new_correlation_id())
    assert pc.calls("PATCH")[-1].json == {"scheduledNextTermInstructions": None} and cleared.scheduled is None


def test_the_form_page_prefills_the_quantity_asked_for(world, monthly, customer_a_master_admin_client):
    page = customer_a_master_admin_client.get(f"{_sub_path(world)}/renewal?quantity=7")
    assert page.status_code == 200 and 'name="quantity" min="1" max="10000" value="7"' in page.text


def test_a_lost_answer_is_read_back_and_an_interrupted_schedule_is_recovered(app, world, monthly, sandbox):
    sub_id = world.rows["a"]["subscription"]
    sandbox.lost_answer_rate = 1.0  # Microsoft schedules it, its answer is lost: the portal asks what is true
    _schedule(app, sub_id, monthly, 5)
    sandbox.lost_answer_rate = 0.0
    with unscoped() as session:
        sub = session.get(Subscription, sub_id)
        assert (sub.next_availability_id, sub.next_quantity) == (monthly, 5)
        operation = session.scalars(select(ProviderOperation).where(ProviderOperation.kind == renewals.SCHEDULE)).one()
        assert operation.state == "succeeded"
    # A crash after Microsoft cleared it: the operation left pending; the recoverer asks and the portal matches.
    with app.app_context(), scoping.bypass("test"):
        from app.services import operations
        from app.services.recovery import recover_all

        sub = db.session.get(Subscription, sub_id)
        tenant = sub.account.tenant.tenant_guid
        sandbox.schedule_next_term(tenant, sub.provider_subscription_id, None, correlation_id=new_correlation_id())
        params = {"subscription_id": sub_id, "provider_subscription_id": sub.provider_subscription_id}
        pending = operations.begin(renewals.SCHEDULE, sub.account_id, params, None, target=f"subscription:{sub_id}")
        pending.attempted_on = pending.created_on = pending.attempted_on - dt.timedelta(hours=1)
        db.session.commit()
        pending_id = pending.id
        assert recover_all() >= 1
    with unscoped() as session:
        assert session.get(ProviderOperation, pending_id).state == "succeeded"
        assert not session.get(Subscription, sub_id).has_scheduled_change
        assert session.scalars(select(Event).where(Event.action == "subscription.repaired")).first()


def test_with_partner_center_the_renewal_is_read_back_not_assumed(app, world, fake_partner_center):
    """Microsoft's answer decides: not renewed yet → left for the next run; renewed → its quantity, its term end and
    its window's end (allowedUntilDateTime)."""
    pc, sub_id = fake_partner_center, world.rows["a"]["subscription"]
    with unscoped() as session:
        sub = session.get(Subscription, sub_id)
        tenant, psid, renew_on = sub.account.tenant.tenant_guid, sub.provider_subscription_id, sub.renew_on
    pc.add_customer("aardvark", tenant_id=tenant)
    pc.subscriptions[tenant][psid] = {
        "id": psid,
        "offerId": "TEST-BASIC",
        "quantity": 4,
        "status": "active",
        "autoRenewEnabled": True,
        "billingCycle": "monthly",
        "termDuration": "P1Y",
        "commitmentEndDate": f"{renew_on.isoformat()}T00:00:00Z",
    }
    saved = app.extensions.get("csp_provider")
    app.extensions["csp_provider"] = PartnerCenterProvider.from_config({**app.config, **pc.config()})
    try:
        with time_machine.travel(_at(renew_on, 1), tick=False), app.app_context():
            waiting = renewals.renew_due()
            with unscoped() as session:
                assert session.get(Subscription, sub_id).renew_on == renew_on
            assert waiting.waiting == 1  # customer A's; customer B's is not at this Microsoft (a problem)
            end = renew_on.replace(year=renew_on.year + 1)
            until = dt.datetime.combine(renew_on, dt.time(10, 30)) + dt.timedelta(days=7)
            pc.subscriptions[tenant][psid].update(
                quantity=6,
                commitmentEndDate=f"{end.isoformat()}T00:00:00Z",
                refundableQuantity={
                    "totalQuantity": 6,
                    "details": [{"quantity": 6, "allowedUntilDateTime": f"{until.isoformat()}Z"}],
                },
            )
            renewed = renewals.renew_due()
        assert renewed.renewed == 1
        with unscoped() as session:
            sub = session.get(Subscription, sub_id)
            assert (sub.quantity, sub.term_started_on, sub.renew_on) == (6, renew_on, end)
            batch = session.scalars(
                select(SeatBatch).where(SeatBatch.subscription_id == sub_id, SeatBatch.kind == "renewal")
            ).one()
            assert batch.refundable_until == until  # Microsoft's stated end of the window
    finally:
        app.extensions["csp_provider"] = saved

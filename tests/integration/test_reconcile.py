"""Reconciliation with Microsoft (issue 12, part 5): ``flask portal reconcile [--account] [--repair]`` compares every
customer's subscriptions, Microsoft 365 users and licences with the provider's, keeps what differs (since when), skips
what has a change in flight, and with ``--repair`` makes the portal match Microsoft, each repair an event. The
sandbox's tables are changed behind the portal's back, as Microsoft's would be by someone in Partner Center."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
import time_machine
from sqlalchemy import delete, func, select

from app import clock
from app.csp.base import new_correlation_id
from app.csp.partner_center import PartnerCenterProvider
from app.extensions import db
from app.models.accounts import Account
from app.models.csp import SandboxSeatBatch, SandboxSubscription, SandboxUser
from app.models.events import Event
from app.models.operations import ProviderOperation
from app.models.reconciliation import Drift, ReconciliationRun, ReconciliationStatus
from app.models.subscriptions import LicenceAssignment, M365User, Subscription
from app.services import reconcile
from security import scoping
from tests.conftest import csrf_token, unscoped


def _run(app, *, account: int | None = None, repair: bool = False):
    with app.app_context(), scoping.bypass("test: reconcile"):
        scope = db.session.get(Account, account) if account else None
        report = reconcile.reconcile(scope_account=scope, repair=repair, trigger="test")
        kinds = sorted((d.customer, d.kind, d.subject) for d in report.differences)
        run = report.run
        return kinds, {
            "checked": run.customers_checked,
            "differences": run.differences,
            "repaired": run.repaired,
            "unreadable": run.customers_unreadable,
            "skipped": run.customers_skipped,
            "state": run.state,
        }


def _sandbox_sub(session, sub_id: int) -> SandboxSubscription:
    provider_id = session.get(Subscription, sub_id).provider_subscription_id
    return session.scalars(select(SandboxSubscription).where(SandboxSubscription.subscription_id == provider_id)).one()


def _sandbox_user(session, m365_user_id: int) -> SandboxUser:
    provider_id = session.get(M365User, m365_user_id).provider_user_id
    return session.scalars(select(SandboxUser).where(SandboxUser.user_id == provider_id)).one()


def _portal_equals_sandbox(customer_id: int) -> None:
    """Quantities, auto-renew and every user's licences: the portal's and the sandbox's, identical."""
    with unscoped() as session:
        customer = session.get(Account, customer_id)
        tenant = customer.tenant.tenant_guid
        ours = {
            s.provider_subscription_id: (s.quantity, s.auto_renew)
            for s in session.scalars(
                select(Subscription).where(Subscription.account_id == customer_id, Subscription.status == "active")
            )
        }
        theirs = {
            s.subscription_id: (s.quantity, s.auto_renew)
            for s in session.scalars(select(SandboxSubscription).where(SandboxSubscription.tenant_id == tenant))
        }
        assert ours == theirs
        held = {}
        for person in session.scalars(select(M365User).where(M365User.account_id == customer_id)):
            held[person.provider_user_id] = sorted(
                session.scalars(
                    select(Subscription)
                    .join(LicenceAssignment, LicenceAssignment.subscription_id == Subscription.id)
                    .where(LicenceAssignment.m365_user_id == person.id)
                ).all(),
                key=lambda s: s.id,
            )
        held = {uid: sorted(s.product.sku for s in subs) for uid, subs in held.items()}
        sandbox = {
            u.user_id: sorted(u.sku_ids.split())
            for u in session.scalars(select(SandboxUser).where(SandboxUser.tenant_id == tenant))
        }
        assert held == sandbox
        for sub in session.scalars(select(Subscription).where(Subscription.account_id == customer_id)):
            count = session.scalar(select(func.count()).where(LicenceAssignment.subscription_id == sub.id))
            assert sub.assigned == count <= sub.quantity


def test_the_mirrored_world_matches_microsoft(app, world):
    kinds, counts = _run(app)
    assert kinds == []
    # Aardvark and Bluebird have tenants; Anchor Marine has none and is not Microsoft's customer yet.
    assert counts == {"checked": 2, "differences": 0, "repaired": 0, "unreadable": 0, "skipped": 0, "state": "finished"}
    with unscoped() as session:
        outcomes = dict(session.execute(select(ReconciliationStatus.account_id, ReconciliationStatus.outcome)).all())
        assert outcomes == {world.accounts["customer_a"].id: "matched", world.accounts["customer_b"].id: "matched"}


def test_each_change_behind_the_portals_back_is_found_once_and_repaired(app, world):
    a, rows = world.accounts["customer_a"].id, world.rows["a"]
    with unscoped() as session:
        sub = _sandbox_sub(session, rows["subscription"])
        sub.quantity += 3  # someone raised the quantity in Partner Center
        sub2 = _sandbox_sub(session, rows["subscription2"])
        sub2.auto_renew = False
        holder = _sandbox_user(session, rows["m365_user"])
        basic_sku = session.get(Subscription, rows["subscription"]).product.sku
        holder.sku_ids = " ".join(s for s in holder.sku_ids.split() if s != basic_sku)  # licence taken back
        tenant = sub.tenant_id
        session.add(
            SandboxUser(
                user_id=str(uuid.uuid4()),
                tenant_id=tenant,
                user_principal_name="newcomer@aardvark.onmicrosoft.com",
                display_name="New Comer",
                sku_ids=basic_sku,
            )
        )
        session.commit()

    kinds, counts = _run(app)
    assert kinds == sorted(
        [
            ("Aardvark Farms", "auto_renew", "Exchange Online (Plan 1)"),
            ("Aardvark Farms", "licence_only_here", "p0@aardvark.onmicrosoft.com: Microsoft 365 Business Basic"),
            ("Aardvark Farms", "licence_only_there", "newcomer@aardvark.onmicrosoft.com: Microsoft 365 Business Basic"),
            ("Aardvark Farms", "quantity", "Microsoft 365 Business Basic"),
            ("Aardvark Farms", "user_only_there", "newcomer@aardvark.onmicrosoft.com"),
        ]
    )
    assert counts["differences"] == 5 and counts["repaired"] == 0
    with unscoped() as session:
        drifts = session.scalars(select(Drift).where(Drift.resolved_at.is_(None))).all()
        assert len(drifts) == 5 and {d.account_id for d in drifts} == {a}
        quantity = next(d for d in drifts if d.kind == "quantity")
        assert (quantity.portal_value, quantity.microsoft_value) == ("4", "7")
        first_seen = quantity.first_seen_at
        assert session.get(ReconciliationStatus, 1) is not None
        assert (
            session.scalars(select(ReconciliationStatus.outcome).where(ReconciliationStatus.account_id == a)).one()
            == "differs"
        )
        # Nothing in the portal changed without --repair.
        assert session.get(Subscription, rows["subscription"]).quantity == 4

    # A later run finds the same differences: "since when" is the first run's.
    with time_machine.travel(dt.timedelta(hours=2)):
        kinds_again, _ = _run(app)
    assert kinds_again == kinds
    with unscoped() as session:
        drifts = session.scalars(select(Drift).where(Drift.resolved_at.is_(None))).all()
        assert len(drifts) == 5
        assert next(d for d in drifts if d.kind == "quantity").first_seen_at == first_seen

    kinds_repaired, counts = _run(app, repair=True)
    assert kinds_repaired == kinds and counts["repaired"] == 5
    _portal_equals_sandbox(a)
    with unscoped() as session:
        assert session.scalars(select(Drift).where(Drift.resolved_at.is_(None))).all() == []
        repairs = session.scalars(select(Event).where(Event.action == "reconcile.repaired")).all()
        assert len(repairs) == 5 and {e.account_id for e in repairs} == {a}
        assert any("quantity 4 → 7" in e.summary for e in repairs)
        newcomer = session.scalars(
            select(M365User).where(M365User.user_principal_name == "newcomer@aardvark.onmicrosoft.com")
        ).one()
        assert newcomer.account_id == a and newcomer.provider_user_id
    kinds, counts = _run(app)
    assert kinds == [] and counts["differences"] == 0


def test_a_subscription_or_user_only_in_the_portal(app, world):
    a, rows = world.accounts["customer_a"].id, world.rows["a"]
    with unscoped() as session:
        gone = _sandbox_sub(session, rows["subscription2"])
        person = _sandbox_user(session, world.rows["a"]["m365_user"])
        person_upn = person.user_principal_name
        session.delete(gone)
        session.delete(person)
        session.commit()
    kinds, counts = _run(app, repair=True)
    assert ("Aardvark Farms", "subscription_only_here", "Exchange Online (Plan 1)") in kinds
    assert ("Aardvark Farms", "user_only_here", person_upn) in kinds
    assert counts["repaired"] == counts["differences"] == len(kinds)
    with unscoped() as session:
        assert session.get(Subscription, rows["subscription2"]).status == "cancelled"
        assert session.get(Subscription, rows["subscription2"]).assigned == 0
        assert session.get(M365User, rows["m365_user"]) is None
        assert session.get(Subscription, rows["subscription"]).assigned == 2  # its licence went with it
    _portal_equals_sandbox(a)


def test_a_customer_with_a_change_in_flight_is_skipped_and_its_drift_left_as_it_was(app, world):
    a, rows = world.accounts["customer_a"].id, world.rows["a"]
    with unscoped() as session:
        _sandbox_sub(session, rows["subscription"]).quantity = 9
        _sandbox_sub(session, world.rows["b"]["subscription"]).quantity = 9
        session.add(
            ProviderOperation(
                account_id=a,
                kind="quantity",
                state="pending",
                request_id=str(uuid.uuid4()),
                params=json.dumps({"quantity": 9}),
            )
        )
        session.commit()
    kinds, counts = _run(app)
    assert kinds == [("Bluebird Bakery", "quantity", "Microsoft 365 Business Basic")]
    assert counts["skipped"] == 1 and counts["checked"] == 2
    with unscoped() as session:
        status = session.scalars(select(ReconciliationStatus).where(ReconciliationStatus.account_id == a)).one()
        assert status.outcome == "skipped" and "being confirmed" in status.detail
        assert session.scalar(select(func.count(Drift.id)).where(Drift.account_id == a)) == 0


def test_an_unreadable_customer_is_reported_not_guessed(app, world, sandbox):
    sandbox.fail_rate, sandbox.fail_operations = 1.0, ["list_users"]
    kinds, counts = _run(app)
    assert kinds == [] and counts["unreadable"] == 2 and counts["state"] == "finished"
    with unscoped() as session:
        assert set(session.scalars(select(ReconciliationStatus.outcome))) == {"unreadable"}
        assert "could not be read" in session.scalars(select(ReconciliationStatus.detail)).first()


def test_a_tenant_microsoft_does_not_know(app, world):
    with unscoped() as session:
        tenant = session.get(Account, world.accounts["customer_b"].id).tenant
        tenant.tenant_guid = str(uuid.uuid4())
        session.commit()
    kinds, _ = _run(app)
    assert kinds == [("Bluebird Bakery", "tenant_missing", "Bluebird Bakery")]


def test_one_account_or_one_resellers_customers(app, world):
    with unscoped() as session:
        _sandbox_sub(session, world.rows["a"]["subscription"]).quantity = 9
        _sandbox_sub(session, world.rows["b"]["subscription"]).quantity = 9
        session.commit()
    kinds, counts = _run(app, account=world.accounts["reseller_b"].id)
    assert kinds == [("Bluebird Bakery", "quantity", "Microsoft 365 Business Basic")] and counts["checked"] == 1
    kinds, counts = _run(app, account=world.accounts["customer_a"].id, repair=True)
    assert kinds == [("Aardvark Farms", "quantity", "Microsoft 365 Business Basic")] and counts["repaired"] == 1
    with unscoped() as session:
        assert session.get(Subscription, world.rows["b"]["subscription"]).quantity != 9  # not in that run's scope
        runs = session.scalars(select(ReconciliationRun).order_by(ReconciliationRun.id)).all()
        assert [r.scope_account_id for r in runs] == [world.accounts["reseller_b"].id, world.accounts["customer_a"].id]


def test_the_command_prints_each_difference_and_the_counts(app, world):
    with unscoped() as session:
        _sandbox_sub(session, world.rows["a"]["subscription"]).auto_renew = False
        session.commit()
    runner = app.test_cli_runner()
    result = runner.invoke(args=["portal", "reconcile"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (
        "Aardvark Farms: Auto-renew differs — Microsoft 365 Business Basic: portal on, Microsoft off" in result.output
    )
    assert "Customers checked: 2; differing: 1; differences: 1; repaired: 0" in result.output
    result = runner.invoke(args=["portal", "reconcile", "--account", "999999"])
    assert result.exit_code == 2 and "there is no account 999999" in result.output
    result = runner.invoke(args=["portal", "reconcile", "--repair"], catch_exceptions=False)
    assert "repaired: 1" in result.output
    with unscoped() as session:
        assert session.get(Subscription, world.rows["a"]["subscription"]).auto_renew is False


def test_the_scheduled_run_happens_once_per_period(app, world):
    app.config["RECONCILE_EVERY_HOURS"] = 24
    try:
        with app.app_context(), scoping.bypass("test: schedule"):
            assert reconcile.run_if_due() == 2
            assert reconcile.run_if_due() == 0  # one ran less than a day ago
            with time_machine.travel(dt.timedelta(hours=25)):
                assert reconcile.run_if_due() == 2
    finally:
        app.config["RECONCILE_EVERY_HOURS"] = 0
    with unscoped() as session:
        assert session.scalar(select(func.count(ReconciliationRun.id))) == 2


def test_a_run_killed_midway_is_failed_later_never_running_for_ever(app, world):
    with app.app_context(), scoping.bypass("test"):
        run = reconcile.start_run(trigger="test")
        run_id = run.id
    with time_machine.travel(dt.timedelta(hours=4)), app.app_context(), scoping.bypass("test"):
        assert reconcile.last_run().state == "failed"
    with unscoped() as session:
        assert "Interrupted" in session.get(ReconciliationRun, run_id).error


# -- the Partner Center client's reads, against the local HTTPS fake -------------------------------------------------
def test_partner_center_lists_subscriptions_and_users_page_by_page(fake_partner_center):
    pc = fake_partner_center
    client = PartnerCenterProvider.from_config(pc.config())
    pc.add_offer("CFQ7TTC0LDPB:0001", "sku-basic", "O365_BUSINESS_ESSENTIALS")
    tenant = pc.add_customer("listing")
    made = client.create_order(tenant, "CFQ7TTC0LDPB:0001", 4, "monthly", correlation_id=new_correlation_id())
    ids = [
        client.create_user(
            tenant,
            first_name="U",
            last_name=str(i),
            user_principal_name=f"u{i}@listing.onmicrosoft.com",
            password="Pa55word!Pa55word",
            usage_location="NZ",
            correlation_id=new_correlation_id(),
        )
        for i in range(5)
    ]
    client.assign_licences(tenant, ids[3], add_sku_ids=["sku-basic"], remove_sku_ids=[], correlation_id="c")
    pc.users_page_size = 2
    pc.requests.clear()

    subs = client.list_subscriptions(tenant, correlation_id="corr-1")
    assert [(s.subscription_id, s.quantity) for s in subs] == [(made.subscription_id, 4)]
    users = client.list_users(tenant, correlation_id="corr-2")
    assert [u.user_principal_name for u in users] == [f"u{i}@listing.onmicrosoft.com" for i in range(5)]
    assert [u.sku_ids for u in users] == [frozenset(), frozenset(), frozenset(), frozenset({"sku-basic"}), frozenset()]
    assert all(u.enabled for u in users)
    pages = pc.calls("GET", f"/v1/customers/{tenant}/users")
    assert [p.header("MS-ContinuationToken") for p in pages] == [None, "2", "4"]
    assert all(p.token == "user" for p in pages)  # App+User only, as Microsoft documents
    assert {p.header("MS-CorrelationId") for p in pages} == {"corr-2"}


def test_partner_center_reads_a_missing_customer_as_404(fake_partner_center):
    client = PartnerCenterProvider.from_config(fake_partner_center.config())
    with pytest.raises(Exception) as caught:
        client.list_subscriptions(str(uuid.uuid4()), correlation_id="c")
    assert getattr(caught.value, "status", None) == 404


def test_reconcile_against_partner_center(app, world, fake_partner_center):
    """The whole run with CSP_PROVIDER=partner_center: the portal's customer A is the fake's customer."""
    pc = fake_partner_center
    saved = app.extensions.get("csp_provider")
    app.extensions["csp_provider"] = PartnerCenterProvider.from_config({**app.config, **pc.config()})
    try:
        with unscoped() as session:
            customer = session.get(Account, world.accounts["customer_a"].id)
            sub = session.get(Subscription, world.rows["a"]["subscription"])
            pc.add_offer(sub.product.sku, sub.product.sku, "BASIC")
            tenant_id = pc.add_customer("aardvark")
            customer.tenant.tenant_guid = tenant_id
            session.execute(delete(LicenceAssignment).where(LicenceAssignment.account_id == customer.id))
            session.execute(delete(M365User).where(M365User.account_id == customer.id))
            for other in session.scalars(select(Subscription).where(Subscription.account_id == customer.id)):
                other.assigned = 0
                other.status = "cancelled" if other.id != sub.id else "active"
            session.commit()
            with app.app_context():
                made = app.extensions["csp_provider"].create_order(
                    tenant_id, sub.product.sku, sub.quantity + 2, "monthly", correlation_id="c"
                )
            sub = session.get(Subscription, world.rows["a"]["subscription"])
            sub.provider_subscription_id = made.subscription_id
            sub.renew_on = made.commitment_end or sub.renew_on
            sub.auto_renew = made.auto_renew
            session.get(Account, world.accounts["customer_b"].id).tenant.status = "failed"
            session.commit()
        kinds, counts = _run(app, repair=True)
        # The fake's subscription was bought just now (its seats are inside their 168-hour window); the portal's was
        # bought a month ago: that difference is reported, never repaired (the seat windows' own work).
        assert sorted(kinds) == [
            ("Aardvark Farms", "quantity", "Microsoft 365 Business Basic"),
            ("Aardvark Farms", "refundable", "Microsoft 365 Business Basic"),
        ]
        assert counts["repaired"] == 1
        with unscoped() as session:
            assert session.get(Subscription, world.rows["a"]["subscription"]).quantity == made.quantity
    finally:
        app.extensions["csp_provider"] = saved


# -- the Reconciliation page ---------------------------------------------------------------------------------------
def _differ_everywhere(world, quantity: int = 9) -> None:
    with unscoped() as session:
        _sandbox_sub(session, world.rows["a"]["subscription"]).quantity = quantity
        _sandbox_sub(session, world.rows["b"]["subscription"]).quantity = quantity
        session.commit()


def _db_state():
    with unscoped() as session:
        return (
            session.scalar(select(func.count(ReconciliationRun.id))),
            session.scalar(select(func.count(ReconciliationStatus.id))),
            session.scalar(select(func.count(Drift.id))),
            session.scalar(select(func.count(Event.id))),
            sorted(session.execute(select(Subscription.id, Subscription.quantity)).all()),
        )


def test_operator_staff_see_every_resellers_differences(app, world, ops_admin_client):
    _differ_everywhere(world)
    _run(app)
    page = ops_admin_client.get("/reconciliation/")
    assert page.status_code == 200
    assert "Aardvark Farms" in page.text and "Bluebird Bakery" in page.text
    assert "Alpha Partners Ltd" in page.text and "Bravo IT Ltd" in page.text
    assert "Licence quantity differs" in page.text and "Last full check" in page.text
    only_b = ops_admin_client.get(f"/reconciliation/?reseller={world.accounts['reseller_b'].id}")
    assert "Bluebird Bakery" in only_b.text and "Aardvark Farms</a></td>" not in only_b.text


def test_a_reseller_sees_its_own_part_only(app, world, reseller_a_admin_client):
    _differ_everywhere(world)
    _run(app)
    page = reseller_a_admin_client.get("/reconciliation/")
    assert page.status_code == 200
    assert "Aardvark Farms" in page.text and "Bluebird Bakery" not in page.text
    assert "Last full check" not in page.text  # the whole portal's counts are the operator's
    assert "Open differences: 1" in page.text
    b = world.accounts["customer_b"].id
    assert reseller_a_admin_client.get(f"/reconciliation/?customer={b}").status_code == 404
    assert (
        reseller_a_admin_client.get(f"/reconciliation/?reseller={world.accounts['reseller_b'].id}").status_code == 404
    )


def test_another_reseller_cannot_check_or_repair_a_customer(app, world, reseller_b_admin_client):
    _differ_everywhere(world)
    before = _db_state()
    a = world.accounts["customer_a"].id
    for data in ({}, {"repair": "1"}):
        response = reseller_b_admin_client.post(
            f"/reconciliation/check/{a}", data={"csrf_token": csrf_token(reseller_b_admin_client), **data}
        )
        assert response.status_code == 404
    assert _db_state() == before


def test_a_reseller_checks_its_customer_now_but_only_operator_staff_repair(
    app, world, reseller_a_admin_client, ops_admin_client
):
    _differ_everywhere(world)
    a = world.accounts["customer_a"].id
    token = csrf_token(reseller_a_admin_client)
    assert reseller_a_admin_client.post(f"/reconciliation/check/{a}").status_code == 400  # no CSRF token
    response = reseller_a_admin_client.post(f"/reconciliation/check/{a}", data={"csrf_token": token})
    assert response.status_code == 302
    page = reseller_a_admin_client.get(response.location)
    assert "Aardvark Farms differs from Microsoft in 1 way(s)" in page.text
    assert "Repair: match Microsoft" not in page.text
    before = _db_state()
    refused = reseller_a_admin_client.post(f"/reconciliation/check/{a}", data={"csrf_token": token, "repair": "1"})
    assert refused.status_code == 403 and _db_state() == before

    page = ops_admin_client.get(f"/reconciliation/?customer={a}")
    assert "Repair: match Microsoft" in page.text
    response = ops_admin_client.post(
        f"/reconciliation/check/{a}",
        data={"csrf_token": csrf_token(ops_admin_client), "repair": "1", "confirmed": "yes"},
    )
    assert "1 difference(s) repaired" in ops_admin_client.get(response.location).text
    with unscoped() as session:
        assert session.get(Subscription, world.rows["a"]["subscription"]).quantity == 9
        assert session.get(Subscription, world.rows["b"]["subscription"]).quantity != 9  # another customer
        event = session.scalars(select(Event).where(Event.action == "reconcile.repaired")).one()
        assert event.account_id == a and event.actor_id == world.users["ops_admin"].id


def test_customers_do_not_reach_the_page(app, world, customer_a_master_admin_client):
    response = customer_a_master_admin_client.get("/reconciliation/")
    assert response.status_code in (302, 403, 404)
    assert "Reconciliation</h2>" not in response.text


def test_the_page_costs_the_same_statements_for_few_and_many_differences(app, world, ops_admin_client):
    from tests.conftest import count_statements

    _differ_everywhere(world)
    _run(app)
    with count_statements(app) as few:
        assert ops_admin_client.get("/reconciliation/").status_code == 200
    with unscoped() as session:
        tenant = session.get(Account, world.accounts["customer_a"].id).tenant.tenant_guid
        for i in range(20):
            session.add(
                SandboxUser(
                    user_id=str(uuid.uuid4()),
                    tenant_id=tenant,
                    user_principal_name=f"extra{i}@aardvark.onmicrosoft.com",
                    display_name=f"Extra {i}",
                    sku_ids="",
                )
            )
        session.commit()
    _run(app)
    with count_statements(app) as many:
        page = ops_admin_client.get("/reconciliation/")
    assert page.text.count("Microsoft 365 user only at Microsoft") >= 20
    # (The session store's own write of a renewed expiry comes and goes with the clock: not the page's.)
    assert [s for s in many if "server_session" not in s] == [s for s in few if "server_session" not in s]


def test_the_demo_and_its_scale_data_match_microsoft(app):
    """`seed-demo --scale` fills the sandbox's side too: the demo and the generated customers reconcile clean."""
    result = app.test_cli_runner().invoke(
        args=["portal", "seed-demo", "--password", "demo-password-1", "--scale", "25"]
    )
    assert result.exit_code == 0, result.output
    kinds, counts = _run(app)
    assert kinds == [] and counts["differences"] == 0
    assert counts["checked"] >= 25 and counts["unreadable"] == counts["skipped"] == 0


def test_new_commerce_differences_are_each_found_once_and_left_to_their_own_work(app, world):
    """The SKU, the term and billing frequency, the change scheduled at renewal and the seats Microsoft still lets be
    given back: each difference is found once, and a repair run leaves them as they are (re-pricing and refunds are
    the renewals' and the seat windows' own work)."""
    rows = world.rows["a"]
    with unscoped() as session:
        sub = _sandbox_sub(session, rows["subscription"])
        sub.term, sub.billing_cycle = "P1M", "monthly"  # Microsoft says a monthly term
        sub.next_offer_id, sub.next_term, sub.next_billing_cycle, sub.next_quantity = sub.offer_id, "P1Y", "annual", 2
        sub2 = _sandbox_sub(session, rows["subscription2"])
        sub2.offer_id = "CFQ7TTC0LH1G:0001"  # another SKU
        session.add(
            SandboxSeatBatch(
                subscription_id=sub2.subscription_id,
                quantity=1,
                added_at=clock.utcnow(),
                allowed_until=clock.utcnow() + dt.timedelta(hours=100),
            )
        )
        session.commit()
    expected = sorted(
        [
            ("Aardvark Farms", "scheduled", "Microsoft 365 Business Basic"),
            ("Aardvark Farms", "term", "Microsoft 365 Business Basic"),
            ("Aardvark Farms", "refundable", "Exchange Online (Plan 1)"),
            ("Aardvark Farms", "sku", "Exchange Online (Plan 1)"),
        ]
    )
    kinds, counts = _run(app, repair=True)
    assert kinds == expected and counts["repaired"] == 0
    again, _ = _run(app)
    assert again == expected

"""Upgrades (issue 13): to what the provider lists as eligible, all seats (the subscription converts) or some (a new
subscription co-termed with it), the licences following, priced by the price lists; the sandbox refuses what is not
eligible; the Partner Center client's documented bodies; another reseller's 404."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from app.csp import get_provider
from app.csp.base import ProviderError, new_correlation_id
from app.csp.partner_center import PartnerCenterProvider
from app.extensions import db
from app.models.accounts import Account
from app.models.catalog import Availability
from app.models.csp import SandboxSubscription, SandboxUser
from app.models.events import Event
from app.models.operations import ProviderOperation
from app.models.subscriptions import LicenceAssignment, M365User, Subscription
from app.services import reconcile, renewals
from app.services.licensing import LicenceError
from security import scoping
from tests import factories
from tests.conftest import csrf_token, unscoped


@pytest.fixture
def standard(app, world) -> int:
    """Business Standard (an eligible upgrade of Business Basic), on the same term: its availability's id."""
    with app.app_context(), scoping.bypass("test catalogue"):
        item = factories.product("Microsoft 365 Business Standard", "TEST-STD", "15.00", "12.75")
        db.session.commit()
        return factories.availability(item).id


def _path(world, key="subscription"):
    return f"/portal/{world.accounts['customer_a'].id}/services/microsoft-csp/subscriptions/{world.rows['a'][key]}"


def _skus(session, tenant: str) -> dict[str, set[str]]:
    users = session.scalars(select(SandboxUser).where(SandboxUser.tenant_id == tenant))
    return {u.user_principal_name: set(u.sku_ids.split()) for u in users}


def _no_differences(app, world) -> None:
    with app.app_context(), scoping.bypass("test"):
        report = reconcile.reconcile(scope_account=db.session.get(Account, world.accounts["customer_a"].id))
        assert report.differences == [], report.differences


def test_all_seats_convert_the_subscription_and_every_licence_follows(app, world, standard):
    sub_id = world.rows["a"]["subscription"]
    with app.app_context(), scoping.bypass("test"):
        sub = db.session.get(Subscription, sub_id)
        holder = renewals.upgrade(sub, db.session.get(Availability, standard), 4)
        db.session.commit()
        assert holder.id == sub_id
    with unscoped() as session:
        sub = session.get(Subscription, sub_id)
        assert (sub.product.name, sub.quantity, sub.assigned) == ("Microsoft 365 Business Standard", 4, 3)
        assert sub.unit_price == Decimal("15.00") and sub.unit_cost == Decimal("12.75")  # priced as the target
        at_microsoft = session.scalars(
            select(SandboxSubscription).where(SandboxSubscription.subscription_id == sub.provider_subscription_id)
        ).one()
        assert (at_microsoft.offer_id, at_microsoft.quantity) == ("TEST-STD", 4)
        held = _skus(session, at_microsoft.tenant_id)
        assert sum("TEST-STD" in s for s in held.values()) == 3 and not any("TEST-BASIC" in s for s in held.values())
        assert session.scalars(select(Event).where(Event.action == "subscription.upgraded")).one()
        assert session.scalar(select(func.count(Event.id)).where(Event.action == "licence.moved")) == 3
    _no_differences(app, world)


def test_some_seats_go_to_a_new_subscription_with_the_chosen_users(
    app, world, standard, customer_a_master_admin_client
):
    client, sub_id = customer_a_master_admin_client, world.rows["a"]["subscription"]
    page = client.get(_path(world))
    assert 'data-test="upgrade-form"' in page.text and "Microsoft 365 Business Standard" in page.text
    mover = world.rows["a"]["m365_user"]
    response = client.post(
        f"{_path(world)}/upgrade",
        data={
            "csrf_token": csrf_token(client),
            "availability_id": str(standard),
            "quantity": "2",
            "m365_user_id": str(mover),
        },
    )
    assert response.status_code == 302
    with unscoped() as session:
        source = session.get(Subscription, sub_id)
        target = session.scalars(select(Subscription).where(Subscription.availability_id == standard)).one()
        assert (source.quantity, source.assigned, target.quantity, target.assigned) == (2, 2, 2, 1)
        assert target.renew_on == source.renew_on  # co-termed with the source
        assert session.scalars(
            select(LicenceAssignment.m365_user_id).where(LicenceAssignment.subscription_id == target.id)
        ).all() == [mover]
        person = session.get(M365User, mover)
        tenant = session.get(Account, world.accounts["customer_a"].id).tenant.tenant_guid
        assert _skus(session, tenant)[person.user_principal_name] >= {"TEST-STD"}
        assert "TEST-BASIC" not in _skus(session, tenant)[person.user_principal_name]
    _no_differences(app, world)


def test_without_a_choice_the_most_recently_assigned_move_first(app, world, standard):
    with app.app_context(), scoping.bypass("test"):
        sub = db.session.get(Subscription, world.rows["a"]["subscription"])
        newest_first = renewals._holders(sub)
        assert [p.id for p in renewals.movers(sub, 2, None)] == [p.id for p in newest_first[:2]]
        with pytest.raises(LicenceError, match="Choose between 2 and 3 users"):
            renewals.movers(sub, 3, newest_first[:1])  # 1 licence stays for 3 users: 2 must move


def test_an_ineligible_target_is_refused_by_the_portal_and_by_the_sandbox(app, world, standard):
    with app.app_context(), scoping.bypass("test"):
        sub = db.session.get(Subscription, world.rows["a"]["subscription"])
        exchange = db.session.scalars(
            select(Availability).where(Availability.product_id == world.rows["products"]["exchange"])
        ).first()
        with pytest.raises(LicenceError, match="not an eligible upgrade"):
            renewals.upgrade(sub, exchange, 1)
        tenant = sub.account.tenant.tenant_guid
        with pytest.raises(ProviderError, match="not an eligible upgrade") as refused:
            get_provider().transition(
                tenant,
                sub.provider_subscription_id,
                "TEST-EXO1",
                1,
                term="P1Y",
                billing_cycle="monthly",
                correlation_id=new_correlation_id(),
            )
        assert refused.value.status == 400
        assert db.session.scalar(select(func.count(ProviderOperation.id))) == 0


def test_a_scheduled_change_is_cleared_by_an_upgrade(app, world, standard):
    sub_id = world.rows["a"]["subscription"]
    with app.app_context(), scoping.bypass("test"):
        sub = db.session.get(Subscription, sub_id)
        renewals.schedule(sub, db.session.get(Availability, standard), 4)
        db.session.commit()
        assert sub.next_availability_id == standard
        renewals.upgrade(sub, db.session.get(Availability, standard), 2)
        db.session.commit()
    with unscoped() as session:
        assert not session.get(Subscription, sub_id).has_scheduled_change


def test_partner_center_transition_bodies_match_the_documented_shape(fake_partner_center):
    pc = fake_partner_center
    client = PartnerCenterProvider.from_config(pc.config())
    tenant = pc.add_customer("kiwibikes")
    made = client.create_order(tenant, "CFQ7TTC0LH18:0001", 5, "monthly", correlation_id=new_correlation_id())
    pc.transition_targets["CFQ7TTC0LH18:0001"] = ["CFQ7TTC0LDPB:0001:CFQ7TTC0K5DJ"]
    eligible = client.get_transition_eligibilities(
        tenant, made.subscription_id, "immediate", correlation_id=new_correlation_id()
    )
    assert [(e.offer_id, e.availability_id) for e in eligible] == [("CFQ7TTC0LDPB:0001", "CFQ7TTC0K5DJ")]
    assert pc.calls("GET", "*/transitionEligibilities")[-1].path.endswith("/transitionEligibilities")
    some = client.transition(
        tenant,
        made.subscription_id,
        "CFQ7TTC0LDPB:0001",
        2,
        term="P1Y",
        billing_cycle="monthly",
        availability_id="CFQ7TTC0K5DJ",
        correlation_id=new_correlation_id(),
        request_id="6a1f1d52-8f3e-4a47-9f5a-2b3c4d5e6f70",
    )
    post = pc.calls("POST", "*/transitions")[-1]
    assert post.json == {
        "fromSubscriptionId": made.subscription_id,
        "toCatalogItemId": "CFQ7TTC0LDPB:0001:CFQ7TTC0K5DJ",
        "quantity": 2,
        "termDuration": "P1Y",
        "billingCycle": "monthly",
        "transitionType": "transition_only",
    }
    assert post.header("MS-RequestId") == "6a1f1d52-8f3e-4a47-9f5a-2b3c4d5e6f70"
    assert some.subscription_id != made.subscription_id and some.quantity == 2
    rest = client.get_subscription(tenant, made.subscription_id, correlation_id=new_correlation_id())
    assert rest.quantity == 3


def test_another_reseller_cannot_upgrade(app, world, standard, login):
    client = login("master@bluebird.example")
    token = csrf_token(client)
    with unscoped() as session:
        before = session.scalar(select(func.count(Event.id))), session.scalar(select(func.count(Subscription.id)))
    response = client.post(
        f"{_path(world)}/upgrade", data={"csrf_token": token, "availability_id": str(standard), "quantity": "4"}
    )
    assert response.status_code == 404
    with unscoped() as session:
        assert (
            session.scalar(select(func.count(Event.id))),
            session.scalar(select(func.count(Subscription.id))),
        ) == before
        assert session.get(Subscription, world.rows["a"]["subscription"]).product_id == world.rows["products"]["basic"]


def test_the_target_renewal_date_is_kept(app, world, standard):
    with app.app_context(), scoping.bypass("test"):
        sub = db.session.get(Subscription, world.rows["a"]["subscription"])
        renew_on = sub.renew_on
        renewals.upgrade(sub, db.session.get(Availability, standard), 4)
        db.session.commit()
        assert sub.renew_on == renew_on and isinstance(renew_on, dt.date)


def test_lost_answers_during_an_upgrade_are_read_back_not_guessed(app, world, standard, sandbox):
    sub_id = world.rows["a"]["subscription"]
    sandbox.lost_answer_rate = 1.0  # every change is made at "Microsoft" and its answer lost
    with app.app_context(), scoping.bypass("test"):
        holder = renewals.upgrade(db.session.get(Subscription, sub_id), db.session.get(Availability, standard), 2)
        db.session.commit()
        holder_id = holder.id
    sandbox.lost_answer_rate = 0.0
    with unscoped() as session:
        kinds = dict(
            session.execute(
                select(ProviderOperation.kind, func.count(ProviderOperation.id))
                .where(ProviderOperation.state == "succeeded")
                .group_by(ProviderOperation.kind)
            ).all()
        )
        assert kinds == {renewals.UPGRADE: 1, renewals.LICENCE_MOVE: 2}
        assert session.get(Subscription, holder_id).provider_subscription_id is not None
        assert (session.get(Subscription, sub_id).quantity, session.get(Subscription, holder_id).assigned) == (2, 2)
    _no_differences(app, world)

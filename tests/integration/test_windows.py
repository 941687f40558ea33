"""The cancellation window per seat batch (issue 13, part 4): each purchase and increase can be given back within its
own 168 hours, newest batch first, never more than is refundable (even when two reductions race); the subscription
can be cancelled within its purchase's window; after that the sandbox refuses as Microsoft does — also when the
portal's own checks are bypassed — and the page offers the change at renewal. Time is frozen at the windows' edges,
across New Zealand's midnight and its daylight-saving changes (a window is 168 real hours whatever the clocks say)."""

from __future__ import annotations

import datetime as dt
import types
from decimal import Decimal

import pytest
import time_machine
from sqlalchemy import func, select

from app.csp import get_provider
from app.csp.base import ProviderError, new_correlation_id
from app.csp.partner_center import PartnerCenterProvider
from app.extensions import db
from app.models.accounts import Account
from app.models.catalog import Product
from app.models.csp import SandboxSubscription, SandboxUser
from app.models.events import Event
from app.models.operations import ProviderOperation
from app.models.subscriptions import LicenceAssignment, M365User, SeatBatch, Subscription
from app.services import licensing, subscriptions, windows
from app.services.licensing import LicenceError
from security import scoping
from tests import factories
from tests.conftest import at_once, csrf_token, unscoped
from tests.integration.test_scoping import database_fingerprint

UTC = dt.UTC
H = dt.timedelta(hours=1)
# 1 December 2026, 21:15 UTC = 2 December, 10:15 AM in Auckland (NZDT, UTC+13): its window ends on 9 December.
BOUGHT = dt.datetime(2026, 12, 1, 21, 15, tzinfo=UTC)
EDGE_IN, EDGE_OUT = dt.timedelta(hours=167, minutes=59), dt.timedelta(hours=168, minutes=1)


def _at(moment: dt.datetime):
    return time_machine.travel(moment, tick=False)


def _buy(world, moment: dt.datetime, quantity: int = 5, product: str = "exchange", price: str = "9.00") -> int:
    """Customer A buys ``quantity`` at ``moment`` through the sandbox: the subscription and its purchase batch, whose
    window is the one the sandbox states."""
    with _at(moment), unscoped() as session:
        customer = session.get(Account, world.accounts["customer_a"].id)
        offer = factories.availability(session.get(Product, world.rows["products"][product]))
        bought = get_provider().create_order(
            customer.tenant.tenant_guid, offer.product.sku, quantity, offer.billing_frequency, correlation_id="t"
        )
        sub = subscriptions.new_subscription(
            customer,
            offer,
            quantity,
            unit_price=Decimal(price),
            unit_cost=Decimal("7.00"),
            ms_unit_cost=Decimal("6.00"),
            provider_subscription_id=bought.subscription_id,
            refundable_until=max(r.allowed_until for r in bought.refundable),
        )
        session.commit()
        return sub.id


def _as_request(app, change) -> str:
    """``change()`` as one request of customer A would run it: committed, or what the user is told."""
    with app.app_context(), scoping.use_scope(scoping.Scope(scoping.CUSTOMER_SCOPE, _CUSTOMER[0])):
        try:
            change()
            db.session.commit()
            return "done"
        except LicenceError as exc:
            db.session.rollback()
            return str(exc)
        finally:
            db.session.remove()


_CUSTOMER = [0]


@pytest.fixture(autouse=True)
def _customer(world):
    _CUSTOMER[0] = world.accounts["customer_a"].id


def _set_quantity(app, sub_id: int, quantity: int, moment: dt.datetime) -> str:
    with _at(moment):
        return _as_request(app, lambda: licensing.change_quantity(db.session.get(Subscription, sub_id), quantity))


def _state(sub_id: int, moment: dt.datetime):
    """(portal quantity, portal refundable, sandbox quantity, sandbox refundable) at ``moment``."""
    with _at(moment), unscoped() as session:
        sub = session.get(Subscription, sub_id)
        tenant = sub.account.tenant.tenant_guid
        ms = get_provider().get_subscription(tenant, sub.provider_subscription_id, correlation_id="t")
        return sub.quantity, windows.refundable(sub), ms.quantity, sum(r.quantity for r in ms.refundable)


def _check(sub_id: int, quantity: int, moment: dt.datetime):
    with _at(moment), unscoped() as session:
        windows.check_reduction(session.get(Subscription, sub_id), quantity)


# -- the truth table at the window's edge ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("bought", "until_text"),
    [
        (BOUGHT, "09/12/2026 10:15 AM"),
        # New Zealand's midnight: 11:30 UTC on 30 November is 00:30 on 1 December in Auckland.
        (dt.datetime(2026, 11, 30, 11, 30, tzinfo=UTC), "08/12/2026 12:30 AM"),
        # Daylight saving starts on 27 September 2026 (02:00 NZST → 03:00 NZDT): 168 real hours end an hour "later".
        (dt.datetime(2026, 9, 24, 0, 0, tzinfo=UTC), "01/10/2026 01:00 PM"),
        # ...and ends on 5 April 2026 (03:00 NZDT → 02:00 NZST): they end an hour "earlier".
        (dt.datetime(2026, 4, 2, 0, 0, tzinfo=UTC), "09/04/2026 12:00 PM"),
    ],
)
def test_a_batch_is_refundable_for_exactly_168_hours(app, world, bought, until_text):
    sub_id = _buy(world, bought, quantity=5)
    with unscoped() as session:
        [batch] = session.scalars(select(SeatBatch).where(SeatBatch.subscription_id == sub_id)).all()
        assert batch.refundable_until == (bought + dt.timedelta(hours=168)).replace(tzinfo=None)
        assert windows.when(batch.refundable_until) == until_text
    inside, outside = bought + EDGE_IN, bought + EDGE_OUT
    assert _state(sub_id, inside) == (5, 5, 5, 5)
    assert _state(sub_id, outside) == (5, 0, 5, 0)
    _check(sub_id, 1, inside)
    with pytest.raises(windows.ReductionRefused, match="No licences .* can be given back now"):
        _check(sub_id, 4, outside)
    with _at(inside), unscoped() as session:
        assert windows.cancellable(session.get(Subscription, sub_id))
    with _at(outside), unscoped() as session:
        assert not windows.cancellable(session.get(Subscription, sub_id))
    assert "can no longer be cancelled" in _cancel(app, sub_id, outside)
    assert "at renewal instead" in _set_quantity(app, sub_id, 3, outside)
    assert _state(sub_id, outside)[0] == 5  # refused: nothing changed
    assert _set_quantity(app, sub_id, 3, inside) == "done"
    assert _state(sub_id, inside) == (3, 3, 3, 3)


def _cancel(app, sub_id: int, moment: dt.datetime) -> str:
    with _at(moment):
        return _as_request(app, lambda: windows.cancel(db.session.get(Subscription, sub_id)))


def test_two_increases_have_their_own_windows_and_seats_go_back_newest_first(app, world):
    sub_id = _buy(world, BOUGHT, quantity=5)
    first, second = BOUGHT + 48 * H, BOUGHT + 96 * H  # windows end 9 and 11 days after the purchase
    assert _set_quantity(app, sub_id, 7, first) == "done"
    assert _set_quantity(app, sub_id, 10, second) == "done"
    with unscoped() as session:
        kinds = [
            (b.kind, b.quantity, b.refundable_until)
            for b in session.scalars(
                select(SeatBatch).where(SeatBatch.subscription_id == sub_id).order_by(SeatBatch.id)
            )
        ]
    assert kinds == [
        ("purchase", 5, (BOUGHT + 168 * H).replace(tzinfo=None)),
        ("increase", 2, (first + 168 * H).replace(tzinfo=None)),
        ("increase", 3, (second + 168 * H).replace(tzinfo=None)),
    ]
    eight_days = BOUGHT + 192 * H
    assert _state(sub_id, eight_days) == (10, 5, 10, 5)
    assert _set_quantity(app, sub_id, 9, eight_days) == "done"  # from the newest batch: 3 → 2 left in it
    with unscoped() as session:
        left = [b.refundable for b in session.scalars(select(SeatBatch).where(SeatBatch.subscription_id == sub_id))]
    assert left[1:] == [2, 2]
    ten_days = BOUGHT + 240 * H  # the first increase's window has closed
    assert _state(sub_id, ten_days) == (9, 2, 9, 2)
    refused = _set_quantity(app, sub_id, 6, ten_days)
    assert refused.startswith("Only 2 licences of Exchange Online (Plan 1) can still be given back, until 13/12/2026")
    assert "the other 1 is paid to the end of the term" in refused and "at renewal instead" in refused
    assert _set_quantity(app, sub_id, 7, ten_days) == "done"
    assert _state(sub_id, ten_days) == (7, 0, 7, 0)


def test_never_below_the_assigned_licences(app, world):
    sub_id = _buy(world, BOUGHT, quantity=3)
    with unscoped() as session:
        people = session.scalars(
            select(M365User.id).where(M365User.account_id == world.accounts["customer_a"].id).order_by(M365User.id)
        ).all()[:2]
    with _at(BOUGHT + H):
        for person_id in people:
            give = lambda p=person_id: licensing.assign(  # noqa: E731
                db.session.get(Subscription, sub_id), db.session.get(M365User, p)
            )
            assert _as_request(app, give) == "done"
    refused = _set_quantity(app, sub_id, 1, BOUGHT + 2 * H)
    assert refused == "2 licences of Exchange Online (Plan 1) are assigned: unassign some before going down to 1."
    assert _set_quantity(app, sub_id, 2, BOUGHT + 2 * H) == "done"
    with _at(BOUGHT + 3 * H), unscoped() as session, pytest.raises(LicenceError, match="Keep at least 1 licence"):
        windows.check_reduction(session.get(Subscription, sub_id), 0)


# -- the sandbox refuses what Microsoft refuses, whatever the portal does --------------------------------------------
def test_the_sandbox_refuses_beyond_the_windows_even_when_the_portal_is_bypassed(app, world, sandbox, in_app):
    sub_id = _buy(world, BOUGHT, quantity=5)

    with unscoped() as session:
        sub = session.get(Subscription, sub_id)
        tenant, ms_id = sub.account.tenant.tenant_guid, sub.provider_subscription_id
    provider = sandbox
    with _at(BOUGHT + 24 * H):
        provider.change_quantity(tenant, ms_id, 8, correlation_id=new_correlation_id())  # 3 more: a batch
    with _at(BOUGHT + EDGE_OUT):  # the purchase's window closed; the increase's is open (3 seats)
        with pytest.raises(ProviderError, match="cannot be decreased by 4: only 3") as refused:
            provider.change_quantity(tenant, ms_id, 4, correlation_id=new_correlation_id())
        assert refused.value.status == 400
        [listed] = [s for s in provider.list_subscriptions(tenant, correlation_id="t") if s.subscription_id == ms_id]
        assert [(r.quantity, r.allowed_until) for r in listed.refundable] == [
            (3, (BOUGHT + 192 * H).replace(tzinfo=None))
        ]
        with pytest.raises(ProviderError, match="can no longer be cancelled") as refused:
            provider.cancel_subscription(tenant, ms_id, correlation_id=new_correlation_id())
        assert refused.value.status == 400
        # The portal's own check skipped: Microsoft's refusal is what the user hears, and nothing changed.
        message = _as_request(app, lambda: licensing._send_quantity(db.session.get(Subscription, sub_id), 4))
        assert "cannot be decreased by" in message
    with unscoped() as session:
        assert session.get(Subscription, sub_id).quantity == 8
        at_ms = session.scalars(select(SandboxSubscription).where(SandboxSubscription.subscription_id == ms_id)).one()
        assert (at_ms.quantity, at_ms.status) == (8, "active")


def test_the_sandbox_cancels_only_within_the_purchase_window_and_takes_the_licences_back(app, world, sandbox, in_app):
    sub_id = _buy(world, BOUGHT, quantity=2)

    with unscoped() as session:
        sub = session.get(Subscription, sub_id)
        tenant, ms_id, sku = sub.account.tenant.tenant_guid, sub.provider_subscription_id, sub.product.sku
        person = session.get(M365User, world.rows["a"]["m365_user"]).provider_user_id
    provider = sandbox
    with _at(BOUGHT + EDGE_IN):
        cancelled = provider.cancel_subscription(tenant, ms_id, correlation_id=new_correlation_id())
        assert cancelled.status == "deleted" and cancelled.refundable == ()
        with pytest.raises(ProviderError, match="is deleted"):
            provider.change_quantity(tenant, ms_id, 3, correlation_id=new_correlation_id())
    with unscoped() as session:
        # Exchange is still held through the world's other Exchange subscription: the user keeps that licence.
        holder = session.scalars(select(SandboxUser).where(SandboxUser.user_id == person)).one()
        assert sku in holder.sku_ids.split()


# -- refunds to the cent -------------------------------------------------------------------------------------------
@pytest.fixture
def in_app(app):
    """The sandbox's own calls need the app (its engine)."""
    with app.app_context():
        yield


def _fake_sub(started: dt.date, cycle_months: int):
    return types.SimpleNamespace(term_started_on=started, period_months=cycle_months)


@pytest.mark.parametrize(
    ("started", "months", "today", "seats", "price", "refund"),
    [
        # Monthly billing from 2 December: a 31-day period; the next day 30 days are left: 2 × 9.00 × 30/31.
        (dt.date(2026, 12, 2), 1, dt.date(2026, 12, 3), 2, "9.00", "17.42"),
        # The day it was bought: everything back.
        (dt.date(2026, 12, 2), 1, dt.date(2026, 12, 2), 5, "9.00", "45.00"),
        # Annual billing: 365 days, 364 left: 3 × 108.00 × 364/365 = 323.1123…
        (dt.date(2026, 12, 2), 12, dt.date(2026, 12, 3), 3, "108.00", "323.11"),
        # Half up: February has 28 days; 7 left of 0.10 is 0.025 → 0.03 (not 0.02).
        (dt.date(2027, 1, 1), 1, dt.date(2027, 2, 22), 1, "0.10", "0.03"),
        # The second month of a monthly-billed term: its own period (1 January to 1 February, 31 days).
        (dt.date(2026, 12, 1), 1, dt.date(2027, 1, 2), 1, "31.00", "30.00"),
    ],
)
def test_refund_estimates_are_exact_to_the_cent(started, months, today, seats, price, refund):
    assert windows.refund_estimate(_fake_sub(started, months), seats, Decimal(price), today) == Decimal(refund)


def test_the_page_shows_the_refund_each_batch_would_give(app, world):
    sub_id = _buy(world, BOUGHT, quantity=5)  # bought on 2 December (NZ), billed monthly: 31-day period
    with _at(BOUGHT + 24 * H), unscoped() as session:
        summary = windows.summary(session.get(Subscription, sub_id))
        [line] = summary.lines
        assert (line.returnable, line.refund, line.open) == (5, Decimal("43.55"), True)  # 5 × 9 × 30/31
        assert summary.can_cancel and summary.cancel_refund == Decimal("43.55")
        assert [(t.seats, t.refund) for t in windows.plan(session.get(Subscription, sub_id), 2)] == [
            (2, Decimal("17.42"))
        ]


# -- concurrency ----------------------------------------------------------------------------------------------------
def test_concurrent_reductions_never_give_back_more_than_is_refundable(app, world):
    sub_id = _buy(world, BOUGHT, quantity=3)
    assert _set_quantity(app, sub_id, 6, BOUGHT + 150 * H) == "done"  # 3 more, their window open after the purchase's
    later = BOUGHT + 170 * H  # only the increase's 3 can go back
    with _at(later):

        def give_back(n):
            return lambda: _as_request(app, lambda: windows.reduce_to(db.session.get(Subscription, sub_id), 6 - n))

        results = at_once(give_back(2), give_back(3), give_back(2))
    done = [r for r in results if r == "done"]
    assert done, results
    quantity, portal_refundable, ms_quantity, ms_refundable = _state(sub_id, later)
    assert quantity == ms_quantity >= 3  # never more than the 3 refundable seats given back
    assert portal_refundable == ms_refundable == quantity - 3
    with unscoped() as session:
        assert session.get(Subscription, sub_id).licence_lease is None


# -- cancel ----------------------------------------------------------------------------------------------------------
def test_cancel_within_the_window_releases_the_licences(app, world):
    sub_id = _buy(world, BOUGHT, quantity=2, product="basic")
    person_id = world.rows["a"]["m365_user"]
    with _at(BOUGHT + H):
        assign = lambda: licensing.assign(db.session.get(Subscription, sub_id), db.session.get(M365User, person_id))  # noqa: E731
        assert _as_request(app, assign) == "done"
    assert _cancel(app, sub_id, BOUGHT + EDGE_IN) == "done"
    with unscoped() as session:
        sub = session.get(Subscription, sub_id)
        assert (sub.status, sub.assigned, sub.cancelled_at) == ("cancelled", 0, (BOUGHT + EDGE_IN).replace(tzinfo=None))
        assert not session.scalars(select(LicenceAssignment).where(LicenceAssignment.subscription_id == sub_id)).all()
        at_ms = session.scalars(
            select(SandboxSubscription).where(SandboxSubscription.subscription_id == sub.provider_subscription_id)
        ).one()
        assert at_ms.status == "deleted"
        event = session.scalars(select(Event).where(Event.action == "subscription.cancelled")).one()
        assert "Cancelled 2 × Microsoft 365 Business Basic" in event.summary
        operation = session.scalars(select(ProviderOperation).where(ProviderOperation.kind == windows.CANCEL)).one()
        assert operation.state == "succeeded"
    assert "is cancelled" in _set_quantity(app, sub_id, 3, BOUGHT + EDGE_IN)


def test_cancel_after_the_window_is_refused_and_changes_nothing(app, world):
    sub_id = _buy(world, BOUGHT, quantity=2)
    before = database_fingerprint()
    message = _cancel(app, sub_id, BOUGHT + EDGE_OUT)
    assert "can no longer be cancelled" in message and "closed on 09/12/2026 10:15 AM" in message
    assert database_fingerprint() == before


def test_an_unanswered_cancel_is_read_back(app, world, sandbox, in_app):
    sub_id = _buy(world, BOUGHT, quantity=2)
    sandbox.lost_answer_rate, sandbox.fail_operations = 1.0, frozenset({"cancel_subscription"})
    assert _cancel(app, sub_id, BOUGHT + H) == "done"  # Microsoft did it; its answer was lost; the read-back says so
    with unscoped() as session:
        assert session.get(Subscription, sub_id).status == "cancelled"
        assert session.scalar(select(func.count()).select_from(Event).where(Event.action == "subscription.cancelled"))


# -- the pages ------------------------------------------------------------------------------------------------------
def _page(world, sub_id: int) -> str:
    return f"/portal/{world.accounts['customer_a'].id}/services/microsoft-csp/subscriptions/{sub_id}"


def test_reducing_the_next_day_refunds_and_eight_days_later_it_is_offered_at_renewal(app, world, login):
    """Done when: reducing by 2 the next day gives a refund; eight days later a reduction is refused and offered at
    renewal."""
    sub_id = _buy(world, BOUGHT, quantity=5)
    path = _page(world, sub_id)
    with _at(BOUGHT + 24 * H):
        client = login(world.users["customer_a_master_admin"].email)
        page = client.get(path).text
        assert 'data-test="seat-batches"' in page and "09/12/2026 10:15 AM" in page and "$43.55" in page
        token = csrf_token(client, path)
        confirm = client.post(f"{path}/reduce", data={"csrf_token": token, "give_back": "2"})
        assert confirm.status_code == 200 and "$17.42" in confirm.text and 'name="confirmed"' in confirm.text
        assert _state(sub_id, BOUGHT + 24 * H)[0] == 5  # nothing yet: the first POST only shows what will happen
        done = client.post(f"{path}/reduce", data={"csrf_token": token, "give_back": "2", "confirmed": "1"})
        assert done.status_code == 302
    assert _state(sub_id, BOUGHT + 24 * H) == (3, 3, 3, 3)
    with _at(BOUGHT + 8 * 24 * H):
        client = login(world.users["customer_a_master_admin"].email)
        token = csrf_token(client, path)
        before = database_fingerprint()
        refused = client.post(f"{path}/reduce", data={"csrf_token": token, "give_back": "1", "confirmed": "1"})
        assert refused.status_code == 400
        assert "No licences of Exchange Online (Plan 1) can be given back now" in refused.text
        assert 'data-test="renewal-offer"' in refused.text and "at renewal" in refused.text
        # Offered at renewal: the renewals page's "Change at renewal" with the quantity prefilled.
        assert f"{path}/renewal?quantity=2" in refused.text and "Change at renewal to 2 licences" in refused.text
        assert database_fingerprint() == before
        assert "Cancel subscription" not in client.get(path).text


def test_cancel_through_the_page_with_a_confirmation_step(app, world, login):
    sub_id = _buy(world, BOUGHT, quantity=2)
    path = _page(world, sub_id)
    with _at(BOUGHT + H):
        client = login(world.users["customer_a_master_admin"].email)
        assert "Cancel subscription" in client.get(path).text
        token = csrf_token(client, path)
        assert client.post(f"{path}/cancel", data={"confirmed": "1"}).status_code == 400  # no CSRF token
        confirm = client.post(f"{path}/cancel", data={"csrf_token": token})
        assert confirm.status_code == 200 and "Cancel the subscription" in confirm.text
        assert client.post(f"{path}/cancel", data={"csrf_token": token, "confirmed": "1"}).status_code == 302
    with unscoped() as session:
        assert session.get(Subscription, sub_id).status == "cancelled"
    with _at(BOUGHT + 2 * H):
        again = client.post(f"{path}/cancel", data={"csrf_token": token, "confirmed": "1"})
        assert again.status_code == 400 and "is cancelled" in again.text


def test_bad_input_is_answered_beside_the_field(world, login):
    sub_id = _buy(world, BOUGHT, quantity=2)
    path = _page(world, sub_id)
    with _at(BOUGHT + H):
        client = login(world.users["customer_a_master_admin"].email)
        token = csrf_token(client, path)
        for value in ("", "-1", "0", "abc", "1e3", "９"):
            response = client.post(f"{path}/reduce", data={"csrf_token": token, "give_back": value})
            assert response.status_code == 400 and "Enter how many licences to give back" in response.text, value
        response = client.post(f"{path}/reduce", data={"csrf_token": token, "give_back": "2", "confirmed": "1"})
        assert response.status_code == 400 and "Keep at least 1 licence" in response.text


ROUTES = ("reduce", "cancel")


@pytest.mark.parametrize("who", ["customer_b_master_admin", "reseller_b_admin"])
def test_another_reseller_gets_404_on_every_new_route_and_nothing_changes(world, login, who):
    sub_id = _buy(world, BOUGHT, quantity=3)
    with _at(BOUGHT + H):
        client = login(world.users[who].email)
        token = csrf_token(client)
        before = database_fingerprint()
        for route in ROUTES:
            for data in (
                {"csrf_token": token, "give_back": "1"},
                {"csrf_token": token, "give_back": "1", "confirmed": "1"},
            ):
                assert client.post(f"{_page(world, sub_id)}/{route}", data=data).status_code == 404
        # Its own portal with customer A's subscription id: 404 as well.
        own = f"/portal/{world.accounts['customer_b'].id}/services/microsoft-csp/subscriptions/{sub_id}"
        for route in ROUTES:
            assert client.post(f"{own}/{route}", data={"csrf_token": token, "confirmed": "1"}).status_code in (403, 404)
        assert database_fingerprint() == before


def test_a_partner_user_cannot_reduce_or_cancel(world, login):
    sub_id = _buy(world, BOUGHT, quantity=3)
    membership = world.users["customer_a_master_admin"].membership_id
    with _at(BOUGHT + H):
        client = login(world.users["reseller_a_user"].email)
        assert (
            client.post(f"/impersonation/start/{membership}", data={"csrf_token": csrf_token(client)}).status_code
            == 302
        )
        path = _page(world, sub_id)
        page = client.get(path).text
        assert 'data-test="seat-batches"' in page and 'data-test="reduce-form"' not in page
        token = csrf_token(client, path)
        before = database_fingerprint()
        for route in ROUTES:
            response = client.post(f"{path}/{route}", data={"csrf_token": token, "give_back": "1", "confirmed": "1"})
            assert response.status_code == 403
        assert database_fingerprint() == before


# -- Partner Center: refundable quantities and cancellation as Microsoft documents them -----------------------------
OFFER = "CFQ7TTC0LDPB:0001"


def test_partner_center_reads_refundable_quantities_and_cancels_with_a_patch(fake_partner_center):
    from tests.integration.test_partner_center_client import PROFILE

    pc = fake_partner_center
    client = PartnerCenterProvider.from_config(pc.config())
    tenant = client.create_customer(PROFILE, correlation_id=new_correlation_id()).tenant_id
    bought = client.create_order(tenant, OFFER, 5, "monthly", correlation_id=new_correlation_id())
    [window] = bought.refundable
    assert window.quantity == 5 and window.allowed_until.tzinfo is None  # Microsoft's UTC time, stored naive
    assert dt.timedelta(hours=167) < window.allowed_until - dt.datetime.now(UTC).replace(tzinfo=None) <= 168 * H
    more = client.change_quantity(tenant, bought.subscription_id, 8, correlation_id=new_correlation_id())
    assert sorted(r.quantity for r in more.refundable) == [3, 5]
    pc.subscriptions[tenant][bought.subscription_id]["refundableQuantity"]["details"] = [
        {"quantity": 3, "allowedUntilDateTime": "2099-01-02T03:04:05Z"}
    ]
    with pytest.raises(ProviderError) as refused:
        client.change_quantity(tenant, bought.subscription_id, 4, correlation_id=new_correlation_id())
    assert refused.value.status == 400 and pc.requests[-1].json == {"quantity": 4}
    read = client.get_subscription(tenant, bought.subscription_id, correlation_id=new_correlation_id())
    assert read.refundable[0].allowed_until == dt.datetime(2099, 1, 2, 3, 4, 5)
    cancelled = client.cancel_subscription(
        tenant, bought.subscription_id, correlation_id=new_correlation_id(), request_id="r-cancel"
    )
    call = pc.requests[-1]
    assert (call.method, call.path, call.json) == (
        "PATCH",
        f"/v1/customers/{tenant}/subscriptions/{bought.subscription_id}",
        {"status": "deleted"},
    )
    assert call.header("MS-RequestId") == "r-cancel" and cancelled.status == "deleted"
    pc.subscriptions[tenant][bought.subscription_id].update(
        status="active", cancellationAllowedUntilDate="2020-01-01T00:00:00Z"
    )
    with pytest.raises(ProviderError) as refused:
        client.cancel_subscription(tenant, bought.subscription_id, correlation_id=new_correlation_id())
    assert refused.value.status == 400


def test_a_cancel_interrupted_by_a_crash_is_settled_by_asking_microsoft(app, world, sandbox, in_app):
    """The sender died after Microsoft cancelled: the recoverer reads Microsoft's record and the portal matches it."""
    from app.services import recovery

    sub_id = _buy(world, BOUGHT, quantity=2)
    with _at(BOUGHT + H), unscoped() as session:
        sub = session.get(Subscription, sub_id)
        params = {"subscription_id": sub.id, "provider_subscription_id": sub.provider_subscription_id}
        licensing._begin(windows.CANCEL, sub.account_id, f"subscription:{sub.id}", params)
        session.commit()
        sandbox.cancel_subscription(sub.account.tenant.tenant_guid, sub.provider_subscription_id, correlation_id="t")
    with _at(BOUGHT + 2 * H), app.app_context():
        assert recovery.recover_all() >= 1
    with unscoped() as session:
        assert session.get(Subscription, sub_id).status == "cancelled"
        operation = session.scalars(select(ProviderOperation).where(ProviderOperation.kind == windows.CANCEL)).one()
        assert operation.state == "succeeded"
        assert session.scalars(select(Event).where(Event.action == "subscription.cancelled")).one()

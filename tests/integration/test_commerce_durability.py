"""Durability of issue 13's changes of Microsoft's state: a quantity increase or decrease (with its seat batches), a
cancellation, a change scheduled for renewal and its clearing, an upgrade (all seats or some, and the licence moves
after it), an order (cart, then checkout). Each is an operation committed ``pending`` before Microsoft is asked. After
a lost answer Microsoft is read back and the portal matches it; when even the read fails, the user hears "not known
yet" and the recoverer settles it once it is stale; a process killed after Microsoft answered (a real process exiting
at the named fault point) is settled by ``recover_all``. Every scenario ends with the portal equal to the provider —
quantities, status, SKU, what is scheduled, the seats still returnable, licences — and ``flask portal reconcile``
finding no difference."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from decimal import Decimal

import pytest
import time_machine
from sqlalchemy import func, select

from app import clock
from app.extensions import db
from app.models.accounts import Account
from app.models.catalog import Availability, Product
from app.models.csp import SandboxSeatBatch, SandboxSubscription
from app.models.operations import ProviderOperation
from app.models.subscriptions import SeatBatch, Subscription
from app.services import catalogue, licensing, ordering, recovery, renewals, windows
from app.services.reconcile import PORTAL_STATUS
from security import scoping
from tests import clocked, factories
from tests.conftest import unscoped
from tests.integration.test_operations_recovery import differences as licence_differences
from tests.integration.test_reports import ROOT

LATER = dt.timedelta(minutes=5)  # past OPERATION_TIMEOUT_SECONDS (120) and LICENCE_LEASE_SECONDS (60)


# -- the changes, by name: run here, or in a process that will be killed ----------------------------------------------
def _sub(ids: dict, key: str = "sub") -> Subscription:
    return db.session.get(Subscription, ids[key])


def _offer(ids: dict, key: str) -> Availability:
    return db.session.get(Availability, ids[key])


CHANGES = {
    "increase": lambda ids: licensing.change_quantity(_sub(ids, "fresh"), 5),
    "decrease": lambda ids: licensing.change_quantity(_sub(ids, "fresh"), 2),
    "cancel": lambda ids: windows.cancel(_sub(ids, "fresh")),
    "schedule": lambda ids: renewals.schedule(_sub(ids), _offer(ids, "monthly"), 5),
    "clear": lambda ids: renewals.clear(_sub(ids)),
    "upgrade_all": lambda ids: renewals.upgrade(_sub(ids), _offer(ids, "standard"), 4),
    "upgrade_some": lambda ids: renewals.upgrade(_sub(ids), _offer(ids, "standard"), 2),
}
SETUP = {"clear": lambda ids: renewals.schedule(_sub(ids), _offer(ids, "monthly"), 5)}
KIND = {
    "increase": "quantity",
    "decrease": "quantity",
    "cancel": windows.CANCEL,
    "schedule": renewals.SCHEDULE,
    "clear": renewals.SCHEDULE,
    "upgrade_all": renewals.UPGRADE,
    "upgrade_some": renewals.UPGRADE,
}
READ = {"upgrade_all": "list_subscriptions", "upgrade_some": "list_subscriptions"}  # else get_subscription

KILLED = """
import json, sys
from app import create_app
from app.extensions import db
from security import scoping
from tests.integration.test_commerce_durability import CHANGES

app = create_app()
with app.app_context(), scoping.bypass("test: a change whose process will be killed"):
    CHANGES[sys.argv[1]](json.loads(sys.argv[2]))
    db.session.commit()
"""


@pytest.fixture
def ids(app, world) -> dict:
    """Customer A; its Business Basic subscription (4 licences, 3 assigned); a fresh order of 3 Exchange licences
    (its purchase window open); Business Standard (an eligible upgrade) and Business Basic monthly on sale."""
    with app.app_context(), scoping.bypass("test catalogue"):
        standard = factories.availability(
            factories.product("Microsoft 365 Business Standard", "TEST-STD", "15.00", "12.75")
        )
        monthly = catalogue.ensure_availability(
            db.session.get(Product, world.rows["products"]["basic"]), "P1M", "monthly"
        )
        catalogue.set_price(monthly, Decimal("9.18"), Decimal("10.80"))
        db.session.commit()
        customer = db.session.get(Account, world.accounts["customer_a"].id)
        exchange = db.session.get(Product, world.rows["products"]["exchange"]).availabilities[0]
        fresh = ordering.order(customer, exchange, 3)
        db.session.commit()
        return {
            "customer": customer.id,
            "sub": world.rows["a"]["subscription"],
            "fresh": fresh.id,
            "standard": standard.id,
            "monthly": monthly.id,
        }


def _run(app, change, ids: dict) -> str:
    """One request's worth, committed; what the user would be told."""
    with app.app_context(), scoping.bypass("test: a change"):
        try:
            change(ids)
            db.session.commit()
            return "done"
        except licensing.LicenceError as exc:
            db.session.rollback()
            return str(exc)
        finally:
            db.session.remove()


def _setup(app, name: str, ids: dict) -> None:
    if name in SETUP:
        assert _run(app, SETUP[name], ids) == "done"


def _operation(kind: str) -> ProviderOperation:
    with unscoped() as session:
        operation = session.scalars(
            select(ProviderOperation).where(ProviderOperation.kind == kind).order_by(ProviderOperation.id.desc())
        ).first()
        session.expunge(operation)
        return operation


def _states() -> dict[str, list[str]]:
    with unscoped() as session:
        found: dict[str, list[str]] = {}
        for kind, state in session.execute(select(ProviderOperation.kind, ProviderOperation.state)):
            found.setdefault(kind, []).append(state)
        return found


def _later(times: int = 1):
    return time_machine.travel(clock.utcnow().replace(tzinfo=dt.UTC) + times * LATER, tick=True)


def differences(customer_id: int) -> list[str]:
    """Where the portal and the provider disagree about the customer: licences, users, quantities and auto-renew (as
    issue 12's check), and also each subscription's status, SKU, what is scheduled for renewal, the seats still
    returnable now, and a subscription only at Microsoft."""
    found = licence_differences(customer_id)
    now = clock.utcnow()
    with unscoped() as session:
        tenant = session.get(Account, customer_id).tenant.tenant_guid
        linked = set()
        for sub in session.scalars(select(Subscription).where(Subscription.account_id == customer_id)):
            linked.add(sub.provider_subscription_id)
            remote = session.scalars(
                select(SandboxSubscription).where(SandboxSubscription.subscription_id == sub.provider_subscription_id)
            ).one()
            name = f"subscription {sub.id}"
            if PORTAL_STATUS[remote.status] != sub.status:
                found.append(f"{name}: {sub.status} here, {remote.status} there")
            if remote.offer_id != sub.product.sku:
                found.append(f"{name}: {sub.product.sku} here, {remote.offer_id} there")
            ours = renewals._portal_scheduled(sub)
            theirs = (remote.next_offer_id, remote.next_term, remote.next_billing_cycle, remote.next_quantity)
            if (ours is None) != (remote.next_quantity is None and remote.next_offer_id is None) or (
                ours is not None
                and (ours.offer_id, ours.term, ours.billing_cycle, ours.quantity)
                != (
                    remote.next_offer_id or remote.offer_id,
                    remote.next_term,
                    remote.next_billing_cycle,
                    remote.next_quantity,
                )
            ):
                found.append(f"{name}: scheduled {ours} here, {theirs} there")
            if sub.status == "active":
                here = sum(
                    b.refundable
                    for b in session.scalars(select(SeatBatch).where(SeatBatch.subscription_id == sub.id))
                    if b.refundable > 0 and b.refundable_until > now
                )
                there = sum(
                    b.quantity
                    for b in session.scalars(
                        select(SandboxSeatBatch).where(SandboxSeatBatch.subscription_id == sub.provider_subscription_id)
                    )
                    if b.quantity > 0 and b.allowed_until > now
                )
                if here != there:
                    found.append(f"{name}: {here} seats returnable here, {there} there")
        for remote in session.scalars(select(SandboxSubscription).where(SandboxSubscription.tenant_id == tenant)):
            if remote.subscription_id not in linked and remote.status == "active":
                found.append(f"{remote.offer_id} × {remote.quantity}: only at Microsoft")
    return found


def _reconciled(app) -> None:
    """``flask portal reconcile`` finds nothing (and skips nobody: nothing is in flight)."""
    result = app.test_cli_runner().invoke(args=["portal", "reconcile"])
    assert "differences: 0;" in result.output and "skipped: 0." in result.output, result.output


def _agree(app, ids: dict) -> None:
    assert differences(ids["customer"]) == []
    _reconciled(app)


# -- first the operation, then the call -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(CHANGES))
def test_the_operation_is_committed_pending_before_microsoft_is_asked(app, ids, sandbox, name):
    """Microsoft refuses (before it changes anything): the operation was there before the call, with the request id
    the call carried; it is failed with the truth, and nothing else moved."""
    _setup(app, name, ids)
    write = {"increase": "change_quantity", "decrease": "change_quantity", "cancel": "cancel_subscription"}.get(
        name, "transition" if name.startswith("upgrade") else "schedule_next_term"
    )
    seen: list[tuple[str, str]] = []
    original = getattr(sandbox, write)

    def spy(*args, **kwargs):
        with unscoped() as session:  # what another connection sees at the moment of the call
            seen.extend(
                session.execute(
                    select(ProviderOperation.state, ProviderOperation.request_id).where(
                        ProviderOperation.kind == KIND[name], ProviderOperation.state == "pending"
                    )
                ).all()
            )
        seen.append(("sent", kwargs.get("request_id")))
        return original(*args, **kwargs)

    sandbox.fail_rate, sandbox.fail_operations = 1.0, frozenset({write})
    setattr(sandbox, write, spy)
    try:
        answer = _run(app, CHANGES[name], ids)
    finally:
        delattr(sandbox, write)
    assert len(seen) == 2 and seen[0][0] == "pending" and seen[1] == ("sent", seen[0][1])
    assert "Microsoft did not" in answer and "as Microsoft confirms" in answer and "not known" not in answer
    operation = _operation(KIND[name])
    assert operation.state == "failed" and operation.request_id == seen[0][1]
    _agree(app, ids)


# -- a lost answer: read back ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(CHANGES))
def test_a_lost_answer_is_read_back_and_the_portal_matches(app, ids, sandbox, name):
    _setup(app, name, ids)
    sandbox.lost_answer_rate = 1.0  # Microsoft makes each change, and its answer is lost
    assert _run(app, CHANGES[name], ids) == "done"
    sandbox.lost_answer_rate = 0.0
    assert set(_states()[KIND[name]]) == {"succeeded"}
    if name.startswith("upgrade"):
        assert _states()[renewals.LICENCE_MOVE] == ["succeeded"] * (3 if name == "upgrade_all" else 2)
    _agree(app, ids)


@pytest.mark.parametrize("name", list(CHANGES))
def test_unknown_stays_pending_told_not_known_and_is_recovered(app, ids, sandbox, name):
    """The answer lost and the read-back failing too: "not known yet" (never "nothing changed"), pending; once it is
    stale the recoverer asks Microsoft and the portal matches."""
    _setup(app, name, ids)
    sandbox.lost_answer_rate = 1.0
    sandbox.fail_rate, sandbox.fail_operations = 1.0, frozenset({READ.get(name, "get_subscription")})
    answer = _run(app, CHANGES[name], ids)
    assert "not known yet" in answer and "Nothing was changed" not in answer
    assert _operation(KIND[name]).state == "pending"
    sandbox.lost_answer_rate, sandbox.fail_rate = 0.0, 0.0
    with _later(), app.app_context():
        assert recovery.recover_all() >= 1
    assert "pending" not in {s for states in _states().values() for s in states}
    assert _operation(KIND[name]).state == "succeeded"
    with _later(2):  # reconciliation reads after what recovery sent
        _agree(app, ids)


# -- a process killed after Microsoft answered -------------------------------------------------------------------------
def _killed(database_url: str, tmp_path, name: str, ids: dict) -> None:
    env = {
        **os.environ,
        "PORTAL_ENV": "testing",
        "DATABASE_URL": database_url,
        "PORTAL_INSTANCE_PATH": str(tmp_path / "killed"),
        "PYTHONPATH": str(ROOT),
        "PORTAL_FAULT_POINT": "after_provider_call",
    }
    done = subprocess.run(
        clocked.command("-c", KILLED, name, json.dumps(ids)),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 137, done.stderr[-2000:]


@pytest.mark.parametrize("name", list(CHANGES))
def test_a_process_killed_after_microsoft_answered_is_settled_by_recovery(
    app, ids, sandbox, tmp_path, database_url, name
):
    _setup(app, name, ids)
    _killed(database_url, tmp_path, name, ids)
    operation = _operation(KIND[name])
    assert operation.state == "pending" and operation.correlation_id
    assert differences(ids["customer"])  # Microsoft did it; the portal never recorded it
    runner = app.test_cli_runner()
    with _later():
        result = runner.invoke(args=["portal", "recover-operations"])
        assert "settled: 0." not in result.output, result.output
    assert "pending" not in {s for states in _states().values() for s in states}, _states()
    settled = _operation(KIND[name])
    assert settled.state == "succeeded" and settled.request_id == operation.request_id
    with _later(2):  # the licence lease of the killed process has lapsed by now
        _agree(app, ids)


def test_an_upgrade_killed_in_its_licence_moves_is_finished_by_recovery(
    app, ids, sandbox, tmp_path, database_url, monkeypatch
):
    """Killed while moving the first user's licence (the upgrade recorded, its other moves never sent): recovery
    settles that move and sends the ones left, so every mover holds the new SKU here and at Microsoft."""
    sandbox.lost_answer_rate = 0.0
    # The upgrade's own call answers; the first licence move's process dies after Microsoft made it.
    with app.app_context():
        from app import faults

        calls = {"n": 0}
        real = faults.point

        def point(name):
            if name == faults.AFTER_PROVIDER_CALL:
                calls["n"] += 1
                if calls["n"] == 2:
                    raise SystemExit("killed")
            return real(name)

        monkeypatch.setattr(faults, "point", point)
    with pytest.raises(SystemExit), app.app_context(), scoping.bypass("test: killed in the moves"):
        try:
            CHANGES["upgrade_some"](ids)
        finally:
            db.session.remove()  # a killed process commits nothing more
    monkeypatch.undo()
    assert _states()[renewals.UPGRADE] == ["pending"] and _states()[renewals.LICENCE_MOVE] == ["pending"]
    with unscoped() as session:  # recorded here, before its licence moves: recovery never records it twice
        assert session.scalar(
            select(func.count(Subscription.id)).where(Subscription.availability_id == ids["standard"])
        )
    with _later(), app.app_context():
        recovery.recover_all()
    assert "pending" not in {s for states in _states().values() for s in states}, _states()
    with unscoped() as session:
        holder = session.scalars(select(Subscription).where(Subscription.availability_id == ids["standard"])).one()
        assert (holder.quantity, holder.assigned, session.get(Subscription, ids["sub"]).quantity) == (2, 2, 2)
    with _later(2):
        _agree(app, ids)


def test_an_order_microsoft_refuses_is_failed_and_says_so(app, ids, sandbox):
    """A refusal (400) is not an unknown: failed, nothing placed, nothing asked again."""
    sandbox.fail_rate, sandbox.fail_operations = 1.0, frozenset({"checkout_cart"})
    original = sandbox._call

    def refuse(operation, correlation_id):
        try:
            original(operation, correlation_id)
        except licensing.ProviderError as exc:
            raise licensing.ProviderError(str(exc), correlation_id=correlation_id, status=400) from None

    sandbox._call = refuse
    try:
        answer = _run(app, _order, ids)
    finally:
        del sandbox._call
    assert "Microsoft did not confirm the order" in answer and "Send this form again" in answer
    assert "not known" not in answer
    assert _operation(ordering.ORDER).state == "failed"
    _agree(app, ids)


# -- orders: the cart and its checkout ---------------------------------------------------------------------------------
def _order(ids: dict) -> None:
    customer = db.session.get(Account, ids["customer"])
    ordering.order(customer, db.session.get(Product, _exchange_id(ids)).availabilities[0], 2)


def _exchange_id(ids: dict) -> int:
    return db.session.get(Subscription, ids["fresh"]).product_id


def test_an_order_whose_answers_are_lost_is_never_left_unknown(app, ids, sandbox):
    """Microsoft checks the cart out and every answer is lost: the user is not told it failed; the operation stays
    pending, and without the form being sent again the recoverer sends the same requests (Microsoft answers with
    what the first made) — one subscription here and at Microsoft."""
    sandbox.lost_answer_rate = 1.0
    answer = _run(app, _order, ids)
    assert "Microsoft did not confirm the order" in answer and "not known yet" in answer
    assert _operation(ordering.ORDER).state == "pending"
    sandbox.lost_answer_rate = 0.0
    with _later(), app.app_context():
        assert recovery.recover_all() >= 1
    assert _operation(ordering.ORDER).state == "succeeded"
    with _later(2):
        _agree(app, ids)


def test_an_order_whose_answer_is_lost_once_is_read_back_at_once(app, ids, sandbox):
    """Only the checkout's answer is lost: the same requests sent again get Microsoft's first answer — placed."""
    original = sandbox.checkout_cart
    lost = {"n": 0}

    def checkout(*args, **kwargs):
        made = original(*args, **kwargs)
        if not lost["n"]:
            lost["n"] += 1
            raise licensing.ProviderError("lost", correlation_id=kwargs["correlation_id"], status=504)
        return made

    sandbox.checkout_cart = checkout
    try:
        assert _run(app, _order, ids) == "done"
    finally:
        del sandbox.checkout_cart
    assert _operation(ordering.ORDER).state == "succeeded"
    _agree(app, ids)


# -- the renew pass: Microsoft's renewal read back, never assumed --------------------------------------------------
def test_the_renew_pass_reads_microsoft_back_and_a_rerun_changes_nothing(app, ids, sandbox):
    _setup(app, "clear", ids)  # a change scheduled: Business Basic monthly, 5 licences
    with unscoped() as session:
        renew_on = session.get(Subscription, ids["sub"]).renew_on
    at = dt.datetime.combine(renew_on, dt.time(1), tzinfo=dt.UTC)
    with time_machine.travel(at, tick=False):
        sandbox.fail_rate, sandbox.fail_operations = 1.0, frozenset({"get_subscription"})
        failed = app.test_cli_runner().invoke(args=["portal", "renew"])
        assert "renewed 0" in failed.output, failed.output  # Microsoft renewed; the portal could not read it: waits
        sandbox.fail_rate = 0.0
        first = app.test_cli_runner().invoke(args=["portal", "renew"])
        again = app.test_cli_runner().invoke(args=["portal", "renew"])
        assert "renewed 2," in first.output and "renewed 0, expired 0" in again.output, first.output + again.output
        with unscoped() as session:
            sub = session.get(Subscription, ids["sub"])
            assert (sub.availability_id, sub.quantity) == (ids["monthly"], 5)
        _agree(app, ids)


def test_upgrading_seats_still_in_their_window_takes_them_from_the_open_batch(app, ids, sandbox):
    """Some seats of a fresh purchase upgraded: Microsoft takes them from the purchase's open batch (the new
    subscription has its own window); so does the portal — the seats still returnable agree."""
    with app.app_context(), scoping.bypass("test catalogue"):
        plan2 = factories.availability(factories.product("Exchange Online (Plan 2)", "TEST-EXO2", "9.90", "8.40")).id
        db.session.commit()
    sandbox.lost_answer_rate = 1.0
    upgrade = lambda ids: renewals.upgrade(_sub(ids, "fresh"), db.session.get(Availability, plan2), 1)  # noqa: E731
    assert _run(app, upgrade, ids) == "done"
    sandbox.lost_answer_rate = 0.0
    with unscoped() as session:
        assert session.get(Subscription, ids["fresh"]).quantity == 2
        assert windows.refundable(session.get(Subscription, ids["fresh"])) == 2
    _agree(app, ids)

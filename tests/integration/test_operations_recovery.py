"""Every change of Microsoft's state is a durable provider operation (issue 12, parts 1–2): quantity, auto-renew,
licence assign and remove, Microsoft 365 user create, enable, disable, delete and password reset — written and
committed ``pending`` before Microsoft is asked, recorded ``succeeded`` or ``failed`` with Microsoft's answer, its
correlation id and request id. After a refusal, a lost answer, or a read-back that fails too, the user is told what is
true; a process killed after Microsoft answered (a real process exiting at the named fault point) leaves the operation
pending, and ``recover_all`` asks Microsoft and makes the portal equal the provider, each repair an event. A password
is in no table, no log line and no event. The Partner Center client's user calls are checked against the local HTTPS
fake."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess

import pytest
import time_machine
from sqlalchemy import func, inspect, select

from app import clock
from app.csp.base import AgreementAcceptance, CompanyProfile, ProviderError, new_correlation_id
from app.csp.partner_center import PartnerCenterProvider
from app.extensions import db
from app.models.accounts import Account, MicrosoftTenant
from app.models.catalog import Product
from app.models.csp import SandboxSubscription, SandboxUser
from app.models.events import Event
from app.models.operations import ProviderOperation
from app.models.subscriptions import LicenceAssignment, M365User, Subscription, UsagePoint
from app.services import licensing, operations, recovery, tenants
from security import scoping
from tests import clocked
from tests.conftest import unscoped
from tests.integration.test_licence_lease import _as_request
from tests.integration.test_reports import ROOT

LATER = dt.timedelta(minutes=5)  # past OPERATION_TIMEOUT_SECONDS (120) and LICENCE_LEASE_SECONDS (60)
NEW_PASSWORD = "Tuatara-Basket-Seventeen-42!"

# -- the changes, by kind: run here under a customer's scope, or in a process that will be killed ------------------


def _get(model, key):
    return db.session.get(model, key)


def _pre_disable(ids: dict) -> None:
    licensing.set_m365_user_status(_get(M365User, ids["person"]), False)


CHANGES = {
    "quantity": lambda ids: licensing.change_quantity(
        _get(Subscription, ids["sub2"]), _get(Subscription, ids["sub2"]).quantity + 2
    ),
    "auto_renew": lambda ids: licensing.set_auto_renew(
        _get(Subscription, ids["sub2"]), not _get(Subscription, ids["sub2"]).auto_renew
    ),
    "licence_assign": lambda ids: licensing.assign(_get(Subscription, ids["sub2"]), _get(M365User, ids["other"])),
    "licence_remove": lambda ids: licensing.unassign(_get(Subscription, ids["sub2"]), _get(M365User, ids["person"])),
    "m365_user_create": lambda ids: licensing.add_m365_user(
        _get(Account, ids["customer"]), "Nia", "New", "nia", os.environ.get("NEW_PASSWORD", NEW_PASSWORD)
    ),
    "m365_user_disable": lambda ids: licensing.set_m365_user_status(_get(M365User, ids["person"]), False),
    "m365_user_enable": lambda ids: licensing.set_m365_user_status(_get(M365User, ids["person"]), True),
    "m365_user_delete": lambda ids: licensing.delete_m365_user(_get(M365User, ids["person"])),
    "m365_user_reset_password": lambda ids: licensing.reset_m365_user_password(_get(M365User, ids["person"])),
}
SETUP = {"m365_user_enable": _pre_disable}  # enabling needs a disabled user first
WRITE = {  # the sandbox's name of each kind's call to Microsoft, and of the read that tells the truth after it
    "quantity": ("change_quantity", "get_subscription"),
    "auto_renew": ("set_auto_renew", "get_subscription"),
    "licence_assign": ("assign_licences", "get_user_licences"),
    "licence_remove": ("assign_licences", "get_user_licences"),
    "m365_user_create": ("create_user", "find_user"),
    "m365_user_disable": ("set_user_enabled", "get_user"),
    "m365_user_enable": ("set_user_enabled", "get_user"),
    "m365_user_delete": ("delete_user", "get_user"),
    "m365_user_reset_password": ("reset_user_password", None),
}
REPAIR = {  # the event recovery records after a crash at AFTER_PROVIDER_CALL
    "quantity": "subscription.repaired",
    "auto_renew": "subscription.repaired",
    "licence_assign": "licence.repaired",
    "licence_remove": "licence.repaired",
    "m365_user_create": "m365_user.repaired",
    "m365_user_disable": "m365_user.repaired",
    "m365_user_enable": "m365_user.repaired",
    "m365_user_delete": "m365_user.deleted",
    "m365_user_reset_password": "m365_user.unconfirmed",
}
READ_BACK = [kind for kind, (_write, read) in WRITE.items() if read]
NOUN = {
    "quantity": "subscription",
    "auto_renew": "subscription",
    "licence_assign": "licence",
    "licence_remove": "licence",
}

KILLED = """
import json, sys
from app import create_app
from app.extensions import db
from security import scoping
from tests.integration.test_operations_recovery import CHANGES

app = create_app()
with app.app_context(), scoping.bypass("test: a change whose process will be killed"):
    CHANGES[sys.argv[1]](json.loads(sys.argv[2]))
    db.session.commit()
"""


@pytest.fixture
def ids(world) -> dict:
    with unscoped() as session:
        other = session.scalar(select(M365User.id).where(M365User.user_principal_name == "p1@aardvark.onmicrosoft.com"))
    return {
        "customer": world.accounts["customer_a"].id,
        "sub": world.rows["a"]["subscription"],
        "sub2": world.rows["a"]["subscription2"],
        "person": world.rows["a"]["m365_user"],
        "other": other,
    }


def _target(kind: str, ids: dict) -> str:
    if kind.startswith(("quantity", "auto_renew", "licence")):
        return f"subscription:{ids['sub2']}"
    return f"account:{ids['customer']}" if kind == "m365_user_create" else f"m365_user:{ids['person']}"


def _run(app, kind: str, ids: dict) -> str:
    return _as_request(app, ids["customer"], lambda: CHANGES[kind](ids))


def differences(customer_id: int) -> list[str]:
    """Where the portal and the provider (the sandbox's tables) disagree about the customer: subscriptions (quantity,
    auto-renew, assigned count), users (which exist, enabled) and each user's licences."""
    found = []
    with unscoped() as session:
        tenant = session.get(Account, customer_id).tenant.tenant_guid
        for sub in session.scalars(select(Subscription).where(Subscription.account_id == customer_id)):
            remote = session.scalars(
                select(SandboxSubscription).where(SandboxSubscription.subscription_id == sub.provider_subscription_id)
            ).one()
            if (remote.quantity, remote.auto_renew) != (sub.quantity, sub.auto_renew):
                found.append(f"subscription {sub.id}: {remote.quantity, remote.auto_renew} at Microsoft")
            held = session.scalar(
                select(func.count(LicenceAssignment.id)).where(LicenceAssignment.subscription_id == sub.id)
            )
            if held != sub.assigned:
                found.append(f"subscription {sub.id}: assigned {sub.assigned}, {held} assignments")
        people = {
            p.provider_user_id: p for p in session.scalars(select(M365User).where(M365User.account_id == customer_id))
        }
        remote_users = {
            u.user_id: u for u in session.scalars(select(SandboxUser).where(SandboxUser.tenant_id == tenant))
        }
        if set(people) != set(remote_users):
            found.append(f"users: {sorted(set(people) ^ set(remote_users))} on one side only")
        for user_id in set(people) & set(remote_users):
            person, remote = people[user_id], remote_users[user_id]
            if (person.status == "active") != remote.enabled:
                found.append(f"{person.user_principal_name}: {person.status} here, enabled={remote.enabled} there")
            skus = set(
                session.scalars(
                    select(Product.sku)
                    .join(Subscription, Subscription.product_id == Product.id)
                    .join(LicenceAssignment, LicenceAssignment.subscription_id == Subscription.id)
                    .where(LicenceAssignment.m365_user_id == person.id)
                )
            )
            if skus != set(remote.sku_ids.split()):
                found.append(f"{person.user_principal_name}: {sorted(skus)} here, {remote.sku_ids!r} there")
    return found


def _operation(kind: str) -> ProviderOperation:
    with unscoped() as session:
        operation = session.scalars(
            select(ProviderOperation).where(ProviderOperation.kind == kind).order_by(ProviderOperation.id.desc())
        ).first()
        session.expunge(operation)
        return operation


def _events(action: str) -> int:
    with unscoped() as session:
        return session.scalar(select(func.count(Event.id)).where(Event.action == action))


def _in_flight(app) -> set[str]:
    with app.app_context(), scoping.bypass("test: what is in flight"):
        return operations.in_flight_targets()


def _later():
    return time_machine.travel(clock.utcnow().replace(tzinfo=dt.UTC) + LATER, tick=True)


def _setup(app, kind: str, ids: dict) -> None:
    if kind in SETUP:
        assert _as_request(app, ids["customer"], lambda: SETUP[kind](ids)) == "done"


# -- success, refusal, a lost answer, an unknown outcome -----------------------------------------------------------


@pytest.mark.parametrize("kind", list(CHANGES))
def test_a_change_is_an_operation_recorded_with_microsofts_answer(app, world, ids, sandbox, kind):
    assert differences(ids["customer"]) == []
    _setup(app, kind, ids)
    assert _run(app, kind, ids) == "done"
    operation = _operation(kind)
    assert operation.state == "succeeded" and operation.finished_on is not None
    assert operation.correlation_id and operation.request_id and operation.error is None
    assert operation.target == _target(kind, ids)
    assert "password" not in operation.params.lower()
    assert differences(ids["customer"]) == []
    assert _in_flight(app) == set()


@pytest.mark.parametrize("kind", list(CHANGES))
def test_a_refused_change_is_recorded_failed_and_the_user_told_what_is_true(app, world, ids, sandbox, kind):
    _setup(app, kind, ids)
    sandbox.fail_rate, sandbox.fail_operations = 1.0, frozenset({WRITE[kind][0]})
    answer = _run(app, kind, ids)
    assert "Microsoft did not" in answer and "Nothing was changed" not in answer
    if kind == "m365_user_reset_password":
        assert "not known" in answer and "no new password was shown" in answer  # a password cannot be read back
    else:
        assert "Microsoft confirms" in answer and "not known" not in answer
    operation = _operation(kind)
    assert operation.state == "failed" and operation.correlation_id and operation.error
    assert differences(ids["customer"]) == []


@pytest.mark.parametrize("kind", list(CHANGES))
def test_a_change_whose_answer_is_lost_is_read_back_and_told_truly(app, world, ids, sandbox, kind):
    _setup(app, kind, ids)
    sandbox.lost_answer_rate = 1.0  # Microsoft makes each change, and its answer is lost
    answer = _run(app, kind, ids)
    operation = _operation(kind)
    if kind == "m365_user_reset_password":
        assert "not known" in answer and operation.state == "failed"
    else:
        assert answer == "done" and operation.state == "succeeded"  # Microsoft did it: that is what is true
    assert differences(ids["customer"]) == []


@pytest.mark.parametrize("kind", READ_BACK)
def test_a_change_microsoft_cannot_confirm_stays_pending_until_recovery_asks(app, world, ids, sandbox, kind):
    """The change is made at Microsoft, its answer lost, and reading it back fails too: "not known yet" (never
    "nothing changed"), the operation pending and in flight; once it is stale, recovery asks and repairs."""
    _setup(app, kind, ids)
    noun = NOUN.get(kind, "m365_user")
    unconfirmed = _events(f"{noun}.unconfirmed")
    sandbox.lost_answer_rate = 1.0
    sandbox.fail_rate, sandbox.fail_operations = 1.0, frozenset({WRITE[kind][1]})
    answer = _run(app, kind, ids)
    assert "not known yet: look again in a minute" in answer and "Nothing was changed" not in answer
    assert _operation(kind).state == "pending"
    assert _target(kind, ids) in _in_flight(app)
    assert _events(f"{noun}.unconfirmed") == unconfirmed + 1
    assert differences(ids["customer"])  # Microsoft changed; the portal does not know it yet

    sandbox.lost_answer_rate, sandbox.fail_rate = 0.0, 0.0
    with app.app_context():
        assert recovery.recover_all() == 0  # not stale yet: its sender may still be at work
    repairs = _events(REPAIR[kind])
    with _later(), app.app_context():
        assert recovery.recover_all() == 1
    assert _operation(kind).state == "succeeded"
    assert differences(ids["customer"]) == []
    assert _events(REPAIR[kind]) == repairs + 1
    assert _in_flight(app) == set()


def test_recovery_that_cannot_ask_microsoft_leaves_the_operation_pending_and_the_lease_free(app, world, ids, sandbox):
    sandbox.lost_answer_rate = 1.0
    sandbox.fail_rate, sandbox.fail_operations = 1.0, frozenset({"get_user_licences"})
    assert "not known yet" in _run(app, "licence_assign", ids)
    sandbox.lost_answer_rate = 0.0  # Microsoft still cannot be asked
    with _later(), app.app_context():
        assert recovery.recover_all() == 0
    assert _operation("licence_assign").state == "pending"
    with unscoped() as session:
        assert session.get(Subscription, ids["sub2"]).licence_lease is None
    sandbox.fail_rate = 0.0
    with time_machine.travel(clock.utcnow().replace(tzinfo=dt.UTC) + 2 * LATER, tick=True), app.app_context():
        assert recovery.recover_all() == 1
    assert differences(ids["customer"]) == []


def test_a_quantity_is_not_repaired_while_a_live_change_holds_the_subscriptions_lease(app, world, ids, sandbox):
    """Recovery repairs a quantity (and its seat batches) as a live change would: under the subscription's licence
    lease. While a reduction holds it, the operation stays pending; once the lease is free, it is settled."""
    _setup(app, "quantity", ids)
    sandbox.lost_answer_rate = 1.0
    sandbox.fail_rate, sandbox.fail_operations = 1.0, frozenset({"get_subscription"})
    assert "not known yet" in _run(app, "quantity", ids)
    sandbox.lost_answer_rate, sandbox.fail_rate = 0.0, 0.0
    with _later(), app.app_context():
        with scoping.bypass("test: a reduction under way"):
            licensing._Lease(db.session.get(Subscription, ids["sub2"])).claim()
        assert recovery.recover_all() == 0
    assert _operation("quantity").state == "pending"
    assert differences(ids["customer"])
    with time_machine.travel(clock.utcnow().replace(tzinfo=dt.UTC) + 2 * LATER, tick=True), app.app_context():
        assert recovery.recover_all() == 1  # the lease lapsed (its holder died): settled now
    assert _operation("quantity").state == "succeeded"
    assert differences(ids["customer"]) == []


def test_adding_a_user_microsoft_already_has_lists_it_and_says_so(app, world, ids, sandbox):
    with app.app_context():
        tenant = sandbox.adopt_customer("aardvark", "Aardvark Farms")
        sandbox.create_user(
            tenant,
            first_name="Nia",
            last_name="Old",
            user_principal_name="nia@aardvark.onmicrosoft.com",
            password="Some-0ther-Password!",
            usage_location="NZ",
            correlation_id=new_correlation_id(),
        )
    answer = _run(app, "m365_user_create", ids)
    assert "already existed at Microsoft and is listed here now; reset its password" in answer
    assert _operation("m365_user_create").state == "failed"
    assert differences(ids["customer"]) == []


# -- a process killed after Microsoft answered ----------------------------------------------------------------------


def _killed(database_url: str, tmp_path, kind: str, ids: dict) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PORTAL_ENV": "testing",
        "DATABASE_URL": database_url,
        "PORTAL_INSTANCE_PATH": str(tmp_path / "killed"),
        "PYTHONPATH": str(ROOT),
        "PORTAL_FAULT_POINT": "after_provider_call",
        "NEW_PASSWORD": NEW_PASSWORD,
    }
    done = subprocess.run(
        clocked.command("-c", KILLED, kind, json.dumps(ids)),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 137, done.stderr[-2000:]
    return done


@pytest.mark.parametrize("kind", list(CHANGES))
def test_a_process_killed_after_microsoft_answered_is_settled_by_recovery(
    app, world, ids, sandbox, tmp_path, database_url, kind
):
    _setup(app, kind, ids)
    done = _killed(database_url, tmp_path, kind, ids)
    assert NEW_PASSWORD not in done.stdout + done.stderr
    operation = _operation(kind)
    assert operation.state == "pending" and operation.correlation_id  # known before it was sent
    assert operation.target == _target(kind, ids) and operation.target in _in_flight(app)
    if kind != "m365_user_reset_password":
        assert differences(ids["customer"])  # Microsoft did it; the portal never recorded it
    runner = app.test_cli_runner()
    assert "settled: 0." in runner.invoke(args=["portal", "recover-operations"]).output
    repairs = _events(REPAIR[kind])
    with _later():
        result = runner.invoke(args=["portal", "recover-operations"])
    assert "settled: 1." in result.output, result.output
    assert differences(ids["customer"]) == []
    assert _events(REPAIR[kind]) == repairs + 1
    settled = _operation(kind)
    assert settled.state == ("failed" if kind == "m365_user_reset_password" else "succeeded")
    assert settled.request_id == operation.request_id
    assert _in_flight(app) == set()
    _nowhere(NEW_PASSWORD)


# -- secrets ------------------------------------------------------------------------------------------------------


def _nowhere(secret: str) -> None:
    """``secret`` is in no column of any row of any table (text, or bytes such as a stored session)."""
    with unscoped() as session:
        engine = session.get_bind()
        for table in inspect(engine).get_table_names():
            for row in session.execute(db.text(f'SELECT * FROM "{table}"')):  # noqa: S608 - names from the schema
                for value in row:
                    if isinstance(value, (bytes, memoryview)):
                        assert secret.encode() not in bytes(value), f"in {table}"
                    elif value is not None:
                        assert secret not in str(value), f"in {table}"


def test_a_password_is_in_no_table_no_log_line_and_no_event(app, world, ids, sandbox, caplog):
    caplog.set_level(logging.DEBUG)
    assert _run(app, "m365_user_create", ids) == "done"
    with app.app_context(), scoping.use_scope(scoping.Scope(scoping.CUSTOMER_SCOPE, ids["customer"])):
        nia = db.session.scalar(select(M365User.id).where(M365User.user_principal_name.like("nia@%")))
        reset = licensing.reset_m365_user_password(db.session.get(M365User, nia))
        db.session.commit()
    sandbox.fail_rate, sandbox.fail_operations = 1.0, frozenset({"create_user"})
    assert "Microsoft did not" in _as_request(
        app,
        ids["customer"],
        lambda: licensing.add_m365_user(_get(Account, ids["customer"]), "Ana", "B", "ana", "Other-Secret-Pw-99!"),
    )
    for secret in (NEW_PASSWORD, reset, "Other-Secret-Pw-99!"):
        _nowhere(secret)
        assert secret not in caplog.text
    with unscoped() as session:
        assert all(
            "password" not in json.loads(p) for p in session.scalars(select(ProviderOperation.params))
        )  # not even the word's key
        assert session.scalar(
            select(SandboxUser.password_reset_on).where(SandboxUser.user_principal_name.like("nia@%"))
        )


# -- deleting a user frees its licences ----------------------------------------------------------------------------


def test_deleting_a_user_releases_its_licences_with_usage_points(app, world, ids, sandbox):
    with unscoped() as session:
        held = list(
            session.scalars(
                select(LicenceAssignment.subscription_id).where(LicenceAssignment.m365_user_id == ids["person"])
            )
        )
        before = {sub_id: session.get(Subscription, sub_id).assigned for sub_id in held}
        points = session.scalar(select(func.count(UsagePoint.id)))
    assert len(held) == 2
    assert _run(app, "m365_user_delete", ids) == "done"
    with unscoped() as session:
        assert session.get(M365User, ids["person"]) is None
        assert {sub_id: session.get(Subscription, sub_id).assigned for sub_id in held} == {
            sub_id: count - 1 for sub_id, count in before.items()
        }
        assert session.scalar(select(func.count(UsagePoint.id))) == points + 2
        assert session.get(Subscription, held[0]).licence_lease is None  # the leases it held are released
    assert differences(ids["customer"]) == []


# -- tenants: creation and the agreement are operations too ---------------------------------------------------------


def test_a_tenant_creation_and_its_agreement_are_operations(app, world):
    customer = world.accounts["customer_a2"].id
    profile = CompanyProfile(
        domain_prefix="anchorops42", company_name="Anchor Marine", contact_first_name="Ana", contact_last_name="Marine",
        contact_email="ana@anchor.example", phone="+64 9 555 0100", address_line1="1 Quay St", address_line2="",
        city="Auckland", region="", postcode="1010", country="NZ",
    )  # fmt: skip
    acceptance = AgreementAcceptance("Ana", "Marine", "ana@anchor.example", dt.date(2026, 12, 1))
    with app.app_context(), scoping.bypass("test: a new tenant"):
        tenant = tenants.create_tenant(
            db.session.get(Account, customer), tenants.TenantRequest(profile, acceptance), "a-request"
        )
        assert tenant.status == "active"
        tenant_id, guid = tenant.id, tenant.tenant_guid
    with unscoped() as session:
        done = session.scalars(select(ProviderOperation).where(ProviderOperation.target == f"tenant:{tenant_id}"))
        by_kind = {o.kind: o for o in done}
        assert {k: o.state for k, o in by_kind.items()} == {
            "tenant_create": "succeeded",
            "agreement_accept": "succeeded",
        }
        assert json.loads(by_kind["tenant_create"].result)["tenant_id"] == guid
        assert json.loads(by_kind["tenant_create"].params)["domain_prefix"] == "anchorops42"
        assert all(o.correlation_id and o.request_id for o in by_kind.values())


def test_a_killed_tenant_creation_operation_is_settled_by_asking_microsoft(app, world, tmp_path, database_url):
    from tests.integration.test_tenant_recovery import PREFIX, _killed_creation

    customer = world.accounts["customer_a2"].id
    _killed_creation(database_url, tmp_path, customer, "after_create_customer")
    operation = _operation("tenant_create")
    assert operation.state == "pending"
    later = clock.utcnow().replace(tzinfo=dt.UTC) + dt.timedelta(minutes=10)  # past the tenant's timeout too
    with time_machine.travel(later, tick=True), app.app_context():
        assert recovery.recover_all() == 2  # the tenant (adopted: failed, Retry finishes it) and its operation
    settled = _operation("tenant_create")
    assert settled.state == "succeeded"
    with unscoped() as session:
        tenant = session.scalars(select(MicrosoftTenant).where(MicrosoftTenant.account_id == customer)).one()
        assert tenant.domain_prefix == PREFIX and json.loads(settled.result)["tenant_id"] == tenant.tenant_guid


# -- the Partner Center client: the user calls against the local HTTPS fake -----------------------------------------


def test_partner_center_user_changes_carry_the_operations_request_id(fake_partner_center, caplog):
    pc = fake_partner_center
    client = PartnerCenterProvider.from_config(pc.config())
    tenant = pc.add_customer("kiwiops")
    rid = [str(n) * 8 + "-0000-4000-8000-000000000000" for n in range(1, 7)]
    user_id = client.create_user(
        tenant,
        first_name="Mere",
        last_name="Tane",
        user_principal_name="Mere@kiwiops.onmicrosoft.com",
        password="Str0ng-Passw0rd!",
        usage_location="NZ",
        correlation_id=new_correlation_id(),
        request_id=rid[0],
    )
    assert pc.requests[-1].header("MS-RequestId") == rid[0]
    found = client.find_user(tenant, "mere@kiwiops.onmicrosoft.com", correlation_id=new_correlation_id())
    assert (found.user_id, found.user_principal_name, found.enabled) == (user_id, "mere@kiwiops.onmicrosoft.com", True)
    assert client.find_user(tenant, "nobody@kiwiops.onmicrosoft.com", correlation_id=new_correlation_id()) is None

    # Partner Center cannot block sign-in ("inactive" deletes the user): refused, and nothing is sent.
    with pytest.raises(ProviderError) as refused:
        client.set_user_enabled(tenant, user_id, False, correlation_id=new_correlation_id(), request_id=rid[1])
    assert refused.value.status == 501 and "Microsoft 365 admin centre" in str(refused.value)
    assert pc.calls("PATCH", f"/v1/customers/{tenant}/users/{user_id}") == []
    assert client.get_user(tenant, user_id, correlation_id=new_correlation_id()).enabled is True

    caplog.set_level(logging.DEBUG)
    client.reset_user_password(
        tenant, user_id, password="Temp-0rary-Pw!", correlation_id=new_correlation_id(), request_id=rid[3]
    )
    reset = pc.calls("PATCH", f"/v1/customers/{tenant}/users/{user_id}")[-1]
    assert reset.json == {
        "passwordProfile": {"password": "Temp-0rary-Pw!", "forceChangePassword": True},
        "attributes": {"objectType": "CustomerUser"},
    }
    assert reset.header("MS-RequestId") == rid[3]
    pc.fail("PATCH", "/v1/customers/*/users/*", 400)
    with pytest.raises(ProviderError) as refused:
        client.reset_user_password(tenant, user_id, password="Never-L0gged-Pw!", correlation_id=new_correlation_id())
    assert refused.value.status == 400
    assert "Never-L0gged-Pw!" not in caplog.text and "Temp-0rary-Pw!" not in caplog.text

    client.delete_user(tenant, user_id, correlation_id=new_correlation_id(), request_id=rid[4])
    delete = pc.calls("DELETE")[-1]
    assert (delete.path, delete.status, delete.header("MS-RequestId")) == (
        f"/v1/customers/{tenant}/users/{user_id}",
        204,
        rid[4],
    )
    assert client.get_user(tenant, user_id, correlation_id=new_correlation_id()) is None
    client.delete_user(tenant, user_id, correlation_id=new_correlation_id())  # already gone: what was asked


def test_partner_center_subscription_and_licence_changes_send_the_request_id(fake_partner_center):
    pc = fake_partner_center
    client = PartnerCenterProvider.from_config(pc.config())
    tenant = pc.add_customer("kiwisubs")
    sub = client.create_order(tenant, "CFQ7TTC0LDPB:0001", 2, "monthly", correlation_id=new_correlation_id())
    client.change_quantity(tenant, sub.subscription_id, 3, correlation_id=new_correlation_id(), request_id="r-quantity")
    client.set_auto_renew(tenant, sub.subscription_id, False, correlation_id=new_correlation_id(), request_id="r-renew")
    patches = pc.calls("PATCH", f"/v1/customers/{tenant}/subscriptions/*")
    assert [(p.json, p.header("MS-RequestId")) for p in patches] == [
        ({"quantity": 3}, "r-quantity"),
        ({"autoRenewEnabled": False}, "r-renew"),
    ]
    user_id = client.create_user(
        tenant,
        first_name="A",
        last_name="B",
        user_principal_name="ab@kiwisubs.onmicrosoft.com",
        password="Str0ng-Passw0rd!",
        usage_location="NZ",
        correlation_id=new_correlation_id(),
    )
    client.assign_licences(
        tenant, user_id, add_sku_ids=["sku"], remove_sku_ids=[], correlation_id=new_correlation_id(), request_id="r-lic"
    )
    assert pc.requests[-1].header("MS-RequestId") == "r-lic"

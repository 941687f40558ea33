"""Tenants never stuck (issue 12, part 4): a process killed while creating a Microsoft tenant — before Microsoft was
asked, or after Microsoft created the customer but before the portal recorded it — leaves a tenant "provisioning";
past TENANT_PROVISIONING_TIMEOUT_SECONDS the tenant page asks Microsoft by domain and settles it: adopted (never
created twice) and finished by Retry, or failed with Retry and "Change the domain name". The kills are real processes
exiting at named fault points; the timeout is crossed by moving the portal's clock, not by sleeping."""

from __future__ import annotations

import datetime as dt
import html
import os
import subprocess

import pytest
import time_machine
from sqlalchemy import func, select

from app import clock
from app.models.accounts import MicrosoftTenant
from app.models.csp import SandboxCustomer
from app.models.events import Event
from app.models.subscriptions import M365User
from tests import clocked
from tests.conftest import csrf_token, unscoped
from tests.integration.test_reports import ROOT

LATER = dt.timedelta(minutes=10)  # past the default TENANT_PROVISIONING_TIMEOUT_SECONDS (300)
PREFIX = "anchormarine77"

CREATE = """
import datetime as dt, sys
from app import create_app
from app.csp.base import AgreementAcceptance, CompanyProfile
from app.extensions import db
from app.models.accounts import Account
from app.services import tenants
from security import scoping

app = create_app()
with app.app_context(), scoping.bypass("test: a request that will be killed"):
    customer = db.session.get(Account, int(sys.argv[1]))
    profile = CompanyProfile(
        domain_prefix=sys.argv[2], company_name=customer.name, contact_first_name="Ana", contact_last_name="Marine",
        contact_email="ana@anchor.example", phone="+64 9 555 0100", address_line1="1 Quay St", address_line2="",
        city="Auckland", region="", postcode="1010", country="NZ",
    )
    acceptance = AgreementAcceptance("Ana", "Marine", "ana@anchor.example", dt.date(2026, 12, 1))
    tenants.create_tenant(customer, tenants.TenantRequest(profile, acceptance), "killed-request")
"""


def _killed_creation(database_url: str, tmp_path, customer_id: int, point: str) -> None:
    env = {
        **os.environ,
        "PORTAL_ENV": "testing",
        "DATABASE_URL": database_url,
        "PORTAL_INSTANCE_PATH": str(tmp_path / "killed"),
        "PYTHONPATH": str(ROOT),
        "PORTAL_FAULT_POINT": point,
    }
    done = subprocess.run(
        clocked.command("-c", CREATE, str(customer_id), PREFIX),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 137, done.stderr[-2000:]


def _tenant(customer_id: int) -> MicrosoftTenant:
    with unscoped() as session:
        tenant = session.scalars(select(MicrosoftTenant).where(MicrosoftTenant.account_id == customer_id)).one()
        session.expunge(tenant)
        return tenant


def _customers_at_microsoft() -> int:
    with unscoped() as session:
        return session.scalar(select(func.count(SandboxCustomer.id)).where(SandboxCustomer.domain_prefix == PREFIX))


@pytest.mark.parametrize(
    ("point", "made_at_microsoft"), [("after_create_customer", True), ("before_create_customer", False)]
)
def test_a_tenant_whose_request_was_killed_is_settled_by_asking_microsoft(
    app, world, tmp_path, database_url, reseller_a_admin_client, point, made_at_microsoft
):
    customer = world.accounts["customer_a2"].id
    _killed_creation(database_url, tmp_path, customer, point)
    stuck = _tenant(customer)
    assert stuck.status == "provisioning" and stuck.tenant_guid is None  # what the killed process left
    assert _customers_at_microsoft() == (1 if made_at_microsoft else 0)
    page = f"/accounts/{customer}/products/microsoft-tenant"
    shown = reseller_a_admin_client.get(page).text
    assert 'data-test="tenant-provisioning"' in shown  # within the timeout: still being confirmed, with its age
    assert _tenant(customer).status == "provisioning"

    with time_machine.travel(clock.utcnow().replace(tzinfo=dt.UTC) + LATER, tick=True):
        shown = reseller_a_admin_client.get(page).text
    settled = _tenant(customer)
    assert settled.status == "failed" and ">Retry<" in shown
    if made_at_microsoft:
        assert settled.tenant_guid is not None  # adopted: what the first attempt made
        assert "Change the domain name" not in shown
        assert "reset the admin's password under Microsoft 365 users" in html.unescape(shown)  # its password was lost
        with unscoped() as session:  # its first admin, made with it at Microsoft, listed here too (issue 15)
            admins = session.scalars(select(M365User.user_principal_name).where(M365User.account_id == customer))
            assert list(admins) == [f"admin@{settled.domain_prefix}.onmicrosoft.com"]
    else:
        assert settled.tenant_guid is None and "Change the domain name" in shown
    with unscoped() as session:
        assert session.scalars(select(Event).where(Event.action == "tenant.recovered")).one()

    retried = reseller_a_admin_client.post(
        f"/accounts/{customer}/microsoft-tenant/retry", data={"csrf_token": csrf_token(reseller_a_admin_client)}
    )
    assert retried.status_code in (200, 302)  # 200: Retry created it, with the admin's password shown once
    assert _tenant(customer).status == "active"
    assert _customers_at_microsoft() == 1  # never created twice


def test_a_tenant_microsoft_cannot_be_asked_about_stays_provisioning(
    app, world, tmp_path, database_url, reseller_a_admin_client
):
    from app.csp import get_provider

    customer = world.accounts["customer_a2"].id
    _killed_creation(database_url, tmp_path, customer, "after_create_customer")
    with app.app_context():
        sandbox = get_provider()
    saved = (sandbox.fail_rate, sandbox.fail_operations)
    sandbox.fail_rate, sandbox.fail_operations = 1.0, frozenset({"find_customer"})
    try:
        with time_machine.travel(clock.utcnow().replace(tzinfo=dt.UTC) + LATER, tick=True):
            shown = reseller_a_admin_client.get(f"/accounts/{customer}/products/microsoft-tenant").text
    finally:
        sandbox.fail_rate, sandbox.fail_operations = saved
    assert _tenant(customer).status == "provisioning"  # not guessed: still being confirmed
    assert 'data-test="tenant-provisioning"' in shown


def test_the_recover_tenants_command_settles_every_stuck_tenant(app, world, tmp_path, database_url):
    customer = world.accounts["customer_a2"].id
    _killed_creation(database_url, tmp_path, customer, "before_create_customer")
    assert "settled: 0" in app.test_cli_runner().invoke(args=["portal", "recover-tenants"]).output
    with time_machine.travel(clock.utcnow().replace(tzinfo=dt.UTC) + LATER, tick=True):
        result = app.test_cli_runner().invoke(args=["portal", "recover-tenants"])
    assert "settled: 1" in result.output, result.output
    assert _tenant(customer).status == "failed"

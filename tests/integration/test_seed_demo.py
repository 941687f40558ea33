"""`flask portal seed-demo`: the named demo data of DESIGN.md, idempotent, and `--scale N` in proportion."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from flask_appbuilder import Model
from sqlalchemy import func, select

from app import clock
from app.models.accounts import Account, MicrosoftTenant, PlaceholderUser
from app.models.csp import SandboxDomain
from app.models.subscriptions import M365User, Subscription, UsagePoint
from security.models import Membership, PortalUser
from tests.conftest import unscoped

PASSWORD = "demo-password-for-tests"


def _counts() -> dict[str, int]:
    with unscoped() as session:
        return {
            t.name: session.scalar(select(func.count()).select_from(t))
            for t in Model.metadata.sorted_tables
            if t.name != "server_session"
        }


def _seed(app, *args: str):
    result = app.test_cli_runner().invoke(args=["portal", "seed-demo", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_seed_demo_creates_the_named_data(app, login):
    output = _seed(app, "--password", PASSWORD)
    assert "simon@demoreseller.co.nz" in output and PASSWORD in output
    with unscoped() as session:
        accounts = {a.name: a for a in session.query(Account)}
        assert {
            "Mycloudstore",
            "Demo Reseller Ltd",
            "Enet Ltd",
            "Contoso NZ",
            "Other Reseller Ltd",
            "Rival Corp",
        } <= set(accounts)
        assert accounts["Enet Ltd"].parent_id == accounts["Demo Reseller Ltd"].id
        assert accounts["Rival Corp"].parent_id == accounts["Other Reseller Ltd"].id
        simon = session.scalars(select(PortalUser).where(PortalUser.email == "simon@demoreseller.co.nz")).one()
        assert simon.is_csp_admin and simon.account_id == accounts["Demo Reseller Ltd"].id
        assert session.scalars(select(PortalUser).where(PortalUser.email == "pat@otherreseller.example")).one()
        ops = session.scalars(select(PortalUser).where(PortalUser.email == "ops@mycloudstore.co.nz")).one()
        assert ops.account_id == accounts["Mycloudstore"].id and ops.roles[0].name == "Operator Admin"

        enet = accounts["Enet Ltd"]
        assert (
            session.scalars(select(MicrosoftTenant.domain_prefix).where(MicrosoftTenant.account_id == enet.id)).one()
            == "enet123"
        )
        placeholder = session.scalars(select(PlaceholderUser).where(PlaceholderUser.account_id == enet.id)).one()
        assert placeholder.email == "default.masteradmin@mycloudstore.co.nz"
        # The placeholder is not a login.
        assert session.scalar(select(func.count(PortalUser.id)).where(PortalUser.account_id == enet.id)) == 0
        members = select(PortalUser.email).join(Membership, Membership.user_id == PortalUser.id)
        # Enet's one user is the guide's IT-support master admin (one login, a member of both of Demo's customers).
        assert session.scalars(members.where(Membership.account_id == enet.id)).all() == [
            "itsupport@demoreseller.co.nz"
        ]
        assert session.scalar(select(func.count(PortalUser.id)).where(PortalUser.email == placeholder.email)) == 0
        assert session.scalar(select(func.count(M365User.id)).where(M365User.account_id == enet.id)) == 20
        subs = {
            s.product.name: s for s in session.scalars(select(Subscription).where(Subscription.account_id == enet.id))
        }
        premium, exchange = subs["Office 365 Business Premium"], subs["Exchange Online (Plan 1)"]
        assert (premium.assigned, premium.quantity, premium.unit_price) == (1, 1, Decimal("17.30"))
        assert (exchange.assigned, exchange.quantity, exchange.unit_price) == (19, 19, Decimal("5.50"))
        assert clock.today() <= premium.renew_on <= clock.today() + dt.timedelta(days=30)

        contoso = accounts["Contoso NZ"]
        admin = session.scalars(select(PortalUser).where(PortalUser.email == "admin@contosonz.example")).one()
        # A customer-portal login belongs to the customer's reseller; its flags are its membership's in Contoso.
        assert admin.portal == "customer" and admin.account_id == contoso.parent_id and admin.roles == []
        membership = session.scalars(
            select(Membership).where(Membership.user_id == admin.id, Membership.account_id == contoso.id)
        ).one()
        assert membership.is_master_admin and membership.cp3_enabled and membership.active
        assert "itsupport@demoreseller.co.nz" in session.scalars(members.where(Membership.account_id == contoso.id))
        oldest = session.scalar(select(func.min(UsagePoint.recorded_at)).where(UsagePoint.account_id == contoso.id))
        assert oldest <= clock.utcnow() - dt.timedelta(days=330)
        taken = set(session.scalars(select(SandboxDomain.prefix)))
        assert {"enet123", "contosonz", "rivalcorp", "contoso", "microsoft"} <= taken
    assert login("simon@demoreseller.co.nz", PASSWORD).get("/").status_code == 200


def test_seed_demo_is_idempotent(app):
    _seed(app, "--password", PASSWORD)
    first = _counts()
    output = _seed(app)
    assert "already present" in output and "passwords unchanged" in output
    assert _counts() == first


def test_seed_demo_without_password_prints_a_random_one_once(app, login):
    output = _seed(app)
    password = output.split("password: ")[1].split()[0]
    assert len(password) >= 12
    assert login("pat@otherreseller.example", password).get("/").status_code == 200
    assert "password:" not in _seed(app)


def test_seed_demo_if_empty_leaves_existing_data_alone(app, world):
    before = _counts()
    assert "skipped" in _seed(app, "--if-empty")
    assert _counts() == before


def test_short_password_is_refused(app):
    result = app.test_cli_runner().invoke(args=["portal", "seed-demo", "--password", "short"])
    assert result.exit_code != 0 and "at least 12 characters" in result.output


def test_scale_adds_customers_in_proportion_and_only_once(app):
    _seed(app, "--password", PASSWORD, "--scale", "30")
    counts = _counts()
    _seed(app, "--scale", "30")
    assert _counts() == counts
    with unscoped() as session:
        scale = select(Account.id).where(Account.name.like("Scale Customer %"))
        assert session.scalar(select(func.count()).select_from(scale.subquery())) == 30
        users = session.scalar(select(func.count(M365User.id)).where(M365User.account_id.in_(scale)))
        subs = session.scalar(select(func.count(Subscription.id)).where(Subscription.account_id.in_(scale)))
        assert 5 * 30 <= users <= 15 * 30
        assert 2 * 30 <= subs <= 4 * 30
        # Every generated customer has a master admin login who can sign in, and ids kept counting.
        masters = select(Membership.user_id).where(
            Membership.account_id.in_(scale), Membership.is_master_admin.is_(True), Membership.active.is_(True)
        )
        logins = session.scalar(
            select(func.count(PortalUser.id)).where(
                PortalUser.id.in_(masters), PortalUser.portal == "customer", PortalUser.password_set_at.is_not(None)
            )
        )
        assert logins == 30
        # each owned by its customer's reseller
        owners = session.execute(
            select(PortalUser.account_id, Account.parent_id)
            .join(Membership, Membership.user_id == PortalUser.id)
            .join(Account, Account.id == Membership.account_id)
            .where(Membership.account_id.in_(scale))
        ).all()
        assert len(owners) == 30 and all(owner == parent for owner, parent in owners)
    _seed(app, "--scale", "45")
    with unscoped() as session:
        assert session.scalar(select(func.count(Account.id)).where(Account.name.like("Scale Customer %"))) == 45

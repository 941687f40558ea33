"""Scoping closed by construction (issue 10, section 5): under any scope but ALL, a statement the scope's criteria
cannot reach — Core on tenant tables, text(), unsafe ORM bulk writes, ORM statements of another session — raises
``UnscopedStatement`` and changes nothing, however it is sent; under a bypass everything runs."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from flask import jsonify
from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.extensions import db
from app.models.accounts import Account
from app.models.catalog import Product
from app.models.events import Event
from app.models.jobs import BackgroundJob
from app.models.subscriptions import LicenceAssignment, M365User, Subscription
from app.services import jobs
from app.services.users import sync_role
from security import scoping
from security.models import PortalUser
from tests.conftest import login_to, make_app, unscoped
from tests.integration.test_scoping import database_fingerprint

SCOPES = ["reseller", "customer", "none"]


def _scope(kind: str, world) -> scoping.Scope:
    if kind == "reseller":
        return scoping.Scope(scoping.RESELLER_SCOPE, world.accounts["reseller_b"].id)
    if kind == "customer":
        return scoping.Scope(scoping.CUSTOMER_SCOPE, world.accounts["customer_b"].id)
    return scoping.NOTHING


@pytest.fixture(params=SCOPES)
def under_scope(request, app, world):
    """A request context under reseller B's scope, customer B's, or none (the fail-closed default)."""
    with app.test_request_context(), scoping.use_scope(_scope(request.param, world)) as scope:
        yield scope
        db.session.rollback()


def _tables():
    return Account.__table__, Subscription.__table__, Product.__table__


def _core_statements(world):
    """Core statements on tenant data: what the scope's criteria never see."""
    account, sub, product = _tables()
    a_sub = world.rows["a"]["subscription"]
    customer_a = world.accounts["customer_a"].id
    return {
        "select account table": select(account),
        "select joined": select(product.c.name, sub.c.quantity).select_from(product.join(sub)),
        "select subquery": select(product).where(product.c.id.in_(select(sub.c.product_id))),
        "count in a subquery": select(func.count()).select_from(select(sub.c.id).subquery()),
        "text select": text("SELECT * FROM account"),
        "text update": text("UPDATE subscription SET quantity = 1"),
        "text in a select": select(text("id")).select_from(text("account")),
        "table update": sub.update().values(quantity=1),
        "table update by id": sub.update().where(sub.c.id == a_sub).values(quantity=1),
        "table delete": LicenceAssignment.__table__.delete(),
        "core insert": insert(Event.__table__).values(account_id=customer_a, action="x", actor_label="x"),
    }


def _orm_writes(world):
    """ORM statements whose rows the criteria cannot make safe: refused under every scope but ALL."""
    a_sub, b_sub = world.rows["a"]["subscription"], world.rows["b"]["subscription"]
    customer_a, customer_b = world.accounts["customer_a"].id, world.accounts["customer_b"].id
    return {
        "orm bulk insert": (
            insert(M365User),
            [{"account_id": customer_a, "display_name": "Planted", "user_principal_name": "planted@x.example"}],
        ),
        "orm insert values": (
            insert(Event).values(account_id=customer_b, action="x", actor_label="x"),
            None,
        ),
        "orm bulk update by primary key": (update(Subscription), [{"id": a_sub, "quantity": 77}]),
        "orm update moving rows": (
            update(Subscription).where(Subscription.id == b_sub).values(account_id=customer_a),
            None,
        ),
        "orm update of accounts": (update(Account).values(name="Renamed"), None),
        "orm delete of accounts": (delete(Account).where(Account.id == customer_a), None),
        "orm update with a core sub-select": (
            update(Subscription).values(
                quantity=select(Subscription.__table__.c.quantity)
                .where(Subscription.__table__.c.id == a_sub)
                .scalar_subquery()
            ),
            None,
        ),
    }


def _run_each_expecting_refusal(statements: dict, execute) -> None:
    before = database_fingerprint()
    for name, statement in statements.items():
        with pytest.raises(scoping.UnscopedStatement):
            execute(statement)
            pytest.fail(f"{name} ran")
        db.session.rollback()
    assert database_fingerprint() == before


def test_core_statements_raise_through_the_session(world, under_scope):
    _run_each_expecting_refusal(_core_statements(world), lambda s: db.session.execute(s).all())


def test_core_statements_raise_through_the_sessions_connection(world, under_scope):
    _run_each_expecting_refusal(_core_statements(world), lambda s: db.session.connection().execute(s))


def test_core_statements_raise_through_a_connection_of_the_engine(world, under_scope):
    def execute(statement):
        with db.engine.connect() as connection:
            connection.execute(statement)
            connection.commit()

    _run_each_expecting_refusal(_core_statements(world), execute)


def test_driver_sql_and_ddl_raise(world, under_scope):
    def execute(sql):
        with db.engine.connect() as connection:
            connection.exec_driver_sql(sql)
            connection.commit()

    _run_each_expecting_refusal({"driver select": "SELECT * FROM account"}, execute)
    _run_each_expecting_refusal(
        {"ddl": text("DROP TABLE licence_assignment")}, lambda s: db.session.connection().execute(s)
    )


def test_orm_statements_of_another_session_raise(world, under_scope):
    def execute(statement):
        with Session(db.engine) as other:
            other.execute(statement).all()

    _run_each_expecting_refusal(
        {"orm select": select(Subscription), "orm columns": select(Account.name)},
        execute,
    )
    _run_each_expecting_refusal(
        {"orm select on the raw connection": select(Account)}, lambda s: db.session.connection().execute(s)
    )


def test_orm_bulk_writes_raise(world, under_scope):
    def execute(pair):
        statement, rows = pair
        db.session.execute(statement, rows) if rows is not None else db.session.execute(statement)

    _run_each_expecting_refusal(_orm_writes(world), execute)


def test_legacy_bulk_methods_raise(world, under_scope):
    customer_a = world.accounts["customer_a"].id
    rows = [{"account_id": customer_a, "display_name": "Planted", "user_principal_name": "planted@x.example"}]
    _run_each_expecting_refusal({"bulk_insert_mappings": rows}, lambda r: db.session.bulk_insert_mappings(M365User, r))


def test_orm_update_and_delete_with_no_scope_raise(app, world):
    with app.test_request_context(), scoping.use_scope(scoping.NOTHING):
        _run_each_expecting_refusal(
            {"update": update(Subscription).values(auto_renew=False), "delete": delete(LicenceAssignment)},
            db.session.execute,
        )


def test_an_anonymous_request_cannot_send_core(app, world):
    # No override at all: the scope of a request with nobody signed in is resolved (NONE) and refuses.
    with app.test_request_context():
        assert scoping.current_scope().kind == scoping.NONE
        _run_each_expecting_refusal({"select": select(Account.__table__)}, lambda s: db.session.execute(s).all())


@pytest.mark.parametrize("kind", ["reseller", "customer"])
def test_orm_update_and_delete_with_a_where_clause_stay_in_scope(app, world, kind):
    """SQLAlchemy 2.0 applies the loader criteria to ORM-enabled UPDATE and DELETE: they run, on in-scope rows only."""
    scope = _scope(kind, world)
    with app.test_request_context(), scoping.use_scope(scope):
        changed = db.session.execute(update(Subscription).values(auto_renew=False)).rowcount
        gone = db.session.execute(delete(LicenceAssignment)).rowcount
        db.session.commit()
    with unscoped() as session:
        renewing = dict(session.execute(select(Subscription.account_id, Subscription.auto_renew)).all())
        holders = set(session.scalars(select(LicenceAssignment.account_id)))
    b, a = world.accounts["customer_b"].id, world.accounts["customer_a"].id
    assert renewing == {b: False, a: True}
    assert holders == {a}
    assert changed == 2 and gone > 0


def _reaches_the_database(statement, rows=None) -> None:
    """Runs, as far as the scope is concerned: the database may still refuse the data (a check constraint)."""
    with contextlib.suppress(IntegrityError):
        db.session.execute(statement, rows)
    db.session.rollback()


def test_a_bypass_runs_everything(app, world):
    with app.test_request_context(), scoping.bypass("test: closed scoping"):
        for statement in _core_statements(world).values():
            _reaches_the_database(statement)
        for statement, rows in _orm_writes(world).values():
            _reaches_the_database(statement, rows)
        assert len(db.session.execute(select(Account.__table__)).all()) == 6
        with db.engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT count(*) FROM account").scalar() == 6


def test_operator_staff_run_core(app, world):
    with app.test_request_context(), scoping.use_scope(scoping.Scope(scoping.ALL, reason="operator")):
        assert len(db.session.execute(select(Account.__table__)).all()) == 6


def test_a_reviewed_statement_runs_under_any_scope(world, under_scope):
    reviewed = text("SELECT count(*) FROM account").execution_options(
        portal_unscoped_reason="test: a statement reviewed as safe"
    )
    assert db.session.execute(reviewed).scalar() == 6
    with db.engine.connect() as connection:
        assert connection.execute(reviewed).scalar() == 6


def test_global_tables_work_under_any_scope(world, under_scope):
    product = Product.__table__
    assert len(db.session.execute(select(product)).all()) == 2
    with db.engine.connect() as connection:
        assert len(connection.execute(select(product.c.name)).all()) == 2
    db.session.execute(product.update().where(product.c.sku == "TEST-BASIC").values(name="Basic"))
    db.session.rollback()


def test_scoped_orm_statements_still_run(world, under_scope):
    names = set(db.session.scalars(select(Account.name)))
    expected = {
        scoping.RESELLER_SCOPE: {"Bravo IT Ltd", "Bluebird Bakery"},
        scoping.CUSTOMER_SCOPE: {"Bluebird Bakery"},
        scoping.NONE: set(),
    }
    assert names == expected[under_scope.kind]


def test_every_table_kind_is_cached(app):
    scoping.table_kind("subscription")
    assert scoping._kinds["subscription"] == "tenant"
    assert scoping.table_kind("no_such_table") == "unknown"


# -- through a real request -------------------------------------------------------------------------------------------


def test_a_view_sending_core_on_tenant_data_answers_404(world, tmp_path, database_url):
    """A view with the bug this closes: a Core select of the account table. A reseller gets 404 (and the log line);
    operator staff, whose scope is all, get the rows. Exceptions are not propagated, as in production: the 404 is the
    portal's answer, not the test client's."""
    fresh = make_app(tmp_path, database_url, PROPAGATE_EXCEPTIONS=False)

    @fresh.route("/test-only/core-accounts")
    def core_accounts():
        return jsonify(sorted(db.session.execute(select(Account.__table__.c.name)).scalars()))

    reseller = login_to(fresh, world.users["reseller_b_admin"].email)
    assert reseller.get("/test-only/core-accounts").status_code == 404
    operator = login_to(fresh, world.users["ops_admin"].email)
    response = operator.get("/test-only/core-accounts")
    assert response.status_code == 200 and "Aardvark Farms" in response.get_json()


# -- jobs resolve their requester's scope when they run ---------------------------------------------------------------


@pytest.fixture
def queued_job(app, world, reseller_a_admin_client, monkeypatch, tmp_path):
    """A subscriptions export of customer A queued by reseller A's CSP Admin (with costs), not yet run."""
    monkeypatch.setitem(app.config, "EXPORT_JOB_THRESHOLD", 0)
    monkeypatch.setitem(app.config, "EXPORT_DIR", str(tmp_path / "exports"))
    monkeypatch.setattr(jobs, "dispatch", lambda job_id: None)
    from tests.integration.test_reports import _start_job

    return _start_job(reseller_a_admin_client, world.accounts["customer_a"].id, "subscriptions")


def _run(app, job_id):
    with app.app_context():
        jobs.run(job_id)
    with unscoped() as session:
        job = session.get(BackgroundJob, job_id)
        return job.status, job.error, job.file_path


def _change_requester(world, **values):
    with unscoped() as session:
        user = session.get(PortalUser, world.users["reseller_a_admin"].id)
        for name, value in values.items():
            setattr(user, name, value)
        if "is_csp_admin" in values:
            sync_role(user)
        session.commit()


def test_a_job_of_a_requester_in_good_standing_runs(app, world, queued_job, tmp_path):
    status, error, path = _run(app, queued_job)
    assert (status, error) == ("done", None) and Path(path).exists()


@pytest.mark.parametrize(
    "change, why",
    [
        ({"active": False}, "can no longer sign in"),
        ({"account_id": "reseller_b"}, "no longer sees this account"),
        ({"is_csp_admin": False}, "may no longer see costs"),
    ],
    ids=["disabled", "moved-to-another-reseller", "lost-costs"],
)
def test_a_job_whose_requester_changed_fails_and_writes_nothing(app, world, queued_job, tmp_path, change, why):
    if change.get("account_id") == "reseller_b":
        change = {"account_id": world.accounts["reseller_b"].id}
    _change_requester(world, **change)
    status, error, path = _run(app, queued_job)
    assert status == "failed" and why in error
    assert path is None and not list((tmp_path / "exports").glob("*.xlsx"))


# -- ORM statements: what the criteria reach, and what they do not ---------------------------------------------------


def test_a_core_sub_select_inside_an_orm_statement_raises(world, under_scope):
    """The criteria reach an ORM statement's entities, never a Core select nested in it."""
    account = Account.__table__
    _run_each_expecting_refusal(
        {
            "in a core sub-select": select(Subscription.id).where(Subscription.account_id.in_(select(account.c.id))),
            "counted by a core scalar": select(
                Subscription.id, select(func.count()).select_from(account).scalar_subquery()
            ),
        },
        lambda s: db.session.execute(s).all(),
    )


def test_orm_sub_selects_get_the_criteria_and_run(world, under_scope):
    counted = db.session.execute(
        select(Account.id, select(func.count(Subscription.id)).scalar_subquery()).order_by(Account.id)
    ).all()
    expected = {scoping.RESELLER_SCOPE: 2, scoping.CUSTOMER_SCOPE: 2, scoping.NONE: None}[under_scope.kind]
    assert {n for _, n in counted} <= {expected}

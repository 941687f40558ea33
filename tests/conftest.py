"""Fixtures: one app per test session on a real database (SQLite, or PostgreSQL with TEST_DATABASE_URL), a clean
database for every test, the named users of STYLE.md and a signed-in client for each."""

from __future__ import annotations

import os
import re
import threading
from contextlib import contextmanager

import flask_migrate
import pytest
from flask import current_app
from flask_appbuilder import Model
from jinja2 import StrictUndefined
from sqlalchemy import event, text

from app import create_app, db_guard
from app.extensions import db
from security import scoping
from tests import factories

pytest_plugins = ["tests.fake_partner_center"]

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")
# Role tables are filled once per session by sync-roles; everything else is emptied before each test.
KEEP_TABLES = {"ab_permission", "ab_view_menu", "ab_permission_view", "ab_role", "ab_permission_view_role"}


@pytest.fixture(scope="session", autouse=True)
def _test_clock():
    """``TEST_CLOCK_START=2026-12-01T11:30:00Z`` runs the whole suite with the clock started then (and ticking): the
    way to check that nothing depends on the machine's date being New Zealand's (11:30 UTC is tomorrow there). The
    database server's own clock does not move: the purge test, which checks the event triggers against it, then sees
    the two clocks hours apart and (rightly) refuses to purge."""
    start = os.environ.get("TEST_CLOCK_START")
    if not start:
        yield
        return
    import time_machine

    with time_machine.travel(start, tick=True):
        yield


# Tests that belong to one of CI's two passes (SQLite, then PostgreSQL): deselected (not skipped) in the other.
PASS_MARKERS = {
    "postgres_faults": "cuts PostgreSQL or Redis with a TCP proxy; runs once, in the PostgreSQL pass",
    "postgres_only": "tests a PostgreSQL feature (roles, TRUNCATE); runs in the PostgreSQL pass",
    "sqlite_only": "tests a SQLite feature (INSERT OR REPLACE); runs in the SQLite pass",
}


def pytest_configure(config):
    for name, meaning in PASS_MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {meaning}")


def pytest_collection_modifyitems(config, items):
    """CI runs the suite twice; a test of one database's feature, and the tests that cut connections, run in one pass
    and are deselected in the other: they are not missing there, they belong to the other pass."""
    other = {"sqlite_only"} if TEST_DATABASE_URL else {"postgres_faults", "postgres_only"}
    deselected = [item for item in items if any(item.get_closest_marker(name) for name in other)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item not in deselected]


@pytest.fixture(autouse=True)
def _push_request_context():
    """Replaces pytest-flask's: a request context held open for the whole test would make every client request
    share one app context, so ``g`` (the signed-in user, the scope) would leak from one request to the next."""
    yield


@pytest.fixture
def client(app):
    """An anonymous client. Replaces pytest-flask's, which keeps its last request's context pushed: a later
    request of another client would then share that app context and its ``g`` (its signed-in user)."""
    return app.test_client()


def _reset_postgres(url: str) -> None:
    from sqlalchemy import create_engine

    engine = create_engine(url)
    with scoping.bypass("test: database reset"), engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def make_app(tmp_path, url: str, **overrides):
    environ = {"PORTAL_ENV": "testing", "PORTAL_INSTANCE_PATH": str(tmp_path), "DATABASE_URL": url}
    app = create_app(config={"TESTING": True, **overrides}, environ=environ)
    app.jinja_env.undefined = StrictUndefined
    return app


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> str:
    if TEST_DATABASE_URL:
        _reset_postgres(TEST_DATABASE_URL)
        return TEST_DATABASE_URL
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"


@pytest.fixture(scope="session")
def app(tmp_path_factory, database_url):
    app = make_app(tmp_path_factory.mktemp("instance"), database_url)
    with app.app_context():
        flask_migrate.upgrade()
        from security.roles import sync_roles

        with scoping.bypass("test set-up"):
            sync_roles(db.session)
    _SESSION_APP[:] = [app]
    return app


def _empty_tables() -> None:
    """The event log's triggers (app/db_guard.py) refuse this clean-up, as they should the application: PostgreSQL
    skips them for this one transaction (replica mode, a superuser's setting); SQLite drops and re-creates them."""
    tables = [t for t in reversed(Model.metadata.sorted_tables) if t.name not in KEEP_TABLES]
    if db.engine.dialect.name == "postgresql":
        db.session.execute(text("SET LOCAL session_replication_role = replica"))
        db.session.execute(text(f"TRUNCATE {', '.join(t.name for t in tables)} RESTART IDENTITY CASCADE"))
    else:
        connection = db.session.connection()
        db_guard.remove(connection)
        db_guard.remove_invoice_guard(connection)  # issued invoices refuse deletes too (issue 14)
        db.session.execute(text("PRAGMA defer_foreign_keys = ON"))  # account rows reference each other
        for table in tables:
            db.session.execute(table.delete())
        db_guard.install(connection, current_app.config["EVENT_RETENTION_DAYS"])
        db_guard.install_invoice_guard(connection)
    db.session.commit()


@pytest.fixture(autouse=True)
def clean_database(request):
    if "app" not in request.fixturenames:
        yield
        return
    app = request.getfixturevalue("app")
    with app.app_context(), scoping.bypass("test clean-up"):
        _empty_tables()
    yield


_SESSION_APP = []


@contextmanager
def unscoped():
    """Look at the database as it is, across tenants (tests check what really changed), in an app context of
    its own: a context held open around client requests would be shared by them."""
    with _SESSION_APP[0].app_context(), scoping.bypass("test assertion"):
        yield db.session
        db.session.rollback()


@pytest.fixture
def sandbox(app):
    """The app's sandbox provider, its knobs (latency, failures, lost answers, the failure draw) restored after."""
    from app.csp import get_provider

    with app.app_context():
        provider = get_provider()
    knobs = ("latency_ms", "fail_rate", "fail_operations", "lost_answer_rate")
    saved = {name: getattr(provider, name) for name in knobs}, provider._random.getstate()
    yield provider
    for name, value in saved[0].items():
        setattr(provider, name, value)
    provider._random.setstate(saved[1])


@pytest.fixture
def world(app):
    with app.app_context(), scoping.bypass("test world"):
        return factories.build_world()


def login_to(app, email: str, password: str = factories.PASSWORD):
    """A client of ``app`` signed in through the real sign-in form."""
    client = app.test_client()
    page = client.get("/login/")
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
    response = client.post("/login/", data={"csrf_token": token, "username": email, "password": password})
    assert response.status_code == 302 and "/login" not in response.location, f"login failed for {email}"
    return client


@pytest.fixture
def login(app):
    return lambda email, password=factories.PASSWORD: login_to(app, email, password)


def csrf_token(client, path: str = "/") -> str:
    """The CSRF token of the client's session, from the meta tag every portal page carries."""
    page = client.get(path, follow_redirects=True)
    return re.search(r'<meta name="csrf-token" content="([^"]+)"', page.text).group(1)


@pytest.fixture
def ops_admin(world):
    return world.users["ops_admin"]


@pytest.fixture
def reseller_a_admin(world):
    return world.users["reseller_a_admin"]


@pytest.fixture
def reseller_a_user(world):
    return world.users["reseller_a_user"]


@pytest.fixture
def reseller_b_admin(world):
    return world.users["reseller_b_admin"]


@pytest.fixture
def customer_a_master_admin(world):
    return world.users["customer_a_master_admin"]


@pytest.fixture
def ops_admin_client(login, ops_admin):
    return login(ops_admin.email)


@pytest.fixture
def reseller_a_admin_client(login, reseller_a_admin):
    return login(reseller_a_admin.email)


@pytest.fixture
def reseller_a_user_client(login, reseller_a_user):
    return login(reseller_a_user.email)


@pytest.fixture
def reseller_b_admin_client(login, reseller_b_admin):
    return login(reseller_b_admin.email)


@pytest.fixture
def customer_a_master_admin_client(login, customer_a_master_admin):
    return login(customer_a_master_admin.email)


@contextmanager
def count_statements(app):
    """Collect the SQL statements sent while the block runs."""
    statements: list[str] = []

    def before(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", before)


def at_once(*calls):
    """Run the callables in threads released together (a double click, a race); their results, in call order."""
    barrier, results = threading.Barrier(len(calls)), [None] * len(calls)

    def run(i, call):
        barrier.wait()
        results[i] = call()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results

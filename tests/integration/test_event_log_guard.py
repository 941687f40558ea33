"""The event log nobody can edit: the database's triggers refuse every UPDATE and every DELETE of an event younger than
the retention (TRUNCATE too on PostgreSQL), through the ORM and raw SQL alike; `flask portal purge-events` removes
exactly the old ones and says so in the log; in production the application's role cannot remove the triggers."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, delete, func, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError

from app import clock, db_guard
from app.extensions import db
from app.models.events import Event
from security import scoping
from security.models import PortalUser
from tests import factories
from tests.conftest import TEST_DATABASE_URL, unscoped

POSTGRES = TEST_DATABASE_URL.startswith("postgresql")
ROOT = Path(__file__).resolve().parents[2]


def _add_event(account_id: int, days_ago: float, action: str = "test.thing", **values) -> int:
    with unscoped() as session:
        event = Event(
            account_id=account_id,
            action=action,
            actor_label=values.pop("actor_label", "tester@example.com"),
            summary=values.pop("summary", f"{days_ago} days ago"),
            occurred_at=clock.utcnow() - dt.timedelta(days=days_ago),
            **values,
        )
        session.add(event)
        session.commit()
        return event.id


def _snapshot() -> list[tuple]:
    with unscoped() as session:
        return [tuple(row) for row in session.execute(select(Event.__table__).order_by(Event.id))]


def test_the_triggers_are_in_place_after_the_migrations(app):
    with app.app_context(), scoping.bypass("test: the database's own guard"), db.engine.connect() as connection:
        names = db_guard.installed(connection)
    expected = {"event_no_update", "event_no_delete"} | ({"event_no_truncate"} if POSTGRES else {"event_no_replace"})
    assert names == expected


def test_the_orm_can_neither_change_nor_delete_an_event(app, world):
    event_id = _add_event(world.accounts["customer_a"].id, 1)
    before = _snapshot()
    with app.app_context(), scoping.bypass("test: tampering"):
        event = db.session.get(Event, event_id)
        event.summary = "nothing happened"
        with pytest.raises(IntegrityError, match="append-only"):
            db.session.commit()
        db.session.rollback()
        db.session.delete(db.session.get(Event, event_id))
        with pytest.raises(IntegrityError, match="append-only"):
            db.session.commit()
        db.session.rollback()
        for statement in (update(Event).values(summary="bulk"), delete(Event)):
            with pytest.raises(IntegrityError, match="append-only"):
                db.session.execute(statement, execution_options={"synchronize_session": False})
            db.session.rollback()
    assert _snapshot() == before


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE event SET summary = 'rewritten'",
        "UPDATE event SET actor_id = NULL",
        "DELETE FROM event",
        "DELETE FROM event WHERE id = :id",
    ],
)
def test_raw_sql_can_neither_change_nor_delete_an_event(app, world, statement):
    event_id = _add_event(world.accounts["customer_a"].id, 399)  # a day inside the retention
    before = _snapshot()
    with app.app_context(), scoping.bypass("test: the database's own guard"), db.engine.connect() as connection:
        with pytest.raises(IntegrityError, match="append-only"):
            connection.execute(text(statement), {"id": event_id})
        connection.rollback()
    assert _snapshot() == before


@pytest.mark.sqlite_only
def test_sqlite_insert_or_replace_cannot_overwrite_an_event(app, world):
    event_id = _add_event(world.accounts["customer_a"].id, 1)
    before = _snapshot()
    with app.app_context(), scoping.bypass("test: the database's own guard"), db.engine.connect() as connection:
        with pytest.raises(IntegrityError, match="append-only"):
            connection.execute(
                text(
                    "INSERT OR REPLACE INTO event (id, occurred_at, actor_label, action, summary, account_id) "
                    "VALUES (:id, '2030-01-01 00:00:00', 'x', 'x', 'forged', :account)"
                ),
                {"id": event_id, "account": world.accounts["customer_a"].id},
            )
        connection.rollback()
    assert _snapshot() == before


@pytest.mark.postgres_only
@pytest.mark.parametrize("statement", ["TRUNCATE event", "TRUNCATE account CASCADE"])
def test_postgresql_refuses_truncate(app, world, statement):
    _add_event(world.accounts["customer_a"].id, 1)
    before = _snapshot()
    with app.app_context(), scoping.bypass("test: the database's own guard"), db.engine.connect() as connection:
        with pytest.raises(IntegrityError, match="append-only"):
            connection.execute(text(statement))
        connection.rollback()
    assert _snapshot() == before


def test_events_older_than_the_retention_can_be_deleted(app, world):
    customer = world.accounts["customer_a"].id
    old, recent = _add_event(customer, 401), _add_event(customer, 1)
    with app.app_context(), scoping.bypass("test: retention"):
        db.session.delete(db.session.get(Event, old))
        db.session.commit()
        assert db.session.scalars(select(Event.id).where(Event.id.in_([old, recent]))).all() == [recent]


def test_a_login_with_events_is_never_hard_deleted(app, world):
    """The actor keys are plain: deleting the login fails rather than rewriting its events (SET NULL would)."""
    user = world.users["reseller_a_admin"]
    _add_event(world.accounts["reseller_a"].id, 1, actor_id=user.id, actor_label=user.email)
    before = _snapshot()
    with app.app_context(), scoping.bypass("test: the database's own guard"), db.engine.connect() as connection:
        connection.execute(text("DELETE FROM ab_user_role WHERE user_id = :id"), {"id": user.id})
        with pytest.raises(IntegrityError):
            connection.execute(text("DELETE FROM ab_user WHERE id = :id"), {"id": user.id})
        connection.rollback()
    assert _snapshot() == before
    with unscoped() as session:
        assert session.get(PortalUser, user.id) is not None


def test_purge_events_removes_exactly_the_old_ones_and_records_itself(app, world):
    customer, operator = world.accounts["customer_a"].id, world.accounts["operator"].id
    old = [_add_event(customer, 401), _add_event(customer, 900), _add_event(operator, 400.1)]
    kept = [_add_event(customer, 399.9), _add_event(customer, 1), _add_event(operator, 0)]
    with unscoped() as session:
        every = set(session.scalars(select(Event.id)))
    result = app.test_cli_runner().invoke(args=["portal", "purge-events"])
    assert result.exit_code == 0, result.output
    assert "Events older than 400 days purged: 3." in result.output
    with unscoped() as session:
        left = set(session.scalars(select(Event.id)))
        purged = session.scalars(select(Event).where(Event.action == "event_log.purged")).one()
        assert left == (every - set(old)) | {purged.id} and set(kept) <= left
        assert purged.account_id == operator and purged.summary.startswith("3 event(s) older than 400 days purged")
        assert purged.actor_label == "cli:purge-events"


def test_purge_events_says_so_when_the_triggers_keep_events_longer(app, world):
    _add_event(world.accounts["customer_a"].id, 450)
    before = _snapshot()
    with app.app_context(), scoping.bypass("test: the database's own guard"), db.engine.begin() as connection:
        db_guard.install(connection, 500)  # as if EVENT_RETENTION_DAYS went down without `portal event-triggers`
    try:
        result = app.test_cli_runner().invoke(args=["portal", "purge-events"])
        assert result.exit_code != 0 and "flask portal event-triggers" in result.output
        assert _snapshot() == before
    finally:
        with app.app_context():
            result = app.test_cli_runner().invoke(args=["portal", "event-triggers"])
    assert "events younger than 400 days cannot be deleted" in result.output
    assert app.test_cli_runner().invoke(args=["portal", "purge-events"]).exit_code == 0


def test_each_event_carries_its_request_id(world, client):
    page = client.get("/login/")
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
    email = world.users["reseller_a_admin"].email
    answer = client.post("/login/", data={"csrf_token": token, "username": email, "password": factories.PASSWORD})
    with unscoped() as session:
        signed_in = session.scalars(select(Event).where(Event.action == "auth.login")).one()
        assert signed_in.request_id == answer.headers["X-Request-ID"] and len(signed_in.request_id) == 32
        # Outside a request (the world was built by a script, as CLI commands and jobs run) there is none.
        assert session.scalars(select(Event).where(Event.action == "customer.created")).first().request_id is None


# -- in production: the application's role owns nothing --------------------------------------------------------------


def _readme_grants() -> str:
    return (ROOT / "README.md").read_text()


def test_readme_shows_the_grants_the_code_knows():
    readme = _readme_grants()
    for statement in db_guard.app_role_grants("portal_app", "portal_owner"):
        assert f"{statement};" in readme, statement


@pytest.mark.postgres_only
def test_the_application_role_cannot_change_the_event_log(app, world):
    role = f"portal_app_test_{uuid.uuid4().hex[:8]}"
    customer = world.accounts["customer_a"].id
    recent, old = _add_event(customer, 1), _add_event(customer, 401)
    with app.app_context():
        owner = db.engine
        owner_role = owner.url.username
    # Raw SQL as the tables' owner and as the application's role: the database's guard is under test, not scoping.py.
    with scoping.bypass("test: the database's own guard"):
        with owner.begin() as connection:
            connection.execute(text(f"CREATE ROLE {role} LOGIN"))
            for statement in db_guard.app_role_grants(role, owner_role):
                connection.execute(text(statement))
        as_app = create_engine(make_url(TEST_DATABASE_URL).set(username=role))
        refused = {
            "update": "UPDATE event SET summary = 'rewritten'",
            "delete a recent event": f"DELETE FROM event WHERE id = {recent}",
            "truncate": "TRUNCATE event",
            "drop the trigger": "DROP TRIGGER event_no_update ON event",
            "disable the trigger": "ALTER TABLE event DISABLE TRIGGER event_no_delete",
            "disable every trigger": "ALTER TABLE event DISABLE TRIGGER ALL",
            "replace the function": "CREATE OR REPLACE FUNCTION event_append_only() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN RETURN OLD; END $$",
            "drop the function": "DROP FUNCTION event_append_only() CASCADE",
            "drop the table": "DROP TABLE event",
            "skip the triggers": "SET session_replication_role = replica",
            "a table of its own": "CREATE TABLE mine (id integer)",
        }
        try:
            for what, statement in refused.items():
                with as_app.connect() as connection, pytest.raises(DBAPIError):
                    connection.execute(text(statement))
                    pytest.fail(f"the application's role could {what}")
            with as_app.begin() as connection:
                connection.execute(
                    text(
                        "INSERT INTO event (occurred_at, actor_label, action, summary, account_id) "
                        "VALUES (now() AT TIME ZONE 'UTC', 'app', 'test.inserted', 'by the app', :account)"
                    ),
                    {"account": customer},
                )
                assert connection.scalar(text("SELECT count(*) FROM event WHERE action = 'test.inserted'")) == 1
                assert connection.execute(text(f"DELETE FROM event WHERE id = {old}")).rowcount == 1
            with owner.begin() as connection:
                # ALTER DEFAULT PRIVILEGES: a table the owner makes later is the app's to use too.
                connection.execute(text("CREATE TABLE later_table (id serial PRIMARY KEY, note text)"))
            with as_app.begin() as connection:
                connection.execute(text("INSERT INTO later_table (note) VALUES ('ok')"))
        finally:
            as_app.dispose()
            with owner.begin() as connection:
                connection.execute(text("DROP TABLE IF EXISTS later_table"))
                connection.execute(text(f"DROP OWNED BY {role}"))
                connection.execute(text(f"DROP ROLE {role}"))
    with unscoped() as session:
        assert session.scalar(select(func.count(Event.id)).where(Event.id == recent)) == 1
        assert session.get(Event, recent).summary == "1 days ago"
        assert session.get(Event, old) is None
    with app.app_context(), scoping.bypass("test: the database's own guard"), db.engine.connect() as connection:
        assert db_guard.installed(connection) == {"event_no_update", "event_no_delete", "event_no_truncate"}

"""What the database enforces by itself, whoever connects: the event log is append-only.

Triggers refuse every UPDATE of an ``event`` row and every DELETE of one younger than the retention (and, on
PostgreSQL, every TRUNCATE). The retention is baked into the trigger when it is created — by migration 0006 and by
``flask portal event-triggers`` after ``EVENT_RETENTION_DAYS`` changes, both as the tables' owner — so no row the
application can write decides what may be deleted. In production the application's role is not the owner
(``app_role_grants``): it cannot drop, disable or replace the triggers, nor the function behind them.

This module is the one copy of the DDL: the migration, the CLI and the tests all use it.
"""

from __future__ import annotations

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine

DEFAULT_RETENTION_DAYS = 400
REFUSED = "the event log is append-only"

_SQLITE_TRIGGERS = ("event_no_update", "event_no_delete", "event_no_replace")
_PG_TRIGGERS = ("event_no_update", "event_no_delete", "event_no_truncate")
_PG_FUNCTION = "event_append_only"


def _days(retention_days: int) -> int:
    days = int(retention_days)
    if days < 1:
        raise ValueError("the event retention is at least 1 day")
    return days


def _sqlite_create(days: int) -> list[str]:
    return [
        "CREATE TRIGGER event_no_update BEFORE UPDATE ON event "
        f"BEGIN SELECT RAISE(ABORT, '{REFUSED}: an event cannot be changed'); END",
        # Stored times are naive UTC text ('YYYY-MM-DD HH:MM:SS.ffffff'): they compare with datetime() as text.
        "CREATE TRIGGER event_no_delete BEFORE DELETE ON event "
        f"WHEN OLD.occurred_at >= datetime('now', '-{days} days') "
        f"BEGIN SELECT RAISE(ABORT, '{REFUSED}: only events older than {days} days can be deleted'); END",
        # INSERT OR REPLACE deletes the row it replaces without firing DELETE triggers: refuse a taken id.
        "CREATE TRIGGER event_no_replace BEFORE INSERT ON event "  # noqa: S608 - constants, no input
        "WHEN NEW.id IS NOT NULL AND EXISTS (SELECT 1 FROM event WHERE id = NEW.id) "
        f"BEGIN SELECT RAISE(ABORT, '{REFUSED}: an event cannot be replaced'); END",
    ]


def _postgresql_create(days: int) -> list[str]:
    # search_path pinned: nobody's own now() can stand in for pg_catalog's. restrict_violation (23001) is an
    # integrity error to the driver, as SQLite's RAISE(ABORT) is.
    function = f"""
CREATE OR REPLACE FUNCTION {_PG_FUNCTION}() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    IF OLD.occurred_at < (now() AT TIME ZONE 'UTC') - interval '{days} days' THEN
      RETURN OLD;
    END IF;
    RAISE EXCEPTION '{REFUSED}: only events older than {days} days can be deleted'
      USING ERRCODE = 'restrict_violation';
  END IF;
  RAISE EXCEPTION '{REFUSED}: % of event refused', TG_OP USING ERRCODE = 'restrict_violation';
END
$$"""
    run = f"EXECUTE FUNCTION {_PG_FUNCTION}()"
    return [
        function,
        f"CREATE TRIGGER event_no_update BEFORE UPDATE ON event FOR EACH ROW {run}",
        f"CREATE TRIGGER event_no_delete BEFORE DELETE ON event FOR EACH ROW {run}",
        f"CREATE TRIGGER event_no_truncate BEFORE TRUNCATE ON event FOR EACH STATEMENT {run}",
    ]


def create_statements(dialect: str, retention_days: int = DEFAULT_RETENTION_DAYS) -> list[str]:
    """The DDL that makes ``event`` append-only on ``dialect`` ('sqlite' or 'postgresql')."""
    days = _days(retention_days)
    if dialect == "sqlite":
        return _sqlite_create(days)
    if dialect == "postgresql":
        return _postgresql_create(days)
    raise ValueError(f"no event log triggers for {dialect}")


def drop_statements(dialect: str) -> list[str]:
    if dialect == "sqlite":
        return [f"DROP TRIGGER IF EXISTS {name}" for name in _SQLITE_TRIGGERS]
    if dialect == "postgresql":
        return [f"DROP TRIGGER IF EXISTS {name} ON event" for name in _PG_TRIGGERS] + [
            f"DROP FUNCTION IF EXISTS {_PG_FUNCTION}()"
        ]
    raise ValueError(f"no event log triggers for {dialect}")


def install(connection: Connection, retention_days: int = DEFAULT_RETENTION_DAYS) -> None:
    """(Re)create the triggers with this retention, in the connection's transaction (as the tables' owner)."""
    dialect = connection.dialect.name
    for statement in (*drop_statements(dialect), *create_statements(dialect, retention_days)):
        connection.execute(text(statement))


def remove(connection: Connection) -> None:
    for statement in drop_statements(connection.dialect.name):
        connection.execute(text(statement))


def installed(connection: Connection) -> set[str]:
    """The names of the event log's triggers present on ``event``."""
    if connection.dialect.name == "sqlite":
        found = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'event'"
    else:
        found = (
            "SELECT tgname FROM pg_trigger "
            "WHERE tgrelid = to_regclass('event') AND NOT tgisinternal AND tgenabled <> 'D'"
        )
    return {row[0] for row in connection.execute(text(found))}


def app_role_grants(app_role: str, owner_role: str, schema: str = "public") -> list[str]:
    """What the tables' owner grants the application's role: rows, never schema. README's *Production* shows them."""
    return [
        f"REVOKE CREATE ON SCHEMA {schema} FROM PUBLIC",
        f"GRANT USAGE ON SCHEMA {schema} TO {app_role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {app_role}",
        f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {schema} TO {app_role}",
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner_role} IN SCHEMA {schema} "
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {app_role}",
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner_role} IN SCHEMA {schema} GRANT USAGE ON SEQUENCES TO {app_role}",
    ]


def owner_engine(app) -> Engine:
    """The tables' owner's engine, for migrations and the triggers: ``MIGRATION_DATABASE_URL``, else the app's own
    (development and tests, where one role owns and uses the tables). The caller disposes of a new one."""
    url = app.config.get("MIGRATION_DATABASE_URL")
    if url and url != app.config["SQLALCHEMY_DATABASE_URI"]:
        return create_engine(url)
    return app.extensions["migrate"].db.engine


# -- issued invoices are unchangeable (issue 14) ----------------------------------------------------------------------
# An issued invoice (``invoice.status = 'issued'``) refuses every UPDATE and DELETE, and its lines every INSERT,
# UPDATE and DELETE: corrections are credit notes. Created by migration 0023; the tests' clean-up drops and re-creates
# them on SQLite (PostgreSQL's clean-up runs in replica mode, which skips them).

INVOICE_REFUSED = "an issued invoice cannot change: correct it with a credit note"
_SQLITE_INVOICE_TRIGGERS = (
    ("invoice_issued_no_update", "BEFORE UPDATE ON invoice", "OLD.status = 'issued'"),
    ("invoice_issued_no_delete", "BEFORE DELETE ON invoice", "OLD.status = 'issued'"),
    (
        "invoice_line_issued_no_insert",
        "BEFORE INSERT ON invoice_line",
        "(SELECT status FROM invoice WHERE id = NEW.invoice_id) = 'issued'",
    ),
    (
        "invoice_line_issued_no_update",
        "BEFORE UPDATE ON invoice_line",
        "(SELECT status FROM invoice WHERE id = OLD.invoice_id) = 'issued' "
        "OR (SELECT status FROM invoice WHERE id = NEW.invoice_id) = 'issued'",
    ),
    (
        "invoice_line_issued_no_delete",
        "BEFORE DELETE ON invoice_line",
        "(SELECT status FROM invoice WHERE id = OLD.invoice_id) = 'issued'",
    ),
)


def invoice_create_statements(dialect: str) -> list[str]:
    if dialect == "postgresql":
        return [
            "CREATE FUNCTION invoice_refuse_issued() RETURNS trigger AS $$ BEGIN "
            f"IF OLD.status = 'issued' THEN RAISE EXCEPTION '{INVOICE_REFUSED}' USING ERRCODE = 'check_violation'; "
            "END IF; IF TG_OP = 'DELETE' THEN RETURN OLD; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE FUNCTION invoice_line_refuse_issued() RETURNS trigger AS $$ BEGIN "  # noqa: S608 - constants
            "IF EXISTS (SELECT 1 FROM invoice WHERE status = 'issued' AND id IN ("
            "CASE WHEN TG_OP = 'DELETE' THEN OLD.invoice_id ELSE NEW.invoice_id END, "
            "CASE WHEN TG_OP = 'INSERT' THEN NEW.invoice_id ELSE OLD.invoice_id END)) THEN "
            f"RAISE EXCEPTION '{INVOICE_REFUSED}' USING ERRCODE = 'check_violation'; END IF; "
            "IF TG_OP = 'DELETE' THEN RETURN OLD; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER invoice_issued_unchangeable BEFORE UPDATE OR DELETE ON invoice "
            "FOR EACH ROW EXECUTE FUNCTION invoice_refuse_issued()",
            "CREATE TRIGGER invoice_line_issued_unchangeable BEFORE INSERT OR UPDATE OR DELETE ON invoice_line "
            "FOR EACH ROW EXECUTE FUNCTION invoice_line_refuse_issued()",
        ]
    return [
        f"CREATE TRIGGER {name} {when} FOR EACH ROW WHEN {on} BEGIN SELECT RAISE(ABORT, '{INVOICE_REFUSED}'); END"
        for name, when, on in _SQLITE_INVOICE_TRIGGERS
    ]


def invoice_drop_statements(dialect: str) -> list[str]:
    if dialect == "postgresql":
        return [
            "DROP TRIGGER IF EXISTS invoice_line_issued_unchangeable ON invoice_line",
            "DROP TRIGGER IF EXISTS invoice_issued_unchangeable ON invoice",
            "DROP FUNCTION IF EXISTS invoice_line_refuse_issued()",
            "DROP FUNCTION IF EXISTS invoice_refuse_issued()",
        ]
    return [f"DROP TRIGGER IF EXISTS {name}" for name, _when, _on in _SQLITE_INVOICE_TRIGGERS]


def install_invoice_guard(connection: Connection) -> None:
    dialect = connection.dialect.name
    for statement in (*invoice_drop_statements(dialect), *invoice_create_statements(dialect)):
        connection.execute(text(statement))


def remove_invoice_guard(connection: Connection) -> None:
    for statement in invoice_drop_statements(connection.dialect.name):
        connection.execute(text(statement))

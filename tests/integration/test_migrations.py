"""The schema comes only from migrations (DESIGN.md rule 5): upgrade from empty works, models and migrations agree."""

from __future__ import annotations

import flask_migrate
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_appbuilder import Model
from sqlalchemy import create_engine, inspect, text

from app.extensions import db
from security import scoping
from tests.conftest import make_app

# Schema introspection (catalogue queries nobody can classify) and migrations run as the schema's owner would: under
# the one scope that may send them.
SCHEMA = "test: schema introspection"


def _drift(connection) -> list:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return compare_metadata(context, Model.metadata)


def test_models_and_migrations_do_not_drift(app):
    # The test database was built by `flask db upgrade` from empty (the session fixture).
    with app.app_context(), scoping.bypass(SCHEMA), db.engine.connect() as connection:
        assert _drift(connection) == []


def test_every_model_table_exists_after_upgrade(app):
    with app.app_context(), scoping.bypass(SCHEMA):
        tables = set(inspect(db.engine).get_table_names())
    assert {t.name for t in Model.metadata.sorted_tables} <= tables
    assert "alembic_version" in tables


def _fresh_database_url(database_url: str, tmp_path) -> str:
    """An empty database of the same kind: a new SQLite file, or a new schema on the PostgreSQL server."""
    if not database_url.startswith("postgresql"):
        return f"sqlite:///{tmp_path / 'fresh.db'}"
    engine = create_engine(database_url)
    with scoping.bypass(SCHEMA), engine.begin() as connection:
        connection.execute(text("DROP SCHEMA IF EXISTS fresh_upgrade CASCADE"))
        connection.execute(text("CREATE SCHEMA fresh_upgrade"))
    engine.dispose()
    return f"{database_url}?options=-csearch_path%3Dfresh_upgrade"


def test_upgrade_from_empty_and_downgrade_on_a_fresh_database(app, tmp_path, database_url):
    fresh = make_app(tmp_path, _fresh_database_url(database_url, tmp_path))
    with fresh.app_context(), scoping.bypass(SCHEMA):
        flask_migrate.upgrade()
        with db.engine.connect() as connection:
            assert _drift(connection) == []
        flask_migrate.downgrade(revision="base")
        assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
        db.engine.dispose()

"""Alembic environment. The schema's source is FAB's ``Model.metadata`` (not Flask-SQLAlchemy's ``db.metadata``):
every model of the app, FAB's security tables included, is declared on it (FAB pitfall 12)."""

import logging
from logging.config import fileConfig

from alembic import context
from flask import current_app
from flask_appbuilder import Model

import app.models  # noqa: F401 - registers every model on Model.metadata
from security import scoping

config = context.config
if config.config_file_name and not logging.getLogger().handlers:
    fileConfig(config.config_file_name, disable_existing_loggers=False)
logger = logging.getLogger("alembic.env")

target_metadata = Model.metadata


def get_engine():
    """The tables' owner: ``MIGRATION_DATABASE_URL`` when set (production: the app's own role owns nothing)."""
    from app.db_guard import owner_engine

    return owner_engine(current_app)


def _configure_args(connection_or_url):
    args = dict(current_app.extensions["migrate"].configure_args)
    args.setdefault("compare_type", True)
    args.setdefault("compare_server_default", False)
    # SQLite cannot ALTER most things: let Alembic rebuild tables ("batch mode").
    args.setdefault("render_as_batch", True)
    return args


def run_migrations_offline():
    url = get_engine().url.render_as_string(hide_password=False)
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True, **_configure_args(url))
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    def process_revision_directives(context_, revision, directives):
        # An autogenerate run that finds nothing writes no empty revision.
        if getattr(config.cmd_opts, "autogenerate", False) and directives[0].upgrade_ops.is_empty():
            directives[:] = []
            logger.info("No changes in schema detected.")

    args = _configure_args(None)
    args.setdefault("process_revision_directives", process_revision_directives)
    with get_engine().connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # Batch mode rebuilds a table (copy, DROP, rename): with foreign keys enforced, dropping a table other rows
            # point at fails. Off for the migration (outside any transaction, where SQLite honours it), on after;
            # the copies keep every key, and `PRAGMA foreign_key_check` must find nothing broken.
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        context.configure(connection=connection, target_metadata=target_metadata, **args)
        with context.begin_transaction():
            context.run_migrations()
            if sqlite and (broken := connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()):
                raise RuntimeError(f"the migration broke foreign keys: {broken[:5]}")
        if sqlite:
            connection.commit()
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()


# Migrations change every tenant's rows and the schema itself: the one scope they can run under is all of it.
with scoping.bypass("migrations"):
    if context.is_offline_mode():
        run_migrations_offline()
    else:
        run_migrations_online()

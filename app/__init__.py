"""The application factory: binds the extensions, registers the views and the CLI — nothing else."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

import config as settings
from app.extensions import appbuilder, csrf, db, mail, migrate
from app.failure import PortalFlask

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def create_app(config: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Flask:
    """Build the app from the environment (or ``environ``), with ``config`` overriding single settings."""
    try:
        values = settings.load(environ, config)
    except settings.ConfigError as exc:
        # One clear line, not a traceback (the start-up contract).
        print(f"Partner Portal cannot start: {exc}", file=sys.stderr)
        raise SystemExit(2) from None

    app = PortalFlask(__name__, instance_path=values["INSTANCE_PATH"])
    app.config.update(values)
    _log_to_stderr(values.get("PORTAL_ENV"), values.get("LOG_FORMAT"))

    from app import failure, formatting, logs, request_id, web
    from app.services import audit, billing_ledger, maintenance  # noqa: F401 - billing_ledger: the ledger's events
    from security import headers, impersonation, memberships, mfa, scoping, throttle
    from security.sessions import init_sessions

    db.init_app(app)
    scoping.install(db.session)
    migrate.init_app(app, db, directory=str(MIGRATIONS))
    csrf.init_app(app)
    mail.init_app(app)
    init_sessions(app, lambda: db.engine)
    failure.configure(app)  # before FAB starts the rate limiter: its Redis gets the short timeouts
    throttle.init_app(app, lambda: db.engine)
    headers.init_app(app)
    request_id.init_app(app)
    formatting.init_app(app)
    web.init_app(app)
    impersonation.init_app(app)
    mfa.init_app(app)
    memberships.init_app(app)  # after the second factor: an account is chosen once the sign-in is complete
    audit.connect()

    with app.app_context():
        # One AppBuilder serves one app at a time; start it clean so a second app (tests) gets its own views.
        appbuilder.baseviews = []
        appbuilder.menu = None
        appbuilder.init_app(app, db.session)
        import views

        views.register(appbuilder)

    from app import cli

    cli.init_app(app)
    logs.init_app(app)  # after the hooks that load the signed-in user: log lines name them
    failure.init_app(app)  # last: its session check runs before every other request hook
    maintenance.init_app(app)  # the periodic work, in this process when jobs run here
    return app


def _log_to_stderr(mode: str | None, log_format: str | None = None) -> None:
    """The portal's own one-line notices (mail written to the outbox, provider failures with their correlation id,
    outages) reach the console at INFO, as text or JSON (``LOG_FORMAT``); a host that configured logging itself keeps
    its setup."""
    from app import logs

    logs.configure(mode, log_format)

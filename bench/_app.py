"""What the benchmarks share: a fresh database (a temporary SQLite file, or a PostgreSQL database whose ``public``
schema is dropped and recreated) migrated, with the roles and the demo data, and the app on it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from sqlalchemy import create_engine, text


def demo_app(prefix: str, database_url: str, password: str, config: dict | None = None):
    """``(app, url)``: the app on a fresh database holding the demo data (every demo login with ``password``)."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    url = database_url or f"sqlite:///{workdir / 'bench.db'}"
    if url.startswith("postgresql"):
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()

    import flask_migrate

    from app import create_app
    from app.extensions import db
    from app.services.demo import seed_demo
    from security import scoping
    from security.roles import sync_roles

    environ = {**os.environ, "PORTAL_ENV": "development", "PORTAL_INSTANCE_PATH": str(workdir), "DATABASE_URL": url}
    environ.pop("REDIS_URL", None)
    app = create_app(config=config or {}, environ=environ)
    with app.app_context():
        flask_migrate.upgrade()
        with scoping.bypass("bench"):
            sync_roles(db.session)
            seed_demo(password)
            db.session.commit()
    return app, url

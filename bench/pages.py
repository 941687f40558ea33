"""Page latency at scale, run by hand (never by ``make test``)::

    .venv/bin/python -m bench.pages --scale 100000 --database-url postgresql://postgres@127.0.0.1/portal_pages

Builds (or, with ``--reuse``, reuses) a database with the demo data plus ``--scale`` generated customers, then
times the partner portal's main pages in-process (Flask's test client: the app's own time, no network) for operator
staff (every account) and for the partner user of the largest generated reseller, and counts SQL statements per
page. With ``--database-url`` pointing at PostgreSQL its ``public`` schema is dropped and recreated (unless
``--reuse``): give the benchmark a database of its own.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, event, func, select, text

DEMO_PASSWORD = "bench-demo-password"  # also the generated logins' (seed_scale shares one hash)


def build(app, scale: int) -> float:
    import flask_migrate

    from app.extensions import db
    from app.services.demo import seed_demo
    from app.services.scale import seed_scale
    from security import scoping
    from security.passwords import hash_password
    from security.roles import sync_roles

    started = time.perf_counter()
    with app.app_context():
        flask_migrate.upgrade()
        with scoping.bypass("bench"):
            sync_roles(db.session)
            seed_demo(DEMO_PASSWORD)
            seed_scale(scale, echo=lambda line: None, password_hash=hash_password(DEMO_PASSWORD))
    return time.perf_counter() - started


def sign_in(app, email: str, password: str):
    client = app.test_client()
    page = client.get("/login/")
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
    client.post("/login/", data={"csrf_token": token, "username": email, "password": password})
    assert client.get("/").status_code == 200, f"could not sign in as {email}"
    return client


def measure(app, client, path: str, runs: int) -> tuple[list[float], int]:
    from app.extensions import db

    with app.app_context():
        engine = db.engine
    statements: list[str] = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    client.get(path)  # warm-up
    event.listen(engine, "before_cursor_execute", listener)
    try:
        client.get(path)
        per_page = len(statements)
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, (path, response.status_code)
    return times, per_page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=1000)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--reuse", action="store_true", help="use the database as it is")
    args = parser.parse_args()

    instance = Path(tempfile.mkdtemp(prefix="portal-pages-"))
    url = args.database_url or f"sqlite:///{instance / 'pages.db'}"
    if url.startswith("postgresql") and not args.reuse:
        engine = create_engine(url)
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    from app import create_app

    app = create_app(
        config={"RATELIMIT_ENABLED": False},
        environ={"PORTAL_ENV": "testing", "PORTAL_INSTANCE_PATH": str(instance), "DATABASE_URL": url},
    )
    seeded = 0.0 if args.reuse else build(app, args.scale)

    from app.extensions import db
    from app.models.accounts import Account
    from security import scoping

    with app.app_context(), scoping.bypass("bench"):
        biggest = db.session.execute(
            select(Account.parent_id, func.count(Account.id))
            .where(Account.name.like("Scale Customer %"))
            .group_by(Account.parent_id)
            .order_by(func.count(Account.id).desc())
            .limit(1)
        ).first()
        reseller = db.session.get(Account, biggest[0])
        number = reseller.name.rsplit(" ", 1)[1]
        customer = db.session.scalar(select(Account.id).where(Account.parent_id == reseller.id).order_by(Account.id))
        customers = db.session.scalar(select(func.count(Account.id)).where(Account.kind == "customer"))
    pages = [
        "/",
        "/?renewals=90",
        "/accountview/list/",
        "/accountview/list/?_flt_2_name=Customer+0001",
        "/search/suggest?q=scale+customer+00012",
        "/subscriptionview/list/",
        "/eventview/list/",
        f"/accounts/{reseller.id}/sub-accounts",
        f"/accounts/{reseller.id}/products/csp-report",
        f"/accounts/{customer}/details",
        f"/accounts/{customer}/users",
        f"/accounts/{customer}/products/csp-report",
        f"/accounts/{reseller.id}/products/usage-chart",
    ]
    who = {
        "operator staff (every account)": sign_in(app, "ops@mycloudstore.co.nz", DEMO_PASSWORD),
        f"partner of {reseller.name} ({biggest[1]} customers)": sign_in(
            app, f"partner{number}@scale-reseller.example", DEMO_PASSWORD
        ),
    }
    print(
        f"database {url.split('@')[-1]}; {customers:,} customers; seeding took {seeded:.0f} s; "
        f"{os.cpu_count()} cores; {args.runs} runs a page"
    )
    for label, client in who.items():
        print(f"\n{label}")
        print(f"  {'page':58} {'p50 ms':>8} {'p95 ms':>8} {'SQL':>5}")
        for path in pages:
            times, statements = measure(app, client, path, args.runs)
            ordered = sorted(times)
            p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
            print(f"  {path:58} {statistics.median(times):8.1f} {p95:8.1f} {statements:5d}")


if __name__ == "__main__":
    main()

"""Accounts ▸ List all at scale, run by hand (never by ``make test``)::

    .venv/bin/python -m bench.accounts_list --scale 100000 --database-url postgresql://postgres@127.0.0.1/portal_list
    .venv/bin/python -m bench.accounts_list --reuse --database-url ...   # measure again without rebuilding

Builds (or reuses) the demo data plus ``--scale`` generated customers (bench/pages.py's ``build``), then times the
list in-process for operator staff and for the partner user of the largest generated reseller: unfiltered, each
filter (reseller, Microsoft tenant yes/no, renews within 30 days), filters combined, and page sizes 25 and 100 —
p50 / p95 of ``--runs`` requests after a warm-up, and the SQL statements each sends (equal across page sizes).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from sqlalchemy import create_engine, func, select, text

from bench.pages import DEMO_PASSWORD, build, measure, sign_in


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=1000)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--reuse", action="store_true", help="use the database as it is")
    args = parser.parse_args()

    instance = Path(tempfile.mkdtemp(prefix="portal-list-"))
    url = args.database_url or f"sqlite:///{instance / 'list.db'}"
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
        customers = db.session.scalar(select(func.count(Account.id)).where(Account.kind == "customer"))
    base = "/accountview/list/"
    operator_pages = [
        base,
        f"{base}?psize_AccountView=100",
        f"{base}?reseller={reseller.id}",
        f"{base}?tenant=yes",
        f"{base}?tenant=no",
        f"{base}?renews=30",
        f"{base}?renews=30&tenant=yes",
        f"{base}?renews=30&tenant=yes&psize_AccountView=100",
    ]
    partner_pages = [p for p in operator_pages if "reseller=" not in p]
    who = {
        "operator staff (every account)": (sign_in(app, "ops@mycloudstore.co.nz", DEMO_PASSWORD), operator_pages),
        f"partner of {reseller.name} ({biggest[1]} customers)": (
            sign_in(app, f"partner{number}@scale-reseller.example", DEMO_PASSWORD),
            partner_pages,
        ),
    }
    print(
        f"database {url.split('@')[-1]}; {customers:,} customers; seeding took {seeded:.0f} s; "
        f"{os.cpu_count()} cores; {args.runs} runs a page"
    )
    for label, (client, pages) in who.items():
        print(f"\n{label}")
        print(f"  {'page':58} {'p50 ms':>8} {'p95 ms':>8} {'SQL':>5}")
        for path in pages:
            times, statements = measure(app, client, path, args.runs)
            ordered = sorted(times)
            p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
            print(f"  {path:58} {statistics.median(times):8.1f} {p95:8.1f} {statements:5d}")


if __name__ == "__main__":
    main()

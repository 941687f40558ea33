"""The monthly billing run and Microsoft's billed reconciliation at scale (issue 14), run by hand (never by
``make test``)::

    .venv/bin/python -m bench.billing [--scale 100000] [--small-scale 10000]
                                      [--database-url postgresql://postgres@127.0.0.1:5432/portal_bench14]
    .venv/bin/python -m bench.billing --reuse --scale 100000 --small-scale 0    # the database an earlier run left

For each scale, smallest first, on one database: ``seed_scale(n)`` tops it up to ``n`` generated customers (the
first scale after a fresh schema, the demo data and roles; what ``flask portal seed-demo --scale N`` does, timed).
The seeder writes each generated subscription's charge ledger row at its term's start, and one subscription in 20
gets seats added mid-month in the previous month (prorated lines); with the sandbox provider "Microsoft" holds the
same subscriptions and ledger. Then, each in a fresh child process (as ``flask portal billing run`` would run):

1. **run**: ``billing.run(previous month)`` under the command's bypass: wall time, invoices and lines written, SQL
   statements (a subscription), peak RSS growth (VmHWM reset at the baseline, as bench/reports.py);
2. **again**: the same run a second time (idempotent: its drafts are replaced): the same numbers, which must match;
3. **file**: Microsoft's billed reconciliation file of the month built from the portal's own charges
   (``billing.subscription_charges``: Microsoft's unit price, effective unit price and subtotal of every charge),
   one gzip JSON object a line with Microsoft's field names — not timed as part of the reconciliation;
4. **reconcile**: ``billing_reconcile.import_file(month, path)`` then ``billing_reconcile.reconcile(month)``:
   wall time of each, peak RSS growth. Every line should match (the file is the portal's own charges).

Goals (issue 14): at ``--scale 100000`` on PostgreSQL (300k subscriptions) the run under 5 minutes, the import and
reconciliation of the Microsoft file under 2 minutes, memory flat in the data size (compare the two scales).

Migration 0023 indexes ``invoice.corrects_id``: without it PostgreSQL's check of that self-referencing foreign key
scanned the whole invoice table for every draft the second run deletes (1.25 ms a draft at 10,000 customers, found
by this benchmark).

A PostgreSQL ``--database-url`` has its ``public`` schema dropped and recreated unless ``--reuse`` (refused while
another session is connected): give the benchmark a database of its own.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from decimal import Decimal

DEFAULT_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/portal_bench14")
RESULT = "BENCH-RESULT "
DEMO_PASSWORD = "bench-demo-password"
PAGE = 2000  # subscriptions a page while writing Microsoft's file
INVOICE_NUMBER = "G000000014"
# Microsoft's field names (Partner Center's billed reconciliation, Graph's camelCase spelling), used when
# app/services/billing_reconcile.py does not name its own.
FIELDS = (
    "invoiceNumber",
    "customerId",
    "customerName",
    "subscriptionId",
    "productId",
    "skuId",
    "skuName",
    "chargeType",
    "chargeStartDate",
    "chargeEndDate",
    "termAndBillingCycle",
    "unitPrice",
    "effectiveUnitPrice",
    "quantity",
    "billableQuantity",
    "subtotal",
)


def make_app(args):
    from app import create_app

    environ = {
        "PORTAL_ENV": "development",
        "PORTAL_INSTANCE_PATH": args.instance,
        "DATABASE_URL": args.database_url,
        "CSP_PROVIDER": "sandbox",
    }
    return create_app(config={}, environ=environ)


def _month(args) -> dt.date:
    from app import clock
    from app.services.billing import parse_month

    if args.month:
        return parse_month(args.month)
    return (clock.today().replace(day=1) - dt.timedelta(days=1)).replace(day=1)


# --- the children -------------------------------------------------------------------------------------------------


def child_build(args) -> dict:
    """Fresh schema (unless ``--reuse``), migrations, roles and demo data, then top up to ``--scale`` customers."""
    import flask_migrate
    from sqlalchemy import func, select, text

    from app.extensions import db
    from app.models.billing import ChargeEvent
    from app.models.subscriptions import Subscription
    from app.services.demo import seed_demo
    from app.services.scale import seed_scale
    from bench.check_domain import reset_postgres
    from security import scoping
    from security.passwords import hash_password
    from security.roles import sync_roles

    if not args.reuse:
        reset_postgres(args.database_url)
    app = make_app(args)
    steps = {}
    with app.app_context():
        with scoping.bypass("bench: seed-demo --scale"):
            if not args.reuse:
                start = time.perf_counter()
                flask_migrate.upgrade()
                sync_roles(db.session)
                seed_demo(DEMO_PASSWORD)
                db.session.commit()
                steps["migrate + seed_demo"] = time.perf_counter() - start
            start = time.perf_counter()
            added = seed_scale(args.scale, echo=lambda line: None, password_hash=hash_password(DEMO_PASSWORD))
            db.session.commit()
            steps[f"seed_scale({args.scale}), {added} added"] = time.perf_counter() - start
            start = time.perf_counter()
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("ANALYZE"))
            steps["analyze"] = time.perf_counter() - start
            subs = db.session.scalar(select(func.count(Subscription.id)))
            ledger = db.session.scalar(select(func.count(ChargeEvent.id)))
            customers = db.session.scalar(text("SELECT count(*) FROM account WHERE kind = 'customer'"))
            db.session.rollback()
        db.engine.dispose()
    return {"steps": steps, "subscriptions": subs, "customers": customers, "ledger_rows": ledger}


def child_run(args) -> dict:
    from sqlalchemy import func, select

    from app.extensions import db
    from app.models.billing import Invoice, InvoiceLine
    from app.models.subscriptions import Subscription
    from app.services import billing
    from bench.renewals import Statements
    from bench.reports import Peak, rss_mb
    from security import scoping

    app = make_app(args)
    with app.app_context():
        month = _month(args)
        with scoping.bypass("bench: count"):
            subs = db.session.scalar(select(func.count(Subscription.id)))
        db.session.rollback()
        counter = Statements(db.engine)
        counter.count = 0
        counter.kinds.clear()
        profile = None
        if args.profile:
            import cProfile

            profile = cProfile.Profile()
        peak = Peak()
        baseline = rss_mb()
        if profile:
            profile.enable()
        start = time.perf_counter()
        with scoping.bypass("cli:billing-run"):  # as `flask portal billing run` runs it
            report = billing.run(month)
        seconds = time.perf_counter() - start
        if profile:
            profile.disable()
        growth = peak.growth_mb()
        statements = counter.count
        with scoping.bypass("bench: count"):
            invoices = db.session.scalar(
                select(func.count(Invoice.id)).where(Invoice.month == month, Invoice.status == "draft")
            )
            lines, total = db.session.execute(
                select(func.count(InvoiceLine.id), func.sum(InvoiceLine.amount))
                .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
                .where(Invoice.month == month, Invoice.status == "draft")
            ).one()
        db.session.rollback()
        db.engine.dispose()
    if profile:
        import pstats

        pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(30)
    return {
        "month": month.isoformat(),
        "subscriptions": subs,
        "seconds": seconds,
        "report_invoices": report.invoices,
        "report_lines": report.lines,
        "invoices": invoices,
        "lines": lines,
        "total": str(total),
        "statements": statements,
        "statements_per_sub": statements / subs if subs else 0,
        "top_statements": counter.kinds.most_common(12),
        "statement_ms": {k: round(v) for k, v in counter.ms.most_common(8)},
        "growth_mb": growth,
        "baseline_mb": baseline,
        "memory_method": peak.method,
    }


def _field_names() -> tuple[str, ...]:
    """The reconciliation's own field list when it has one (app/services/billing_reconcile.py or the sandbox's
    file writer), else ``FIELDS``."""
    import importlib

    for module_name in ("app.services.billing_reconcile", "app.csp.sandbox_billing"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for name in ("FIELDS", "FIELD_NAMES", "COLUMNS"):
            found = getattr(module, name, None)
            if found and all(isinstance(f, str) for f in found):
                return tuple(found)
    return FIELDS


def _line(fields: tuple[str, ...], values: dict) -> dict:
    """``values`` keyed by camelCase names, spelt as ``fields`` spells them (camelCase or PascalCase)."""
    by_lower = {key.lower(): value for key, value in values.items()}
    return {name: by_lower[name.lower()] for name in fields if name.lower() in by_lower}


def child_file(args) -> dict:
    """Microsoft's billed reconciliation file of the month, from the portal's own charges (Microsoft's prices)."""
    from sqlalchemy import select

    from app.extensions import db
    from app.models.accounts import Account, MicrosoftTenant
    from app.models.catalog import Product
    from app.models.subscriptions import Subscription
    from app.services import billing
    from bench.reports import Peak
    from security import scoping

    fields = _field_names()
    app = make_app(args)
    written = 0
    with app.app_context():
        month = _month(args)
        peak = Peak()
        start = time.perf_counter()
        with scoping.bypass("bench: Microsoft's file"), gzip.open(args.file, "wt", encoding="utf-8") as out:
            after = 0
            while True:
                subs = db.session.execute(
                    select(
                        Subscription.id,
                        Subscription.provider_subscription_id,
                        MicrosoftTenant.tenant_guid,
                        Account.name,
                        Product.sku,
                        Product.name,
                    )
                    .join(Account, Account.id == Subscription.account_id)
                    .join(MicrosoftTenant, MicrosoftTenant.account_id == Account.id)
                    .join(Product, Product.id == Subscription.product_id)
                    .where(Subscription.id > after, Subscription.provider_subscription_id.is_not(None))
                    .order_by(Subscription.id)
                    .limit(PAGE)
                ).all()
                if not subs:
                    break
                after = subs[-1][0]
                charges = billing.subscription_charges([s[0] for s in subs], month)
                for sub_id, ms_sub_id, tenant, customer_name, sku, product_name in subs:
                    product_id, _, sku_id = sku.partition(":")
                    for charge in charges.get(sub_id, ()):
                        values = {
                            "invoiceNumber": INVOICE_NUMBER,
                            "customerId": tenant,
                            "customerName": customer_name,
                            "subscriptionId": ms_sub_id,
                            "productId": product_id,
                            "skuId": sku_id,
                            "skuName": product_name,
                            "chargeType": charge.charge_type,
                            "chargeStartDate": charge.start.isoformat(),
                            "chargeEndDate": charge.end.isoformat(),
                            "termAndBillingCycle": billing.term_words(charge.term, charge.billing_cycle),
                            "unitPrice": str(charge.unit_prices[0]),
                            "effectiveUnitPrice": str(charge.effective_unit_prices[0]),
                            "quantity": charge.quantity,
                            "billableQuantity": charge.quantity,
                            "subtotal": str(charge.amounts[0]),
                        }
                        out.write(json.dumps(_line(fields, values)) + "\n")
                        written += 1
                db.session.expunge_all()
        seconds = time.perf_counter() - start
        growth = peak.growth_mb()
        db.session.rollback()
        db.engine.dispose()
    return {
        "lines": written,
        "seconds": seconds,
        "bytes": os.path.getsize(args.file),
        "fields": list(fields),
        "growth_mb": growth,
    }


def _plain(value):
    """A JSON-able summary of whatever the reconciliation returns."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (Decimal, dt.date)):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in list(value.items())[:20]}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value[:5]] + ([f"... {len(value)} in all"] if len(value) > 5 else [])
    if hasattr(value, "__dict__"):
        return {k: _plain(v) for k, v in vars(value).items() if not k.startswith("_")}
    return repr(value)[:300]


def child_reconcile(args) -> dict:
    from sqlalchemy import func, select

    from app.extensions import db
    from app.models.billing import MicrosoftBilledLine
    from bench.renewals import Statements
    from bench.reports import Peak, rss_mb
    from security import scoping

    try:
        from app.services import billing_reconcile
    except ImportError:
        return {"missing": "app/services/billing_reconcile.py is not there: the reconciliation was not timed"}
    app = make_app(args)
    with app.app_context():
        month = _month(args)
        counter = Statements(db.engine)
        counter.count = 0
        peak = Peak()
        baseline = rss_mb()
        with scoping.bypass("cli:billing-reconcile"):
            start = time.perf_counter()
            imported = billing_reconcile.import_file(month, args.file)
            import_seconds = time.perf_counter() - start
            import_statements = counter.count
            start = time.perf_counter()
            result = billing_reconcile.reconcile(month)
            reconcile_seconds = time.perf_counter() - start
        growth = peak.growth_mb()
        with scoping.bypass("bench: count"):
            matches = dict(
                db.session.execute(
                    select(MicrosoftBilledLine.match, func.count(MicrosoftBilledLine.id))
                    .where(MicrosoftBilledLine.month == month)
                    .group_by(MicrosoftBilledLine.match)
                ).all()
            )
        db.session.rollback()
        db.engine.dispose()
    return {
        "import_seconds": import_seconds,
        "reconcile_seconds": reconcile_seconds,
        "import_statements": import_statements,
        "reconcile_statements": counter.count - import_statements,
        "statement_ms": {k: round(v) for k, v in counter.ms.most_common(8)},
        "imported": _plain(imported),
        "result": _plain(result),
        "matches": {str(k): v for k, v in matches.items()},
        "growth_mb": growth,
        "baseline_mb": baseline,
        "memory_method": peak.method,
    }


# --- the parent ---------------------------------------------------------------------------------------------------


def run_child(role: str, args, scale: int, reuse: bool) -> dict:
    command = [
        sys.executable, "-m", "bench.billing", "--child", role, "--database-url", args.database_url,
        "--instance", args.instance, "--scale", str(scale), "--month", args.month, "--file", args.file,
    ]  # fmt: skip
    if reuse:
        command.append("--reuse")
    if args.profile and role == "run":
        command.append("--profile")
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)  # noqa: S603
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{role} failed with exit code {done.returncode}")
    return json.loads(lines[-1][len(RESULT) :])


def _print_run(label: str, r: dict) -> None:
    per_sec = r["subscriptions"] / r["seconds"] if r["seconds"] else 0
    print(
        f"  {label}: {r['seconds']:.1f} s ({per_sec:,.0f} subscriptions/s) for {r['month']}: {r['invoices']:,} draft "
        f"invoices, {r['lines']:,} lines (the run says {r['report_invoices']:,} / {r['report_lines']:,}), lines sum "
        f"{r['total']}; {r['statements']:,} statements ({r['statements_per_sub']:.2f} a subscription); peak growth "
        f"{r['growth_mb']:.1f} MB over {r['baseline_mb']:.0f} MB",
        flush=True,
    )
    print("    statements by kind: " + ", ".join(f"{k} {n}" for k, n in r["top_statements"]))
    print("    ms in the database by kind: " + ", ".join(f"{k} {n}" for k, n in r["statement_ms"].items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=100_000)
    parser.add_argument("--small-scale", type=int, default=10_000, help="measured first; 0 to skip")
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--reuse", action="store_true", help="keep the database's data (seed_scale tops it up)")
    parser.add_argument("--month", default="", help="YYYY-MM; default the previous month")
    parser.add_argument("--no-reconcile", action="store_true")
    parser.add_argument("--profile", action="store_true", help="cProfile the first run of each scale (stderr)")
    parser.add_argument("--file", default="")
    parser.add_argument("--instance", default="")
    parser.add_argument("--child", default="")
    args = parser.parse_args()
    if args.child:
        children = {"build": child_build, "run": child_run, "file": child_file, "reconcile": child_reconcile}
        print(RESULT + json.dumps(children[args.child](args), default=str), flush=True)
        return
    args.instance = args.instance or tempfile.mkdtemp(prefix="bench-billing-")
    args.file = args.file or os.path.join(args.instance, "microsoft-billed.jsonl.gz")
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}", flush=True)
    scales = sorted({s for s in (args.small_scale, args.scale) if s})
    reuse = args.reuse
    for scale in scales:
        built = run_child("build", args, scale, reuse)
        reuse = True
        steps = ", ".join(f"{k} {v:.0f} s" for k, v in built["steps"].items())
        print(
            f"--scale {scale}: {built['customers']:,} customers, {built['subscriptions']:,} subscriptions, "
            f"{built['ledger_rows']:,} ledger rows; {steps}; load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        first = run_child("run", args, scale, reuse)
        _print_run("first run", first)
        again = run_child("run", args, scale, reuse)
        _print_run("again (drafts replaced)", again)
        same = all(first[k] == again[k] for k in ("invoices", "lines", "total"))
        print(f"    idempotent (same invoices, lines and sum the second time): {'PASS' if same else 'FAIL'}")
        if args.no_reconcile:
            continue
        made = run_child("file", args, scale, reuse)
        print(
            f"  Microsoft's file: {made['lines']:,} lines, {made['bytes'] / 1e6:.1f} MB gzip, built in "
            f"{made['seconds']:.1f} s (peak growth {made['growth_mb']:.1f} MB); fields {', '.join(made['fields'])}",
            flush=True,
        )
        rec = run_child("reconcile", args, scale, reuse)
        if "missing" in rec:
            print(f"  reconciliation: {rec['missing']}")
            continue
        total = rec["import_seconds"] + rec["reconcile_seconds"]
        print(
            f"  import {rec['import_seconds']:.1f} s ({rec['import_statements']:,} statements) + reconcile "
            f"{rec['reconcile_seconds']:.1f} s ({rec['reconcile_statements']:,} statements) = {total:.1f} s "
            f"({made['lines'] / total if total else 0:,.0f} lines/s); peak growth {rec['growth_mb']:.1f} MB over "
            f"{rec['baseline_mb']:.0f} MB; matches {rec['matches']}",
            flush=True,
        )
        print("    ms in the database by kind: " + ", ".join(f"{k} {n}" for k, n in rec["statement_ms"].items()))
        print(f"    import_file returned {json.dumps(rec['imported'])[:400]}")
        print(f"    reconcile returned {json.dumps(rec['result'])[:600]}")


if __name__ == "__main__":
    main()

"""Time and peak memory of ``flask portal reconcile`` over the whole customer base, run by hand (never by
``make test``)::

    .venv/bin/python -m bench.reconcile [--scale 100000] [--small-scale 10000] [--differences 1000]
                                        [--database-url postgresql://postgres@127.0.0.1:5432/portal_bench]

For each scale the database is reset and built once (migrations, roles, the demo, ``seed_scale(n)``, which fills the
sandbox provider's side too: the same customers, subscriptions, users and licences "at Microsoft"; timed). Then
``--differences`` changes are made in the sandbox's tables behind the portal's back (quantities and licences), and
the reconciliation runs in a fresh subprocess — as the command does, under the operator's bypass, report only —
so the peak is its own. It must find every difference it was given and nothing else.

Peak memory growth is VmHWM less VmRSS at the baseline (after imports, app creation and a database connection), as in
bench/reports.py. Goals (issue 12): under 10 minutes at 100,000 customers, growth flat between the two scales.

A PostgreSQL ``--database-url`` has its ``public`` schema dropped and recreated (refused while another session is
connected): give the benchmark a database of its own, never the ``test`` database.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import secrets
import subprocess
import sys
import tempfile
import time

from bench.reports import Peak, child_build, make_app, rss_mb

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/portal_bench"
RESULT = "RESULT "
GOAL_SECONDS = 600


def child_differ(args) -> dict:
    """Change ``--differences`` things at "Microsoft": half quantities, half a licence taken back."""
    from sqlalchemy import select

    from app.extensions import db
    from app.models.csp import SandboxSubscription, SandboxUser

    app = make_app(args.database_url, args.instance)
    rng = random.Random(7)
    with app.app_context():
        half = args.differences // 2
        subs = db.session.scalars(select(SandboxSubscription).order_by(SandboxSubscription.id).limit(half * 20)).all()
        for sub in rng.sample(subs, half):
            sub.quantity += 1
        users = db.session.scalars(
            select(SandboxUser).where(SandboxUser.sku_ids != "").order_by(SandboxUser.id).limit(half * 20)
        ).all()
        for user in rng.sample(users, args.differences - half):
            user.sku_ids = " ".join(user.sku_ids.split()[1:])
        db.session.commit()
        db.engine.dispose()
    return {"differences": args.differences}


def child_reconcile(args) -> dict:
    from app.extensions import db
    from app.services import reconcile
    from security import scoping

    app = make_app(args.database_url, args.instance)
    with app.app_context():
        db.session.execute(db.select(1))
        db.session.rollback()
        peak = Peak()
        baseline = rss_mb()
        start = time.perf_counter()
        with scoping.bypass("bench: reconcile"):
            report = reconcile.reconcile(trigger="bench")
        seconds = time.perf_counter() - start
        run = report.run
        result = {
            "seconds": seconds,
            "growth_mb": peak.growth_mb(),
            "baseline_mb": baseline,
            "memory_method": peak.method,
            "checked": run.customers_checked,
            "differences": run.differences,
            "unreadable": run.customers_unreadable,
            "skipped": run.customers_skipped,
        }
        db.engine.dispose()
    return result


def run_child(role: str, args, scale: int) -> dict:
    command = [
        sys.executable, "-m", "bench.reconcile", "--child", role, "--database-url", args.database_url,
        "--instance", args.instance, "--scale", str(scale), "--differences", str(args.differences),
    ]  # fmt: skip
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)  # noqa: S603
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{role} at {scale} failed with exit code {done.returncode}")
    return json.loads(lines[-1][len(RESULT) :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=100_000)
    parser.add_argument("--small-scale", type=int, default=10_000)
    parser.add_argument("--differences", type=int, default=1000)
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--instance", default="")
    parser.add_argument("--child", default="")
    parser.add_argument(
        "--reuse", action="store_true", help="Keep an earlier run's database (at --scale only): the daily run again"
    )
    args = parser.parse_args()
    if args.child:
        children = {"build": child_build, "differ": child_differ, "reconcile": child_reconcile}
        print(RESULT + json.dumps(children[args.child](args), default=str), flush=True)
        return
    args.instance = args.instance or tempfile.mkdtemp(prefix="bench-reconcile-")
    os.environ.setdefault("DEMO_PASSWORD", secrets.token_urlsafe(12))
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    results = {}
    for scale in [args.scale] if args.reuse else sorted({args.small_scale, args.scale}):
        if not args.reuse:
            built = run_child("build", args, scale)
            took = sum(built["steps"].values())
            print(f"scale {scale}: built in {took:.0f} s on {built['database']}: {built['counts']}")
            run_child("differ", args, scale)
        result = run_child("reconcile", args, scale)
        results[scale] = result
        print(
            f"scale {scale}: reconcile {result['seconds']:.1f} s, {result['checked']} customers, "
            f"{result['differences']} differences (given {args.differences}), unreadable {result['unreadable']}, "
            f"skipped {result['skipped']}; peak growth {result['growth_mb']:.1f} MB "
            f"over {result['baseline_mb']:.0f} MB ({result['memory_method']})",
            flush=True,
        )
        if result["differences"] != args.differences or result["unreadable"] or result["skipped"]:
            print("  FAIL: the run did not find exactly the differences it was given")
    big = results[max(results)]
    print(f"goal: under {GOAL_SECONDS} s at {max(results)}: {'PASS' if big['seconds'] < GOAL_SECONDS else 'FAIL'}")
    if len(results) > 1:
        small = results[min(results)]
        flat = big["growth_mb"] <= max(small["growth_mb"] * 1.5, small["growth_mb"] + 20)
        print(f"memory flat between {min(results)} and {max(results)}: {'PASS' if flat else 'FAIL'}")


if __name__ == "__main__":
    main()

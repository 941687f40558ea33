"""Time, SQL statements and peak memory of ``flask portal renew`` at scale, and three pages on the renewed base, run
by hand (never by ``make test``)::

    .venv/bin/python -m bench.renewals [--scale 20000] [--days 1,30]
                                       [--database-url postgresql://postgres@127.0.0.1:5432/portal_bench13]
    .venv/bin/python -m bench.renewals --reuse --seeded-on 2026-12-02 ...   # the database an earlier run left

Build (one child process, timed): the schema reset, migrations, roles, the demo data and ``seed_scale(n)`` — what
``flask portal seed-demo --scale N`` does — with the sandbox provider holding the same subscriptions "at Microsoft".
``seed_scale`` starts every generated one-year subscription 1 to 364 days before the seeding day, so a day ``k``
days later finds about k/364 of them at their term end (a fifth with auto-renew off: they expire).

Then for each ``--days`` offset k (cumulative): a fresh child process moves the clock (time-machine, ticking) to
02:00 UTC on the seeding day + k — a moment when New Zealand's date and UTC's agree, after 00:00 UTC when the
renewal starts, so the sandbox ("Microsoft") has renewed everything the portal finds due — and runs what
``flask portal renew`` runs: ``renew_due`` under the command's bypass (the sandbox renews its own side first, then
each due subscription is read back from it and renewed or expired here, in batches). Timed, SQL statements counted
(the sandbox's step apart), peak RSS growth (VmHWM reset at the baseline, as bench/reports.py). Then the same again
in another child on the same day: it must renew nothing (idempotent).

Pages (last day): in-process with Flask's test client, as operator staff and as the partner user of the largest
generated reseller (200 customers): the reseller's CSP Report, the Subscriptions list's first page, the Customer
prices page (the reseller's, and with one customer chosen): p50/p95 ms of ``--runs`` requests and statements a page.

A PostgreSQL ``--database-url`` has its ``public`` schema dropped and recreated (refused while another session is
connected): give the benchmark a database of its own.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/portal_bench13"
RESULT = "BENCH-RESULT "
DEMO_PASSWORD = "bench-demo-password"  # also the generated logins' (seed_scale shares one hash)


def make_app(args, testing: bool = False):
    from app import create_app

    environ = {
        "PORTAL_ENV": "testing" if testing else "development",
        "PORTAL_INSTANCE_PATH": args.instance,
        "DATABASE_URL": args.database_url,
        "CSP_PROVIDER": "sandbox",
    }
    return create_app(config={"RATELIMIT_ENABLED": False} if testing else {}, environ=environ)


def _moment(args) -> dt.datetime:
    day = dt.date.fromisoformat(args.seeded_on) + dt.timedelta(days=args.day)
    return dt.datetime.combine(day, dt.time(2, 0), tzinfo=dt.UTC)


# --- the children -------------------------------------------------------------------------------------------------


def child_build(args) -> dict:
    import flask_migrate
    from sqlalchemy import func, select, text

    from app import clock
    from app.extensions import db
    from app.models.subscriptions import Subscription
    from app.services.demo import seed_demo
    from app.services.scale import seed_scale
    from bench.check_domain import reset_postgres
    from security import scoping
    from security.passwords import hash_password
    from security.roles import sync_roles

    reset_postgres(args.database_url)
    app = make_app(args)
    steps = {}
    with app.app_context():
        start = time.perf_counter()
        flask_migrate.upgrade()
        steps["migrate"] = time.perf_counter() - start
        with scoping.bypass("bench: seed-demo --scale"):
            start = time.perf_counter()
            sync_roles(db.session)
            seed_demo(DEMO_PASSWORD)
            db.session.commit()
            steps["seed_demo"] = time.perf_counter() - start
            start = time.perf_counter()
            seed_scale(args.scale, echo=lambda line: None, password_hash=hash_password(DEMO_PASSWORD))
            db.session.commit()
            steps[f"seed_scale({args.scale})"] = time.perf_counter() - start
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("ANALYZE"))
            subs = db.session.scalar(select(func.count(Subscription.id)))
            accounts = db.session.scalar(text("SELECT count(*) FROM account"))
            db.session.rollback()
        today = clock.today()
        db.engine.dispose()
    return {"steps": steps, "subscriptions": subs, "accounts": accounts, "seeded_on": today.isoformat()}


class Statements:
    """Every SQL statement sent on the app's engine (the sandbox provider shares it), by kind."""

    def __init__(self, engine) -> None:
        self.engine, self.count, self.kinds = engine, 0, collections.Counter()
        self.ms, self._kind, self._start = collections.Counter(), "", 0.0
        from sqlalchemy import event

        event.listen(engine, "before_cursor_execute", self._seen)
        event.listen(engine, "after_cursor_execute", self._done)

    def _done(self, *_args) -> None:
        self.ms[self._kind] += (time.perf_counter() - self._start) * 1000

    def _seen(self, _conn, _cursor, statement, *_rest) -> None:
        self._start = time.perf_counter()
        self.count += 1
        words = statement.split()
        verb = words[0].upper() if words else "?"
        table = "?"
        for marker in ("FROM", "INTO", "UPDATE"):
            if marker in words:
                at = words.index(marker) + 1
                if at < len(words):
                    table = words[at].strip('"(')
                    break
        self._kind = f"{verb} {table}"
        self.kinds[self._kind] += 1


def child_renew(args) -> dict:
    import time_machine

    with time_machine.travel(_moment(args), tick=True):
        return _renew(args)


def _renew(args) -> dict:
    from sqlalchemy import func, select

    from app import clock
    from app.csp.sandbox import SandboxProvider
    from app.extensions import db
    from app.models.csp import SandboxSubscription
    from app.models.subscriptions import Subscription
    from app.services.renewals import renew_due
    from bench.reports import Peak, rss_mb
    from security import scoping

    app = make_app(args)
    with app.app_context():
        today = clock.today()
        with scoping.bypass("bench: what is due"):
            due = dict(
                db.session.execute(
                    select(Subscription.auto_renew, func.count(Subscription.id))
                    .where(Subscription.status == "active", Subscription.renew_on <= today)
                    .group_by(Subscription.auto_renew)
                ).all()
            )
            total = db.session.scalar(select(func.count(Subscription.id)))
            sandbox_due = db.session.scalar(
                select(func.count(SandboxSubscription.id)).where(
                    SandboxSubscription.status == "active", SandboxSubscription.term_end <= clock.utcnow().date()
                )
            )
        db.session.rollback()
        counter = Statements(db.engine)
        sandbox_step = {}
        original = SandboxProvider.renew_due

        def timed_renew_due(self, now=None):
            before, start = counter.count, time.perf_counter()
            done = original(self, now)
            sandbox_step.update(seconds=time.perf_counter() - start, statements=counter.count - before, done=done)
            return done

        SandboxProvider.renew_due = timed_renew_due
        counter.count = 0
        counter.kinds.clear()
        peak = Peak()
        baseline = rss_mb()
        profile = None
        if args.profile:
            import cProfile

            profile = cProfile.Profile()
            profile.enable()
        start = time.perf_counter()
        with scoping.bypass("cli:renew"):  # as `flask portal renew` runs it
            report = renew_due(echo=lambda line: None)
        seconds = time.perf_counter() - start
        if profile:
            profile.disable()
            import pstats

            pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(35)
        growth = peak.growth_mb()
        db.engine.dispose()
    handled = report.renewed + report.expired
    portal_statements = counter.count - sandbox_step.get("statements", 0)
    portal_seconds = seconds - sandbox_step.get("seconds", 0)
    return {
        "today": today.isoformat(),
        "subscriptions": total,
        "due_auto_renew": due.get(True, 0),
        "due_auto_renew_off": due.get(False, 0),
        "sandbox_due": sandbox_due,
        "renewed": report.renewed,
        "expired": report.expired,
        "waiting": report.waiting,
        "problems": report.problems,
        "problem_lines": report.lines[:5],
        "seconds": seconds,
        "sandbox_seconds": sandbox_step.get("seconds", 0),
        "sandbox_done": sandbox_step.get("done", 0),
        "statements": counter.count,
        "sandbox_statements": sandbox_step.get("statements", 0),
        "portal_seconds": portal_seconds,
        "portal_statements": portal_statements,
        "per_second": handled / portal_seconds if handled and portal_seconds else 0,
        "statements_per_sub": portal_statements / handled if handled else 0,
        "top_statements": counter.kinds.most_common(14),
        "statement_ms": {k: round(v) for k, v in counter.ms.most_common(8)},
        "growth_mb": growth,
        "baseline_mb": baseline,
        "memory_method": peak.method,
    }


def child_pages(args) -> dict:
    import time_machine

    with time_machine.travel(_moment(args), tick=True):
        return _pages(args)


def _sign_in(app, email: str):
    client = app.test_client()
    page = client.get("/login/")
    found = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text)
    data = {"username": email, "password": DEMO_PASSWORD}
    if found:
        data["csrf_token"] = found.group(1)
    client.post("/login/", data=data)
    assert client.get("/").status_code == 200, f"could not sign in as {email}"
    return client


def _measure(app, client, path: str, runs: int) -> dict:
    from app.extensions import db

    with app.app_context():
        engine = db.engine
    response = client.get(path)  # warm-up
    if response.status_code != 200:
        return {"status": response.status_code}
    counter = Statements(engine)
    client.get(path)
    from sqlalchemy import event

    event.remove(engine, "before_cursor_execute", counter._seen)
    event.remove(engine, "after_cursor_execute", counter._done)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, (path, response.status_code)
    ordered = sorted(times)
    return {
        "status": 200,
        "p50": statistics.median(times),
        "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
        "statements": counter.count,
        "bytes": len(response.data),
    }


def _pages(args) -> dict:
    from sqlalchemy import func, select

    from app.extensions import db
    from app.models.accounts import Account
    from app.models.subscriptions import Subscription
    from security import scoping

    app = make_app(args, testing=True)
    with app.app_context(), scoping.bypass("bench: the largest reseller"):
        reseller_id, customers = db.session.execute(
            select(Account.parent_id, func.count(Account.id))
            .where(Account.name.like("Scale Customer %"))
            .group_by(Account.parent_id)
            .order_by(func.count(Account.id).desc(), Account.parent_id)
            .limit(1)
        ).one()
        reseller = db.session.get(Account, reseller_id)
        number = reseller.name.rsplit(" ", 1)[1]
        customer = db.session.scalar(
            select(Account.id).where(Account.parent_id == reseller.id).order_by(Account.id).limit(1)
        )
        reseller_subs = db.session.scalar(
            select(func.count(Subscription.id))
            .join(Account, Account.id == Subscription.account_id)
            .where(Account.parent_id == reseller.id)
        )
        reseller_name = reseller.name
    pages = {
        "CSP Report (reseller)": f"/accounts/{reseller_id}/products/csp-report",
        "Subscriptions list, page 1": "/subscriptionview/list/",
        "Customer prices (reseller)": f"/prices/{reseller_id}/",
        "Customer prices (one customer)": f"/prices/{reseller_id}/?customer={customer}",
    }
    who = {
        "operator staff": "ops@mycloudstore.co.nz",
        f"partner of {reseller_name}": f"partner{number}@scale-reseller.example",
    }
    results = {}
    for label, email in who.items():
        client = _sign_in(app, email)
        results[label] = {name: _measure(app, client, path, args.runs) for name, path in pages.items()}
    return {"customers": customers, "reseller_subscriptions": reseller_subs, "pages": pages, "results": results}


# --- the parent ---------------------------------------------------------------------------------------------------


def run_child(role: str, args, **extra) -> dict:
    command = [
        sys.executable, "-m", "bench.renewals", "--child", role, "--database-url", args.database_url,
        "--instance", args.instance, "--scale", str(args.scale), "--seeded-on", args.seeded_on or "",
        "--runs", str(args.runs),
    ]  # fmt: skip
    for key, value in extra.items():
        command += [f"--{key}", str(value)]
    if args.profile:
        command.append("--profile")
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)  # noqa: S603
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{role} failed with exit code {done.returncode}")
    return json.loads(lines[-1][len(RESULT) :])


def _print_renew(label: str, r: dict) -> None:
    print(
        f"  {label}: {r['seconds']:.1f} s in all; due here {r['due_auto_renew']} auto-renew + "
        f"{r['due_auto_renew_off']} auto-renew off (at the sandbox {r['sandbox_due']}); renewed {r['renewed']}, "
        f"expired {r['expired']}, waiting {r['waiting']}, problems {r['problems']}"
    )
    print(
        f"    sandbox ('Microsoft') step: {r['sandbox_seconds']:.1f} s, {r['sandbox_statements']} statements, "
        f"{r['sandbox_done']} renewed/expired there"
    )
    print(
        f"    portal: {r['portal_seconds']:.1f} s, {r['per_second']:.0f} subscriptions/s, {r['portal_statements']} "
        f"statements ({r['statements_per_sub']:.1f} a subscription); peak growth {r['growth_mb']:.1f} MB over "
        f"{r['baseline_mb']:.0f} MB ({r['memory_method']})"
    )
    print("    statements by kind: " + ", ".join(f"{k} {n}" for k, n in r["top_statements"]))
    print("    ms in the database by kind: " + ", ".join(f"{k} {n}" for k, n in r["statement_ms"].items()))
    for line in r["problem_lines"]:
        print(f"    problem: {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=20_000)
    parser.add_argument("--days", default="1,30", help="offsets from the seeding day, run in order")
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--reuse", action="store_true", help="use the database as it is (give --seeded-on)")
    parser.add_argument("--seeded-on", default="")
    parser.add_argument("--no-pages", action="store_true")
    parser.add_argument("--profile", action="store_true", help="cProfile the first renew run of each day (stderr)")
    parser.add_argument("--instance", default="")
    parser.add_argument("--child", default="")
    parser.add_argument("--day", type=int, default=0)
    args = parser.parse_args()
    if args.child:
        children = {"build": child_build, "renew": child_renew, "pages": child_pages}
        print(RESULT + json.dumps(children[args.child](args), default=str), flush=True)
        return
    args.instance = args.instance or tempfile.mkdtemp(prefix="bench-renewals-")
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    if not args.reuse:
        built = run_child("build", args)
        args.seeded_on = built["seeded_on"]
        steps = ", ".join(f"{k} {v:.0f} s" for k, v in built["steps"].items())
        print(
            f"built --scale {args.scale}: {built['accounts']:,} accounts, {built['subscriptions']:,} subscriptions; "
            f"{steps}; seeded on {args.seeded_on} (NZ)",
            flush=True,
        )
    elif not args.seeded_on:
        raise SystemExit("--reuse needs --seeded-on (the NZ date the data was seeded, printed by the first run)")
    days = [int(d) for d in args.days.split(",") if d.strip()]
    for day in days:
        first = run_child("renew", args, day=day)
        print(f"day +{day} ({first['today']}), {first['subscriptions']:,} subscriptions:")
        _print_renew("first run", first)
        profile, args.profile = args.profile, False
        again = run_child("renew", args, day=day)
        args.profile = profile
        _print_renew("again, same day", again)
        idle = again["renewed"] + again["expired"] == 0
        print(f"    idempotent (nothing renewed or expired the second time): {'PASS' if idle else 'FAIL'}", flush=True)
    if args.no_pages:
        return
    pages = run_child("pages", args, day=days[-1] if days else 0)
    print(
        f"pages on day +{days[-1] if days else 0}: the largest reseller has {pages['customers']} customers, "
        f"{pages['reseller_subscriptions']} subscriptions; {args.runs} runs a page"
    )
    for who, results in pages["results"].items():
        print(f"  {who}")
        for name, r in results.items():
            if r["status"] != 200:
                print(f"    {name:34} HTTP {r['status']}  {pages['pages'][name]}")
            else:
                print(
                    f"    {name:34} p50 {r['p50']:7.1f} ms  p95 {r['p95']:7.1f} ms  {r['statements']:4d} statements  "
                    f"{r['bytes'] // 1024} KB  {pages['pages'][name]}"
                )


if __name__ == "__main__":
    main()

"""Time and peak memory of the whole-base CSP Report workbooks, run by hand (never by ``make test``)::

    .venv/bin/python -m bench.reports [--scale 100000] [--small-scale 1000]
                                      [--database-url postgresql://postgres@127.0.0.1:5432/portal_bench]

For each scale the database is reset and built once (migrations, roles, demo data, ``seed_scale(n)``; timed). Then
each measurement runs in a fresh subprocess, so a peak is that run's own:

- **portal**: the export as a background job runs it, for the whole customer base: operator scope
  (``Scope(ALL)``), ``exports.report_sheets(kind, operator, with_costs=True)`` and ``exports.write_workbook`` into a
  temporary file. Timed from the first query to the closed workbook.
- **fetch**: the portal's row generators alone, streamed and dropped (the database and row-building share of the
  portal's time; nothing is written).
- **floor**: the same rows loaded into a list first (untimed; its memory is reported), then raw xlsxwriter in
  ``constant_memory`` mode writes them with the same cell types and formats. Only the writing is timed.
- **pandas**: the same in-memory rows, ``DataFrame(rows)`` + ``to_excel(engine="openpyxl")`` (needs
  ``bench/requirements.txt``). If it passes ``--pandas-timeout`` or dies, it is measured again on a subset and
  extrapolated linearly (labelled so).

Portal, fetch and floor run ``--repeat`` times, interleaved; the table shows the median time and the largest peak.

Peak memory growth is VmHWM (the kernel's peak RSS, reset through ``/proc/self/clear_refs`` at the baseline) less
VmRSS at the baseline: after imports, app creation and a database connection (portal), after loading the list
(floor, pandas). Goals: portal within 1.3x the floor's time, growth under 100 MB at both scales and flat between
them, faster than pandas.

A PostgreSQL ``--database-url`` has its ``public`` schema dropped and recreated (refused while another session is
connected): give the benchmark a database of its own, never the ``test`` database. ``sqlite`` alone means fresh
files in a temporary directory under /tmp.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.check_domain import reset_postgres  # one copy of the schema reset

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/portal_bench"
KINDS = ("users", "subscriptions")
MEASURES = ("portal", "fetch", "floor", "pandas")
GOAL_RATIO = 1.3
GOAL_GROWTH_MB = 100.0
FLAT_MB = 20.0  # "the same at 10k and 1M rows": peak growth may differ by at most this much
RESULT = "BENCH-RESULT "
NAMES = (
    ("portal", "portal export"),
    ("fetch", "  of which rows only"),
    ("floor", "raw xlsxwriter floor"),
    ("pandas", "pandas"),
)
MB = 1024 * 1024


# --- memory -------------------------------------------------------------------------------------------------------


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)


class Peak:
    """Peak RSS growth of this process from now on: VmHWM is reset to the current RSS when the kernel lets us
    (``clear_refs`` 5), else ru_maxrss is compared (which then can only see a peak above the earlier one)."""

    def __init__(self) -> None:
        gc.collect()
        try:
            with open("/proc/self/clear_refs", "w") as clear:
                clear.write("5")
            self.method = "VmHWM reset at baseline"
        except OSError:
            self.method = "ru_maxrss (no clear_refs: growth below the earlier peak is invisible)"
        self.baseline_kb = _status_kb("VmRSS")
        self.maxrss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def growth_mb(self) -> float:
        if self.method.startswith("VmHWM"):
            peak = _status_kb("VmHWM")
        else:
            peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, self.maxrss_kb)
        return max(0, peak - self.baseline_kb) / 1024


def rss_mb() -> float:
    return _status_kb("VmRSS") / 1024


# --- the children: one measurement each ---------------------------------------------------------------------------


def make_app(database_url: str, instance: str):
    from app import create_app

    environ = {
        "PORTAL_ENV": "development",
        "PORTAL_INSTANCE_PATH": instance,
        "DATABASE_URL": database_url,
        "CSP_PROVIDER": "sandbox",
    }
    return create_app(config={}, environ=environ)


def sqlite_path(url: str) -> Path:
    return Path(url.split("sqlite:///", 1)[1])


def child_build(args) -> dict:
    """Reset the database, then migrate, sync roles, seed the demo data and ``seed_scale(n)``, each timed."""
    import flask_migrate
    from sqlalchemy import func, select, text

    from app.extensions import db
    from app.models.accounts import CUSTOMER, Account
    from app.services.demo import seed_demo
    from app.services.scale import seed_scale
    from security import scoping
    from security.roles import sync_roles

    if args.database_url.startswith("postgres"):
        reset_postgres(args.database_url)
    else:
        path = sqlite_path(args.database_url)
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    app = make_app(args.database_url, args.instance)
    steps: dict[str, float] = {}
    with app.app_context():
        start = time.perf_counter()
        flask_migrate.upgrade()
        steps["migrate"] = time.perf_counter() - start
        with scoping.bypass("bench"):
            start = time.perf_counter()
            sync_roles(db.session)
            db.session.commit()
            seed_demo(secrets.token_urlsafe(16))
            steps["roles + seed_demo"] = time.perf_counter() - start
            last = [time.perf_counter()]

            def echo(line: str) -> None:  # one progress line every ~30 s
                if time.perf_counter() - last[0] > 30:
                    print(f"  {line} ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
                    last[0] = time.perf_counter()

            start = time.perf_counter()
            seed_scale(args.scale, echo=echo)
            steps[f"seed_scale({args.scale})"] = time.perf_counter() - start
            start = time.perf_counter()
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("ANALYZE"))
            steps["ANALYZE"] = time.perf_counter() - start
            counts = {
                table: db.session.scalar(text(f"SELECT count(*) FROM {table}"))  # noqa: S608 - fixed names
                for table in ("account", "ab_user", "m365_user", "subscription", "licence_assignment", "usage_point")
            }
            counts["customers"] = db.session.scalar(select(func.count(Account.id)).where(Account.kind == CUSTOMER))
            if db.engine.dialect.name == "postgresql":
                size = db.session.scalar(text("SELECT pg_database_size(current_database())"))
            else:
                size = sqlite_path(args.database_url).stat().st_size
            db.session.rollback()
        version = ".".join(map(str, db.engine.dialect.server_version_info or ()))
        database = f"{db.engine.dialect.name} {version}"
        db.engine.dispose()
    return {"steps": steps, "counts": counts, "size_mb": size / MB, "database": database}


def _operator_sheets(kind: str):
    """The operator's account and the whole-base report's sheets, as a job for operator staff gets them."""
    from sqlalchemy import select

    from app.models.accounts import OPERATOR, Account
    from app.services import exports

    operator = db_session().scalars(select(Account).where(Account.kind == OPERATOR).order_by(Account.id).limit(1)).one()
    return operator, exports.report_sheets(kind, operator, with_costs=True)


def db_session():
    from app.extensions import db

    return db.session


def _connected_app(args):
    """The idle process: imports done, the app built, a database connection open (pool checked out once)."""
    import xlsxwriter  # noqa: F401 - imported before the baseline, as the app's own import does
    from sqlalchemy import text

    app = make_app(args.database_url, args.instance)
    context = app.app_context()
    context.push()
    opened = text("SELECT 1").execution_options(portal_unscoped_reason="bench: opens the connection, reads no table")
    db_session().execute(opened)
    db_session().rollback()
    return app, context


def child_portal(args) -> dict:
    """The portal's export of the whole base, run as a background job runs it (operator scope, temp file)."""
    from app.models.base import utcnow
    from app.services import exports
    from security import scoping

    _app, _context = _connected_app(args)
    out = Path(args.instance) / f"portal-{args.kind}.xlsx"
    with scoping.use_scope(scoping.Scope(scoping.ALL, reason="bench")):
        start = time.perf_counter()
        operator, _sheets = _operator_sheets(args.kind)
        expected = exports.count_rows(args.kind, operator)  # what the job records when it is queued
        count_s = time.perf_counter() - start
        db_session().rollback()
        peak = Peak()
        profiler = None
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        start = time.perf_counter()
        operator, sheets = _operator_sheets(args.kind)
        written = exports.write_workbook(str(out), exports.report_title(args.kind, operator, utcnow()), sheets)
        seconds = time.perf_counter() - start
        if profiler is not None:
            import pstats

            profiler.disable()
            for order in ("tottime", "cumulative"):
                print(f"\n-- cProfile of the portal's {args.kind} export, by {order} --", file=sys.stderr)
                pstats.Stats(profiler, stream=sys.stderr).sort_stats(order).print_stats(args.profile)
        growth = peak.growth_mb()
        db_session().rollback()
    if written != expected:
        raise SystemExit(f"portal wrote {written} rows, count_rows said {expected}")
    size = out.stat().st_size
    out.unlink()
    return {
        "seconds": seconds,
        "rows": written,
        "file_mb": size / MB,
        "growth_mb": growth,
        "idle_rss_mb": peak.baseline_kb / 1024,
        "memory": peak.method,
        "count_rows_s": count_s,
    }


def _load_rows(args) -> tuple[list, dict]:
    """Every sheet's rows as lists, from the portal's own row generators (the same values it writes)."""
    from security import scoping

    _app, _context = _connected_app(args)
    gc.collect()
    before = rss_mb()
    with scoping.use_scope(scoping.Scope(scoping.ALL, reason="bench")):
        start = time.perf_counter()
        _operator, sheets = _operator_sheets(args.kind)
        loaded = [(sheet.name, sheet.columns, list(sheet.rows)) for sheet in sheets]
        load_s = time.perf_counter() - start
        db_session().rollback()
    if args.fraction < 1:
        loaded = [(name, columns, rows[: int(len(rows) * args.fraction + 0.999999)]) for name, columns, rows in loaded]
    gc.collect()
    rows = sum(len(r) for _n, _c, r in loaded)
    return loaded, {"rows": rows, "load_s": load_s, "list_mb": rss_mb() - before}


def write_floor(path: str, title: str, sheets: list, limit: int) -> int:
    """Raw xlsxwriter, constant_memory: the same sheets, title, header, cell types and formats as the portal's
    workbook, each cell written with its typed method straight from the row (no per-cell checks)."""
    import itertools

    import xlsxwriter

    from app.services.exports import DATE, DATETIME, MONEY, NUMBER

    workbook = xlsxwriter.Workbook(
        path,
        {
            "constant_memory": True,
            "strings_to_formulas": False,
            "strings_to_urls": False,
            "strings_to_numbers": False,
            "in_memory": False,
        },
    )
    title_format = workbook.add_format({"bold": True, "font_size": 12})
    header = workbook.add_format({"bold": True, "bg_color": "#333333", "font_color": "#FFFFFF", "border": 1})
    formats = {
        MONEY: workbook.add_format({"num_format": '"$"#,##0.00'}),
        DATE: workbook.add_format({"num_format": "dd/mm/yyyy"}),
        DATETIME: workbook.add_format({"num_format": "dd/mm/yy hh:mm AM/PM"}),
        NUMBER: None,
    }
    written = 0
    for name, columns, rows in sheets:
        parts = max(1, -(-len(rows) // limit))
        for part in range(parts):
            worksheet = workbook.add_worksheet(name if part == 0 else f"{name} ({part + 1})")
            for index, column in enumerate(columns):
                worksheet.set_column(index, index, column.width)
            worksheet.write_string(0, 0, title, title_format)
            for index, column in enumerate(columns):
                worksheet.write_string(1, index, column.header, header)
            worksheet.freeze_panes(2, 0)
            plan = [
                (index, worksheet.write_string, None)
                if column.kind not in formats
                else (
                    index,
                    worksheet.write_datetime if column.kind in (DATE, DATETIME) else worksheet.write_number,
                    formats[column.kind],
                )
                for index, column in enumerate(columns)
            ]
            row = 2
            for record in itertools.islice(rows, part * limit, (part + 1) * limit):
                for index, write, cell_format in plan:
                    value = record[index]
                    if value is not None:
                        write(row, index, value, cell_format)
                row += 1
            written += row - 2
            worksheet.autofilter(1, 0, max(row - 1, 1), len(columns) - 1)
    workbook.close()
    return written


def child_fetch(args) -> dict:
    """The portal's rows alone, streamed and dropped: what the export spends before xlsxwriter sees a cell."""
    from security import scoping

    _app, _context = _connected_app(args)
    with scoping.use_scope(scoping.Scope(scoping.ALL, reason="bench")):
        peak = Peak()
        start = time.perf_counter()
        _operator, sheets = _operator_sheets(args.kind)
        rows = sum(sum(1 for _row in sheet.rows) for sheet in sheets)
        seconds = time.perf_counter() - start
        growth = peak.growth_mb()
        db_session().rollback()
    return {"seconds": seconds, "rows": rows, "file_mb": 0.0, "growth_mb": growth}


def child_floor(args) -> dict:
    from app.models.base import utcnow
    from app.services import exports

    sheets, loaded = _load_rows(args)
    out = Path(args.instance) / f"floor-{args.kind}.xlsx"
    title = f"{args.kind} report — bench — {utcnow():%d/%m/%Y %H:%M}"
    limit = exports.rows_per_sheet()
    peak = Peak()
    start = time.perf_counter()
    written = write_floor(str(out), title, sheets, limit)
    seconds = time.perf_counter() - start
    growth = peak.growth_mb()
    size = out.stat().st_size
    out.unlink()
    return {**loaded, "seconds": seconds, "rows": written, "file_mb": size / MB, "growth_mb": growth}


def child_pandas(args) -> dict:
    import pandas as pd

    from app.services import exports

    sheets, loaded = _load_rows(args)
    out = Path(args.instance) / f"pandas-{args.kind}.xlsx"
    limit = exports.rows_per_sheet() + 1  # pandas writes no title row, only the header
    peak = Peak()
    start = time.perf_counter()
    frames = []
    for name, columns, rows in sheets:
        for part, first in enumerate(range(0, max(len(rows), 1), limit)):
            frame = pd.DataFrame(rows[first : first + limit], columns=[c.header for c in columns])
            frames.append((name if part == 0 else f"{name} ({part + 1})", frame))
    frame_s = time.perf_counter() - start
    with pd.ExcelWriter(out, engine="openpyxl") as writer:
        for name, frame in frames:
            frame.to_excel(writer, sheet_name=name, index=False)
    seconds = time.perf_counter() - start
    growth = peak.growth_mb()
    size = out.stat().st_size
    out.unlink()
    versions = f"pandas {pd.__version__}, openpyxl {__import__('openpyxl').__version__}"
    return {
        **loaded,
        "seconds": seconds,
        "frame_s": frame_s,
        "to_excel_s": seconds - frame_s,
        "rows": sum(len(f) for _n, f in frames),
        "file_mb": size / MB,
        "growth_mb": growth,
        "versions": versions,
    }


CHILDREN = {
    "build": child_build,
    "portal": child_portal,
    "fetch": child_fetch,
    "floor": child_floor,
    "pandas": child_pandas,
}


# --- the parent: build, run the children, print the table ---------------------------------------------------------


def run_child(
    role: str,
    args,
    *,
    kind: str = "",
    scale: int = 0,
    fraction: float = 1.0,
    timeout: float | None = None,
    profile: int = 0,
) -> dict:
    command = [
        sys.executable, "-m", "bench.reports", "--child", role, "--database-url", args.database_url,
        "--instance", args.instance, "--scale", str(scale), "--kind", kind or "users", "--fraction", str(fraction),
    ]  # fmt: skip
    if profile:
        command += ["--profile", str(profile)]
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, timeout=timeout, check=False)  # noqa: S603
    except subprocess.TimeoutExpired:
        return {"failed": f"stopped after {timeout:.0f} s (--pandas-timeout)"}
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
    if done.returncode != 0 or not lines:
        return {"failed": f"exit code {done.returncode}" + (" (killed: out of memory?)" if done.returncode < 0 else "")}
    return json.loads(lines[-1][len(RESULT) :])


def summary(runs: list[dict]) -> dict:
    """Several runs of one measurement: the median time and the largest peak growth."""
    ok = [r for r in runs if "failed" not in r]
    if not ok:
        return runs[0]
    result = dict(ok[len(ok) // 2])
    result["seconds"] = statistics.median(r["seconds"] for r in ok)
    result["growth_mb"] = max(r["growth_mb"] for r in ok)
    result["runs"] = [round(r["seconds"], 2) for r in ok]
    return result


def build(args, scale: int) -> dict:
    print(f"\n== building the database for --scale {scale} ==", flush=True)
    start = time.perf_counter()
    info = run_child("build", args, scale=scale)
    if "failed" in info:
        raise SystemExit(f"building the database failed: {info['failed']}")
    info["total_s"] = time.perf_counter() - start
    steps = ", ".join(f"{name} {s:.1f} s" for name, s in info["steps"].items())
    counts = ", ".join(f"{table} {n:,}" for table, n in info["counts"].items())
    print(f"database: {info['database']} at {args.database_url} (reset for this scale)")
    print(f"seeding: {steps}; {info['total_s']:.1f} s in all with the subprocess")
    print(f"rows: {counts}; database size {info['size_mb']:.0f} MB")
    return info


def show(label: str, result: dict) -> None:
    if "failed" in result:
        print(f"-- {label}: FAILED: {result['failed']}", flush=True)
    else:
        extra = " (EXTRAPOLATED)" if result.get("extrapolated") else ""
        print(
            f"-- {label}: {result['rows']:,} rows, {result['seconds']:.2f} s, +{result['growth_mb']:.1f} MB{extra}",
            flush=True,
        )


def measure_pandas(args, kind: str, scale: int, total: int | None) -> dict:
    result = run_child("pandas", args, kind=kind, scale=scale, timeout=args.pandas_timeout)
    if "failed" not in result or not args.pandas_subset:
        return result
    fraction = min(1.0, args.pandas_subset / total) if total else 0.1
    print(f"-- {kind} / pandas: {result['failed']}; measuring it on {fraction:.1%} of the rows", flush=True)
    sub = run_child("pandas", args, kind=kind, scale=scale, fraction=fraction)
    if "failed" in sub:
        return sub
    factor = 1 / fraction
    sub.update(failed_full=result["failed"], measured_rows=sub["rows"], extrapolated=True)
    for key in ("seconds", "frame_s", "to_excel_s", "growth_mb", "file_mb"):
        sub[key] *= factor
    sub["rows"] = round(sub["rows"] * factor)
    return sub


def measure(args, scale: int, measures: list[str]) -> dict:
    """Each measurement ``--repeat`` times, interleaved (so drift hits all alike); pandas once."""
    results: dict[tuple[str, str], dict] = {}
    for kind in args.kinds:
        runs: dict[str, list[dict]] = {role: [] for role in measures if role != "pandas"}
        for round_ in range(args.repeat):
            for role in runs:
                runs[role].append(run_child(role, args, kind=kind, scale=scale))
                show(f"{kind} / {role}" + (f" (run {round_ + 1})" if args.repeat > 1 else ""), runs[role][-1])
        for role, role_runs in runs.items():
            results[(kind, role)] = summary(role_runs)
        if "pandas" in measures:
            total = next((results[(kind, r)].get("rows") for r in runs if "rows" in results[(kind, r)]), None)
            results[(kind, "pandas")] = measure_pandas(args, kind, scale, total)
            show(f"{kind} / pandas", results[(kind, "pandas")])
    return results


def fmt_row(name: str, r: dict | None) -> str:
    if not r:
        return f"  {name:22} (not measured)"
    if "failed" in r:
        return f"  {name:22} FAILED: {r['failed']}"
    rate = r["rows"] / r["seconds"] if r["seconds"] else float("inf")
    line = (
        f"  {name:22} {r['rows']:>10,} {r['seconds']:>9.2f} {rate:>11,.0f} {r['growth_mb']:>9.1f} {r['file_mb']:>8.1f}"
    )
    notes = []
    if "list_mb" in r:
        notes.append(f"list +{r['list_mb']:.0f} MB, loaded in {r['load_s']:.1f} s")
    if "to_excel_s" in r:
        notes.append(f"DataFrame {r['frame_s']:.1f} s + to_excel {r['to_excel_s']:.1f} s")
    if r.get("extrapolated"):
        notes.append(f"EXTRAPOLATED x{r['rows'] / r['measured_rows']:.1f} from {r['measured_rows']:,} rows")
    if "count_rows_s" in r:
        notes.append(f"count_rows {r['count_rows_s']:.2f} s, idle RSS {r['idle_rss_mb']:.0f} MB")
    if len(r.get("runs", [])) > 1:
        notes.append(f"runs {r['runs']}")
    return line + ("   " + "; ".join(notes) if notes else "")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(args, per_scale: dict[int, dict]) -> None:
    large = max(per_scale)
    small = min(per_scale) if len(per_scale) > 1 else None
    print("\n== results (times in s, memory in MB: peak RSS growth over the baseline) ==")
    for scale in sorted(per_scale, reverse=True):
        results = per_scale[scale]
        for kind in args.kinds:
            print(f"\n{kind} report, --scale {scale}")
            print(f"  {'':22} {'rows':>10} {'time s':>9} {'rows/s':>11} {'peak +MB':>9} {'file MB':>8}")
            for role, name in NAMES:
                print(fmt_row(name, results.get((kind, role))))
    print("\n== goals ==")
    results = per_scale[large]
    for kind in args.kinds:
        portal, floor, pandas = (results.get((kind, m)) for m in ("portal", "floor", "pandas"))
        if not portal or "failed" in portal:
            print(f"{kind}: the portal export did not run")
            continue
        if floor and "failed" not in floor:
            ratio = portal["seconds"] / floor["seconds"]
            print(f"{kind}: portal / floor time {ratio:.2f}x (goal <= {GOAL_RATIO}x) -> {verdict(ratio <= GOAL_RATIO)}")
        print(
            f"{kind}: portal peak growth {portal['growth_mb']:.1f} MB at {portal['rows']:,} rows "
            f"(goal < {GOAL_GROWTH_MB:.0f} MB) -> {verdict(portal['growth_mb'] < GOAL_GROWTH_MB)}"
        )
        if (
            small is not None
            and (kind, "portal") in per_scale[small]
            and "failed" not in per_scale[small][(kind, "portal")]
        ):
            few = per_scale[small][(kind, "portal")]
            diff = portal["growth_mb"] - few["growth_mb"]
            print(
                f"{kind}: flat memory: +{few['growth_mb']:.1f} MB at {few['rows']:,} rows vs "
                f"+{portal['growth_mb']:.1f} MB at {portal['rows']:,} rows (difference {diff:+.1f} MB, goal within "
                f"{FLAT_MB:.0f} MB and both < {GOAL_GROWTH_MB:.0f}) -> "
                f"{verdict(abs(diff) <= FLAT_MB and few['growth_mb'] < GOAL_GROWTH_MB)}"
            )
        if pandas and "failed" not in pandas:
            speed = pandas["seconds"] / portal["seconds"]
            label = " (pandas EXTRAPOLATED)" if pandas.get("extrapolated") else ""
            print(f"{kind}: pandas / portal time {speed:.2f}x (goal: portal faster) -> {verdict(speed > 1)}{label}")


def machine_facts(args) -> None:
    try:
        with open("/proc/meminfo") as meminfo:
            ram = int(meminfo.readline().split()[1]) / 1024 / 1024
    except OSError:
        ram = float("nan")
    print(
        f"machine: Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{os.cpu_count()} CPUs (os.cpu_count()), {ram:.1f} GiB RAM, {platform.system()} {platform.machine()}, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=100_000, help="generated customers (default 100000)")
    parser.add_argument("--small-scale", type=int, default=1000, help="the flat-memory comparison's scale (0: none)")
    parser.add_argument("--database-url", default=DEFAULT_URL, help=f"default {DEFAULT_URL}; 'sqlite': files in /tmp")
    parser.add_argument("--kinds", default=",".join(KINDS), help="users,subscriptions")
    parser.add_argument("--measure", default=",".join(MEASURES), help="portal,fetch,floor,pandas")
    parser.add_argument("--repeat", type=int, default=1, help="runs of portal and floor (median time, max memory)")
    parser.add_argument(
        "--pandas-timeout", type=float, default=600, help="seconds before pandas is measured on a subset"
    )
    parser.add_argument("--pandas-subset", type=int, default=100_000, help="rows for the subset run (0: none)")
    parser.add_argument("--reuse", action="store_true", help="keep the database as it is (no reset, no seeding)")
    parser.add_argument("--profile", type=int, default=0, help="cProfile the portal exports, print N lines; no table")
    # the children's own arguments
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--instance", help=argparse.SUPPRESS)
    parser.add_argument("--kind", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--fraction", type=float, default=1.0, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        result = CHILDREN[args.child](args)
        print(RESULT + json.dumps(result), flush=True)
        return

    args.kinds = [k for k in args.kinds.split(",") if k]
    measures = [m for m in args.measure.split(",") if m]
    if set(args.kinds) - set(KINDS) or set(measures) - set(MEASURES):
        parser.error("unknown kind or measure")
    machine_facts(args)
    with tempfile.TemporaryDirectory(prefix="bench-reports-", dir="/tmp") as tmp:
        args.instance = tmp
        if args.database_url == "sqlite":
            args.database_url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        if args.profile:
            if not args.reuse:
                build(args, args.scale)
            for kind in args.kinds:
                result = run_child("portal", args, kind=kind, scale=args.scale, profile=args.profile)
                print(f"{kind}: {result}")
            return
        scales = [args.scale] if args.reuse or not args.small_scale or args.small_scale >= args.scale else [
            args.small_scale, args.scale
        ]  # fmt: skip
        per_scale, seeding = {}, {}
        for scale in scales:
            if not args.reuse:
                seeding[scale] = build(args, scale)
            print(f"\n== measuring at --scale {scale} ==", flush=True)
            per_scale[scale] = measure(args, scale, measures)
        report(args, per_scale)
        machine_facts(args)


if __name__ == "__main__":
    main()

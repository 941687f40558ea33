"""Sign-in refusal timing, run by hand (never by ``make test``)::

    .venv/bin/python -m bench.sign_in_timing                 # fresh temporary SQLite file, 60 attempts of each kind
    .venv/bin/python -m bench.sign_in_timing --runs 200 --database-url postgresql://postgres@127.0.0.1/portal_bench

The outside review found that a disabled login's refusal took ~80 ms longer than a wrong password's, which tells an
attacker which addresses have (disabled) logins. This times the sign-in POST, in-process (Flask's test client), for
four refusals — wrong password, disabled login with a wrong and with the right password, unknown address — and a
success, interleaved round-robin so drift hits each kind alike. The per-address throttle is set high enough not to
refuse (it is measured by its own tests, not here). With ``--database-url`` pointing at PostgreSQL its ``public``
schema is dropped and recreated: give the benchmark a database of its own.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import time

PASSWORD = "bench-sign-in-password"


def _post(app, email: str, password: str) -> float:
    client = app.test_client()
    page = client.get("/login/")
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
    started = time.perf_counter()
    client.post("/login/", data={"csrf_token": token, "username": email, "password": password})
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    from app.extensions import db
    from bench._app import demo_app
    from security import scoping
    from security.models import PortalUser

    config = {"RATELIMIT_ENABLED": False, "SIGN_IN_FREE_ATTEMPTS": 10**6}
    app, url = demo_app("bench-sign-in-", args.database_url, PASSWORD, config)
    with app.app_context(), scoping.bypass("bench"):
        jane = db.session.query(PortalUser).filter_by(email="jane@demoreseller.co.nz").one()
        jane.active = False
        db.session.commit()
    cases = {
        "wrong password": ("simon@demoreseller.co.nz", "not the password at all"),
        "disabled, wrong password": ("jane@demoreseller.co.nz", "not the password at all"),
        "disabled, right password": ("jane@demoreseller.co.nz", PASSWORD),
        "unknown address": ("nobody-here@demoreseller.co.nz", "not the password at all"),
        "success": ("simon@demoreseller.co.nz", PASSWORD),
    }
    timings: dict[str, list[float]] = {name: [] for name in cases}
    for email, password in cases.values():  # warm-up
        _post(app, email, password)
    for _ in range(args.runs):
        for name, (email, password) in cases.items():
            timings[name].append(_post(app, email, password))
    print(f"database: {url.split(':')[0]}, runs per kind: {args.runs}, cpus: {os.cpu_count()}")
    print(f"{'kind':28} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8}")
    for name, values in timings.items():
        values.sort()
        p95 = values[int(0.95 * (len(values) - 1))]
        print(f"{name:28} {statistics.median(values):8.1f} {p95:8.1f} {statistics.fmean(values):8.1f}")


if __name__ == "__main__":
    main()

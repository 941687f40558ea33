"""The portal's periodic work (issue 12): what a crash, a kill or a deploy left behind is settled without anyone
clicking, and what must happen later (mail retries, the daily reconciliation with Microsoft) happens.

One loop, one task list. It runs in a daemon thread of every serving process when jobs run in the web process
(no ``REDIS_URL``: started on the first request, so ``flask db upgrade`` and the other commands never start it), and
in ``worker.py`` when they run on RQ. Every task is safe to run in several processes at once: each claims its rows
with a conditional UPDATE (operations, mails, jobs, tenants) or checks what the database says was done last
(the reconciliation), so two web workers never do one thing twice.

``MAINTENANCE_INTERVAL_SECONDS`` (30 by default; 0 turns the loop off, as in tests that drive the tasks
themselves) is how often the loop wakes; each task has its own period below.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable

from flask import Flask, current_app

from app import failure
from app.extensions import db
from security import scoping

log = logging.getLogger(__name__)


def _fail_abandoned_jobs() -> int:
    from app.services.jobs import fail_abandoned

    return fail_abandoned()


def _recover_tenants() -> int:
    from app.services.tenants import recover_stuck

    return recover_stuck()


def _recover_operations() -> int:
    from app.services.recovery import recover_all

    return recover_all()


def _keep_prices_current() -> int:
    from app.services.pricesheet import keep_current

    return keep_current()


def _send_mail() -> int:
    from app.services.outbox import send_due

    return send_due()


def _purge_mail() -> int:
    from app.services.outbox import purge_done

    return purge_done()


def _purge_exports() -> int:
    from app.services.jobs import purge_expired

    return purge_expired()


def _purge_handovers() -> int:
    from app.services.handover import purge_expired

    return purge_expired()


def _reconcile() -> int:
    from app.services.reconcile import run_if_due

    return run_if_due()


def _renew() -> int:
    from app.services.renewals import run_renewals

    return run_renewals()


def _bill_last_month() -> int:
    from app.services.billing import run_if_due

    return run_if_due()


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    run: Callable[[], int]
    every_seconds: Callable[[Flask], float]  # 0: off


def _tick(app: Flask) -> float:
    return app.config["MAINTENANCE_INTERVAL_SECONDS"]


TASKS = (
    Task("send mail", _send_mail, _tick),
    Task("fail abandoned jobs", _fail_abandoned_jobs, _tick),
    Task("recover operations", _recover_operations, _tick),
    Task("recover tenants", _recover_tenants, _tick),
    Task("purge expired exports", _purge_exports, lambda app: 3600.0 if _tick(app) else 0),
    Task("purge old mail", _purge_mail, lambda app: 3600.0 if _tick(app) else 0),
    # Hourly: a tenant hand-over link past its expiry has its (encrypted) password erased (issue 15).
    Task("erase expired hand-over links", _purge_handovers, lambda app: 3600.0 if _tick(app) else 0),
    # Checked every tick; run_if_due itself asks the database when the last reconciliation started.
    Task("reconcile with Microsoft", _reconcile, lambda app: _tick(app) if app.config["RECONCILE_EVERY_HOURS"] else 0),
    # Hourly: a renewal starts at 00:00 UTC (13:00 or midday in New Zealand) and Microsoft may take up to 24 hours.
    Task("renew subscriptions", _renew, lambda app: 3600.0 if _tick(app) else 0),
    # Hourly: this month's and next month's prices (Microsoft publishes next month's ahead; prices change on the 1st).
    Task("keep the price sheet current", _keep_prices_current, lambda app: 3600.0 if _tick(app) else 0),
    # Hourly: from the 2nd of the month, last month's draft invoices, once (issue 14).
    Task("draft last month's invoices", _bill_last_month, lambda app: 3600.0 if _tick(app) else 0),
)


class Loop:
    """The tasks' last runs in this process, and the thread running them."""

    def __init__(self, app: Flask):
        self.app = app
        self.last_run: dict[str, float] = {}
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run_due(self) -> dict[str, int]:
        """Run every task whose period has passed in this process; what each did. A failing task is logged and
        retried at the next tick; it never stops the others."""
        done: dict[str, int] = {}
        now = time.monotonic()
        for task in TASKS:
            every = task.every_seconds(self.app)
            if not every or now - self.last_run.get(task.name, -1e18) < every:
                continue
            self.last_run[task.name] = now
            with self.app.app_context():
                try:
                    with scoping.bypass(f"maintenance: {task.name}"):
                        done[task.name] = task.run()
                except Exception as exc:  # an outage of the database or Redis: the next tick tries again
                    outage = failure.outage_of(exc)
                    if outage:  # expected in an outage: one line, no traceback (a bug still gets one)
                        log.warning(
                            "Maintenance task %r skipped: the %s is out of reach (%s); it runs again in %s s",
                            task.name,
                            outage,
                            failure.describe(exc),
                            every,
                        )
                    else:
                        log.exception("Maintenance task %r failed; it runs again in %s s", task.name, every)
                    with contextlib.suppress(Exception):  # the rollback of a lost connection may fail too
                        db.session.rollback()
                finally:
                    db.session.remove()
        return done

    def _forever(self) -> None:
        while not self.stopping.is_set():
            self.run_due()
            self.stopping.wait(_tick(self.app))

    def start(self) -> None:
        with self._lock:
            if self.thread is None or not self.thread.is_alive():
                self.stopping.clear()
                self.thread = threading.Thread(target=self._forever, name="portal-maintenance", daemon=True)
                self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=10)


def loop_of(app: Flask) -> Loop:
    loop = app.extensions.get("portal_maintenance")
    if loop is None:
        loop = app.extensions["portal_maintenance"] = Loop(app)
    return loop


def start(app: Flask) -> Loop | None:
    """Start this process's loop (once); None when it is turned off."""
    if not app.config["MAINTENANCE_INTERVAL_SECONDS"]:
        return None
    loop = loop_of(app)
    loop.start()
    return loop


def init_app(app: Flask) -> None:
    """Serving processes start the loop with their first request — when jobs run in the web process."""
    if app.config.get("REDIS_URL") or not app.config["MAINTENANCE_INTERVAL_SECONDS"]:
        return

    @app.before_request
    def _start_maintenance() -> None:
        loop = loop_of(current_app._get_current_object())
        if loop.thread is None:
            loop.start()

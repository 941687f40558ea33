"""Background jobs for large exports: RQ workers on Redis when REDIS_URL is set, an in-process thread otherwise.

A job's state and progress live in ``background_job``, so any app process can show and serve it. The job runs
with its requester's scope (never a bypass), resolved again when it runs — not the one stored when it was queued:
a requester disabled, moved to another account or no longer allowed to see costs since then gets a failed job and
no file. It can put nothing in the file its requester could not see now. Only its own bookkeeping (reading its
parameters and requester, writing its state row) runs under named bypasses.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import threading
import traceback
import uuid
from pathlib import Path

from flask import Flask, current_app, has_app_context
from sqlalchemy import func as sa_func
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app import faults
from app.extensions import appbuilder, db
from app.models.accounts import Account
from app.models.base import utcnow
from app.models.jobs import BackgroundJob
from app.services import exports
from app.services.events import record_event
from security import permissions as P
from security import scoping
from security.models import CUSTOMER_PORTAL, Membership, PortalUser

log = logging.getLogger(__name__)
QUEUE = "portal-exports"
QUEUE_UNAVAILABLE = "The job queue (Redis) could not be reached: retry the export when the portal is back."


def export_dir() -> Path:
    path = Path(current_app.config["EXPORT_DIR"])
    path.mkdir(parents=True, exist_ok=True)
    return path


def start_export(
    kind: str, account: Account, requester, with_costs: bool, *, with_ms_costs: bool = False
) -> BackgroundJob:
    """Queue an export of ``account``'s ``kind`` report for ``requester``; it runs in the background."""
    scope = scoping.current_scope()
    job = BackgroundJob(
        id=str(uuid.uuid4()),
        account_id=account.id,
        requested_by_id=requester.id,
        kind=f"export:{kind}",
        params=json.dumps(
            {
                "kind": kind,
                "account_id": account.id,
                "with_costs": with_costs,
                "with_ms_costs": with_ms_costs,
                "scope": [scope.kind, scope.account_id],  # as queued, for the record: run() resolves it again
                "requester": requester.email,
            }
        ),
        status="queued",
        rows_total=exports.count_rows(kind, account),
    )
    db.session.add(job)
    record_event(
        "report.export_queued",
        account_id=account.id,
        target=job,
        summary=f"{kind.capitalize()} report of {account.name} queued ({job.rows_total} rows)",
    )
    db.session.commit()
    dispatch(job.id)
    return job


def record_download(job: BackgroundJob) -> None:
    """A prepared export's file is being sent: audited like the export itself (committed before it goes out)."""
    record_event(
        "report.downloaded",
        account_id=job.account_id,
        target=job,
        summary=f"{job.file_name} downloaded ({job.rows_total} rows)",
    )
    db.session.commit()


def retry(job: BackgroundJob) -> None:
    job.status, job.error, job.rows_done, job.started_on, job.finished_on = "queued", None, 0, None, None
    job.created_on, job.heartbeat_at = utcnow(), None  # queued again now: the stale check counts from here
    record_event("report.export_retried", account_id=job.account_id, target=job, summary="Export retried")
    db.session.commit()
    dispatch(job.id)


def enqueue(function: str, *args, name: str, timeout: int) -> None:
    """Put one call of ``function`` (a dotted path) on the portal's RQ queue (REDIS_URL must be set); its RQ job id is
    ``name`` with a unique tail. Raises what Redis raises."""
    from rq import Queue

    from app.failure import redis_client

    Queue(QUEUE, connection=redis_client(current_app.config["REDIS_URL"])).enqueue(
        function, *args, job_id=f"{name}-{uuid.uuid4().hex[:8]}", job_timeout=timeout
    )


def dispatch(job_id: str) -> None:
    redis_url = current_app.config.get("REDIS_URL")
    if redis_url:
        from app.failure import outage_of

        try:
            enqueue("app.services.jobs.run_in_worker", job_id, name=f"export-{job_id}", timeout=3600)
        except Exception as exc:
            if outage_of(exc) is None:
                raise
            # The job is committed but no worker will ever see it: say so on the job (Retry is offered), then let the
            # request answer 503. If the database is down too, the job stays "queued".
            with contextlib.suppress(Exception):
                _state(job_id, status="failed", error=QUEUE_UNAVAILABLE, finished_on=utcnow())
            raise
    else:
        app = current_app._get_current_object()
        threading.Thread(target=_run_in_thread, args=(app, job_id), name=f"export-{job_id}", daemon=True).start()


def _run_in_thread(app: Flask, job_id: str) -> None:
    with app.app_context():
        run(job_id)


def run_in_worker(job_id: str) -> None:
    """What RQ runs: inside the app of ``worker.py`` (beside run.py), or — under a plain ``rq worker`` — an app built
    once from the worker's environment."""
    if has_app_context():
        run(job_id)
        return
    global _worker_app
    if _worker_app is None:
        from app import create_app

        _worker_app = create_app()
    with _worker_app.app_context():
        run(job_id)


_worker_app: Flask | None = None


def _state(job_id: str, **values) -> None:
    """Job state, written in its own short transaction (the export streams on the app session): the job's own row,
    by its id, whatever scope the export runs under."""
    with scoping.bypass(f"job {job_id}: its own state"), Session(db.engine) as session, session.begin():
        session.execute(update(BackgroundJob.__table__).where(BackgroundJob.__table__.c.id == job_id).values(**values))


class JobRefused(Exception):
    """The requester may no longer have this export: the job fails without writing anything."""


def requester_scope(job: BackgroundJob, params: dict) -> scoping.Scope:
    """The requester's scope as it is now: active, still allowed to see costs if the export has them."""
    with scoping.bypass(f"job {job.id}: resolving its requester"):
        user = db.session.get(PortalUser, job.requested_by_id) if job.requested_by_id is not None else None
        if user is None or not user.is_active:
            raise JobRefused("its requester can no longer sign in")
        membership = None
        if user.portal == CUSTOMER_PORTAL:  # it asked in one of its accounts: that membership, as it is now
            membership = db.session.scalar(
                select(Membership).where(
                    Membership.user_id == user.id,
                    Membership.account_id == job.account_id,
                    Membership.deleted_at.is_(None),
                )
            )
        scope = scoping.scope_for_user(user, membership)
        if params["with_costs"] and not appbuilder.sm.user_may(user, f"can_{P.READ}", P.COSTS, membership):
            raise JobRefused("its requester may no longer see costs")
        if params.get("with_ms_costs") and not appbuilder.sm.user_may(
            user, f"can_{P.READ}", P.MICROSOFT_COSTS, membership
        ):
            raise JobRefused("its requester may no longer see Microsoft's costs")
        email = user.email
    if scope.kind == scoping.NONE:
        raise JobRefused("its requester no longer has a portal scope")
    return scoping.Scope(scope.kind, scope.account_id, reason=f"job {job.id} for {email}", login_id=scope.login_id)


WORKER_GONE = "The worker running this export stopped (a restart or a crash): Retry runs it again."
NEVER_STARTED = "This export never started (the server restarted before it ran): Retry runs it again."


def fail_abandoned(job_id: str | None = None) -> int:
    """Jobs whose worker is gone become ``failed`` (Retry is then offered): running ones silent for longer than
    ``JOB_STALE_SECONDS``, and — where jobs run as threads of the web process — queued ones never started in that
    time. One conditional UPDATE each, so a job that beats again is never failed. ``job_id``: that one job only.
    Runs when a job's state is read, at worker start and from ``flask portal fail-abandoned-jobs``."""
    stale = utcnow() - dt.timedelta(seconds=current_app.config["JOB_STALE_SECONDS"])
    table = BackgroundJob.__table__
    which = [table.c.id == job_id] if job_id is not None else []
    beat = sa_func.coalesce(table.c.heartbeat_at, table.c.started_on, table.c.created_on)
    changed = 0
    with scoping.bypass("jobs whose worker is gone"), Session(db.engine) as session, session.begin():
        changed += session.execute(
            table.update()
            .where(table.c.status == "running", beat < stale, *which)
            .values(status="failed", error=WORKER_GONE, finished_on=utcnow())
        ).rowcount
        if not current_app.config.get("REDIS_URL"):  # with RQ, a queued job waits in Redis for a worker
            changed += session.execute(
                table.update()
                .where(table.c.status == "queued", table.c.created_on < stale, *which)
                .values(status="failed", error=NEVER_STARTED, finished_on=utcnow())
            ).rowcount
    if changed:
        log.warning("Failed %d background job(s) whose worker is gone", changed)
    return changed


class _Heartbeat:
    """Beats ``heartbeat_at`` every ``JOB_HEARTBEAT_SECONDS`` from a thread of its own while the job runs (a long
    sheet written between two progress reports is still a live job); it dies with its process, which is the point."""

    def __init__(self, job_id: str):
        self.job_id = job_id
        self.every = current_app.config["JOB_HEARTBEAT_SECONDS"]
        self.stopped = threading.Event()
        self.app = current_app._get_current_object()
        self.thread = threading.Thread(target=self._beat, name=f"heartbeat-{job_id}", daemon=True)

    def _beat(self) -> None:
        with self.app.app_context():
            while not self.stopped.wait(self.every):
                with contextlib.suppress(Exception):  # a missed beat is only a late one
                    _state(self.job_id, heartbeat_at=utcnow())

    def __enter__(self):
        _state(self.job_id, heartbeat_at=utcnow())
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join(timeout=self.every + 5)


def run(job_id: str) -> None:
    """Write the job's workbook under its requester's scope; record progress, the file, or the failure."""
    with scoping.bypass(f"job {job_id}: reading its own parameters"):
        job = db.session.get(BackgroundJob, job_id)
        if job is None or job.status == "done":
            return
        params = json.loads(job.params)
    now = utcnow()
    try:
        scope = requester_scope(job, params)
        # Nothing loaded under the bypasses stays in the session (a refresh of a held row gets no criteria).
        db.session.rollback()
        db.session.expunge_all()
        with scoping.use_scope(scope):
            if db.session.scalars(select(Account.id).where(Account.id == params["account_id"])).first() is None:
                raise JobRefused("its requester no longer sees this account")
    except JobRefused as exc:
        log.warning("Export job %s refused: %s", job_id, exc)
        db.session.rollback()
        _state(job_id, status="failed", error=f"Not run: {exc}.", started_on=now, finished_on=utcnow())
        return
    _state(job_id, status="running", started_on=now, heartbeat_at=now, rows_done=0, error=None)
    path = None
    try:
        path = export_dir() / f"{job_id}.xlsx"
        with _Heartbeat(job_id):
            _write(job_id, path, scope, params, now)
    except Exception as exc:  # a failed job says so and can be retried; the worker carries on
        log.error("Export job %s failed: %s\n%s", job_id, exc, traceback.format_exc())
        if path is not None:
            path.unlink(missing_ok=True)
        _state(job_id, status="failed", error=f"{type(exc).__name__}: {exc}"[:1000], finished_on=utcnow())
    finally:
        db.session.rollback()


def _progress(job_id: str, rows: int) -> None:
    _state(job_id, rows_done=rows, heartbeat_at=utcnow())
    faults.point(faults.EXPORT_PROGRESS)


def _write(job_id: str, path: Path, scope, params: dict, now) -> None:
    """The workbook, written to ``path`` under the requester's scope; the job marked done."""
    with scoping.use_scope(scope):
        account = db.session.scalars(select(Account).where(Account.id == params["account_id"])).one()
        sheets = exports.report_sheets(
            params["kind"], account, params["with_costs"], params.get("with_ms_costs", False)
        )
        written = exports.write_workbook(
            str(path),
            exports.report_title(params["kind"], account, now),
            sheets,
            progress=lambda n: _progress(job_id, n),
        )
        name = exports.file_name(params["kind"], account, now)
    hours = current_app.config["EXPORT_RETENTION_HOURS"]
    _state(
        job_id,
        status="done",
        rows_done=written,
        rows_total=written,
        file_path=str(path),
        file_name=name,
        finished_on=utcnow(),
        expires_on=utcnow() + dt.timedelta(hours=hours),
    )


def purge_expired() -> int:
    """Delete the files of expired jobs (for cron: `flask portal purge-exports`)."""
    removed = 0
    with scoping.bypass("cli:purge-exports"):
        for job in db.session.scalars(
            select(BackgroundJob).where(BackgroundJob.expires_on < utcnow(), BackgroundJob.file_path.is_not(None))
        ):
            Path(job.file_path).unlink(missing_ok=True)
            job.file_path = None
            removed += 1
        db.session.commit()
    return removed


def recent(account_id: int, requested_by_id: int | None, limit: int = 5) -> list[BackgroundJob]:
    """The account's latest exports (those ``requested_by_id`` asked for; every one when None), newest first — as
    they are: one whose worker is gone is failed first."""
    fail_abandoned()
    query = select(BackgroundJob).where(BackgroundJob.account_id == account_id)
    if requested_by_id is not None:
        query = query.where(BackgroundJob.requested_by_id == requested_by_id)
    return list(db.session.scalars(query.order_by(BackgroundJob.created_on.desc()).limit(limit)))


def current(job_id: str) -> BackgroundJob | None:
    """One job in scope as it is (failed first if its worker is gone), or None."""
    fail_abandoned(job_id)
    return db.session.scalars(select(BackgroundJob).where(BackgroundJob.id == job_id)).first()

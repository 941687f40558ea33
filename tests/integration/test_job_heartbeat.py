"""Durable background jobs (issue 12, part 6): a job beats a heartbeat while it runs; one whose worker died — a real
process killed at a named point mid-export, RQ's work horse or a web process running it as a thread — is failed once
its heartbeat is older than JOB_STALE_SECONDS, and Retry finishes it. Nothing shows "running" for ever.

Time: the stale check reads the portal's clock, which the tests move forward (time-machine) instead of sleeping."""

from __future__ import annotations

import datetime as dt
import os
import subprocess

import redis
import time_machine

from app import clock
from app.models.jobs import BackgroundJob
from app.services import jobs
from tests import clocked
from tests.conftest import csrf_token, login_to, make_app, unscoped
from tests.integration.test_reports import ROOT, _join_job_thread, _start_job

LATER = dt.timedelta(minutes=2)  # well past the default JOB_STALE_SECONDS (60)


def _env(database_url: str, tmp_path, **extra) -> dict:
    return {
        **os.environ,
        "PORTAL_ENV": "testing",
        "DATABASE_URL": database_url,
        "PORTAL_INSTANCE_PATH": str(tmp_path / "process"),
        "EXPORT_DIR": str(tmp_path / "exports"),
        "PYTHONPATH": str(ROOT),
        "JOB_HEARTBEAT_SECONDS": "0.2",
        **extra,
    }


def _status(client, job_id: str) -> dict:
    return client.get(f"/reports/jobs/{job_id}").get_json()


def _queued_job(app, world, tmp_path, database_url) -> tuple[str, object]:
    """A thread-mode export queued by another app (its thread never started) and a client of the session's app."""
    queuer = make_app(tmp_path / "queuer", database_url, EXPORT_JOB_THRESHOLD=0)
    client = login_to(queuer, world.users["reseller_a_admin"].email)
    original = jobs.dispatch
    jobs.dispatch = lambda job_id: None  # this app queues, and "restarts" before its thread runs
    try:
        job_id = _start_job(client, world.accounts["customer_a"].id, "subscriptions")
    finally:
        jobs.dispatch = original
    return job_id, login_to(app, world.users["reseller_a_admin"].email)


def test_a_web_process_killed_mid_export_leaves_a_failed_job_that_retry_finishes(app, world, tmp_path, database_url):
    """The thread-mode export dies with its process (here: the process exits at the fault point, as a kill would)."""
    job_id, client = _queued_job(app, world, tmp_path, database_url)
    killed = subprocess.run(
        clocked.command(
            "-c",
            "import sys; from app import create_app; from app.services import jobs; app = create_app(); "
            "app.app_context().push(); jobs.run(sys.argv[1])",
            job_id,
        ),
        cwd=ROOT,
        env=_env(database_url, tmp_path, PORTAL_FAULT_POINT="export_progress"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == 137, killed.stderr[-2000:]
    with unscoped() as session:
        job = session.get(BackgroundJob, job_id)
        assert job.status == "running" and job.heartbeat_at is not None  # what a killed worker leaves behind
    assert _status(client, job_id)["status"] == "running"  # its heartbeat is recent: not failed yet
    with time_machine.travel(clock.utcnow().replace(tzinfo=dt.UTC) + LATER, tick=True):
        status = _status(client, job_id)
    assert status["status"] == "failed" and "stopped" in status["error"]
    retried = client.post(f"/reports/jobs/{job_id}/retry", data={"csrf_token": csrf_token(client)})
    assert retried.status_code == 302
    _join_job_thread(job_id)
    assert _status(client, job_id)["status"] == "done"


def test_a_thread_mode_job_that_never_started_is_failed_not_queued_for_ever(app, world, tmp_path, database_url):
    job_id, client = _queued_job(app, world, tmp_path, database_url)
    assert _status(client, job_id)["status"] == "queued"
    with time_machine.travel(clock.utcnow().replace(tzinfo=dt.UTC) + LATER, tick=True):
        status = _status(client, job_id)
        page = client.get(f"/accounts/{world.accounts['customer_a'].id}/products/csp-report").text
    assert status["status"] == "failed" and "never started" in status["error"]
    assert ">Retry<" in page


def test_a_live_job_is_never_failed(app, world):
    """The check is one conditional UPDATE on the heartbeat: a job that beats is left alone, however old."""
    with unscoped() as session:
        session.add(
            BackgroundJob(
                id="live-job",
                account_id=world.accounts["customer_a"].id,
                requested_by_id=world.users["reseller_a_admin"].id,
                kind="export:users",
                params="{}",
                status="running",
                created_on=clock.utcnow() - dt.timedelta(hours=3),
                started_on=clock.utcnow() - dt.timedelta(hours=3),
                heartbeat_at=clock.utcnow(),
            )
        )
        session.commit()
    with app.app_context():
        assert jobs.fail_abandoned() == 0
    with unscoped() as session:
        assert session.get(BackgroundJob, "live-job").status == "running"


def test_an_rq_work_horse_killed_mid_export_is_failed_and_retry_finishes_it(app, world, tmp_path, database_url):
    redis_url = "redis://127.0.0.1:6379/13"
    redis.Redis.from_url(redis_url).flushdb()
    export_dir = tmp_path / "exports"
    queued = make_app(
        tmp_path / "rq-app", database_url, REDIS_URL=redis_url, EXPORT_JOB_THRESHOLD=0, EXPORT_DIR=str(export_dir)
    )
    client = login_to(queued, world.users["reseller_a_admin"].email)
    job_id = _start_job(client, world.accounts["customer_a"].id, "subscriptions")

    def worker(**extra):
        return subprocess.run(
            clocked.command("worker.py", "--burst"),
            cwd=ROOT,
            env=_env(database_url, tmp_path, REDIS_URL=redis_url, **extra),
            capture_output=True,
            text=True,
            timeout=120,
        )

    killed = worker(PORTAL_FAULT_POINT="export_progress")
    assert killed.returncode == 0, killed.stderr[-2000:]  # the worker lives on; its work horse died mid-export
    with unscoped() as session:
        assert session.get(BackgroundJob, job_id).status == "running"
    with time_machine.travel(clock.utcnow().replace(tzinfo=dt.UTC) + LATER, tick=True):
        status = _status(client, job_id)
    assert status["status"] == "failed" and "stopped" in status["error"]
    assert client.post(f"/reports/jobs/{job_id}/retry", data={"csrf_token": csrf_token(client)}).status_code == 302
    finished = worker()
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert _status(client, job_id)["status"] == "done"
    redis.Redis.from_url(redis_url).flushdb()

"""The periodic work (app/services/maintenance.py): what a crash left behind is settled with no click, by one loop
that runs in the web process when jobs run there and in worker.py otherwise; a failing task never stops the others.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

import pytest
from sqlalchemy import func, select

from app import clock
from app.models.jobs import BackgroundJob
from app.models.reconciliation import ReconciliationRun
from app.services import maintenance
from tests.conftest import make_app, unscoped


def _abandoned_job(world, job_id: str = "gone-job") -> None:
    with unscoped() as session:
        session.add(
            BackgroundJob(
                id=job_id,
                account_id=world.accounts["customer_a"].id,
                requested_by_id=world.users["reseller_a_admin"].id,
                kind="export:users",
                params="{}",
                status="running",
                created_on=clock.utcnow() - dt.timedelta(hours=1),
                started_on=clock.utcnow() - dt.timedelta(hours=1),
                heartbeat_at=clock.utcnow() - dt.timedelta(hours=1),
            )
        )
        session.commit()


def _job_status(job_id: str = "gone-job") -> str:
    with unscoped() as session:
        return session.get(BackgroundJob, job_id).status


@pytest.fixture
def ticking(app):
    """The session app with the loop's period on (the tests call run_due themselves; no thread)."""
    saved = app.config["MAINTENANCE_INTERVAL_SECONDS"], app.config["RECONCILE_EVERY_HOURS"]
    app.config["MAINTENANCE_INTERVAL_SECONDS"], app.config["RECONCILE_EVERY_HOURS"] = 30, 24
    yield maintenance.Loop(app)
    app.config["MAINTENANCE_INTERVAL_SECONDS"], app.config["RECONCILE_EVERY_HOURS"] = saved


def test_one_pass_settles_what_was_left_behind(app, world, ticking):
    _abandoned_job(world)
    done = ticking.run_due()
    assert set(done) == {task.name for task in maintenance.TASKS}
    assert done["fail abandoned jobs"] == 1 and _job_status() == "failed"
    assert done["reconcile with Microsoft"] == 2  # the daily check of both customers with a tenant
    # Nothing is due again within its period: a second pass at once runs nothing.
    assert ticking.run_due() == {}
    with unscoped() as session:
        assert session.scalar(select(func.count(ReconciliationRun.id))) == 1


def test_a_failing_task_is_logged_and_the_others_still_run(app, world, ticking, monkeypatch, caplog):
    def broken() -> int:
        raise RuntimeError("the database went away")

    first = maintenance.TASKS[0]
    monkeypatch.setattr(maintenance, "TASKS", (maintenance.Task(first.name, broken, first.every_seconds),)
                        + maintenance.TASKS[1:])  # fmt: skip
    _abandoned_job(world)
    with caplog.at_level(logging.ERROR, logger="app.services.maintenance"):
        done = ticking.run_due()
    assert first.name not in done and done["fail abandoned jobs"] == 1
    assert any(first.name in record.getMessage() for record in caplog.records)


def test_a_database_outage_is_one_warning_line_without_a_traceback(app, world, ticking, monkeypatch, caplog):
    """An outage is expected (the gunicorn fault test cuts the database while the loop may tick): the task is skipped
    with one line naming the outage; only a bug gets a traceback (the test above)."""
    import sqlalchemy.exc

    def cut() -> int:
        raise sqlalchemy.exc.TimeoutError("QueuePool limit reached, connection timed out")

    first = maintenance.TASKS[0]
    monkeypatch.setattr(maintenance, "TASKS", (maintenance.Task(first.name, cut, first.every_seconds),)
                        + maintenance.TASKS[1:])  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="app.services.maintenance"):
        done = ticking.run_due()
    assert first.name not in done and "fail abandoned jobs" in done
    (record,) = [r for r in caplog.records if first.name in r.getMessage()]
    assert record.levelno == logging.WARNING and "the database is out of reach" in record.getMessage()
    assert record.exc_info is None


def test_the_loop_is_off_when_its_period_is_zero(app, world):
    assert app.config["MAINTENANCE_INTERVAL_SECONDS"] == 0
    assert maintenance.start(app) is None
    assert maintenance.Loop(app).run_due() == {}


def test_a_serving_process_starts_the_loop_with_its_first_request(tmp_path, database_url, app, world):
    """Jobs in the web process (no REDIS_URL): the first request starts the loop, which fails an abandoned job with no
    click; the CLI (no request) never starts it."""
    served = make_app(tmp_path, database_url, MAINTENANCE_INTERVAL_SECONDS=1, REDIS_URL="")
    loop = maintenance.loop_of(served)
    assert loop.thread is None
    _abandoned_job(world)
    try:
        served.test_client().get("/login/")
        assert loop.thread is not None and loop.thread.is_alive()
        deadline = time.monotonic() + 30
        while _job_status() != "failed" and time.monotonic() < deadline:
            loop.stopping.wait(0.1)
        assert _job_status() == "failed"
    finally:
        loop.stop()
    assert not loop.thread.is_alive()


def test_mail_sent_long_ago_is_purged(app, world, ticking):
    from app.models.outbox import OutboxMail

    with unscoped() as session:
        for age, state in ((40, "sent"), (40, "failed"), (40, "queued"), (2, "sent")):
            session.add(
                OutboxMail(
                    account_id=world.accounts["customer_a"].id,
                    kind="activation",
                    recipient="someone@aardvark.example",
                    subject="Activate your account",
                    state=state,
                    attempts=1,
                    next_attempt_at=clock.utcnow() + dt.timedelta(days=1),
                    created_on=clock.utcnow() - dt.timedelta(days=age),
                )
            )
        session.commit()
    assert ticking.run_due()["purge old mail"] == 2
    with unscoped() as session:
        assert sorted(session.scalars(select(OutboxMail.state))) == ["queued", "sent"]

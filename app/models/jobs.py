"""Background jobs (large exports): state and progress in the database, so any app process can show them."""

from __future__ import annotations

import datetime as dt

from flask_appbuilder import Model
from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import TenantOwned, utcnow

JOB_STATUSES = ("queued", "running", "done", "failed")


class BackgroundJob(TenantOwned, Model):
    """A job run for one account (the one it reports on) by one requester."""

    __tablename__ = "background_job"
    __table_args__ = (
        CheckConstraint("status IN ('queued', 'running', 'done', 'failed')", name="ck_background_job_status"),
        Index("ix_background_job_requester_created", "requested_by_id", "created_on"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("ab_user.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(40), nullable=False)
    params: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="queued")
    rows_done: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    rows_total: Mapped[int | None] = mapped_column(Integer)
    file_path: Mapped[str | None] = mapped_column(String(500))
    file_name: Mapped[str | None] = mapped_column(String(200))
    error: Mapped[str | None] = mapped_column(String(1000))
    created_on: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    started_on: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # Beaten while the job runs (app/services/jobs.py): silent too long, its worker is gone and the job is failed.
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    finished_on: Mapped[dt.datetime | None] = mapped_column(DateTime)
    expires_on: Mapped[dt.datetime | None] = mapped_column(DateTime)


class FormSubmission(TenantOwned, Model):
    """The key a form carried when it was sent (a hidden field, new on every rendering): the first request with a
    key claims it, so a double click or a resend after a timeout makes one order or one sub-account, not two."""

    __tablename__ = "form_submission"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40), nullable=False)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("ab_user.id", ondelete="SET NULL"))
    created_on: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)

"""Reconciliation with Microsoft (issue 12): each run, the state of each customer's check, and every difference found
between the portal's records and Microsoft's, open until a later run no longer finds it (app/services/reconcile.py).
"""

from __future__ import annotations

import datetime as dt

from flask_appbuilder import Model
from sqlalchemy import Boolean, CheckConstraint, DateTime, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import TenantOwned, utcnow

RUNNING, FINISHED, FAILED = "running", "finished", "failed"
MATCHED, DIFFERS, UNREADABLE, SKIPPED = "matched", "differs", "unreadable", "skipped"


class ReconciliationRun(TenantOwned, Model):
    """One comparison of the portal with Microsoft: the operator's (``account_id``: the operator account), of every
    customer or of one account's (``scope_account_id``)."""

    __tablename__ = "reconciliation_run"
    __table_args__ = (
        CheckConstraint("state IN ('running', 'finished', 'failed')", name="ck_reconciliation_run_state"),
        Index("ix_reconciliation_run_started", "started_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default=RUNNING)
    trigger: Mapped[str] = mapped_column(String(80), nullable=False)  # "schedule", "cli", "user:<id>"
    scope_account_id: Mapped[int | None] = mapped_column(ForeignKey("account.id", ondelete="SET NULL"))
    repair: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    customers_checked: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    customers_differing: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    customers_unreadable: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    customers_skipped: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    differences: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    repaired: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    error: Mapped[str | None] = mapped_column(String(1000))


class ReconciliationStatus(TenantOwned, Model):
    """The last check of one customer: when, by which run, and what it found (one row per customer)."""

    __account_index__ = False
    __tablename__ = "reconciliation_status"
    __table_args__ = (
        UniqueConstraint("account_id", name="uq_reconciliation_status_account"),
        CheckConstraint(
            "outcome IN ('matched', 'differs', 'unreadable', 'skipped')", name="ck_reconciliation_status_outcome"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("reconciliation_run.id", ondelete="SET NULL"))
    checked_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    outcome: Mapped[str] = mapped_column(String(16), nullable=False)
    differences: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    detail: Mapped[str | None] = mapped_column(String(500))  # why unreadable or skipped


class Drift(TenantOwned, Model):
    """One difference between the portal and Microsoft in one customer's records: open (``resolved_at`` empty) from
    the run that first found it until a run no longer finds it — repaired, or changed on either side."""

    __account_index__ = False
    __tablename__ = "reconciliation_drift"
    __table_args__ = (
        Index("ix_reconciliation_drift_account_open", "account_id", "resolved_at"),
        Index("ix_reconciliation_drift_open", "resolved_at", "first_seen_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), nullable=False)  # what differs, stable from run to run
    kind: Mapped[str] = mapped_column(String(40), nullable=False)
    subject: Mapped[str] = mapped_column(String(320), nullable=False)  # a product's name, a user's address
    portal_value: Mapped[str] = mapped_column(String(200), nullable=False)
    microsoft_value: Mapped[str] = mapped_column(String(200), nullable=False)
    first_seen_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    last_run_id: Mapped[int | None] = mapped_column(ForeignKey("reconciliation_run.id", ondelete="SET NULL"))
    resolved_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    repaired_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    repair_summary: Mapped[str | None] = mapped_column(String(500))

"""The provider operation log: every call that changes Microsoft's state is first written here, committed, then sent,
then recorded with Microsoft's answer (app/services/operations.py). No secret ever goes into ``params``."""

from __future__ import annotations

import datetime as dt

from flask_appbuilder import Model
from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import TenantOwned, utcnow

PENDING, SUCCEEDED, FAILED = "pending", "succeeded", "failed"


class ProviderOperation(TenantOwned, Model):
    """One change asked of Microsoft: what (kind, parameters), for whom (account, requester), under which keys (the
    form's once-only key; ``request_id``, sent as MS-RequestId on every try of it — Microsoft's idempotency key;
    the correlation id of the last try), its state and Microsoft's answer."""

    __tablename__ = "provider_operation"
    __table_args__ = (
        CheckConstraint("state IN ('pending', 'succeeded', 'failed')", name="ck_provider_operation_state"),
        Index("ix_provider_operation_state_since", "state", "attempted_on"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40), nullable=False)
    # What it changes, as "<kind>:<id>" ("subscription:12", "m365_user:7", "tenant:3"; "account:5" for what does not
    # exist yet: an order, a new user): reconciliation leaves alone what has an operation in flight on it.
    target: Mapped[str | None] = mapped_column(String(80), index=True)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default=PENDING)
    submission_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    request_id: Mapped[str] = mapped_column(String(36), nullable=False, unique=True)
    correlation_id: Mapped[str | None] = mapped_column(String(64))
    params: Mapped[str] = mapped_column(Text, nullable=False)
    result: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(String(1000))
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("ab_user.id", ondelete="SET NULL"))
    created_on: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    # When it was last sent (a retry of the same operation sends again, with the same request id).
    attempted_on: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    finished_on: Mapped[dt.datetime | None] = mapped_column(DateTime)

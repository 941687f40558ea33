"""The mail outbox: every mail is a row, written in the transaction of the change that causes it and sent afterwards
by the outbox worker (app/services/outbox.py), with retries — never inside a web request."""

from __future__ import annotations

import datetime as dt

from flask_appbuilder import Model
from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import TenantOwned, utcnow

QUEUED, SENT, FAILED = "queued", "sent", "failed"


class OutboxMail(TenantOwned, Model):
    """One mail to one address, about one account (whose staff see it; a reseller only its own tree's). Its bodies are
    rendered when it is queued, so sending needs no request, and cleared once it is sent: they hold a single-use
    link. ``claim_token``/``claimed_until``: the lease of the process sending it, so no two processes send one row."""

    __tablename__ = "outbox_mail"
    __table_args__ = (
        CheckConstraint("state IN ('queued', 'sent', 'failed')", name="ck_outbox_mail_state"),
        # What the sender looks for: queued rows by when they are due.
        Index("ix_outbox_mail_state_due", "state", "next_attempt_at"),
        Index("ix_outbox_mail_user", "user_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # activation, welcome, password_reset, access_granted; password_reset_request: an address typed on the
    # "forgot your password" page, resolved by the sender (a mail only if it has a login).
    kind: Mapped[str] = mapped_column(String(40), nullable=False)
    recipient: Mapped[str] = mapped_column(String(320), nullable=False)
    subject: Mapped[str] = mapped_column(String(300), nullable=False)
    text_body: Mapped[str | None] = mapped_column(Text)
    html_body: Mapped[str | None] = mapped_column(Text)
    # The login the mail is for (its Users tab row shows a final failure).
    user_id: Mapped[int | None] = mapped_column(ForeignKey("ab_user.id", ondelete="SET NULL"))
    state: Mapped[str] = mapped_column(String(16), nullable=False, default=QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    claimed_until: Mapped[dt.datetime | None] = mapped_column(DateTime)
    claim_token: Mapped[str | None] = mapped_column(String(32))
    last_error: Mapped[str | None] = mapped_column(String(500))
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_on: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)

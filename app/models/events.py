"""The audit trail: the guide's Event Log."""

from __future__ import annotations

import datetime as dt

from flask_appbuilder import Model
from sqlalchemy import DateTime, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import TenantOwned, utcnow


class Event(TenantOwned, Model):
    """One change: when, who, on whose behalf (the impersonator), on which account, what and to what, and the request
    that made it. Append-only: the database refuses to change one (app/db_guard.py)."""

    __account_index__ = False
    __tablename__ = "event"
    __table_args__ = (
        Index("ix_event_account_time", "account_id", "occurred_at", "id"),
        # The operator's log (every account), date filters and the retention purge read by time alone.
        Index("ix_event_time", "occurred_at", "id"),
        # The Event Log's person filter: who did it, the partner user behind it, or a label (an unknown address).
        Index("ix_event_on_behalf_of_id", "on_behalf_of_id"),
        Index("ix_event_actor_label", "actor_label"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    occurred_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    # Plain keys: an event is never updated (app/db_guard.py), so a login with events is never hard-deleted.
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("ab_user.id"), index=True)
    on_behalf_of_id: Mapped[int | None] = mapped_column(ForeignKey("ab_user.id"))
    actor_label: Mapped[str] = mapped_column(String(320), nullable=False)
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    target_type: Mapped[str | None] = mapped_column(String(64))
    target_id: Mapped[str | None] = mapped_column(String(64))
    summary: Mapped[str] = mapped_column(String(1000), nullable=False, default="")
    client_address: Mapped[str | None] = mapped_column(String(45))
    request_id: Mapped[str | None] = mapped_column(String(64))

    actor = relationship("PortalUser", foreign_keys=[actor_id])
    on_behalf_of = relationship("PortalUser", foreign_keys=[on_behalf_of_id])

    @property
    def by(self) -> str:
        """Who did it, and the partner user behind them while impersonating: ``it@enet.example (by simon@…)``."""
        from security.models import address_of

        if self.on_behalf_of is None:
            return self.actor_label
        return f"{self.actor_label} (by {address_of(self.on_behalf_of.email)})"

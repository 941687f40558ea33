"""Server-side HTTP sessions (the embedded store; Redis replaces it when REDIS_URL is set)."""

from __future__ import annotations

import datetime as dt

from flask_appbuilder import Model
from sqlalchemy import DateTime, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column


class ServerSession(Model):
    """One browser session: the cookie carries only ``session_id``."""

    __tablename__ = "server_session"
    __table_args__ = (Index("ix_server_session_expiry", "expiry"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[str] = mapped_column(String(255), nullable=False, unique=True)
    data: Mapped[bytes | None] = mapped_column(LargeBinary)
    expiry: Mapped[dt.datetime | None] = mapped_column(DateTime)

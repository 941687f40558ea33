"""Server-side HTTP sessions (the embedded store; Redis replaces it when REDIS_URL is set)."""

from __future__ import annotations

import datetime as dt

from flask_appbuilder import Model
from sqlalchemy import BigInteger, DateTime, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column


class ServerSession(Model):
    """One browser session: the cookie carries only ``session_id``."""

    __tablename__ = "server_session"
    __table_args__ = (Index("ix_server_session_expiry", "expiry"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[str] = mapped_column(String(255), nullable=False, unique=True)
    data: Mapped[bytes | None] = mapped_column(LargeBinary)
    expiry: Mapped[dt.datetime | None] = mapped_column(DateTime)


class SignInThrottle(Model):
    """The per-address sign-in throttle's state (security/throttle.py) when there is no Redis: times are whole seconds
    since the epoch, so the one atomic UPDATE of an attempt is plain integer arithmetic on both databases."""

    __tablename__ = "sign_in_throttle"
    __table_args__ = (Index("ix_sign_in_throttle_last_attempt", "last_attempt"),)

    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the address typed
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    delay: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    locked_until: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    last_attempt: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)

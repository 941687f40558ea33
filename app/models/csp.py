"""State of the embedded ``sandbox`` CSP provider: what Partner Center would know, kept in our database."""

from __future__ import annotations

import datetime as dt

from flask_appbuilder import Model
from sqlalchemy import DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import utcnow


class SandboxDomain(Model):
    """An onmicrosoft prefix the sandbox treats as taken (``<prefix>.onmicrosoft.com`` exists)."""

    __tablename__ = "sandbox_domain"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prefix: Mapped[str] = mapped_column(String(27), nullable=False, unique=True)
    created_on: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)

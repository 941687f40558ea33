"""Customer-portal dashboard layouts: the widgets a user placed, in order."""

from __future__ import annotations

import datetime as dt

from flask_appbuilder import Model
from sqlalchemy import DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import TenantOwned, utcnow


class DashboardWidget(TenantOwned, Model):
    """One widget on one user's dashboard."""

    __tablename__ = "dashboard_widget"
    __table_args__ = (Index("ix_dashboard_widget_user_position", "user_id", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("ab_user.id", ondelete="CASCADE"), nullable=False)
    widget: Mapped[str] = mapped_column(String(40), nullable=False)
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    settings: Mapped[str | None] = mapped_column(Text)
    created_on: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)

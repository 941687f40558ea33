"""Times, dates and money as the guide shows them, in the configured zone and currency (DESIGN.md rule 8)."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal

from babel.numbers import format_currency
from flask import Flask, current_app

from app import clock

local_time = clock.local  # a stored (naive UTC) time in the portal's zone


def format_datetime(value: dt.datetime | None, empty: str = "N/A") -> str:
    """``22/08/18 01:48 PM``."""
    if value is None:
        return empty
    return local_time(value).strftime("%d/%m/%y %I:%M %p")


def format_date(value: dt.date | None, empty: str = "") -> str:
    """``12/01/2019``."""
    if value is None:
        return empty
    return value.strftime("%d/%m/%Y")


def format_money(value: Decimal | int | None) -> str:
    """``$17.30`` in the configured currency and locale; a value with more decimals (a per-month equivalent) is
    rounded half up to the cent first, as every price is (Babel alone would round half even)."""
    if value is None:
        return ""
    return format_currency(
        Decimal(value).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP),
        current_app.config["PORTAL_CURRENCY"],
        locale=current_app.config["PORTAL_LOCALE"],
    )


def init_app(app: Flask) -> None:
    import plotly

    app.jinja_env.globals["plotly_version"] = plotly.__version__
    app.add_template_filter(format_datetime, "datetime")
    app.add_template_filter(format_date, "date")
    app.add_template_filter(format_money, "money")
    from app.services.events import action_name, target_name

    app.add_template_filter(action_name, "event_action")  # the Event Log never shows a dotted action name
    app.add_template_filter(target_name, "event_target")

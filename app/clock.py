"""The portal's one clock. "Today" and "now" are the portal's zone (``PORTAL_TIMEZONE``, Pacific/Auckland by default):
a renewal "in 30 days", the 7-day decrease deadline, export file names and the usage chart's month ends are New
Zealand dates whatever the server's zone. The database stores naive UTC (``utcnow``). Nothing else reads the clock.
"""

from __future__ import annotations

import datetime as dt
import os
from zoneinfo import ZoneInfo

from flask import current_app, has_app_context

DEFAULT_ZONE = "Pacific/Auckland"


def zone() -> ZoneInfo:
    """The portal's zone: the app's setting, else the environment's (CLI before the app exists), else Auckland."""
    if has_app_context():
        return ZoneInfo(current_app.config.get("PORTAL_TIMEZONE") or DEFAULT_ZONE)
    return ZoneInfo(os.environ.get("PORTAL_TIMEZONE") or DEFAULT_ZONE)


def utcnow() -> dt.datetime:
    """Naive UTC, the only time the database stores."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def now() -> dt.datetime:
    """This moment in the portal's zone (aware)."""
    return dt.datetime.now(dt.UTC).astimezone(zone())


def today() -> dt.date:
    """The portal's date: in New Zealand the day starts 12 or 13 hours before UTC's."""
    return now().date()


def local(value: dt.datetime) -> dt.datetime:
    """A stored (naive UTC) time in the portal's zone."""
    return value.replace(tzinfo=dt.UTC).astimezone(zone())


def start_of_day_utc(day: dt.date) -> dt.datetime:
    """The naive UTC moment the portal's ``day`` begins (for "since that date" over stored times)."""
    return dt.datetime.combine(day, dt.time(), tzinfo=zone()).astimezone(dt.UTC).replace(tzinfo=None)

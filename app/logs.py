"""The portal's log lines: the human format (with the request id) by default, one JSON object per line with
``LOG_FORMAT=json``. Either way every record of a request carries its id, method and path and — when signed in —
the user's and account's ids, taken from what the request already loaded (never a database query: a log line must
not fail, or wait, when the database is down)."""

from __future__ import annotations

import datetime as dt
import json
import logging

from flask import g, has_request_context, request

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
CONTEXT_FIELDS = ("request_id", "user_id", "account_id", "impersonator_id", "method", "path")


def _loaded(obj, attribute: str):
    """An attribute of a database object only if it is already loaded (no lazy load, no refresh)."""
    from sqlalchemy import inspect
    from sqlalchemy.exc import NoInspectionAvailable

    try:
        state = inspect(obj)
    except NoInspectionAvailable:
        return None
    if attribute == "id" and state.identity:
        return state.identity[0]
    return state.dict.get(attribute)


def request_fields() -> dict:
    """This request's id, method, path, and who is signed in (ids only), as far as the request knows them."""
    from app import request_id

    if not has_request_context():
        return {}
    fields = {"request_id": request_id.current(), "method": request.method, "path": request.path}
    who = g.get("_portal_who") or _who()
    if who is not None:
        fields["user_id"], fields["account_id"], fields["impersonator_id"] = who
    return fields


def _who() -> tuple | None:
    """(user id, account id, impersonator id) of this request's signed-in user, from the objects Flask-Login and the
    impersonation hook already loaded — None before that (or when nobody is signed in)."""
    user = g.get("_login_user")  # Flask-Login's user of this request, if it was loaded
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    impersonator = g.get("impersonator")
    return (
        _loaded(user, "id"),
        _loaded(user, "account_id"),
        _loaded(impersonator, "id") if impersonator is not None else None,
    )


def _remember_who() -> None:
    """After the request's own hooks loaded the user: keep the ids, so that a later log line (after a commit expired
    the objects) still names them without asking the database."""
    g._portal_who = _who()


def init_app(app) -> None:
    app.before_request(_remember_who)  # registered last: after Flask-Login, FAB and impersonation have run


class RequestContextFilter(logging.Filter):
    """Puts the request's fields on every record (``-`` for the request id outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            fields = request_fields()
        except Exception:  # a log line never fails because of its context
            fields = {}
        for name in CONTEXT_FIELDS:
            setattr(record, name, fields.get(name))
        if record.request_id is None:
            record.request_id = "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the request's fields when there is
    one, and the traceback (as one string) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None and value != "-":
                data[name] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            data["stack"] = self.formatStack(record.stack_info)
        return json.dumps(data, default=str, ensure_ascii=False)


def handler(log_format: str = "text", stream=None) -> logging.Handler:
    """A stream handler (stderr by default) in the given format, with the request's fields."""
    result = logging.StreamHandler(stream)
    result.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    result.addFilter(RequestContextFilter())
    return result


def configure(mode: str | None, log_format: str | None) -> None:
    """The portal's own notices (mail written to the outbox, provider failures with their correlation id, outages)
    reach stderr at INFO; a host that configured logging itself (or the test suite) keeps its setup."""
    root = logging.getLogger()
    if mode == "testing" or root.handlers:
        return
    root.addHandler(handler(log_format or "text"))
    for name in ("app", "security", "views"):
        logging.getLogger(name).setLevel(logging.INFO)

"""Request-level behaviour shared by every page: database pragmas, bad paging arguments, scope violations."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import plotly
from flask import Blueprint, Flask, abort, current_app, jsonify, render_template, request, send_from_directory
from sqlalchemy import event
from sqlalchemy.engine import Engine
from werkzeug.exceptions import HTTPException, NotFound

from app.extensions import db
from security.scoping import ScopeViolation

_PAGING_ARG = re.compile(r"^(page|psize)(_|$)")
_ID_FIELD = re.compile(r"(^|_)(id|pk|rowid)$")
_MAX_ID = 2**31 - 1  # PostgreSQL's integer; SQLite's and Python's are wider, so check here, once


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """SQLite enforces foreign keys only when asked; WAL lets readers and a writer work at once."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()


def _reject_bad_paging() -> None:
    """FAB parses ``page_*``/``psize_*`` with int(): anything but a small whole number is a 400, not a 500."""
    for name, value in request.args.items():
        if _PAGING_ARG.match(name) and not (value.isascii() and value.isdigit() and len(value) <= 9):
            abort(400, description=f"{name} must be a whole number")


def _reject_impossible_input() -> None:
    """Input no form or page could have sent answers 4xx before any view runs, never a 500 from the database:

    - an id in the path, or an id field in the query or form, beyond any row's id (an unknown row: 404);
    - a NUL character anywhere (PostgreSQL refuses to store it; no keyboard types it): 400.
    """
    for value in (request.view_args or {}).values():
        if _too_big(value):
            abort(404)
    for source in (request.args, request.form):
        for name, value in source.items(multi=True):
            if "\x00" in value or "\x00" in name:
                abort(400, description="Text may not contain NUL characters.")
            if _ID_FIELD.search(name) and _too_big(value):
                abort(404)


def _too_big(value) -> bool:
    if isinstance(value, int):
        return abs(value) > _MAX_ID
    text = str(value).strip().lstrip("+-")
    # Digits no keyboard types as an id ("²", "١٢"): no row either (int() refuses some, reads others as huge).
    return text.isdigit() and (not text.isascii() or len(text) > 10 or int(text) > _MAX_ID)


def _scope_violation(exc: ScopeViolation):
    """To the writer (or the view that sent an unscoped statement) the row does not exist: the portal's 404. Answered,
    not raised: an ``abort`` inside an error handler would reach the user as a 500."""
    db.session.rollback()
    return _json_errors_for_api(NotFound())


# The JSON endpoints the portal's own scripts call: their errors are JSON whatever the request's Accept header.
JSON_ENDPOINTS = frozenset(
    {
        "DomainCheckView.check",
        "AccountSearchView.suggest",
        "ReportJobsView.status",
        "CustomerDashboardView.reorder",
    }
)
_TITLES = {
    400: "That request could not be used",
    403: "Not for this sign-in",
    404: "Not found",
    405: "Not like that",
    410: "No longer here",
    429: "Too many requests",
}


def wants_json() -> bool:
    """The API, the portal's JSON endpoints and anything asked for JSON get their answers (errors too) as JSON."""
    return (
        request.path.startswith("/api/")
        or request.endpoint in JSON_ENDPOINTS
        or request.is_json
        or request.accept_mimetypes.best == "application/json"
    )


def _json_errors_for_api(exc: HTTPException):
    """The API, the JSON endpoints and anything asked for JSON answer errors as JSON; pages get the portal's own
    error page, with its menu and a way back (Flask's bare page otherwise)."""
    if wants_json():
        return jsonify({"message": exc.description, "status": exc.code}), exc.code
    if exc.code not in _TITLES:
        return exc
    from app.extensions import appbuilder

    response = exc.get_response()  # keeps headers such as 405's Allow and 429's Retry-After
    try:
        page = render_template(
            "portal/error.html",
            code=exc.code,
            title=_TITLES[exc.code],
            message=exc.description,
            appbuilder=appbuilder,
            base_template=appbuilder.base_template,
        )
    except Exception as failed:  # an error page must never fail: the outage page, or Flask's own
        from app import failure

        if failure.outage_of(failed):  # the menu needs the database: it is the outage the user should hear of
            return failure.unavailable(failed, stage=f"drawing the {exc.code} page")
        current_app.logger.exception("The error page could not be drawn")
        return exc
    response.set_data(page)
    response.content_type = "text/html; charset=utf-8"
    return response


vendor = Blueprint("vendor", __name__)
_PLOTLY = Path(plotly.__file__).parent / "package_data"


@vendor.route("/static/vendor/plotly.min.js")
def plotly_js():
    """The chart library, served by the app from the pinned plotly package (never a CDN)."""
    return send_from_directory(_PLOTLY, "plotly.min.js", max_age=365 * 24 * 3600)


@vendor.route("/favicon.ico")
def favicon():
    """The app's icon where browsers and bookmarks look for it (pages also link to the SVG); no sign-in needed."""
    return send_from_directory(Path(current_app.static_folder) / "img", "favicon.ico", max_age=7 * 24 * 3600)


def init_app(app: Flask) -> None:
    app.register_blueprint(vendor)
    app.before_request(_reject_bad_paging)
    app.before_request(_reject_impossible_input)
    app.register_error_handler(ScopeViolation, _scope_violation)
    app.register_error_handler(HTTPException, _json_errors_for_api)

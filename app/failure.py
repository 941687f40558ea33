"""Clean failure: what the portal answers when PostgreSQL or Redis is unreachable, or when something breaks.

- An outage (the database or Redis unreachable, hung past its timeout, or refusing for the moment) is answered with
  the portal's own 503 page — JSON for the JSON endpoints and the API — and a ``Retry-After``, and logged as ONE line
  (no traceback: a cut of a few seconds must not bury the log under hundreds of them). It can happen at every stage
  of a request: reading the server-side session, Flask-Login loading the user, the view's queries, the commit, the
  rate limiter's storage, an RQ enqueue. Nothing is kept from a failed request (its database session is rolled back
  and removed, and the pool pre-pings), so the portal recovers by itself when the server is back.
- Anything else that breaks is the portal's own 500 page showing the request id, which is in the one log line with
  the traceback.
- A response the view has produced stands: a failure afterwards (saving the session, an ``after_request`` hook) is
  logged and does not turn a change that was committed into an error page.

The error pages here never need the database: they are drawn straight from their template, without the menu, the
signed-in user or any other context processor.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sqlite3
from itertools import chain

from flask import Flask, current_app, g, jsonify, request, session
from flask.globals import request_ctx
from markupsafe import escape
from werkzeug.exceptions import InternalServerError, ServiceUnavailable

from app.web import wants_json

log = logging.getLogger(__name__)

DATABASE, REDIS = "database", "redis"
RETRY_AFTER_SECONDS = 30
_NAMES = {DATABASE: "The database", REDIS: "The session and queue store (Redis)"}
_SQLITE_OUTAGES = ("locked", "unable to open database", "disk i/o error", "database is busy")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})  # DESIGN.md rule 2: these never change anything
_SESSION_OUTAGE = "portal.session_outage"  # environ key: the session could not be read for this request


# -- what is an outage ---------------------------------------------------------------------------------------------
def outage_of(exc: BaseException | None) -> str | None:
    """``DATABASE`` or ``REDIS`` when ``exc`` (or what caused it) says that server is unreachable, hung or refusing for
    the moment; None for anything else (a bug, bad data), which deserves its traceback."""
    seen = 0
    while exc is not None and seen < 8:
        what = _outage_of_one(exc)
        if what:
            return what
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def _outage_of_one(exc: BaseException) -> str | None:
    import redis.exceptions
    import sqlalchemy.exc
    from limits.errors import StorageError

    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return REDIS
    if isinstance(exc, StorageError):
        return outage_of(exc.storage_error) or REDIS
    if isinstance(exc, sqlalchemy.exc.TimeoutError):  # the pool had no connection to give in time
        return DATABASE
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        if exc.connection_invalidated:
            return DATABASE
        return _driver_outage(exc.orig)
    return _driver_outage(exc)


def _driver_outage(exc: BaseException | None) -> str | None:
    try:
        import psycopg2
    except ImportError:  # pragma: no cover - psycopg2 is pinned
        psycopg2 = None
    if psycopg2 is not None and isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError):
        # Connection refused or lost, a timeout or cancel, a server shutting down, a serialization failure:
        # all "try again in a moment". (Bad SQL or data are ProgrammingError, DataError, IntegrityError.)
        return DATABASE
    if isinstance(exc, sqlite3.OperationalError) and any(m in str(exc).lower() for m in _SQLITE_OUTAGES):
        return DATABASE  # SQLite's "no such table" is an OperationalError too, and a bug: not this
    return None


def describe(exc: BaseException) -> str:
    """One line naming the failure: the driver's first line, without SQL or parameters."""
    import sqlalchemy.exc

    inner = exc.orig if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.orig is not None else exc
    text = " ".join(str(inner).split()) or "(no message)"
    text = re.sub(r"\s*\(Background on this error at: \S+\)", "", text)
    return f"{type(inner).__name__}: {text[:300]}"


# -- answering -----------------------------------------------------------------------------------------------------
def _forget_database_work() -> None:
    """Nothing of a failed request is kept: its transaction is rolled back here and its session removed at teardown,
    so the pool takes back (or, if it is dead, discards) the connection."""
    from app.extensions import db

    with contextlib.suppress(Exception):  # the connection may be gone; the teardown removes the session anyway
        db.session.rollback()


def _request_line() -> str:
    return f"{request.method} {request.path}"


def log_outage(what: str, exc: BaseException, stage: str = "") -> None:
    """The one line an outage gets (once per request)."""
    if g.get("_portal_outage_logged"):
        return
    g._portal_outage_logged = True
    where = f" while {stage}" if stage else ""
    log.error("%s is unavailable%s: %s [%s]", _NAMES[what], where, describe(exc), _request_line())


def unavailable(exc: BaseException, what: str | None = None, stage: str = ""):
    """The 503 answer to an outage: logged once, the request's database work dropped, a page (or JSON) and
    ``Retry-After``."""
    what = what or outage_of(exc) or DATABASE
    log_outage(what, exc, stage)
    _forget_database_work()
    message = (
        f"{_NAMES[what]} cannot be reached at the moment, so the portal could not answer this request. "
        "Please try again in a minute."
    )
    response = _answer(503, "The portal is unavailable for a moment", message)
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def internal_error(exc: BaseException | None = None):
    """The 500 answer to anything unexpected: the request id to quote, which is in the log line with the traceback."""
    _forget_database_work()
    message = (
        "Something went wrong on our side and the page could not be shown. If it happens again, tell us the "
        "request id below: it finds what happened."
    )
    return _answer(500, "Something went wrong", message)


def _answer(code: int, title: str, message: str):
    from app import request_id

    rid = request_id.current()
    if wants_json():
        response = jsonify({"message": message, "status": code, "request_id": rid})
        response.status_code = code
        return response
    try:
        # Straight from the template: no context processor (the signed-in user, the menu) may touch the database.
        page = current_app.jinja_env.get_template("portal/failure.html").render(
            code=code, title=title, message=message, request_id=rid, app_name=current_app.config.get("APP_NAME", "")
        )
    except Exception:  # the error page itself must not fail: plain words, then
        log.warning("The %s page template could not be drawn; answered in plain HTML", code, exc_info=True)
        page = (
            f"<!DOCTYPE html><html><head><title>{escape(title)}</title></head><body><h1>{escape(title)} ({code})</h1>"
            f"<p>{escape(message)}</p><p>Request id: <code>{escape(rid or '-')}</code></p></body></html>"
        )
    response = current_app.response_class(page, status=code, mimetype="text/html")
    return response


SAVE_REFUSED = "The database cannot be reached at the moment: nothing was saved. Try again in a minute."


@contextlib.contextmanager
def refused_during_outage(error_class: type[Exception]):
    """For code whose caller catches every exception and carries on (FAB's add, edit and delete forms flash the
    message and redirect): an outage is logged once and rolled back, and becomes ``error_class(SAVE_REFUSED)`` —
    never the driver's SQL text in a flash, nor a traceback in the log. Whatever the caller then answers, the request
    is answered with the 503 page (``PortalFlask.process_response``): nothing was saved."""
    try:
        yield
    except Exception as exc:
        what = outage_of(exc)
        if what is None:
            raise
        log_outage(what, exc, "saving a form")
        _forget_database_work()
        g._portal_refused = exc
        raise error_class(SAVE_REFUSED) from exc


def _answer_refusal(response):
    """A save refused by an outage inside code that carried on: the 503 page instead of what it answered, and its
    flash (said by the 503 page now) dropped from the session."""
    exc = g.pop("_portal_refused", None)
    if exc is None or response.status_code >= 500:
        return response
    with contextlib.suppress(Exception):
        flashes = session.get("_flashes") or []
        kept = [item for item in flashes if item[1] != SAVE_REFUSED]
        if len(kept) != len(flashes):
            session["_flashes"] = kept
    return unavailable(exc)


# -- error handlers ------------------------------------------------------------------------------------------------
def _on_driver_error(exc: Exception):
    """Registered for the exception classes an outage raises. What is not an outage (a bug that happens to be a
    DBAPIError, say) goes on as if unhandled: the 500 page, one traceback."""
    what = outage_of(exc)
    if what is None:
        raise exc
    return unavailable(exc, what)


def _on_internal_error(exc: InternalServerError):
    original = exc.original_exception
    what = outage_of(original)
    if what is not None:
        return unavailable(original, what)
    return internal_error(original)


def _on_service_unavailable(exc: ServiceUnavailable):
    """``abort(503)``: the portal's 503 page too, with its one log line."""
    if not g.get("_portal_outage_logged"):
        g._portal_outage_logged = True
        log.error("Answered 503: %s [%s]", exc.description, _request_line())
    response = _answer(503, "The portal is unavailable for a moment", exc.description)
    response.headers["Retry-After"] = dict(exc.get_headers()).get("Retry-After", str(RETRY_AFTER_SECONDS))
    return response


def _refuse_without_session() -> None:
    """First thing before every request: the session store could not be read when the request came in."""
    exc = request.environ.get(_SESSION_OUTAGE)
    if exc is not None:
        raise _SessionUnavailable from exc


class _SessionUnavailable(Exception):
    """The session store could not be read when the request came in (its cause says why)."""


def _on_session_unavailable(exc: _SessionUnavailable):
    cause = exc.__cause__
    return unavailable(cause, outage_of(cause), "reading the session")


def session_unavailable(req, exc: BaseException) -> None:
    """Called by the session interface when the store cannot be read: the request is answered 503 before any view,
    with a null session (nothing of it is saved)."""
    req.environ[_SESSION_OUTAGE] = exc


# -- after the response was produced -------------------------------------------------------------------------------
class PortalFlask(Flask):
    """Flask, except that a failure after the view produced its response does not replace that response, and an
    outage is logged in one line instead of a traceback."""

    def process_response(self, response):
        # Flask 3.1's process_response, with each step guarded (see _after_step).
        ctx = request_ctx._get_current_object()
        response = _answer_refusal(response)
        for func in ctx._after_request_functions:
            response = self._after_step(func, response)
        for name in chain(request.blueprints, (None,)):
            for func in reversed(self.after_request_funcs.get(name, ())):
                response = self._after_step(func, response)
        session = ctx._session
        if session is not None and not self.session_interface.is_null_session(session):

            def save(resp):
                self.session_interface.save_session(self, session, resp)
                return resp

            response = self._after_step(save, response, "saving the session")
        return response

    def _after_step(self, func, response, what: str = ""):
        """Run one step after the view. Its failure leaves the response as the view made it: the view may have
        committed a change (a created user, an order), and an error page now would say it had not — and the retry
        would say "already used". An outage is logged in one line (saving the session: the session's change is lost,
        e.g. a flash message or the sign-in just made; that is acceptable, the committed data is not). A bug is
        logged with its traceback — and on a GET, which never changes anything, it is a 500 as usual."""
        try:
            return self.ensure_sync(func)(response)
        except Exception as exc:
            what = what or f"the after-request hook {getattr(func, '__qualname__', None) or repr(func)}"
            outage = outage_of(exc)
            if outage is not None:
                if not g.get("_portal_outage_logged"):
                    g._portal_outage_logged = True
                    log.error(
                        "%s is unavailable while %s: %s; the %s response stands [%s]",
                        _NAMES[outage],
                        what,
                        describe(exc),
                        response.status_code,
                        _request_line(),
                    )
                return response
            if g.get("_portal_after_failed"):  # again, on the error page's way out: its traceback is logged already
                return response
            g._portal_after_failed = True
            if request.method in _SAFE_METHODS:
                raise
            from app import request_id

            log.error(
                "Failed while %s (request %s); the %s response stands [%s]",
                what,
                request_id.current(),
                response.status_code,
                _request_line(),
                exc_info=True,
            )
            return response

    def log_exception(self, exc_info) -> None:
        """An outage: one line. Anything else: the traceback, with the request id the 500 page shows."""
        exc = exc_info[1]
        what = outage_of(exc)
        if what is not None:
            log_outage(what, exc)
            return
        from app import request_id

        self.logger.error(
            "Exception on %s [%s] (request %s)", request.path, request.method, request_id.current(), exc_info=exc_info
        )


# -- clients with short timeouts -----------------------------------------------------------------------------------
def redis_options(config) -> dict:
    """Keyword arguments for every Redis client of the web process (sessions, rate limits, RQ enqueue): a frozen Redis
    costs a request about ``REDIS_SOCKET_TIMEOUT``, not redis-py's default of ten retries with backoff. A refused or
    dropped connection is tried once more (a pooled connection may be stale after Redis restarted); a timeout is not."""
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.retry import Retry

    timeout = config.get("REDIS_SOCKET_TIMEOUT", 1.0)
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    }


def redis_client(url: str, config=None):
    from redis import Redis

    return Redis.from_url(url, **redis_options(config if config is not None else current_app.config))


def configure(app: Flask) -> None:
    """Before the extensions start: the rate limiter's Redis gets the short timeouts too."""
    if str(app.config.get("RATELIMIT_STORAGE_URI", "")).startswith(("redis://", "rediss://", "unix://")):
        options = dict(app.config.get("RATELIMIT_STORAGE_OPTIONS") or {})
        for key, value in redis_options(app.config).items():
            options.setdefault(key, value)
        app.config["RATELIMIT_STORAGE_OPTIONS"] = options


def init_app(app: Flask) -> None:
    """After everything else is registered: the session check goes first, the handlers catch what they own."""
    import redis.exceptions
    import sqlalchemy.exc
    from limits.errors import StorageError

    app.before_request_funcs.setdefault(None, []).insert(0, _refuse_without_session)
    app.register_error_handler(_SessionUnavailable, _on_session_unavailable)
    for cls in (
        sqlalchemy.exc.DBAPIError,
        sqlalchemy.exc.TimeoutError,
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        StorageError,
    ):
        app.register_error_handler(cls, _on_driver_error)
    app.register_error_handler(InternalServerError, _on_internal_error)
    app.register_error_handler(ServiceUnavailable, _on_service_unavailable)

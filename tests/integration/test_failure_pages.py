"""Clean failure on both databases: the portal's own 500 page with the request id that is in the log, the 503 page
when the database cannot be opened, responses that stand when a step after the view fails, and JSON log lines.
(Cutting a live PostgreSQL or Redis is tests/integration/test_faults.py, in the PostgreSQL pass.)"""

from __future__ import annotations

import io
import json
import logging

import pytest
from flask import after_this_request, current_app
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import event, select

import config as settings
from app import logs
from app.extensions import csrf, db
from security.models import PortalUser
from tests.conftest import login_to, make_app, unscoped


def _tracebacks(caplog):
    return [r for r in caplog.records if r.exc_info]


def _failure_lines(caplog):
    return [r for r in caplog.records if r.name == "app.failure" and r.levelno >= logging.ERROR]


@pytest.fixture
def fresh_app(tmp_path, database_url, app):
    """A second app on the same database, answering as in production (exceptions are not re-raised to the test)
    and open to test-only routes."""
    return make_app(tmp_path, database_url, PROPAGATE_EXCEPTIONS=False)


def test_an_unexpected_error_is_the_portals_500_page_with_the_request_id_in_the_log(fresh_app, caplog):
    @fresh_app.route("/test-only/boom")
    def boom():
        raise RuntimeError("a bug in a view")

    @fresh_app.route("/api/test-only/boom")
    def api_boom():
        raise RuntimeError("a bug in the API")

    caplog.clear()
    page = fresh_app.test_client().get("/test-only/boom")
    request_id = page.headers["X-Request-ID"]
    assert page.status_code == 500 and page.mimetype == "text/html"
    assert 'data-test="error-page"' in page.text and "Something went wrong" in page.text
    assert f'<code data-test="request-id">{request_id}</code>' in page.text
    assert "Traceback" not in page.text and "a bug in a view" not in page.text and "RuntimeError" not in page.text
    (line,) = _tracebacks(caplog)  # one traceback for a real bug, naming the request
    assert request_id in line.getMessage() and line.exc_info[0] is RuntimeError

    caplog.clear()
    answer = fresh_app.test_client().get("/api/test-only/boom")
    body = answer.get_json()
    assert answer.status_code == 500 and body["status"] == 500 and body["message"]
    assert body["request_id"] == answer.headers["X-Request-ID"] and len(_tracebacks(caplog)) == 1


def test_an_unreachable_database_is_the_503_page_logged_in_one_line(tmp_path, app, caplog):
    """SQLite's file cannot be opened (its folder is gone): the same outage as a PostgreSQL that is down."""
    gone = make_app(tmp_path, f"sqlite:///{tmp_path / 'no-such-folder' / 'portal.db'}", PROPAGATE_EXCEPTIONS=False)

    @gone.route("/test-only/boom")
    def boom():
        raise RuntimeError("a bug, while the database is down too")

    client = gone.test_client()
    caplog.clear()
    page = client.get("/login/")
    assert page.status_code == 503 and page.headers["Retry-After"] == "30"
    assert 'data-test="error-page"' in page.text and "cannot be reached" in page.text
    assert page.headers["X-Request-ID"] in page.text
    answer = client.get("/search/suggest?q=aar", headers={"Accept": "application/json"})
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "30"
    assert answer.get_json()["status"] == 503 and answer.get_json()["message"]
    assert len(_failure_lines(caplog)) == 2 and not _tracebacks(caplog)
    # The 500 page needs no database either.
    assert client.get("/test-only/boom").status_code == 500


def test_a_response_stands_when_a_step_after_the_view_fails(fresh_app, world, caplog):
    """The view committed and answered; a failing after-request hook or session store must not turn that into an
    error page (the retry would then say "already used")."""
    created = []

    @fresh_app.route("/test-only/create", methods=["POST"])
    def create():
        from security import scoping

        with scoping.bypass("test-only route"):
            user = db.session.scalars(select(PortalUser).where(PortalUser.email == "admin@alpha.example")).one()
            user.mobile = "021 000 0001"
            db.session.commit()
        created.append(user.id)

        @after_this_request
        def broken_hook(response):
            raise RuntimeError("a bug in an after-request hook")

        return "created", 201

    csrf.exempt(create)

    @fresh_app.route("/test-only/page")
    def page():
        @after_this_request
        def broken_hook(response):
            raise RuntimeError("a bug in an after-request hook")

        return "a page"

    client = fresh_app.test_client()
    caplog.clear()
    answer = client.post("/test-only/create")
    assert answer.status_code == 201 and answer.text == "created" and created
    (line,) = _tracebacks(caplog)
    assert "the 201 response stands" in line.getMessage()
    with unscoped() as session:
        assert session.get(PortalUser, created[0]).mobile == "021 000 0001"
    # A GET changes nothing, so a bug after it is the 500 page as usual (one traceback).
    caplog.clear()
    assert client.get("/test-only/page").status_code == 500
    assert len(_tracebacks(caplog)) == 1


def test_a_session_store_that_fails_after_the_view_does_not_fail_the_answer(fresh_app, world, monkeypatch, caplog):
    client = login_to(fresh_app, world.users["reseller_a_admin"].email)

    def unreachable(*args, **kwargs):
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(fresh_app.session_interface, "save_session", unreachable)
    caplog.clear()
    page = client.get("/")
    assert page.status_code == 200
    (line,) = _failure_lines(caplog)
    assert "saving the session" in line.getMessage() and "200 response stands" in line.getMessage()
    assert not _tracebacks(caplog)


def test_json_logs_name_the_request_and_who_without_a_query(fresh_app, world):
    statements = []

    @fresh_app.route("/test-only/log")
    def log_something():
        engine = db.engine
        db.session.expire_all()  # as after a commit: reading the user's columns now would be a query

        def count(*args):
            statements.append(args[2])

        event.listen(engine, "before_cursor_execute", count)
        try:
            current_app.logger.warning("something worth a line")
        finally:
            event.remove(engine, "before_cursor_execute", count)
        return "logged"

    stream = io.StringIO()
    handler = logs.handler("json", stream)
    logging.getLogger("app").addHandler(handler)
    try:
        client = login_to(fresh_app, world.users["reseller_a_admin"].email)
        answer = client.get("/test-only/log?x=1")
        logging.getLogger("app").warning("outside any request")
    finally:
        logging.getLogger("app").removeHandler(handler)
    assert answer.status_code == 200 and statements == []
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    ours = next(line for line in lines if line["message"] == "something worth a line")
    assert ours["level"] == "WARNING" and ours["logger"] == "app" and ours["time"].endswith("+00:00")
    assert ours["request_id"] == answer.headers["X-Request-ID"]
    assert ours["user_id"] == world.users["reseller_a_admin"].id
    assert ours["account_id"] == world.accounts["reseller_a"].id
    assert ours["method"] == "GET" and ours["path"] == "/test-only/log"
    outside = lines[-1]
    assert outside["message"] == "outside any request" and "request_id" not in outside and "user_id" not in outside


def test_json_log_lines_carry_a_traceback_in_one_line():
    stream = io.StringIO()
    logger = logging.getLogger("app.test_only_json")
    handler = logs.handler("json", stream)
    logger.addHandler(handler)
    try:
        try:
            raise ValueError("broken")
        except ValueError:
            logger.exception("it broke")
    finally:
        logger.removeHandler(handler)
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["message"] == "it broke" and "ValueError: broken" in record["exception"]


def test_failure_settings(tmp_path):
    environ = {"PORTAL_ENV": "development", "PORTAL_INSTANCE_PATH": str(tmp_path)}
    values = settings.load(environ)
    assert values["LOG_FORMAT"] == "text" and values["REDIS_SOCKET_TIMEOUT"] == 1.0
    assert values["SQLALCHEMY_ENGINE_OPTIONS"] == {"pool_pre_ping": True}
    postgres = settings.load(
        {
            **environ,
            "DATABASE_URL": "postgresql://portal@db/portal",
            "LOG_FORMAT": "JSON",
            "REDIS_SOCKET_TIMEOUT": "0.5",
            "DATABASE_CONNECT_TIMEOUT": "3",
            "DATABASE_STATEMENT_TIMEOUT": "30",
        }
    )
    assert postgres["LOG_FORMAT"] == "json" and postgres["REDIS_SOCKET_TIMEOUT"] == 0.5
    assert postgres["SQLALCHEMY_ENGINE_OPTIONS"] == {
        "pool_pre_ping": True,
        "connect_args": {"connect_timeout": 3, "options": "-c statement_timeout=30000"},
    }
    for name, value in (("LOG_FORMAT", "xml"), ("REDIS_SOCKET_TIMEOUT", "0"), ("DATABASE_CONNECT_TIMEOUT", "0")):
        with pytest.raises(settings.ConfigError, match=name):
            settings.load({**environ, "DATABASE_URL": "postgresql://portal@db/portal", name: value})

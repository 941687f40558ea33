"""PostgreSQL and Redis cut or frozen under a running portal, through TCP proxies the tests own (never by stopping
the machine's servers): the portal's 503 page (JSON for JSON endpoints) with Retry-After, one log line per failure
and no traceback, recovery by itself when the server is back, and nothing lost or half-written.

Run once, in the PostgreSQL pass (``postgres_faults``: deselected without TEST_DATABASE_URL)."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import redis
from jinja2 import StrictUndefined
from sqlalchemy import event, select
from sqlalchemy.engine import make_url

from app import create_app
from app.extensions import db
from app.models.catalog import Product
from app.models.jobs import BackgroundJob
from app.services.jobs import QUEUE_UNAVAILABLE
from security.models import PortalUser
from tests import factories
from tests.conftest import csrf_token, login_to, unscoped
from tests.mail import free_port
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.postgres_faults

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379/12"
PARTNER = "admin@alpha.example"


# -- fixtures and helpers ------------------------------------------------------------------------------------------
@pytest.fixture
def pg_proxy(database_url):
    url = make_url(database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    yield proxy
    proxy.close()


@pytest.fixture
def redis_proxy():
    redis.Redis.from_url(REDIS_URL).flushdb()
    proxy = TcpProxy("127.0.0.1", 6379)
    yield proxy
    proxy.close()
    redis.Redis.from_url(REDIS_URL).flushdb()


def _through(url: str, proxy: TcpProxy) -> str:
    return make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)


_APPS = []


@pytest.fixture
def portal(tmp_path, app):
    """Build a portal app from settings, answering as in production (nothing re-raised to the test)."""

    def build(database_url: str, redis_url: str = "", config: dict | None = None, **environ):
        env = {
            "PORTAL_ENV": "testing",
            "PORTAL_INSTANCE_PATH": str(tmp_path / f"instance-{len(_APPS)}"),
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            **environ,
        }
        built = create_app(config={"TESTING": True, "PROPAGATE_EXCEPTIONS": False, **(config or {})}, environ=env)
        built.jinja_env.undefined = StrictUndefined
        _APPS.append(built)
        return built

    yield build
    for built in _APPS:
        with built.app_context():
            db.engine.dispose()
    _APPS.clear()


def _users_url(world) -> str:
    return f"/accounts/{world.accounts['customer_a'].id}/users"


def _add_user(client, world, email: str, token: str | None = None):
    data = {
        "csrf_token": token or csrf_token(client),
        "first_name": "Nina",
        "last_name": "New",
        "email": email,
    }
    return client.post(f"{_users_url(world)}/customer/new", data=data)


def _exists(email: str) -> bool:
    with unscoped() as session:
        return session.scalars(select(PortalUser.id).where(PortalUser.email == email)).first() is not None


def _outage_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "app.failure" and r.levelno >= logging.ERROR]


def _tracebacks(caplog) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]


def _assert_503_page(page) -> None:
    assert page.status_code == 503, page.text[:500]
    assert page.headers["Retry-After"] == "30" and page.mimetype == "text/html"
    assert 'data-test="error-page"' in page.text and "cannot be reached" in page.text
    assert page.headers["X-Request-ID"] in page.text


def _assert_503_json(answer) -> None:
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "30"
    body = answer.get_json()
    assert body["status"] == 503 and body["message"] and body["request_id"] == answer.headers["X-Request-ID"]


@contextlib.contextmanager
def cut_at(app, proxy: TcpProxy, *, statement: str | None = None, commit: bool = False):
    """Cut ``proxy`` in the middle of a request: just before the first statement containing ``statement`` is sent
    to PostgreSQL, or just before the first COMMIT. Yields what it cut at."""
    fired: list[str] = []
    with app.app_context():
        engine = db.engine

    def before_statement(conn, cursor, sql, params, context, executemany):
        if not fired and statement is not None and statement in sql:
            fired.append(sql)
            proxy.cut()

    def before_commit(conn):
        if not fired and commit:
            fired.append("COMMIT")
            proxy.cut()

    event.listen(engine, "before_cursor_execute", before_statement)
    event.listen(engine, "commit", before_commit)
    try:
        yield fired
    finally:
        event.remove(engine, "before_cursor_execute", before_statement)
        event.remove(engine, "commit", before_commit)


# -- PostgreSQL cut ------------------------------------------------------------------------------------------------
def test_postgres_cut_answers_503_and_the_portal_recovers_by_itself(world, database_url, pg_proxy, portal, caplog):
    """Embedded sessions (the database table) through the proxy too: the session read is the first thing to fail."""
    app = portal(_through(database_url, pg_proxy))
    client = login_to(app, PARTNER)
    assert _add_user(client, world, "before@aardvark.example").status_code == 302  # created just before the cut
    token = csrf_token(client)

    pg_proxy.cut()
    caplog.clear()
    _assert_503_page(client.get("/"))
    _assert_503_page(client.get(_users_url(world)))
    _assert_503_json(client.get("/search/suggest?q=aar"))  # a JSON endpoint
    _assert_503_json(client.get("/api/v1/accounts"))  # the API
    _assert_503_page(_add_user(client, world, "during@aardvark.example", token))  # a form sent during the cut
    _assert_503_page(app.test_client().get("/login/"))  # anonymous: the sign-in page needs the database too
    lines = _outage_lines(caplog)
    assert len(lines) == 6 and all("The database is unavailable" in line for line in lines), lines
    assert not _tracebacks(caplog)

    pg_proxy.restore()
    assert client.get("/").status_code == 200  # still signed in: the session outlived the cut
    assert _exists("before@aardvark.example") and not _exists("during@aardvark.example")
    assert _add_user(client, world, "during@aardvark.example").status_code == 302  # sent again: done once
    assert _exists("during@aardvark.example")


def _add_product(client, world, sku: str, token: str | None = None):
    data = {
        "csrf_token": token or csrf_token(client),
        "product_title": "Microsoft 365 E5",
        "name": "Microsoft 365 E5",
        "sku": sku,
    }
    return client.post("/productview/add", data=data)


def _product_exists(sku: str) -> bool:
    with unscoped() as session:
        return session.scalars(select(Product.id).where(Product.sku == sku)).first() is not None


@pytest.mark.parametrize(
    ("stage", "who", "send", "cut"),
    [
        ("loading the signed-in user", PARTNER, "page", {}),
        ("the view's queries", PARTNER, "page", {"statement": "FROM placeholder_user"}),
        ("the view's write", PARTNER, "add user", {"statement": "INSERT INTO ab_user"}),
        ("the commit", PARTNER, "add user", {"commit": True}),
        ("a FAB model view's save", "ops@operator.example", "add product", {"statement": "INSERT INTO product"}),
        ("a FAB model view's commit", "ops@operator.example", "add product", {"commit": True}),
    ],
)
def test_postgres_cut_at_every_stage_of_a_request(world, database_url, pg_proxy, portal, caplog, stage, who, send, cut):
    """Sessions in Redis (reachable): the database fails while Flask-Login loads the user, in the middle of the view,
    at a write or at the commit — a 503, one line, nothing half-written, and the next request works."""
    app = portal(_through(database_url, pg_proxy), REDIS_URL)
    client = login_to(app, who)
    token = csrf_token(client)
    requests = {
        "page": lambda: client.get(_users_url(world)),
        "add user": lambda: _add_user(client, world, "cut@aardvark.example", token),
        "add product": lambda: _add_product(client, world, "CUT-1", token),
    }
    caplog.clear()
    if cut:
        with cut_at(app, pg_proxy, **cut) as fired:
            answer = requests[send]()
    else:
        pg_proxy.cut()
        answer = requests[send]()
        fired = ["before the request"]
    assert fired, f"the cut never happened ({stage})"
    _assert_503_page(answer)
    assert len(_outage_lines(caplog)) == 1 and not _tracebacks(caplog), (_outage_lines(caplog), _tracebacks(caplog))

    pg_proxy.restore()
    assert client.get("/").status_code == 200
    assert not _exists("cut@aardvark.example") and not _product_exists("CUT-1")  # nothing half-written
    if send != "page":  # the same form again, now that the database is back: done
        assert requests[send]().status_code == 302
        assert _exists("cut@aardvark.example") or _product_exists("CUT-1")


def test_a_postgres_that_stops_answering_new_connections_costs_the_connect_timeout(
    world, database_url, pg_proxy, portal, caplog
):
    app = portal(_through(database_url, pg_proxy), REDIS_URL, DATABASE_CONNECT_TIMEOUT="2")
    client = login_to(app, PARTNER)
    with app.app_context():
        db.engine.dispose()  # no pooled connection: the next request must open one (to a server that hangs)
    _frozen_costs_at_most(client, pg_proxy, caplog, 6, "a hung PostgreSQL")


def _frozen_costs_at_most(client, proxy, caplog, seconds: float, what: str) -> None:
    """A server that accepts but never answers: the page is the 503 within ``seconds``, one line and no traceback in
    the log, and the portal answers again once the server does."""
    proxy.freeze()
    caplog.clear()
    started = time.monotonic()
    page = client.get("/")
    elapsed = time.monotonic() - started
    _assert_503_page(page)
    assert elapsed < seconds, f"{what} held the request {elapsed:.1f} s"
    assert len(_outage_lines(caplog)) == 1 and not _tracebacks(caplog)
    proxy.restore()
    assert client.get("/").status_code == 200


# -- Redis cut or frozen -------------------------------------------------------------------------------------------
def test_redis_cut_answers_503_and_the_sessions_come_back(world, database_url, redis_proxy, portal, caplog):
    app = portal(database_url, _through(REDIS_URL, redis_proxy))
    client = login_to(app, PARTNER)
    assert client.get("/").status_code == 200

    redis_proxy.cut()
    caplog.clear()
    _assert_503_page(client.get("/"))
    _assert_503_json(client.get("/search/suggest?q=aar"))
    lines = _outage_lines(caplog)
    assert len(lines) == 2 and all("Redis" in line and "reading the session" in line for line in lines), lines
    assert not _tracebacks(caplog)

    redis_proxy.restore()
    assert client.get("/").status_code == 200  # the same session, still signed in


def test_a_frozen_redis_does_not_hold_a_request(world, database_url, redis_proxy, portal, caplog):
    app = portal(database_url, _through(REDIS_URL, redis_proxy))
    client = login_to(app, PARTNER)
    _frozen_costs_at_most(client, redis_proxy, caplog, 3.5, "a frozen Redis (REDIS_SOCKET_TIMEOUT is 1 s)")


def test_the_rate_limiters_storage_unreachable(world, database_url, redis_proxy, portal, caplog):
    """Sessions reachable, the limiter's Redis not: the sign-in form (limited per address) answers 503, and signs in
    once the limiter's Redis is back."""
    limits = TcpProxy("127.0.0.1", 6379)
    try:
        app = portal(
            database_url,
            _through(REDIS_URL, redis_proxy),
            config={"RATELIMIT_STORAGE_URI": _through(REDIS_URL, limits)},
            RATELIMIT_ENABLED="1",
        )
        client = app.test_client()
        page = client.get("/login/")
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
        form = {"csrf_token": token, "username": PARTNER, "password": "wrong"}
        limits.cut()
        caplog.clear()
        _assert_503_page(client.post("/login/", data=form))
        assert len(_outage_lines(caplog)) == 1 and not _tracebacks(caplog)
        limits.restore()
        form["password"] = factories.PASSWORD
        signed_in = client.post("/login/", data=form)
        assert signed_in.status_code == 302 and "/login" not in signed_in.location
    finally:
        limits.close()


def test_an_export_whose_job_cannot_be_queued(world, database_url, redis_proxy, portal, caplog):
    """RQ's enqueue fails after the job was committed: a 503, and the job says it failed (with Retry), never
    "queued" for a worker that will never see it."""
    app = portal(database_url, _through(REDIS_URL, redis_proxy), EXPORT_JOB_THRESHOLD="0")
    client = login_to(app, PARTNER)
    token = csrf_token(client)
    account_id = world.accounts["customer_a"].id
    with app.app_context():
        engine = db.engine

    def cut_redis(conn, cursor, sql, *args):
        if sql.startswith("INSERT INTO background_job"):
            redis_proxy.cut()

    event.listen(engine, "before_cursor_execute", cut_redis)
    caplog.clear()
    try:
        answer = client.post(f"/accounts/{account_id}/reports/subscriptions.xlsx", data={"csrf_token": token})
    finally:
        event.remove(engine, "before_cursor_execute", cut_redis)
    _assert_503_page(answer)
    assert len(_outage_lines(caplog)) == 1 and not _tracebacks(caplog)
    with unscoped() as session:
        (job,) = session.scalars(select(BackgroundJob)).all()
        assert job.status == "failed" and job.error == QUEUE_UNAVAILABLE
    redis_proxy.restore()
    page = client.get(f"/accounts/{account_id}/products/csp-report").text
    assert ">Retry<" in page


def test_a_session_save_that_fails_after_the_commit_answers_the_success(
    world, database_url, redis_proxy, portal, caplog
):
    """Today's bug: the user is created and committed, then Redis fails while the session is saved — the answer was a
    500 and the retry said "already used". Now the created user is answered as created."""
    app = portal(database_url, _through(REDIS_URL, redis_proxy))
    client = login_to(app, PARTNER)
    token = csrf_token(client)
    with app.app_context():
        engine = db.engine

    def cut_redis_at_commit(conn):
        redis_proxy.cut()

    event.listen(engine, "commit", cut_redis_at_commit)
    caplog.clear()
    try:
        answer = _add_user(client, world, "saved@aardvark.example", token)
    finally:
        event.remove(engine, "commit", cut_redis_at_commit)
    assert answer.status_code == 302 and answer.location.endswith(_users_url(world))
    assert _exists("saved@aardvark.example")
    (line,) = _outage_lines(caplog)
    assert "saving the session" in line and "302 response stands" in line
    assert not _tracebacks(caplog)
    redis_proxy.restore()
    assert client.get(_users_url(world)).status_code == 200


# -- real gunicorn workers -----------------------------------------------------------------------------------------
def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - our own local server
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def test_gunicorn_workers_answer_503_and_recover_without_a_restart(world, database_url, pg_proxy, tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "PORTAL_ENV": "development",
        "PORTAL_INSTANCE_PATH": str(tmp_path / "instance"),
        "DATABASE_URL": _through(database_url, pg_proxy),
        "SESSION_CLEANUP_N_REQUESTS": "0",
        "RATELIMIT_ENABLED": "0",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("REDIS_URL", None)
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("w") as log_file:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--workers", "2", "--bind", f"127.0.0.1:{port}", "run:app"],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/login/"
    try:
        deadline = time.monotonic() + 60
        while True:  # poll until both workers serve (or give up)
            try:
                if _get(url) == 200:
                    break
            except OSError:
                pass
            assert server.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        assert [_get(url) for _ in range(6)] == [200] * 6

        pg_proxy.cut()
        assert [_get(url) for _ in range(6)] == [503] * 6

        pg_proxy.restore()
        assert [_get(url) for _ in range(6)] == [200] * 6
        assert server.poll() is None  # the same gunicorn, never restarted
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    log = log_path.read_text()
    assert log.count("The database is unavailable") == 6, log
    assert "Traceback" not in log, log

"""The mail outbox (issue 12 item 7): a mail is a row written with the change that causes it, sent afterwards by the
outbox worker through a real SMTP server (aiosmtpd), retried with backoff, never inside a web request; after its last
try the Users tab says "activation email failed — Resend". Time moves with time-machine, never with sleeps."""

from __future__ import annotations

import datetime as dt
import re
import socket
import threading
import time
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
import redis
import time_machine
from flask_mailman.utils import DNS_NAME
from rq import Queue, SimpleWorker
from sqlalchemy import event, select

import config
from app.extensions import db
from app.models.accounts import Account
from app.models.events import Event
from app.models.outbox import OutboxMail
from app.services import maintenance, outbox
from app.services.activation import send_activation
from app.services.jobs import QUEUE
from security import scoping
from security.models import PortalUser
from tests import factories
from tests.conftest import at_once, csrf_token, make_app, unscoped
from tests.integration.test_scoping import database_fingerprint
from tests.mail import (
    Inbox,
    body_of,
    free_port,
    link_in,
    mail_through_smtp,
    outbox_messages,
    smtp_server,
    wait_for_mail,
)

REDIS_URL = "redis://127.0.0.1:6379/11"  # this module's own Redis database, flushed by the test that uses it
NINA = "nina@aardvark.example"


def _rows() -> list[SimpleNamespace]:
    """Every outbox row as the database holds it now, oldest first."""
    with unscoped() as session:
        rows = session.scalars(select(OutboxMail).order_by(OutboxMail.id)).all()
        return [SimpleNamespace(**{c.key: getattr(r, c.key) for c in OutboxMail.__mapper__.column_attrs}) for r in rows]


def _user(email: str) -> SimpleNamespace:
    with unscoped() as session:
        user = session.scalars(select(PortalUser).where(PortalUser.email == email)).one()
        return SimpleNamespace(id=user.id, activation_error=user.activation_error)


def _events(action: str) -> list[str]:
    with unscoped() as session:
        return session.scalars(select(Event.summary).where(Event.action == action).order_by(Event.id)).all()


def _users_url(world) -> str:
    return f"/accounts/{world.accounts['customer_a'].id}/users"


def _add_customer_user(client, world, email: str = NINA):
    data = {"csrf_token": csrf_token(client), "first_name": "Nina", "last_name": "New", "email": email}
    return client.post(f"{_users_url(world)}/customer/new", data=data)


def _ask_for_reset(app, email: str):
    visitor = app.test_client()
    page = visitor.get("/activate/forgot")
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
    return visitor.post("/activate/forgot", data={"csrf_token": token, "email": email})


def _send_due(app) -> int:
    """What the worker and the periodic run do."""
    with app.app_context():
        return outbox.send_due()


@contextmanager
def _when_due(*rows):
    """The clock moved to one second after the last of ``rows`` is due again (time-machine; the clock ticks on)."""
    moment = max(r.next_attempt_at for r in rows) + dt.timedelta(seconds=1)
    with time_machine.travel(moment.replace(tzinfo=dt.UTC), tick=True):
        yield


class SilentServer:
    """A "mail server" that accepts connections and never says a word (no greeting), until it hangs up."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, name="silent-smtp", daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:  # hung up
                return
            self.connections.append(connection)

    def hang_up(self):
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.thread.join(10)
        for connection in self.connections:
            connection.close()


@contextmanager
def silent_server():
    server = SilentServer()
    try:
        yield server
    finally:
        if server.listener.fileno() != -1:
            server.hang_up()


# -- queued with the change ---------------------------------------------------------------------------------------


def test_a_mail_is_queued_in_the_transaction_of_its_change(app, world):
    with app.app_context(), scoping.bypass("test: a change that is rolled back"):
        user = db.session.get(PortalUser, world.users["reseller_a_user"].id)
        nonce = user.activation_nonce
        send_activation(user)
        db.session.rollback()  # the change fails after its mail was queued
    assert _rows() == []
    with unscoped() as session:
        assert session.get(PortalUser, world.users["reseller_a_user"].id).activation_nonce == nonce

    with app.app_context(), scoping.bypass("test: a change that is committed"):
        send_activation(db.session.get(PortalUser, world.users["reseller_a_user"].id))
        db.session.commit()
    wait_for_mail()  # the commit kicked the sender: the embedded backend's outbox folder has it
    (row,) = _rows()
    assert (row.kind, row.recipient, row.state, row.attempts) == ("welcome", "user@alpha.example", "sent", 1)
    assert row.account_id == world.accounts["reseller_a"].id and row.user_id == world.users["reseller_a_user"].id
    assert row.text_body is None and row.html_body is None  # the single-use link is not kept
    (message,) = [m for m in outbox_messages(app) if m["To"] == "user@alpha.example"]
    assert "Welcome" in message["Subject"]


def test_add_new_queues_and_the_worker_sends_through_smtp(app, world, reseller_a_admin_client):
    with smtp_server() as (inbox, port), mail_through_smtp(app, port):
        response = _add_customer_user(reseller_a_admin_client, world)
        assert response.status_code == 302
        page = reseller_a_admin_client.get(response.location).text
    assert f"Added {NINA}; an email asking them to activate their account is on its way." in page
    (message,) = inbox.messages
    assert message["X-Envelope-To"] == NINA and message["Subject"] == "Activate your account"
    assert "Aardvark Farms" in body_of(message)
    assert app.test_client().get(link_in(message)).status_code == 200
    (row,) = _rows()
    assert (row.state, row.attempts, row.text_body, row.html_body) == ("sent", 1, None, None)
    assert row.account_id == world.accounts["customer_a"].id and row.sent_at is not None
    user = _user(NINA)
    assert row.user_id == user.id and user.activation_error is None
    assert _events("user.activation_queued") == [f"Activation email to {NINA} queued"]
    assert _events("user.activation_sent") == [f"Activation email sent to {NINA}"]


# -- refused, retried with backoff, failed for good -----------------------------------------------------------------


def test_refused_mail_is_retried_with_backoff_then_shows_failed_with_resend(
    app, world, reseller_a_admin_client, monkeypatch
):
    monkeypatch.setitem(app.config, "MAIL_MAX_ATTEMPTS", 3)
    monkeypatch.setitem(app.config, "MAIL_RETRY_SECONDS", 30)
    closed = free_port()  # nothing listens there: every connection is refused
    with mail_through_smtp(app, closed):
        before = outbox.utcnow()
        assert _add_customer_user(reseller_a_admin_client, world).status_code == 302
        wait_for_mail()
        (row,) = _rows()
        assert (row.state, row.attempts) == ("queued", 1) and "refused" in row.last_error.lower()
        assert before + dt.timedelta(seconds=30) <= row.next_attempt_at <= outbox.utcnow() + dt.timedelta(seconds=30)
        assert _send_due(app) == 0 and _rows()[0].attempts == 1  # not due yet: nothing is tried
        with _when_due(row):
            assert _send_due(app) == 0
            (second,) = _rows()
            assert (second.state, second.attempts) == ("queued", 2)
            assert second.next_attempt_at - outbox.utcnow() > dt.timedelta(seconds=55)  # the wait doubled: 60 s
        with _when_due(second):
            assert _send_due(app) == 0
    (last,) = _rows()
    assert (last.state, last.attempts, last.text_body, last.html_body) == ("failed", 3, None, None)
    user = _user(NINA)
    assert user.activation_error.startswith("activation email failed")
    (failed,) = _events("user.activation_email_failed")
    assert failed.startswith(f"Activation email to {NINA} not sent after 3 tries")
    page = reseller_a_admin_client.get(_users_url(world)).text
    row_html = page.split(f'data-user="{user.id}"')[1].split("</tr>")[0]
    assert "activation email failed — " in row_html and ">Resend<" in row_html

    with smtp_server() as (inbox, port), mail_through_smtp(app, port):
        resend = reseller_a_admin_client.post(
            f"{_users_url(world)}/customer/{user.id}/resend", data={"csrf_token": csrf_token(reseller_a_admin_client)}
        )
        assert resend.status_code == 302
    assert [m["X-Envelope-To"] for m in inbox.messages] == [NINA]
    assert _user(NINA).activation_error is None
    assert "activation email failed" not in reseller_a_admin_client.get(_users_url(world)).text


class RefusingInbox(Inbox):
    """A server that knows no such mailbox: 550 for every recipient."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 - aiosmtpd's hook name
        return "550 5.1.1 No such mailbox here"


def test_a_permanent_refusal_is_not_retried(app, world, reseller_a_admin_client):
    with smtp_server(inbox=RefusingInbox()) as (inbox, port), mail_through_smtp(app, port):
        _add_customer_user(reseller_a_admin_client, world)
    (row,) = _rows()
    assert (row.state, row.attempts) == ("failed", 1) and "550" in row.last_error
    assert inbox.messages == [] and _user(NINA).activation_error.startswith("activation email failed")


def test_smtp_refusing_then_a_server_started_the_activation_and_reset_mails_arrive_with_no_click(
    app, world, reseller_a_admin_client, monkeypatch
):
    """The issue's test: the periodic run (app/services/maintenance.py) sends them once the server is back."""
    master_admin = world.users["customer_a_master_admin"].email
    port = free_port()
    with mail_through_smtp(app, port):  # nothing listens yet
        assert _add_customer_user(reseller_a_admin_client, world).status_code == 302
        assert _ask_for_reset(app, master_admin).status_code == 302
        wait_for_mail()
        rows = _rows()
        assert {(r.kind, r.recipient, r.state, r.attempts) for r in rows} == {
            ("activation", NINA, "queued", 1),
            ("password_reset", master_admin, "queued", 1),  # the request was resolved: a login, so a link
        }
        monkeypatch.setitem(app.config, "MAINTENANCE_INTERVAL_SECONDS", 30)
        with smtp_server(port=port) as (inbox, _), _when_due(*rows):
            done = maintenance.Loop(app).run_due()
        assert done["send mail"] == 2
    assert sorted((m["X-Envelope-To"], m["Subject"]) for m in inbox.messages) == sorted(
        [(NINA, "Activate your account"), (master_admin, "Set a new password for the Mycloudstore portal")]
    )
    for message in inbox.messages:
        assert app.test_client().get(link_in(message)).status_code == 200
    assert {(r.state, r.text_body) for r in _rows()} == {("sent", None)}


# -- a silent server ------------------------------------------------------------------------------------------------


def test_a_silent_mail_server_never_holds_a_web_request(app, world, reseller_a_admin_client, monkeypatch):
    monkeypatch.setitem(app.config, "MAIL_TIMEOUT", 30)
    with silent_server() as server, mail_through_smtp(app, server.port):
        assert _add_customer_user(reseller_a_admin_client, world).status_code == 302
        # The page has answered while the sender still waits (up to 30 s) for the server's greeting.
        (row,) = _rows()
        assert (row.state, row.attempts) == ("queued", 0)
        assert len(server.connections) <= 1
        server.hang_up()  # the server goes away: the sender's try ends now, a failed one
    (row,) = _rows()
    assert (row.state, row.attempts) == ("queued", 1)


def test_a_silent_mail_server_costs_the_worker_one_timeout_for_all_its_mail(
    app, world, reseller_a_admin_client, monkeypatch
):
    monkeypatch.setitem(app.config, "MAIL_TIMEOUT", 2)
    DNS_NAME.get_fqdn()  # the machine's own name, looked up once per process (Flask-Mailman caches it)
    with silent_server() as server, mail_through_smtp(app, server.port):
        for i in range(5):
            assert _add_customer_user(reseller_a_admin_client, world, email=f"n{i}@aardvark.example").status_code == 302
        wait_for_mail()  # the kicks' tries, each ended by the timeout
        rows = _rows()
        assert [r.attempts for r in rows] == [1] * 5 and all("did not answer within 2 s" in r.last_error for r in rows)
        with _when_due(*rows):
            started = time.monotonic()
            assert _send_due(app) == 0
            elapsed = time.monotonic() - started
    assert [r.attempts for r in _rows()] == [2] * 5
    assert 2 <= elapsed < 2 * 2  # one timeout ends the run: not one per mail (that would be 10 s)


# -- two senders at once ----------------------------------------------------------------------------------------


def test_two_senders_at_once_send_each_mail_once(app, world):
    port = free_port()
    with mail_through_smtp(app, port):
        with app.app_context(), scoping.bypass("test: 24 new logins, their mails queued at once"):
            customer = db.session.get(Account, world.accounts["customer_a"].id)
            for i in range(24):
                send_activation(factories.user(customer, f"p{i}@aardvark.example"), account=customer)
            db.session.commit()
        wait_for_mail()  # the kick's try: refused
        rows = _rows()
        assert len(rows) == 24 and {r.state for r in rows} == {"queued"}
        with smtp_server(port=port) as (inbox, _), _when_due(*rows):
            counts = at_once(lambda: _send_due(app), lambda: _send_due(app))
    assert sum(counts) == 24, counts
    received = sorted(m["X-Envelope-To"] for m in inbox.messages)
    assert received == sorted(f"p{i}@aardvark.example" for i in range(24))  # each once
    assert {r.state for r in _rows()} == {"sent"}
    assert len(_events("user.activation_sent")) == 24


# -- password reset -----------------------------------------------------------------------------------------------


def _work_of(app, call):
    """What one request did in its own thread (the sender's work is not the request's): its answer, the SQL it sent,
    and the outbox rows it inserted."""
    me, statements, inserted = threading.get_ident(), [], []

    def record(conn, cursor, statement, parameters, context, executemany):
        if threading.get_ident() == me:
            statements.append(statement)

    def queued(mapper, connection, row):
        if threading.get_ident() == me:
            inserted.append((row.kind, row.recipient, row.state, row.user_id, row.account_id, row.text_body))

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    event.listen(OutboxMail, "before_insert", queued)
    try:
        response = call()
    finally:
        event.remove(engine, "before_cursor_execute", record)
        event.remove(OutboxMail, "before_insert", queued)
    return response, statements, inserted


def test_the_reset_page_answers_the_same_for_known_and_unknown_addresses(app, world):
    known, unknown = world.users["customer_a_master_admin"].email, "nobody@nowhere.example"
    operator = world.accounts["operator"].id
    with smtp_server() as (inbox, port), mail_through_smtp(app, port):
        answers = {}
        for address in (known, unknown):
            visitor = app.test_client()
            page = visitor.get("/activate/forgot")
            token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
            response, statements, inserted = _work_of(
                app,
                lambda v=visitor, a=address, t=token: v.post("/activate/forgot", data={"csrf_token": t, "email": a}),
            )
            # One request row, committed before the answer (the sender resolves it afterwards), for either address.
            assert inserted == [("password_reset_request", address, "queued", None, operator, None)]
            flashed = visitor.get(response.location).text
            answers[address] = (
                response.status_code,
                response.location,
                statements,
                re.search(r"If \S+ has a login, an email with a link[^<]*", flashed).group(0).replace(address, "X"),
            )
            wait_for_mail()
    assert answers[known] == answers[unknown]  # the same words, and the same work (statement for statement)
    assert [m["X-Envelope-To"] for m in inbox.messages] == [known]
    assert [r.kind for r in _rows()] == ["password_reset"]  # the requests are gone; the unknown one left nothing
    assert link_in(inbox.messages[0])


# -- tenants --------------------------------------------------------------------------------------------------------


def test_a_reseller_sees_only_its_own_outbox_rows(app, world, reseller_a_admin_client, login):
    _add_customer_user(reseller_a_admin_client, world)
    wait_for_mail()
    (row,) = _rows()
    with app.app_context():
        with scoping.use_scope(scoping.Scope(scoping.RESELLER_SCOPE, world.accounts["reseller_b"].id)):
            assert db.session.scalars(select(OutboxMail)).all() == []
            assert db.session.get(OutboxMail, row.id) is None
        with scoping.use_scope(scoping.Scope(scoping.RESELLER_SCOPE, world.accounts["reseller_a"].id)):
            assert [m.id for m in db.session.scalars(select(OutboxMail))] == [row.id]
        db.session.rollback()
    # Reseller B's Resend on reseller A's customer's user: 404, nothing queued.
    other = login(world.users["reseller_b_admin"].email)
    user, token = _user(NINA), csrf_token(other)
    before = database_fingerprint()
    refused = other.post(f"{_users_url(world)}/customer/{user.id}/resend", data={"csrf_token": token})
    assert refused.status_code == 404
    wait_for_mail()
    assert database_fingerprint() == before


# -- with Redis: an RQ job --------------------------------------------------------------------------------------


def test_with_redis_the_kick_is_an_rq_job_that_sends(tmp_path, database_url, world, app):
    store = redis.Redis.from_url(REDIS_URL)
    store.flushdb()
    rq_app = make_app(tmp_path, database_url, REDIS_URL=REDIS_URL)
    try:
        with rq_app.app_context(), scoping.bypass("test: a welcome mail"):
            send_activation(db.session.get(PortalUser, world.users["reseller_a_user"].id))
            db.session.commit()
        queue = Queue(QUEUE, connection=store)
        assert [job.func_name for job in queue.jobs] == ["app.services.outbox.send_due_in_worker"]
        assert _rows()[0].state == "queued"  # no worker yet: nothing sent, nothing lost
        with rq_app.app_context():
            SimpleWorker([queue], connection=store).work(burst=True)
        assert _rows()[0].state == "sent"
        (message,) = outbox_messages(rq_app)
        assert message["To"] == "user@alpha.example"
    finally:
        store.flushdb()


# -- settings -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"MAIL_TIMEOUT": "0"}, "MAIL_TIMEOUT must be at least 1"),
        ({"MAIL_TIMEOUT": "61"}, "MAIL_TIMEOUT must be at most 60 seconds"),
        ({"MAIL_TIMEOUT": "soon"}, "MAIL_TIMEOUT must be a whole number"),
        ({"MAIL_RETRY_SECONDS": "0"}, "MAIL_RETRY_SECONDS must be at least 1"),
        ({"MAIL_MAX_ATTEMPTS": "many"}, "MAIL_MAX_ATTEMPTS must be a whole number"),
    ],
)
def test_mail_settings_are_checked(tmp_path, environ, message):
    with pytest.raises(config.ConfigError, match=message):
        config.load({"PORTAL_INSTANCE_PATH": str(tmp_path), **environ})


def test_mail_settings_default_to_short_timeouts(tmp_path):
    values = config.load({"PORTAL_INSTANCE_PATH": str(tmp_path)})
    assert (values["MAIL_TIMEOUT"], values["MAIL_RETRY_SECONDS"], values["MAIL_MAX_ATTEMPTS"]) == (5, 30, 6)

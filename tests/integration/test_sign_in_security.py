"""Sign-in under attack and sessions that end for good: the per-address throttle (growing delays, the same answer for
unknown addresses, shared by every process, in the database or Redis), an event for every failed and limited attempt,
a disabled login refused with the same work as a wrong password, and sessions ended by a password change (a Launch
included), a disable (re-enabling revives nothing) and their absolute lifetime."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import redis
import time_machine
from sqlalchemy import select

from app import clock
from app.extensions import limiter
from app.models.accounts import Account
from app.models.events import Event
from security import passwords
from security.models import PortalUser
from tests import factories
from tests.conftest import at_once, count_statements, csrf_token, login_to, make_app, unscoped

WRONG = "certainly not the password"
TOO_MANY = "Too many sign-in attempts for this address."
REDIS_URL = "redis://127.0.0.1:6379/9"


def _attempt(app, email, password, client=None):
    """One sign-in through the form; the flashed message (or None when it signed in)."""
    client = client or app.test_client()
    page = client.get("/login/")
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
    response = client.post("/login/", data={"csrf_token": token, "username": email, "password": password})
    if "/login" not in response.location:
        return None
    alerts = re.findall(
        r'<div class="alert[^"]*">\s*<button[^>]*>&times;</button>\s*(.*?)\s*</div>', client.get("/login/").text, re.S
    )
    return " ".join(alerts)


def _events(action):
    with unscoped() as session:
        return session.scalars(select(Event.summary).where(Event.action == action).order_by(Event.id)).all()


def test_twenty_eight_wrong_passwords_then_the_right_one_is_refused(app, world):
    email = world.users["reseller_a_admin"].email
    for _ in range(28):
        assert _attempt(app, email, WRONG) is not None
    assert TOO_MANY in _attempt(app, email, factories.PASSWORD)
    failed, limited = _events("auth.login_failed"), _events("auth.login_limited")
    assert len(failed) == app.config["SIGN_IN_FREE_ATTEMPTS"]  # only these reached a password check
    assert len(limited) == 28 + 1 - len(failed)
    with unscoped() as session:
        assert session.get(PortalUser, world.users["reseller_a_admin"].id).last_login is None


def test_the_delays_grow_and_the_right_password_works_after_the_wait(app, world):
    email = world.users["reseller_a_user"].email
    free, delay = app.config["SIGN_IN_FREE_ATTEMPTS"], app.config["SIGN_IN_DELAY_SECONDS"]
    start = clock.utcnow().replace(tzinfo=dt.UTC)
    with time_machine.travel(start, tick=False) as traveller:
        for _ in range(free):
            assert _attempt(app, email, WRONG) == "Invalid login. Please try again."
        assert f"Try again in {delay} seconds" in _attempt(app, email, factories.PASSWORD)
        traveller.shift(delay)
        assert _attempt(app, email, WRONG) == "Invalid login. Please try again."  # allowed again, and wrong
        assert f"Try again in {2 * delay} seconds" in _attempt(app, email, factories.PASSWORD)  # the delay doubled
        traveller.shift(2 * delay)
        assert _attempt(app, email, factories.PASSWORD) is None  # signed in: the address starts afresh
        for _ in range(free - 1):
            assert _attempt(app, email, WRONG) == "Invalid login. Please try again."


def test_an_unknown_address_gets_the_same_answers_and_events_on_the_operator(app, world):
    known, unknown = world.users["reseller_a_admin"].email, "nobody-here@alpha.example"
    with time_machine.travel(clock.utcnow().replace(tzinfo=dt.UTC), tick=False):
        answers = {email: [_attempt(app, email, WRONG) for _ in range(7)] for email in (known, unknown)}
    assert answers[known] == answers[unknown]
    with unscoped() as session:
        operator = session.scalar(select(Account.id).where(Account.kind == "operator"))
        strangers = session.execute(
            select(Event.action, Event.account_id, Event.actor_id).where(Event.actor_label == unknown)
        ).all()
    assert {action for action, _, _ in strangers} == {"auth.login_failed", "auth.login_limited"}
    assert {(account, actor) for _, account, actor in strangers} == {(operator, None)}


def test_attempts_sent_at_once_are_each_charged(app, world):
    email = world.users["reseller_a_admin"].email
    results = at_once(*[lambda: _attempt(app, email, WRONG) for _ in range(12)])
    assert all(result is not None for result in results)
    assert len(_events("auth.login_failed")) == app.config["SIGN_IN_FREE_ATTEMPTS"]
    assert len(_events("auth.login_limited")) == 12 - app.config["SIGN_IN_FREE_ATTEMPTS"]


def test_the_throttle_is_shared_by_every_app_process_on_the_database(app, world, tmp_path, database_url):
    other = make_app(tmp_path, database_url)
    email = world.users["reseller_a_admin"].email
    for _ in range(app.config["SIGN_IN_FREE_ATTEMPTS"]):
        _attempt(app, email, WRONG)
    assert TOO_MANY in _attempt(other, email, factories.PASSWORD)


def test_the_throttle_lives_in_redis_when_configured(world, tmp_path, database_url):
    redis.Redis.from_url(REDIS_URL).flushdb()
    first = make_app(tmp_path / "one", database_url, REDIS_URL=REDIS_URL, RATELIMIT_ENABLED=False)
    second = make_app(tmp_path / "two", database_url, REDIS_URL=REDIS_URL, RATELIMIT_ENABLED=False)
    email = world.users["reseller_a_admin"].email
    try:
        for _ in range(first.config["SIGN_IN_FREE_ATTEMPTS"]):
            _attempt(first, email, WRONG)
        assert TOO_MANY in _attempt(second, email, factories.PASSWORD)
        assert redis.Redis.from_url(REDIS_URL).keys("portal:sign-in:*")
        with unscoped() as session:
            assert session.execute(select(1).select_from(_throttle_table())).first() is None  # not in the database
    finally:
        redis.Redis.from_url(REDIS_URL).flushdb()


def _throttle_table():
    from app.models.sessions import SignInThrottle

    return SignInThrottle.__table__


@pytest.fixture
def disabled_login(world):
    with unscoped() as session:
        user = session.get(PortalUser, world.users["reseller_a_user"].id)
        user.active = False
        session.commit()
        return user.email


def test_every_refusal_costs_the_same_work(app, world, disabled_login, monkeypatch):
    """A disabled login's refusal (right or wrong password), a wrong password and an unknown address each compute one
    password hash and write one event in one commit: their timing tells nothing the words do not."""
    hashed = []
    real = passwords.check_password_hash
    monkeypatch.setattr(passwords, "check_password_hash", lambda *a: hashed.append(1) or real(*a))
    active = world.users["reseller_a_admin"].email
    cases = {
        "wrong password": (active, WRONG),
        "disabled, wrong password": (disabled_login, WRONG),
        "disabled, right password": (disabled_login, factories.PASSWORD),
        "unknown address": ("nobody-at-all@alpha.example", WRONG),
    }
    work = {}
    for name, (email, password) in cases.items():
        client = app.test_client()
        page = client.get("/login/")
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
        hashed.clear()
        with count_statements(app) as statements:
            client.post("/login/", data={"csrf_token": token, "username": email, "password": password})
        writes = [s for s in statements if s.lstrip().upper().startswith(("INSERT INTO EVENT", 'INSERT INTO "EVENT'))]
        work[name] = (len(hashed), len(writes))
    assert set(work.values()) == {(1, 1)}, work
    assert "This sign-in is disabled" in _attempt(app, disabled_login, factories.PASSWORD)


# -- sessions that end for good ------------------------------------------------------------------------------------


def _launch(client, world, target="customer_a_master_admin"):
    membership_id = world.users[target].membership_id
    return client.post(f"/impersonation/start/{membership_id}", data={"csrf_token": csrf_token(client)})


def test_a_password_change_ends_a_launched_session(app, world, login):
    launched = login(world.users["reseller_a_admin"].email)
    customer = world.accounts["customer_a"].id
    _launch(launched, world)
    assert launched.get(f"/portal/{customer}/").status_code == 200
    elsewhere = login(world.users["reseller_a_admin"].email)
    new = "a quite different passphrase"
    token = csrf_token(elsewhere, "/profile/password")
    answer = elsewhere.post(
        "/profile/password", data={"csrf_token": token, "current": factories.PASSWORD, "password": new, "confirm": new}
    )
    assert answer.status_code == 302
    response = launched.get(f"/portal/{customer}/")
    assert response.status_code == 302 and "/login/" in response.location
    assert "/login/" in launched.get("/").location  # out of both portals, not back in the partner one
    assert elsewhere.get("/").status_code == 200  # the session that changed it stays
    assert _events("impersonation.ended")


def test_disable_then_enable_revives_no_old_session(app, world, login, reseller_a_admin_client):
    target = world.users["reseller_a_user"]
    old = login(target.email)
    users = f"/accounts/{world.accounts['reseller_a'].id}/users"
    for action in ("disable", "enable"):
        answer = reseller_a_admin_client.post(
            f"{users}/partner/{target.id}/{action}",
            data={"csrf_token": csrf_token(reseller_a_admin_client), "confirmed": "yes"},  # Disable asks first
        )
        assert answer.status_code == 302
    response = old.get("/")
    assert response.status_code == 302 and "/login/" in response.location
    assert login(target.email).get("/").status_code == 200  # a new sign-in works


def test_disabling_an_account_ends_its_users_sessions_for_good(app, world, login):
    target = world.users["customer_a_master_admin"]
    customer = world.accounts["customer_a"].id
    old = login(target.email)  # signed in, its account not chosen yet
    working = login(target.email)
    assert working.get(f"/portal/{customer}/").status_code == 200  # signed in and working in the account
    with unscoped() as session:
        from app.services.accounts import set_account_status

        account = session.get(Account, customer)
        set_account_status(account, False)
        set_account_status(account, True)
        session.commit()
    assert "/login/" in old.get(f"/portal/{customer}/").location
    assert "/login/" in working.get(f"/portal/{customer}/").location


def test_sessions_have_an_absolute_lifetime(app, world):
    start = clock.utcnow().replace(tzinfo=dt.UTC)
    with time_machine.travel(start, tick=False) as traveller:
        client = login_to(app, world.users["reseller_a_admin"].email)
        hours = app.config["SESSION_ABSOLUTE_HOURS"]
        for _ in range(hours // 4):
            traveller.shift(dt.timedelta(hours=4))  # within the idle lifetime each time
            assert client.get("/").status_code == 200
        traveller.shift(dt.timedelta(hours=4))
        response = client.get("/")
        assert response.status_code == 302 and "/login/" in response.location


def test_a_logins_username_and_email_share_one_budget(app, world):
    """``flask fab create-admin`` logins have a username besides their email: typing one or the other is still one
    login's attempts, not two budgets."""
    with app.app_context(), unscoped() as session:
        user = session.get(PortalUser, world.users["ops_admin"].id)
        user.username = "opsadmin"
        session.commit()
    free = app.config["SIGN_IN_FREE_ATTEMPTS"]
    for i in range(free):
        _attempt(app, "opsadmin" if i % 2 else world.users["ops_admin"].email, WRONG)
    assert TOO_MANY in _attempt(app, "opsadmin", factories.PASSWORD)
    assert len(_events("auth.login_failed")) == free


def test_the_per_client_limit_records_its_refusals_too(app, world, tmp_path, database_url):
    # The app's own AUTH_RATE_LIMIT (the limiter is one object for every app of the test session: no other limit).
    limited = make_app(tmp_path, database_url, RATELIMIT_ENABLED=True)
    client = limited.test_client()
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', client.get("/login/").text).group(1)
    limiter.reset()
    try:
        statuses = [
            client.post(
                "/login/", data={"csrf_token": token, "username": f"someone{i}@nowhere.example", "password": WRONG}
            ).status_code
            for i in range(13)
        ]
    finally:
        limiter.reset()  # leave it empty for the tests after this one
    assert statuses == [302] * 10 + [429] * 3  # AUTH_RATE_LIMIT: 10 per 20 seconds from one client address
    summaries = _events("auth.login_limited")
    assert len(summaries) == 3 and all("someone" in s for s in summaries)


def test_the_database_throttle_forgets_quiet_addresses(app, world):
    start = clock.utcnow().replace(tzinfo=dt.UTC)
    with time_machine.travel(start, tick=False) as traveller:
        _attempt(app, "first-stranger@nowhere.example", WRONG)
        traveller.shift(dt.timedelta(days=2))
        _attempt(app, "second-stranger@nowhere.example", WRONG)
    with unscoped() as session:
        assert session.execute(select(_throttle_table().c.attempts)).scalars().all() == [1]


def test_a_sign_in_cleared_while_another_is_charged_is_never_refused(app, world):
    """A successful sign-in clears the login's throttle row while other attempts are charged on it (READ COMMITTED:
    their UPDATE then matches nothing, and a third attempt makes the row again): none of them is told to wait, since
    nothing is locked. Hammered from 8 threads, each charging an attempt and clearing it, as sign-ins that succeed."""
    from security import throttle

    app.config["SIGN_IN_FREE_ATTEMPTS"], saved = 10_000, app.config["SIGN_IN_FREE_ATTEMPTS"]

    def sign_ins() -> list[int]:
        waits = []
        with app.app_context():
            for _ in range(60):
                waits.append(throttle.attempt("race@aardvark.example"))
                throttle.clear("race@aardvark.example")
        return waits

    try:
        results = at_once(*[sign_ins for _ in range(8)])
    finally:
        app.config["SIGN_IN_FREE_ATTEMPTS"] = saved
    assert [w for waits in results for w in waits if w] == []

"""Two-factor authentication: enrolment, the second step of sign-in, replay, recovery codes, the code limit, required
mode (every page, a JSON endpoint and Launch), resets by whom and by whom not, and the events of each."""

from __future__ import annotations

import datetime as dt
import re

import pyotp
import pytest
import time_machine
from sqlalchemy import func, select

from app.models.events import Event
from app.models.mfa import MfaCredential, MfaRecoveryCode
from security import mfa
from security.models import PortalUser
from tests import factories
from tests.conftest import at_once, csrf_token, unscoped
from tests.integration.test_scoping import database_fingerprint

STEP = dt.timedelta(seconds=30)


@pytest.fixture
def clock_at():
    """Time frozen a few seconds into a TOTP step, an hour from now (after the test users' passwords were set);
    ``clock_at.shift(n)`` moves it by n steps."""
    start = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    start = start.replace(second=5 if start.second < 30 else 35, microsecond=0)
    with time_machine.travel(start, tick=False) as traveller:
        traveller.steps = lambda n=1: traveller.shift(STEP * n)
        yield traveller


@pytest.fixture
def required(app):
    app.config["MFA_REQUIRED"] = True
    yield
    app.config["MFA_REQUIRED"] = False


def code(secret: str) -> str:
    return pyotp.TOTP(secret).at(dt.datetime.now(dt.UTC))


def enrol(client) -> tuple[str, list[str]]:
    """Set up two-factor authentication through the pages, with a code computed from the secret they show."""
    page = client.get("/profile/two-factor/")
    assert page.status_code == 200 and "<svg" in page.text
    secret = re.search(r'data-test="mfa-secret">([A-Z2-7 ]+)</code>', page.text).group(1).replace(" ", "")
    response = client.post("/profile/two-factor/", data={"csrf_token": csrf_token(client), "code": code(secret)})
    assert response.status_code == 302 and response.location.endswith("/profile/two-factor/recovery-codes")
    codes = re.findall(r"<li><code>([A-Z0-9-]+)</code></li>", client.get(response.location).text)
    return secret, codes


def password_step(app, email: str):
    """A client that gave the right password of a login with a second factor: asked for a code, not signed in."""
    client = app.test_client()
    page = client.get("/login/")
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
    response = client.post("/login/", data={"csrf_token": token, "username": email, "password": factories.PASSWORD})
    assert response.status_code == 302 and response.location == "/login/code/"
    return client


def code_step(client, value: str, token: str | None = None):
    if token is None:
        page = client.get("/login/code/")
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
    return client.post("/login/code/", data={"csrf_token": token, "code": value})


def actions(user_id: int) -> list[str]:
    with unscoped() as session:
        return list(
            session.scalars(select(Event.action).where(Event.target_id == str(user_id)).order_by(Event.id)).all()
        )


def mfa_rows(user_id: int):
    with unscoped() as session:
        credential = session.scalar(select(MfaCredential).where(MfaCredential.user_id == user_id))
        codes = session.scalar(select(func.count(MfaRecoveryCode.id)))
        return (credential.secret, credential.last_step) if credential else None, codes


# -- enrolment -----------------------------------------------------------------------------------------------------


def test_enrol_with_the_shown_secret_stores_it_encrypted_and_shows_codes_once(
    app, world, reseller_a_admin_client, clock_at
):
    client = reseller_a_admin_client
    user = world.users["reseller_a_admin"]
    assert "Two-factor authentication" in client.get("/").text  # in the name menu
    page = client.get("/profile/two-factor/").text
    secret = re.search(r'data-test="mfa-secret">([A-Z2-7 ]+)</code>', page).group(1).replace(" ", "")
    assert secret in client.get("/profile/two-factor/").text.replace(" ", "")  # a reload keeps the same secret
    assert "<script" not in page.split('data-test="mfa-qr"')[1].split("</div>")[0]  # the QR code is plain SVG

    wrong = client.post("/profile/two-factor/", data={"csrf_token": csrf_token(client), "code": "000000"})
    assert wrong.status_code == 400 and "does not match" in wrong.text
    assert mfa_rows(user.id) == (None, 0)

    response = client.post("/profile/two-factor/", data={"csrf_token": csrf_token(client), "code": code(secret)})
    assert response.location.endswith("/profile/two-factor/recovery-codes")
    shown = client.get("/profile/two-factor/recovery-codes")
    codes = re.findall(r"<li><code>([A-Z0-9-]+)</code></li>", shown.text)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert client.get("/profile/two-factor/recovery-codes").status_code == 302  # shown once

    with unscoped() as session:
        credential = session.scalar(select(MfaCredential).where(MfaCredential.user_id == user.id))
        assert secret not in credential.secret  # encrypted at rest
        assert mfa.decrypt_secret(credential.secret) == secret
        assert credential.account_id == user.account_id
        hashes = set(session.scalars(select(MfaRecoveryCode.code_hash)))
        assert len(hashes) == 10 and not hashes & set(codes) and not any(c.replace("-", "") in hashes for c in codes)
    assert actions(user.id)[-2:] == ["auth.login", "mfa.enrolled"]
    status = client.get("/profile/two-factor/").text
    assert 'data-test="mfa-on"' in status and 'data-test="mfa-codes-left">10<' in status


def test_no_enrolment_while_launched(world, reseller_a_admin_client):
    client = reseller_a_admin_client
    client.post(
        f"/impersonation/start/{world.users['customer_a_master_admin'].membership_id}",
        data={"csrf_token": csrf_token(client)},
    )
    assert client.get("/profile/two-factor/").status_code == 403


# -- signing in ----------------------------------------------------------------------------------------------------


def test_sign_in_asks_for_a_code_after_the_password_and_signs_in_only_then(app, world, login, clock_at):
    user = world.users["reseller_a_admin"]
    secret, _ = enrol(login(user.email))
    with unscoped() as session:
        logins_before = session.get(PortalUser, user.id).login_count
    clock_at.steps(1)

    client = password_step(app, user.email)
    assert client.get("/").location.startswith("/login/")  # not signed in yet
    assert client.get(f"/accounts/{user.account_id}/users").location.startswith("/login/")
    with unscoped() as session:
        assert session.get(PortalUser, user.id).login_count == logins_before  # the password alone is no sign-in

    wrong = code_step(client, "123456" if code(secret) != "123456" else "654321")
    assert wrong.status_code == 400 and "not right" in wrong.text
    assert client.get("/").location.startswith("/login/")

    right = code_step(client, code(secret))
    assert right.status_code == 302 and right.location == "/"
    assert client.get("/").status_code == 200
    with unscoped() as session:
        assert session.get(PortalUser, user.id).login_count == logins_before + 1
    assert actions(user.id)[-4:] == ["mfa.enrolled", "mfa.failed", "mfa.verified", "auth.login"]


def test_the_password_step_expires(app, world, login, clock_at):
    user = world.users["reseller_a_admin"]
    secret, _ = enrol(login(user.email))
    client = password_step(app, user.email)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', client.get("/login/code/").text).group(1)
    clock_at.shift(dt.timedelta(minutes=mfa.PENDING_MINUTES, seconds=1))
    response = code_step(client, code(secret), token)
    assert response.status_code == 302 and response.location == "/login/"
    assert client.get("/login/code/").location == "/login/"
    assert client.get("/").location.startswith("/login/")


def test_a_used_code_cannot_be_used_again(app, world, login, clock_at):
    user = world.users["reseller_a_admin"]
    secret, _ = enrol(login(user.email))
    assert code_step(password_step(app, user.email), code(secret)).status_code == 400  # enrolment's own code
    clock_at.steps(1)
    used = code(secret)
    assert code_step(password_step(app, user.email), used).status_code == 302
    replay = code_step(password_step(app, user.email), used)
    assert replay.status_code == 400 and "used already" in replay.text
    clock_at.steps(-1)  # an earlier step's code, still inside the window, is refused too
    assert code_step(password_step(app, user.email), code(secret)).status_code == 400
    clock_at.steps(2)
    assert code_step(password_step(app, user.email), code(secret)).status_code == 302
    with unscoped() as session:
        reasons = session.scalars(select(Event.summary).where(Event.action == "mfa.failed")).all()
    assert sum("already used" in r for r in reasons) == 3


def test_two_sign_ins_racing_with_one_code_let_one_in(app, world, login, clock_at):
    user = world.users["reseller_a_admin"]
    secret, codes = enrol(login(user.email))
    clock_at.steps(1)
    for value in (code(secret), codes[0]):
        clients = [password_step(app, user.email) for _ in range(2)]
        tokens = [
            re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', c.get("/login/code/").text).group(1)
            for c in clients
        ]
        answers = at_once(
            *(lambda c=c, t=t, v=value: code_step(c, v, t).status_code for c, t in zip(clients, tokens, strict=True))
        )
        assert sorted(answers) == [302, 400], value


def test_a_recovery_code_works_once(app, world, login, clock_at):
    user = world.users["customer_a_master_admin"]  # optional for customer users, and anyone may enrol
    _, codes = enrol(login(user.email))
    client = password_step(app, user.email)
    response = code_step(client, codes[3].lower().replace("-", " "))  # as typed: case and separators do not matter
    assert response.status_code == 302
    assert client.get(response.location, follow_redirects=True).status_code == 200
    again = code_step(password_step(app, user.email), codes[3])
    assert again.status_code == 400
    with unscoped() as session:
        used = session.scalars(select(MfaRecoveryCode).where(MfaRecoveryCode.used_at.is_not(None))).all()
        assert len(used) == 1
        summary = session.scalar(select(Event.summary).where(Event.action == "mfa.recovery_code_used"))
    assert "9 left" in summary
    # Signed in, its first page chose its only account (auth.account_chosen), then the used code was refused.
    assert actions(user.id)[-4:] == ["mfa.recovery_code_used", "auth.login", "auth.account_chosen", "mfa.failed"]


def test_wrong_codes_are_limited_then_allowed_again(app, world, login, clock_at):
    user = world.users["reseller_a_admin"]
    secret, _ = enrol(login(user.email))
    clock_at.steps(1)
    client = password_step(app, user.email)
    wrong = "000000" if code(secret) != "000000" else "111111"
    for _ in range(5):
        assert code_step(client, wrong).status_code == 400
    limited = code_step(client, code(secret))  # even the right code, unread
    assert limited.status_code == 429 and "Too many wrong codes" in limited.text
    other_browser = password_step(app, user.email)  # the limit is the login's, not the browser's
    assert code_step(other_browser, code(secret)).status_code == 429
    assert actions(user.id).count("mfa.failed") == 5 and actions(user.id).count("mfa.limited") == 2

    clock_at.shift(dt.timedelta(minutes=5, seconds=1))
    assert code_step(password_step(app, user.email), code(secret)).status_code == 302


def test_a_session_signed_in_before_enrolling_elsewhere_is_asked_for_a_code(app, world, login, clock_at):
    user = world.users["reseller_a_admin"]
    earlier = login(user.email)
    secret, _ = enrol(login(user.email))
    assert earlier.get("/").location == "/login/code/"
    clock_at.steps(1)
    response = code_step(earlier, code(secret))
    assert response.status_code == 302 and earlier.get("/").status_code == 200


# -- one's own: new codes, turning off -------------------------------------------------------------------------------


def test_new_recovery_codes_replace_the_old_ones(app, world, login, clock_at):
    user = world.users["customer_a_master_admin"]
    client = login(user.email)
    secret, old = enrol(client)
    clock_at.steps(1)
    response = client.post(
        "/profile/two-factor/recovery-codes",
        data={"regenerate-csrf_token": csrf_token(client), "regenerate-code": code(secret)},
    )
    assert response.status_code == 302
    new = re.findall(r"<li><code>([A-Z0-9-]+)</code></li>", client.get(response.location).text)
    assert len(new) == 10 and not set(new) & set(old)
    assert code_step(password_step(app, user.email), old[0]).status_code == 400
    assert code_step(password_step(app, user.email), new[0]).status_code == 302
    assert "mfa.recovery_codes_regenerated" in actions(user.id)


def test_turning_off_needs_a_code_and_is_refused_where_required(app, world, login, clock_at):
    user = world.users["reseller_a_admin"]
    client = login(user.email)
    secret, _ = enrol(client)
    clock_at.steps(1)
    off = {"turn_off-csrf_token": csrf_token(client)}
    assert client.post("/profile/two-factor/off", data={**off, "turn_off-code": "000000"}).status_code == 400
    app.config["MFA_REQUIRED"] = True
    try:
        refused = client.post("/profile/two-factor/off", data={**off, "turn_off-code": code(secret)})
        assert refused.status_code == 400 and "required" in refused.text
        assert "turn_off-code" not in client.get("/profile/two-factor/").text
    finally:
        app.config["MFA_REQUIRED"] = False
    assert mfa_rows(user.id)[0] is not None
    response = client.post("/profile/two-factor/off", data={**off, "turn_off-code": code(secret)})
    assert response.status_code == 302
    assert mfa_rows(user.id) == (None, 0)
    assert actions(user.id)[-1] == "mfa.disabled"
    assert login(user.email).get("/").status_code == 200  # the password alone again


# -- required mode ---------------------------------------------------------------------------------------------------

PAGES = ["/", "/accountview/list/", "/profile/password", "/eventview/list/"]


def test_required_mode_sends_every_page_to_enrolment_until_enrolled(app, world, login, required, clock_at):
    user = world.users["reseller_a_user"]
    client = login(user.email)  # signed in, but nothing but enrolment
    account = user.account_id
    for path in [*PAGES, f"/accounts/{account}/users", f"/accounts/{account}/products/csp-report"]:
        response = client.get(path)
        assert response.status_code == 302 and response.location == "/profile/two-factor/", path
    suggest = client.get("/search/suggest?q=aar")
    assert suggest.status_code == 403 and suggest.is_json and "Two-factor" in suggest.json["message"]
    assert client.get("/static/js/portal.js").status_code == 200
    page = client.get("/profile/two-factor/")
    assert page.status_code == 200 and 'data-test="mfa-required"' in page.text
    assert '">Cancel</a>' not in page.text  # no way around it

    before = database_fingerprint()
    target = world.users["customer_a_master_admin"].membership_id
    launch = client.post(f"/impersonation/start/{target}", data={"csrf_token": csrf_token(client)})
    assert launch.status_code == 302 and launch.location == "/profile/two-factor/"
    assert database_fingerprint() == before  # no Launch, no event

    enrol(client)
    assert client.get("/").status_code == 200
    launched = client.post(f"/impersonation/start/{target}", data={"csrf_token": csrf_token(client)})
    assert launched.status_code == 302 and "/portal/" in launched.location
    # The launched customer user's own (optional) second factor is not asked: the partner's session passed.
    assert client.get(launched.location).status_code == 200


def test_required_mode_leaves_customer_users_free(app, world, login, required):
    client = login(world.users["customer_a_master_admin"].email)
    assert client.get("/").status_code in (200, 302)
    assert client.get("/", follow_redirects=True).request.path != "/profile/two-factor/"


def test_required_mode_with_mfa_enrolled_signs_in_with_the_code(app, world, login, required, clock_at):
    user = world.users["reseller_a_admin"]
    secret, _ = enrol(login(user.email))
    clock_at.steps(1)
    client = password_step(app, user.email)
    assert code_step(client, code(secret)).status_code == 302
    assert client.get("/").status_code == 200
    assert client.post("/logout/", data={"csrf_token": csrf_token(client)}).status_code == 302


# -- resets ----------------------------------------------------------------------------------------------------------


def _enrolled(login, *names):
    for name in names:
        enrol(login(name))


def _reset_partner(client, world, name):
    user = world.users[name]
    return client.post(
        f"/accounts/{user.account_id}/users/partner/{user.id}/reset-two-factor",
        data={"csrf_token": csrf_token(client), "confirmed": "yes"},
    )


def _reset_customer(client, world, name):
    user = world.users[name]
    return client.post(
        f"/accounts/{user.account_id}/users/customer/{user.id}/reset-two-factor",
        data={"csrf_token": csrf_token(client), "confirmed": "yes"},
    )


def test_a_resellers_csp_admin_resets_its_partner_users_and_customer_logins(app, world, login, clock_at):
    user, customer = world.users["reseller_a_user"], world.users["customer_a_master_admin"]
    _enrolled(login, user.email, customer.email)
    admin = login(world.users["reseller_a_admin"].email)
    tab = admin.get(f"/accounts/{user.account_id}/users").text
    assert tab.count("Reset two-factor") == 1 and f"/users/partner/{user.id}/reset-two-factor" in tab
    assert f"/users/customer/{customer.id}/reset-two-factor" in admin.get(f"/accounts/{customer.account_id}/users").text

    assert _reset_partner(admin, world, "reseller_a_user").status_code == 302
    assert _reset_customer(admin, world, "customer_a_master_admin").status_code == 302
    assert mfa_rows(user.id) == (None, 0) and mfa_rows(customer.id) == (None, 0)
    with unscoped() as session:
        resets = session.scalars(select(Event).where(Event.action == "mfa.reset").order_by(Event.id)).all()
        # A customer-portal login is its reseller's (its second factor with it): the reset is on the owner's log.
        assert [(e.account_id, e.actor_id) for e in resets] == [
            (user.account_id, world.users["reseller_a_admin"].id),
            (world.accounts["reseller_a"].id, world.users["reseller_a_admin"].id),
        ]
    assert login(user.email).get("/").status_code == 200  # the password alone again, until they enrol


def test_a_reset_ends_the_sessions_that_passed_the_old_factor(app, world, login, clock_at):
    user = world.users["reseller_a_user"]
    enrolled = login(user.email)
    enrol(enrolled)  # this session passed the factor that is about to be reset
    assert enrolled.get("/").status_code == 200
    admin = login(world.users["reseller_a_admin"].email)
    clock_at.shift(1)  # the clock is frozen: a reset a second after those sign-ins
    assert _reset_partner(admin, world, "reseller_a_user").status_code == 302
    response = enrolled.get("/")
    assert response.status_code == 302 and "/login/" in response.location
    assert admin.get("/").status_code == 200


def test_an_operator_admin_resets_anyones(app, world, login, clock_at):
    _enrolled(login, world.users["reseller_b_admin"].email, world.users["customer_a_master_admin"].email)
    ops = login(world.users["ops_admin"].email)
    assert _reset_partner(ops, world, "reseller_b_admin").status_code == 302
    assert _reset_customer(ops, world, "customer_a_master_admin").status_code == 302
    with unscoped() as session:
        assert session.scalar(select(func.count(MfaCredential.id))) == 0
        assert session.scalar(select(func.count(Event.id)).where(Event.action == "mfa.reset")) == 2


def test_a_partner_user_cannot_reset(app, world, login, clock_at):
    _enrolled(login, world.users["customer_a_master_admin"].email, world.users["reseller_a_admin"].email)
    partner_user = login(world.users["reseller_a_user"].email)
    account = world.users["customer_a_master_admin"].account_id
    assert "Reset two-factor" not in partner_user.get(f"/accounts/{account}/users").text
    before = database_fingerprint()
    assert _reset_customer(partner_user, world, "customer_a_master_admin").status_code == 403
    assert _reset_partner(partner_user, world, "reseller_a_admin").status_code in (302, 403)  # no Partner Users access
    assert database_fingerprint() == before


def test_another_resellers_admin_gets_404_and_nothing_changes(app, world, login, clock_at):
    _enrolled(login, world.users["customer_a_master_admin"].email, world.users["reseller_a_user"].email)
    other = login(world.users["reseller_b_admin"].email)
    before = database_fingerprint()
    assert _reset_customer(other, world, "customer_a_master_admin").status_code == 404
    assert _reset_partner(other, world, "reseller_a_user").status_code == 404
    # Its own account in the path, the other reseller's user id: still 404.
    own = world.accounts["reseller_b"].id
    for path in (
        f"/accounts/{own}/users/partner/{world.users['reseller_a_user'].id}/reset-two-factor",
        f"/accounts/{own}/users/customer/{world.users['customer_a_master_admin'].id}/reset-two-factor",
    ):
        assert other.post(path, data={"csrf_token": csrf_token(other)}).status_code == 404
    assert database_fingerprint() == before


def test_reset_is_post_with_csrf(app, world, login, clock_at):
    _enrolled(login, world.users["reseller_a_user"].email)
    admin = login(world.users["reseller_a_admin"].email)
    user = world.users["reseller_a_user"]
    path = f"/accounts/{user.account_id}/users/partner/{user.id}/reset-two-factor"
    assert admin.get(path).status_code == 405
    assert admin.post(path).status_code == 400
    assert mfa_rows(user.id)[0] is not None


RESET_TRUTH = [
    ("ops_admin", "reseller_a_admin", True),
    ("ops_admin", "customer_b_master_admin", True),
    ("reseller_a_admin", "reseller_a_user", True),
    ("reseller_a_admin", "customer_a_master_admin", True),
    ("reseller_a_admin", "customer_b_master_admin", False),
    ("reseller_a_admin", "reseller_b_admin", False),
    ("reseller_a_admin", "ops_admin", False),
    ("reseller_a_admin", "reseller_a_admin", False),  # one's own: from the name menu
    ("reseller_a_user", "customer_a_master_admin", False),
    ("customer_a_master_admin", "customer_a_master_admin", False),
    ("reseller_b_admin", "customer_a_master_admin", False),
]


@pytest.mark.parametrize(("actor", "target", "allowed"), RESET_TRUTH)
def test_reset_policy_truth_table(app, world, actor, target, allowed):
    with unscoped() as session:
        decision = mfa.can_reset_mfa(
            actor=session.get(PortalUser, world.users[actor].id), target=session.get(PortalUser, world.users[target].id)
        )
        assert bool(decision) is allowed and (allowed or decision.reason)


def test_the_command_line_resets_operator_staff(app, world, login, clock_at):
    ops = world.users["ops_admin"]
    enrol(login(ops.email))
    result = app.test_cli_runner().invoke(args=["portal", "reset-mfa", ops.email.upper()])
    assert result.exit_code == 0 and "Reset the two-factor authentication" in result.output
    assert mfa_rows(ops.id) == (None, 0)
    with unscoped() as session:
        event = session.scalar(select(Event).where(Event.action == "mfa.reset"))
        assert event.actor_label == "cli:reset-mfa" and event.account_id == ops.account_id
    again = app.test_cli_runner().invoke(args=["portal", "reset-mfa", ops.email])
    assert again.exit_code != 0 and "no two-factor authentication" in again.output
    assert app.test_cli_runner().invoke(args=["portal", "reset-mfa", "nobody@example.com"]).exit_code != 0


def test_with_redis_the_code_limit_is_shared_by_every_process(app, world, login, tmp_path, database_url, clock_at):
    """Two app instances (two workers) on one Redis: wrong codes counted by either add up."""
    import redis

    from tests.conftest import make_app

    redis_url = "redis://127.0.0.1:6379/10"
    redis.Redis.from_url(redis_url).flushdb()
    user = world.users["reseller_a_admin"]
    secret, _ = enrol(login(user.email))
    clock_at.steps(1)
    workers = [make_app(tmp_path / f"worker{n}", database_url, REDIS_URL=redis_url) for n in (1, 2)]
    try:
        wrong = "000000" if code(secret) != "000000" else "111111"
        for n in range(5):
            assert code_step(password_step(workers[n % 2], user.email), wrong).status_code == 400
        assert code_step(password_step(workers[0], user.email), code(secret)).status_code == 429
        assert code_step(password_step(workers[1], user.email), code(secret)).status_code == 429
    finally:
        redis.Redis.from_url(redis_url).flushdb()

"""Server-side sessions: logging out ends a session for good; the session id changes at sign-in."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from app.models.sessions import ServerSession
from tests import factories
from tests.conftest import csrf_token, unscoped

COOKIE = "portal_session"


def _cookie(client) -> str:
    return client.get_cookie(COOKIE).value


def _replay(app, value: str):
    stranger = app.test_client()
    stranger.set_cookie(COOKIE, value)
    return stranger.get("/")


def test_a_cookie_replayed_after_logout_gets_the_login_page(app, world, reseller_a_admin_client):
    captured = _cookie(reseller_a_admin_client)
    assert _replay(app, captured).status_code == 200  # the captured cookie is a live session
    reseller_a_admin_client.post("/logout/", data={"csrf_token": csrf_token(reseller_a_admin_client)})
    replay = _replay(app, captured)
    assert replay.status_code == 302 and "/login/" in replay.location


def test_logout_deletes_the_stored_session(app, world, reseller_a_admin_client):
    with unscoped() as session:
        before = session.scalar(select(func.count(ServerSession.id)))
    reseller_a_admin_client.post("/logout/", data={"csrf_token": csrf_token(reseller_a_admin_client)})
    with unscoped() as session:
        assert session.scalar(select(func.count(ServerSession.id))) == before - 1


def test_the_session_id_changes_at_sign_in(app, world):
    client = app.test_client()
    page = client.get("/login/")
    anonymous_id = _cookie(client)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
    client.post(
        "/login/",
        data={"csrf_token": token, "username": world.users["reseller_a_admin"].email, "password": factories.PASSWORD},
    )
    signed_in_id = _cookie(client)
    assert signed_in_id != anonymous_id
    assert client.get("/").status_code == 200
    # The id a visitor had before signing in (which an attacker could have planted) is not signed in.
    assert _replay(app, anonymous_id).status_code == 302


def test_the_cookie_holds_only_an_id(world, reseller_a_admin_client):
    value = _cookie(reseller_a_admin_client)
    assert "." not in value and world.users["reseller_a_admin"].email not in value


def test_wrong_password_is_refused_and_recorded(app, world, login):
    client = app.test_client()
    page = client.get("/login/")
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
    response = client.post(
        "/login/", data={"csrf_token": token, "username": "admin@alpha.example", "password": "not the password at all"}
    )
    assert "/login/" in response.location
    assert client.get("/").status_code == 302
    from app.models.events import Event

    with unscoped() as session:
        assert session.scalar(select(func.count(Event.id)).where(Event.action == "auth.login_failed")) == 1


@pytest.mark.parametrize("email", ["ADMIN@Alpha.Example", "  admin@alpha.example "])
def test_sign_in_email_is_case_insensitive(world, login, email):
    assert login(email).get("/").status_code == 200


@pytest.mark.parametrize(
    ("next_url", "lands_on"), [("http://evil.example/steal", "/"), ("/accountview/list/", "/accountview/list/")]
)
def test_sign_in_redirects_only_to_safe_hosts(app, world, next_url, lands_on):
    client = app.test_client()
    page = client.get("/login/")
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
    response = client.post(
        f"/login/?next={next_url}",
        data={"csrf_token": token, "username": world.users["reseller_a_admin"].email, "password": factories.PASSWORD},
    )
    assert response.status_code == 302
    assert response.location == lands_on


def test_signing_out_is_a_post(world, reseller_a_admin_client):
    asked = reseller_a_admin_client.get("/logout/")
    assert asked.status_code == 200 and "Sign out?" in asked.text
    assert reseller_a_admin_client.get("/").status_code == 200  # still signed in
    assert reseller_a_admin_client.post("/logout/").status_code == 400  # no CSRF token
    assert reseller_a_admin_client.get("/").status_code == 200

"""With REDIS_URL set, sessions live in Redis (the machine's real server) and still end at logout."""

from __future__ import annotations

import re

import redis

from tests import factories
from tests.conftest import csrf_token, make_app

REDIS_URL = "redis://127.0.0.1:6379/15"


def test_sessions_in_redis_end_at_logout(tmp_path, database_url, world, app):
    store = redis.Redis.from_url(REDIS_URL)
    store.flushdb()
    environ_app = make_app(tmp_path, database_url, SESSION_STORE="redis", REDIS_URL=REDIS_URL)
    try:
        client = environ_app.test_client()
        page = client.get("/login/")
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
        client.post(
            "/login/",
            data={
                "csrf_token": token,
                "username": world.users["reseller_a_admin"].email,
                "password": factories.PASSWORD,
            },
        )
        captured = client.get_cookie("portal_session").value
        assert store.exists(f"session:{captured}")
        assert client.get("/").status_code == 200
        client.post("/logout/", data={"csrf_token": csrf_token(client)})
        assert not store.exists(f"session:{captured}")
        stranger = environ_app.test_client()
        stranger.set_cookie("portal_session", captured)
        assert stranger.get("/").status_code == 302
    finally:
        store.flushdb()

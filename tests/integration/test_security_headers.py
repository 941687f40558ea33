"""What every response tells the browser (CSP with nonces, no framing, no sniffing, no caching of signed-in pages,
HSTS on https), and which Host headers the portal answers — a forged Host never reaches an emailed link."""

from __future__ import annotations

import re

import pytest

from app.models.events import Event
from tests.conftest import csrf_token, make_app, unscoped
from tests.mail import body_of, mail_through_smtp, smtp_server, wait_for_mail

# The walkthrough's pages, signed in as each kind of user (the customer portal's through its own master admin).
PARTNER_PAGES = [
    "/",
    "/accountview/list/",
    "/eventview/list/",
    "/productview/list/",
    "/search/?q=a",
    "/profile/password",
    "/subscriptionview/list/",
    "/accounts/{reseller_a}/details",
    "/accounts/{customer_a}/details",
    "/accounts/{customer_a}/users",
    "/accounts/{customer_a}/events",
    "/accounts/{customer_a}/products/csp-report",
    "/accounts/{customer_a}/products/usage-chart",
    "/accounts/{reseller_a}/sub-accounts",
]
CUSTOMER_PAGES = [
    "/portal/{customer_a}/",
    "/portal/{customer_a}/services/microsoft-csp",
    "/portal/{customer_a}/users",
    "/portal/{customer_a}/events",
]
ANONYMOUS_PAGES = ["/login/", "/activate/forgot", "/activate/not-a-token", "/no-such-page"]


def _urls(world, paths):
    ids = {name: account.id for name, account in world.accounts.items()}
    return [path.format(**ids) for path in paths]


def _assert_secure_headers(response, path):
    policy = response.headers.get("Content-Security-Policy", "")
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
    script = directives.get("script-src", "")
    assert "'self'" in script and re.search(r"'nonce-[A-Za-z0-9_-]{16,}'", script), (path, policy)
    assert "unsafe-inline" not in script and "unsafe-eval" not in script, (path, policy)
    assert directives.get("frame-ancestors") == "'none'" and directives.get("object-src") == "'none'", (path, policy)
    assert response.headers.get("X-Frame-Options") == "DENY", path
    assert response.headers.get("X-Content-Type-Options") == "nosniff", path
    assert response.headers.get("Referrer-Policy") == "same-origin", path
    assert response.headers.get("Cache-Control") == "no-store", path
    assert "Strict-Transport-Security" not in response.headers, path  # the test app's base URL is http


def _inline_scripts_carry_the_nonce(response):
    nonce = re.search(r"'nonce-([^']+)'", response.headers["Content-Security-Policy"]).group(1)
    for tag in re.findall(r"<script\b[^>]*>", response.text):
        if "src=" not in tag:
            assert f'nonce="{nonce}"' in tag, tag


def test_every_page_of_the_walkthrough_has_the_security_headers(app, world, login):
    partner = login(world.users["reseller_a_admin"].email)
    for path in _urls(world, PARTNER_PAGES):
        response = partner.get(path)
        assert response.status_code == 200, path
        _assert_secure_headers(response, path)
        _inline_scripts_carry_the_nonce(response)
    customer = login(world.users["customer_a_master_admin"].email)
    for path in _urls(world, CUSTOMER_PAGES):
        response = customer.get(path)
        assert response.status_code == 200, path
        _assert_secure_headers(response, path)
    for path in ANONYMOUS_PAGES:
        response = app.test_client().get(path)
        assert response.status_code in (200, 404, 410), path
        _assert_secure_headers(response, path)


def test_fab_list_pages_inline_scripts_get_this_responses_nonce(world, login):
    client = login(world.users["ops_admin"].email)
    first, second = client.get("/accountview/list/"), client.get("/accountview/list/")
    assert re.search(r"<script nonce=", first.text)  # FAB's list widget has inline scripts
    _inline_scripts_carry_the_nonce(first)
    nonce = re.compile(r"'nonce-([^']+)'")
    assert nonce.search(first.headers["Content-Security-Policy"]).group(1) != nonce.search(
        second.headers["Content-Security-Policy"]
    ).group(1)


def test_static_files_may_be_cached(app):
    response = app.test_client().get("/static/js/portal.js")
    assert response.status_code == 200 and response.headers.get("Cache-Control") != "no-store"


def test_https_base_url_adds_hsts_and_secure_cookies(tmp_path, database_url, world):
    # What config.load derives from an https base URL (the overrides above bypass it): HSTS and Secure cookies.
    from config import load

    derived = load({"PORTAL_INSTANCE_PATH": str(tmp_path), "PORTAL_BASE_URL": "https://partner.example"})
    assert derived["HSTS"] is True and derived["SESSION_COOKIE_SECURE"] is True
    assert "partner.example" in derived["TRUSTED_HOSTS"]
    secure = make_app(
        tmp_path,
        database_url,
        PORTAL_BASE_URL="https://partner.example",
        HSTS=True,
        SESSION_COOKIE_SECURE=True,
        TRUSTED_HOSTS=["partner.example"],
    )
    client = secure.test_client()
    response = client.get("/login/", base_url="https://partner.example")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', response.text).group(1)
    signed_in = client.post(
        "/login/",
        data={"csrf_token": token, "username": world.users["reseller_a_admin"].email, "password": "x" * 20},
        base_url="https://partner.example",
        headers={"Referer": "https://partner.example/login/"},
    )
    assert "Secure" in signed_in.headers.get("Set-Cookie", "") or "Secure" in response.headers.get("Set-Cookie", "")


# -- the Host header ---------------------------------------------------------------------------------------------


def _ask_for_reset(app, email, page_host=None, **headers):
    visitor = app.test_client()
    page = visitor.get("/activate/forgot", headers={"Host": page_host} if page_host else {})
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
    response = visitor.post("/activate/forgot", data={"csrf_token": token, "email": email}, headers=headers)
    wait_for_mail()  # the mail outbox sends it after the answer
    return response


def test_a_forged_host_is_refused_and_no_reset_mail_goes_out(app, world):
    victim = world.users["customer_a_master_admin"].email
    with smtp_server() as (inbox, port), mail_through_smtp(app, port):
        response = _ask_for_reset(app, victim, Host="evil.example")
        assert response.status_code == 400 and response.text == "Unknown host.\n"
        assert inbox.messages == []
        # A proxy header is not believed without PROXY_COUNT: the link still goes to the configured base URL.
        response = _ask_for_reset(app, victim, **{"X-Forwarded-Host": "evil.example"})
    assert response.status_code == 302
    assert len(inbox.messages) == 1
    body = body_of(inbox.messages[0])
    assert "evil.example" not in body
    assert re.search(r"http://127\.0\.0\.1:5000/activate/\S+", body)


def test_emailed_links_use_the_base_url_whatever_host_the_request_came_to(app, world, login, monkeypatch):
    monkeypatch.setitem(app.config, "PORTAL_BASE_URL", "https://partner.mycloudstore.co.nz")
    victim = world.users["customer_a_master_admin"].email
    with smtp_server() as (inbox, port), mail_through_smtp(app, port):
        _ask_for_reset(app, victim, page_host="127.0.0.1:5000", Host="127.0.0.1:5000")
    assert re.search(r"https://partner\.mycloudstore\.co\.nz/activate/\S+", body_of(inbox.messages[0]))


@pytest.mark.parametrize("host", ["evil.example", "127.0.0.1.evil.example", "localhost@evil.example"])
def test_unknown_hosts_get_400_on_every_page(app, host):
    response = app.test_client().get("/login/", headers={"Host": host})
    assert response.status_code == 400 and response.text == "Unknown host.\n"


@pytest.mark.parametrize(("proxies", "recorded"), [(1, "203.0.113.7"), (0, "127.0.0.1")])
def test_forwarded_for_is_believed_only_behind_a_configured_proxy(tmp_path, database_url, world, proxies, recorded):
    """With PROXY_COUNT=1 the client address in events (and rate limits) is the proxy's X-Forwarded-For; without it, a
    client cannot choose its own address."""
    client = make_app(tmp_path, database_url, PROXY_COUNT=proxies).test_client()
    page = client.get("/login/")
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
    client.post(
        "/login/",
        data={"csrf_token": token, "username": world.users["reseller_a_admin"].email, "password": "wrong password"},
        headers={"X-Forwarded-For": "203.0.113.7"},
    )
    with unscoped() as session:
        addresses = {e.client_address for e in session.query(Event).filter(Event.action == "auth.login_failed")}
    assert addresses == {recorded}


def test_a_framing_attempt_is_refused_by_policy(world, login):
    client = login(world.users["reseller_a_admin"].email)
    response = client.get(f"/accounts/{world.accounts['customer_a'].id}/users")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert csrf_token(client)  # the page still works for its own user

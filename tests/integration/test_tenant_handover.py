"""Handing a new tenant over (issue 15): its first global admin's user name and temporary password are shown once to
whoever created it, and reach the customer's master admin through a one-time link that expires. The password is in no
table, no log line and no mail; the link's GET does not use it up (mail scanners follow links); a second opening, an
expired link and a wrong token show nothing."""

from __future__ import annotations

import datetime as dt
import html
import logging
import re

import time_machine
from sqlalchemy import delete, select

from app.models.accounts import Account, CredentialHandover, PlaceholderUser
from app.models.events import Event
from app.models.outbox import OutboxMail
from app.models.subscriptions import M365User
from app.services import handover
from tests import factories
from tests.conftest import csrf_token, unscoped
from tests.integration.test_operations_recovery import _nowhere
from tests.integration.test_scoping import database_fingerprint
from tests.integration.test_tenants import _form, _submit
from tests.mail import body_of, mail_through_smtp, smtp_server

MASTER = "mara@anchormarine.example"


def link_in(message) -> str:
    """The path of the hand-over link in a message."""
    url = re.search(r"https?://[^\s\"<>]+/handover/[^\s\"<>]+", body_of(message)).group(0)
    return re.sub(r"^https?://[^/]+", "", url)


def _form_token(client, link: str) -> str:
    """The CSRF token of the visitor's session, from the link page's form (the visitor is not signed in)."""
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(link).text).group(1)


def _with_master_admin(world) -> int:
    customer = world.accounts["customer_a2"].id
    with unscoped() as session:
        factories.user(session.get(Account, customer), MASTER, "Mara", "Anchor", master_admin=True)
        session.commit()
    return customer


def _shown(response) -> tuple[str, str]:
    page = html.unescape(response.text)
    user = re.search(r'data-test="admin-user-name">([^<]+)<', page).group(1)
    password = re.search(r'data-test="admin-password">([^<]+)<', page).group(1)
    return user, password


def _create(world, client) -> tuple[int, str, str, object]:
    customer = _with_master_admin(world)
    response = _submit(client, customer, _form(client, customer))
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    user, password = _shown(response)
    return customer, user, password, response


def test_the_admin_is_shown_once_and_its_password_is_in_no_table_log_or_mail(
    app, world, reseller_a_admin_client, caplog
):
    caplog.set_level(logging.DEBUG)
    with smtp_server() as (inbox, port), mail_through_smtp(app, port):
        customer, user, password, response = _create(world, reseller_a_admin_client)
    assert user == "admin@anchormarine.onmicrosoft.com" and len(password) >= 16
    assert f"on its way to Anchor Marine's master admin ({MASTER})" in html.unescape(response.text)
    # Once: the tenant's page afterwards, and the same form sent again, show no password
    assert password not in reseller_a_admin_client.get(f"/accounts/{customer}/products/microsoft-tenant").text
    (message,) = inbox.messages
    assert message["X-Envelope-To"] == MASTER and "anchormarine.onmicrosoft.com" in message["Subject"]
    assert user in body_of(message) and "/handover/" in link_in(message)
    assert password not in message.as_string()
    _nowhere(password)  # not in the hand-over row, the outbox, an operation, an event, a session
    assert password not in caplog.text
    with unscoped() as session:
        row = session.scalars(select(CredentialHandover).where(CredentialHandover.account_id == customer)).one()
        assert row.secret and row.opened_at is None and row.recipient_email == MASTER
        token = link_in(message).rsplit("/", 1)[1]
        assert token not in (row.token_hash, row.secret)  # only the token's hash is kept
        admin = session.scalars(select(M365User).where(M365User.user_principal_name == user)).one()
        assert admin.account_id == customer and admin.provider_user_id  # listed with the tenant's users
        assert "tenant.credentials_sent" in session.scalars(select(Event.action).where(Event.account_id == customer))


def test_the_link_shows_the_password_once_then_never_again(app, world, reseller_a_admin_client):
    with smtp_server() as (inbox, port), mail_through_smtp(app, port):
        customer, user, password, _ = _create(world, reseller_a_admin_client)
    link = link_in(inbox.messages[0])
    visitor = app.test_client()  # not signed in: the link is the credential
    first = visitor.get(link)
    assert first.status_code == 200 and password not in first.text and "Show the temporary password" in first.text
    assert visitor.get(link).status_code == 200  # a GET (a mail scanner) does not use it up
    token = _form_token(visitor, link)
    tab = reseller_a_admin_client.get(f"/accounts/{customer}/products/microsoft-tenant").text
    assert 'data-test="handovers"' in tab and MASTER in tab and "Not opened yet" in tab
    opened = visitor.post(link, data={"csrf_token": token})
    assert opened.status_code == 200 and opened.headers["Cache-Control"] == "no-store"
    assert html.unescape(re.search(r'data-test="password">([^<]+)<', opened.text).group(1)) == password
    again = visitor.post(link, data={"csrf_token": token})
    assert again.status_code == 410 and password not in again.text and "already been used" in again.text
    assert visitor.get(link).status_code == 410
    assert "Opened " in reseller_a_admin_client.get(f"/accounts/{customer}/products/microsoft-tenant").text
    with unscoped() as session:
        row = session.scalars(select(CredentialHandover).where(CredentialHandover.account_id == customer)).one()
        assert row.secret is None and row.opened_at is not None  # erased when opened
        assert session.scalars(select(Event).where(Event.action == "tenant.credentials_opened")).one()
    _nowhere(password)


def test_an_expired_link_shows_nothing_and_its_password_is_erased(app, world, reseller_a_admin_client):
    with smtp_server() as (inbox, port), mail_through_smtp(app, port):
        customer, _user, password, _ = _create(world, reseller_a_admin_client)
    link = link_in(inbox.messages[0])
    visitor = app.test_client()
    token = _form_token(visitor, link)
    hours = app.config["HANDOVER_LINK_HOURS"]
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(hours=hours, minutes=1)):
        assert visitor.get(link).status_code == 410
        assert "expired" in visitor.get(link).text
        expired = visitor.post(link, data={"csrf_token": token})  # (its CSRF token may have expired too: 400)
        assert expired.status_code in (400, 410) and password not in expired.text
        with app.app_context():
            assert handover.purge_expired() == 1
    with unscoped() as session:
        row = session.scalars(select(CredentialHandover).where(CredentialHandover.account_id == customer)).one()
        assert row.secret is None and row.opened_at is None


def test_a_wrong_or_tampered_token_shows_nothing_and_changes_nothing(app, world, reseller_a_admin_client):
    with smtp_server() as (inbox, port), mail_through_smtp(app, port):
        _create(world, reseller_a_admin_client)
    link = link_in(inbox.messages[0])
    visitor = app.test_client()
    token = _form_token(visitor, link)
    before = database_fingerprint()
    for bad in (link[:-1] + ("A" if link[-1] != "A" else "B"), "/handover/x", "/handover/" + "a" * 400):
        assert visitor.get(bad).status_code in (404, 410)
        assert visitor.post(bad, data={"csrf_token": token}).status_code in (404, 410)
    assert visitor.post(link, data={}).status_code == 400  # no CSRF token: refused, nothing shown
    assert database_fingerprint() == before


def _placeholder(customer: int, email: str | None) -> None:
    with unscoped() as session:
        session.execute(delete(PlaceholderUser).where(PlaceholderUser.account_id == customer))
        if email:
            session.add(PlaceholderUser(account_id=customer, email=email))
        session.commit()


def _mailed() -> list[str]:
    with unscoped() as session:
        return sorted(session.scalars(select(OutboxMail.recipient).where(OutboxMail.kind == handover.MAIL_KIND)))


def test_with_no_master_admin_login_the_placeholder_gets_the_link(app, world, reseller_a_admin_client):
    customer = world.accounts["customer_a2"].id
    _placeholder(customer, "itsupport@reseller-a.example")  # what Add Sub Account took
    response = _submit(reseller_a_admin_client, customer, _form(reseller_a_admin_client, customer))
    assert response.status_code == 200 and 'data-test="handover-mailed"' in response.text
    assert _mailed() == ["itsupport@reseller-a.example"]


def test_the_operators_default_address_is_nobodys_mailbox_the_creator_is_told(app, world, reseller_a_admin_client):
    customer = world.accounts["customer_a2"].id
    _placeholder(customer, app.config["DEFAULT_MASTER_ADMIN_EMAIL"])
    response = _submit(reseller_a_admin_client, customer, _form(reseller_a_admin_client, customer))
    assert response.status_code == 200 and 'data-test="handover-not-mailed"' in response.text
    assert 'data-test="admin-password"' in response.text and _mailed() == []
    with unscoped() as session:
        assert session.scalars(select(CredentialHandover)).all() == []
        assert session.scalars(select(Event).where(Event.action == "tenant.credentials_shown")).one()


def test_another_reseller_cannot_see_the_hand_over_rows(world, reseller_a_admin_client, reseller_b_admin_client):
    customer, _user, _password, _ = _create(world, reseller_a_admin_client)
    client = reseller_b_admin_client
    before = database_fingerprint()
    assert client.get(f"/accounts/{customer}/products/microsoft-tenant").status_code == 404
    assert client.post(
        f"/accounts/{customer}/microsoft-tenant/retry", data={"csrf_token": csrf_token(client)}
    ).status_code == 404
    assert database_fingerprint() == before

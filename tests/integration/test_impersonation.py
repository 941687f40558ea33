"""Launch (CP3): the policy's truth table, POST and CSRF only, session ids, the banner, Return, expiry, logout,
both event logs, the untouched last login, and never more than both roles allow."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import time_machine
from sqlalchemy import select

from app.models.accounts import Account
from app.models.events import Event
from app.models.subscriptions import M365User, Subscription
from security.impersonation import can_impersonate
from security.models import Membership, PortalUser
from tests import factories, ordering_steps
from tests.conftest import csrf_token, unscoped
from tests.integration.test_scoping import database_fingerprint

COOKIE = "portal_session"


@pytest.fixture
def people(world):
    """Extra targets: a disabled customer user, one not enabled for CP3, B's master admin."""
    with unscoped() as session:
        customer = session.get(Account, world.accounts["customer_a"].id)
        disabled = factories.user(customer, "disabled@aardvark.example", cp3_enabled=True)
        disabled.active = False
        not_cp3 = factories.user(customer, "notcp3@aardvark.example")
        session.commit()
        return {
            "disabled": factories._named_user(disabled),
            "not_cp3": factories._named_user(not_cp3),
        }


def _target(world, people, name) -> factories.Named:
    return people.get(name) or world.users[name]


def _target_membership(session, world, people, name) -> Membership:
    """What a Launch (CP3) acts on: the target's membership. Staff logins have none; the policy still gets one to
    judge (never saved), in their own account, so its refusal of staff targets stays tested."""
    named = _target(world, people, name)
    if named.membership_id:
        return session.get(Membership, named.membership_id)
    login = session.get(PortalUser, named.id)
    assert login.portal != "customer" and not login.memberships
    with session.no_autoflush:
        membership = Membership(account=login.account, user_id=login.id, cp3_enabled=True, active=True)
        membership.user = login  # in memory only: the test's session is rolled back
    return membership


TRUTH = [
    # actor, target, allowed
    ("ops_admin", "customer_a_master_admin", True),
    ("ops_admin", "customer_b_master_admin", True),
    ("reseller_a_admin", "customer_a_master_admin", True),
    ("reseller_a_user", "customer_a_master_admin", True),
    ("reseller_b_admin", "customer_a_master_admin", False),  # not its customer
    ("reseller_a_admin", "customer_b_master_admin", False),
    ("reseller_a_admin", "reseller_a_user", False),  # partner users cannot be launched as
    ("reseller_a_admin", "ops_admin", False),  # nor operator staff
    ("customer_a_master_admin", "customer_b_master_admin", False),  # customers launch nobody
    ("reseller_a_admin", "disabled", False),
    ("reseller_a_admin", "not_cp3", False),
    ("reseller_a_admin", "reseller_a_admin", False),
]


@pytest.mark.parametrize(("actor", "target", "allowed"), TRUTH)
def test_policy_truth_table(app, world, people, actor, target, allowed):
    with unscoped() as session, session.no_autoflush:
        decision = can_impersonate(
            actor=session.get(PortalUser, world.users[actor].id),
            target=_target_membership(session, world, people, target),
        )
    assert bool(decision) is allowed, decision.reason
    assert allowed or decision.reason


@pytest.mark.parametrize(("actor", "target", "allowed"), TRUTH)
def test_launch_over_http_follows_the_policy(app, world, people, login, actor, target, allowed):
    client = login(world.users[actor].email)
    token = csrf_token(client)  # a customer login's first page chooses its account (an event): before the snapshot
    before = database_fingerprint()
    # A staff login has no membership to launch (``membership_id`` 0): nothing there to start, a 404.
    response = client.post(
        f"/impersonation/start/{_target(world, people, target).membership_id}", data={"csrf_token": token}
    )
    if allowed:
        assert response.status_code == 302 and response.location.startswith("/portal/")
    else:
        assert response.status_code in (302, 403, 404)
        assert not (response.location or "").startswith("/portal/")
        assert client.get("/portal/0/").status_code in (302, 403, 404)
        assert database_fingerprint() == before


def _launch(client, world, target="customer_a_master_admin"):
    membership_id = world.users[target].membership_id
    return client.post(f"/impersonation/start/{membership_id}", data={"csrf_token": csrf_token(client)})


def test_launch_is_post_with_csrf_only(world, reseller_a_admin_client):
    target = world.users["customer_a_master_admin"].membership_id
    assert reseller_a_admin_client.get(f"/impersonation/start/{target}").status_code == 405
    assert reseller_a_admin_client.post(f"/impersonation/start/{target}").status_code == 400
    assert reseller_a_admin_client.get("/impersonation/stop").status_code == 405


def test_banner_on_every_customer_page_and_return(app, world, reseller_a_admin_client):
    client = reseller_a_admin_client
    before_id = client.get_cookie(COOKIE).value
    response = _launch(client, world)
    customer = world.accounts["customer_a"].id
    assert response.location == f"/portal/{customer}/"
    during_id = client.get_cookie(COOKIE).value
    assert during_id != before_id  # renewed on start
    sub = world.rows["a"]["subscription"]
    for path in (
        f"/portal/{customer}/",
        f"/portal/{customer}/services/microsoft-csp",
        f"/portal/{customer}/services/microsoft-csp/subscriptions/{sub}",
        f"/portal/{customer}/users",
        f"/portal/{customer}/events",
    ):
        page = client.get(path)
        assert page.status_code == 200, path
        banner = page.text.split('data-test="impersonation-banner"')[1].split("</div>")[0]
        assert "Signed in to <strong>Aardvark Farms</strong> as <strong>Mara Master</strong>" in banner
        assert "by <strong>Ari Admin</strong>" in banner and "Return to partner portal" in banner
    returned = client.post("/impersonation/stop", data={"csrf_token": csrf_token(client, f"/portal/{customer}/")})
    assert returned.location == f"/accounts/{customer}/users"
    assert client.get_cookie(COOKIE).value not in (before_id, during_id)  # renewed on return
    assert client.get(f"/accounts/{customer}/users").status_code == 200  # the partner again
    assert client.get(f"/portal/{customer}/").status_code == 403


def test_a_cookie_from_the_visit_does_not_act_as_the_customer_after_return(app, world, reseller_a_admin_client):
    client = reseller_a_admin_client
    _launch(client, world)
    customer = world.accounts["customer_a"].id
    captured = client.get_cookie(COOKIE).value
    client.post("/impersonation/stop", data={"csrf_token": csrf_token(client, f"/portal/{customer}/")})
    replay = app.test_client()
    replay.set_cookie(COOKIE, captured)
    response = replay.get(f"/portal/{customer}/")
    assert response.status_code == 302 and "/login/" in response.location


def test_both_event_logs_show_it_and_last_login_is_untouched(world, reseller_a_admin_client):
    target = world.users["customer_a_master_admin"]
    with unscoped() as session:
        before = session.get(PortalUser, target.id).last_login
    _launch(reseller_a_admin_client, world)
    customer = world.accounts["customer_a"].id
    reseller_a_admin_client.post(
        "/impersonation/stop", data={"csrf_token": csrf_token(reseller_a_admin_client, f"/portal/{customer}/")}
    )
    with unscoped() as session:
        assert session.get(PortalUser, target.id).last_login == before
        for action in ("impersonation.started", "impersonation.ended"):
            logged = set(session.scalars(select(Event.account_id).where(Event.action == action)))
            assert logged == {customer, world.accounts["reseller_a"].id}, action


def test_changes_while_launched_record_both_people(world, reseller_a_admin_client):
    customer = world.accounts["customer_a"].id
    _launch(reseller_a_admin_client, world)
    token = csrf_token(reseller_a_admin_client, f"/portal/{customer}/")
    reseller_a_admin_client.post(f"/portal/{customer}/widgets", data={"csrf_token": token, "widget": "licences"})
    with unscoped() as session:
        event = session.scalars(select(Event).where(Event.action == "dashboard.widget_added")).one()
        assert event.actor_id == world.users["customer_a_master_admin"].id
        assert event.on_behalf_of_id == world.users["reseller_a_admin"].id


def test_a_partner_user_launched_as_master_admin_still_cannot_order(world, login):
    customer = world.accounts["customer_a"].id
    for who, allowed in (("reseller_a_user", False), ("reseller_a_admin", True)):
        client = login(world.users[who].email)
        _launch(client, world)
        page = client.get(f"/portal/{customer}/services/microsoft-csp").text
        assert ("Add a subscription" in page) is allowed
        form = ordering_steps.product_form(world.rows["products"]["basic"])
        reviewed = ordering_steps.review(client, customer, form, 1)
        assert (reviewed.status_code == 200) is allowed and (reviewed.status_code == 403) is not allowed
        fields = {"availability_id": "1", "quantity": "1", "reviewed_price": "9.00", "submission_key": "f" * 32}
        if allowed:
            fields = ordering_steps.hidden_fields(reviewed.text)
        response = ordering_steps.place(client, customer, fields)
        assert (response.status_code == 302) is allowed and (response.status_code == 403) is not allowed


def test_a_partner_user_launched_as_master_admin_helps_with_users_and_licences(world, login):
    """What costs money needs the CSP Admin; who holds a licence, and the customer's Microsoft 365 users, do not."""
    customer = world.accounts["customer_a"].id
    client = login(world.users["reseller_a_user"].email)
    _launch(client, world)
    token = csrf_token(client, f"/portal/{customer}/")
    added = client.post(
        f"/portal/{customer}/services/microsoft-csp/users",
        data={"csrf_token": token, "first_name": "Hana", "last_name": "Help", "username": "hana"},
    )
    assert added.status_code == 200 and 'data-test="password"' in added.text  # its temporary password, shown once
    with unscoped() as session:
        hana = session.scalars(select(M365User).where(M365User.user_principal_name.like("hana@%"))).one().id
        sub = session.get(Subscription, world.rows["a"]["subscription2"])
        sub_id, quantity, assigned = sub.id, sub.quantity, sub.assigned
    assert assigned < quantity  # a free licence to give
    path = f"/portal/{customer}/services/microsoft-csp/subscriptions/{sub_id}"
    response = client.post(f"{path}/assign", data={"csrf_token": token, "m365_user_id": str(hana)})
    assert response.status_code == 302
    refused = client.post(f"{path}/quantity", data={"csrf_token": token, "quantity": str(quantity + 5)})
    assert refused.status_code == 403
    with unscoped() as session:
        after = session.get(Subscription, sub_id)
        assert (after.assigned, after.quantity) == (assigned + 1, quantity)


def test_while_launched_the_partner_portal_is_closed(world, reseller_a_admin_client):
    _launch(reseller_a_admin_client, world)
    for path in ("/accountview/list/", f"/accounts/{world.accounts['customer_a'].id}/users", "/search/?q=a"):
        assert reseller_a_admin_client.get(path).status_code == 403


def test_no_nesting(world, reseller_a_admin_client):
    _launch(reseller_a_admin_client, world)
    response = _launch(reseller_a_admin_client, world, "customer_a_master_admin")
    assert response.status_code in (403, 409)


def test_the_customers_own_email_stays_theirs(world, reseller_a_admin_client):
    customer = world.accounts["customer_a"].id
    target = world.users["customer_a_master_admin"]
    _launch(reseller_a_admin_client, world)
    response = reseller_a_admin_client.post(
        f"/portal/{customer}/users/{target.id}/edit",
        data={
            "csrf_token": csrf_token(reseller_a_admin_client, f"/portal/{customer}/"),
            "first_name": "Mara",
            "last_name": "Master",
            "email": "hijacked@partner.example",
            "admin": "y",
            "master_admin": "y",
        },
    )
    assert response.status_code == 403 and "stays theirs" in response.text
    with unscoped() as session:
        assert session.get(PortalUser, target.id).email == target.email


def test_it_expires(world, reseller_a_admin_client, app):
    customer = world.accounts["customer_a"].id
    _launch(reseller_a_admin_client, world)
    assert reseller_a_admin_client.get(f"/portal/{customer}/").status_code == 200
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=app.config["IMPERSONATION_MINUTES"] + 1)
    with time_machine.travel(later, tick=False):
        response = reseller_a_admin_client.get(f"/portal/{customer}/")
        assert response.status_code == 302 and response.location == f"/accounts/{customer}/users"
        assert reseller_a_admin_client.get(f"/accounts/{customer}/users").status_code == 200
    with unscoped() as session:
        ended = session.scalars(select(Event.summary).where(Event.action == "impersonation.ended")).first()
        assert "expired after 60 minutes" in ended


def _events(action: str) -> list[tuple[int, str]]:
    with unscoped() as session:
        return [
            (e.account_id, e.summary)
            for e in session.scalars(select(Event).where(Event.action == action).order_by(Event.id))
        ]


def test_logout_while_launched_ends_the_launch_and_returns_to_the_partner_portal(app, world, reseller_a_admin_client):
    """Logout in a launched customer portal is Return to partner portal: the visit ends (an event on both sides) and
    the partner user is still signed in as themselves, on the customer's Users tab."""
    client, customer = reseller_a_admin_client, world.accounts["customer_a"].id
    _launch(client, world)
    captured = client.get_cookie(COOKIE).value
    signed_out = _events("auth.logout")
    asked = client.get("/logout/")  # an old link or bookmark: asked first, in the visit's words
    assert "Leave the customer portal?" in asked.text and "still signed in as admin@alpha.example" in asked.text
    response = client.post("/logout/", data={"csrf_token": csrf_token(client, f"/portal/{customer}/")})
    assert response.status_code == 302 and response.location == f"/accounts/{customer}/users"
    page = client.get(response.location)
    assert page.status_code == 200 and "back in the partner portal, still signed in" in page.text
    assert 'data-user="' in page.text and "Return to partner portal" not in page.text
    assert client.get("/").status_code == 200  # signed in as Simon, in the partner portal
    assert client.get(f"/portal/{customer}/").status_code == 403  # no longer launched
    ended = _events("impersonation.ended")
    assert {account for account, _ in ended} == {customer, world.accounts["reseller_a"].id}
    assert all("logged out of the customer portal" in summary for _, summary in ended)
    assert _events("auth.logout") == signed_out  # nobody signed out
    replay = app.test_client()  # the launched session's cookie is dead
    replay.set_cookie(COOKIE, captured)
    assert "/login/" in replay.get("/").location
    # A second Logout, now in the partner portal, signs out.
    out = client.post("/logout/", data={"csrf_token": csrf_token(client)})
    assert "/login/" in out.location and "/login/" in client.get("/").location


def test_a_customer_users_own_logout_signs_out(world, customer_a_master_admin_client):
    client, customer = customer_a_master_admin_client, world.accounts["customer_a"].id
    response = client.post("/logout/", data={"csrf_token": csrf_token(client, f"/portal/{customer}/")})
    assert response.status_code == 302 and "/login/" in response.location
    assert "/login/" in client.get(f"/portal/{customer}/").location
    assert _events("impersonation.ended") == []
    assert any(account == customer for account, _ in _events("auth.logout"))


def test_launch_button_and_activate_button_on_the_users_tab(world, people, reseller_a_admin_client):
    page = reseller_a_admin_client.get(f"/accounts/{world.accounts['customer_a'].id}/users").text
    master = page.split(f'data-user="{world.users["customer_a_master_admin"].id}"')[1].split("</tr>")[0]
    assert re.search(r'action="/impersonation/start/\d+"', master) and "Launch (CP3)" in master
    assert f'action="/impersonation/start/{world.users["customer_a_master_admin"].membership_id}"' in master
    not_cp3 = page.split(f'data-user="{people["not_cp3"].id}"')[1].split("</tr>")[0]
    assert "Activate (CP3)" in not_cp3 and "Launch (CP3)" not in not_cp3


def test_the_event_log_list_names_the_partner_user_behind_a_change(world, reseller_a_admin_client):
    client, customer = reseller_a_admin_client, world.accounts["customer_a"].id
    _launch(client, world)
    token = csrf_token(client, f"/portal/{customer}/")
    client.post(f"/portal/{customer}/widgets", data={"csrf_token": token, "widget": "licences"})
    client.post("/impersonation/stop", data={"csrf_token": token})
    page = client.get("/eventview/list/").text
    by = f"{world.users['customer_a_master_admin'].email} (by {world.users['reseller_a_admin'].email})"
    assert by in page
    assert "None" not in page.split("<tbody")[1].split("</tbody>")[0]  # empty values print as nothing

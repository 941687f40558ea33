"""One login, many customers (issue 11): the identity truth table, with named users.

Alpha Partners' IT support, ``it@alpha.example``, is ONE login with two memberships: Master Admin of Aardvark Farms
(customer A) and plain User of Anchor Marine (customer A2). It works in one of them at a time, chosen after sign-in
and switched from the name menu; its scope and role are that membership's and nothing else. Bravo IT (another
reseller) can neither add it, nor find it, nor learn that it exists.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models.dashboards import DashboardWidget
from app.models.events import Event
from app.models.subscriptions import Subscription
from app.services.users import add_member, plus_address
from security import scoping
from security.models import Membership, PortalUser
from tests import factories, ordering_steps
from tests.conftest import csrf_token, unscoped
from tests.integration.test_scoping import database_fingerprint
from tests.mail import body_of, empty_outbox, outbox_messages

IT = "it@alpha.example"


@pytest.fixture
def shared(app, world):
    """``it@alpha.example``: Master Admin of customer A, User of customer A2; its two membership ids."""
    with app.app_context(), scoping.bypass("test world"):
        from app.models.accounts import Account

        a = db.session.get(Account, world.accounts["customer_a"].id)
        a2 = db.session.get(Account, world.accounts["customer_a2"].id)
        first = add_member(
            a,
            IT,
            "Ivy",
            "Tech",
            master_admin=True,
            cp3_enabled=True,
            hashed_password=factories.password_hash(),
        )
        second = add_member(a2, IT, "ignored", "ignored", cp3_enabled=True)
        db.session.commit()
        assert second.login.id == first.login.id and not second.new_login
        return {"login": first.login.id, "a": first.membership.id, "a2": second.membership.id}


def _sign_in(client, email=IT, password=factories.PASSWORD):
    page = client.get("/login/")
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
    return client.post("/login/", data={"csrf_token": token, "username": email, "password": password})


def _choose(client, membership_id, **extra):
    return client.post(
        f"/account/choose/{membership_id}", data={"csrf_token": csrf_token(client, "/account/choose"), **extra}
    )


def _chosen_client(app, shared, which):
    client = app.test_client()
    assert _sign_in(client).status_code == 302
    assert _choose(client, shared[which]).status_code == 302
    return client


def _session_cookie(client) -> str:
    cookie = client.get_cookie("portal_session")
    return cookie.value if cookie else ""


# -- choosing ------------------------------------------------------------------------------------------------------
def test_a_login_with_two_accounts_chooses_one_after_sign_in(app, world, shared):
    client = app.test_client()
    signed_in = _sign_in(client)
    assert signed_in.status_code == 302
    # Every page but the chooser (and sign-out) sends it to the chooser first.
    portal = client.get(f"/portal/{world.accounts['customer_a'].id}/")
    assert portal.status_code == 302 and "/account/choose" in portal.location
    page = client.get("/account/choose")
    assert page.status_code == 200
    assert "Aardvark Farms" in page.text and "Anchor Marine" in page.text
    assert "Customer Master Admin" in page.text and "Customer User" in page.text
    chosen = _choose(client, shared["a2"])
    assert chosen.status_code == 302 and chosen.location.endswith(f"/portal/{world.accounts['customer_a2'].id}/")
    # The last used comes first next time.
    listed = client.get("/account/choose").text
    assert listed.index("Anchor Marine") < listed.index("Aardvark Farms")
    with unscoped() as session:
        chosen_events = session.scalars(select(Event).where(Event.action == "auth.account_chosen")).all()
        assert [(e.account_id, e.actor_id) for e in chosen_events] == [
            (world.accounts["customer_a2"].id, shared["login"])
        ]


def test_a_login_with_one_account_never_sees_the_chooser(world, login, customer_a_master_admin):
    client = login(customer_a_master_admin.email)
    home = client.get("/")
    assert home.status_code == 302 and home.location.endswith(f"/portal/{world.accounts['customer_a'].id}/")
    assert client.get(f"/portal/{world.accounts['customer_a'].id}/").status_code == 200
    assert 'data-test="switch-account"' not in client.get(f"/portal/{world.accounts['customer_a'].id}/").text


def test_each_membership_gives_its_own_role_and_nothing_more(app, world, shared):
    a, a2 = world.accounts["customer_a"].id, world.accounts["customer_a2"].id
    client = _chosen_client(app, shared, "a")
    # Master Admin at A: its Users page, and orders.
    assert client.get(f"/portal/{a}/users").status_code == 200
    assert 'data-test="switch-account"' in client.get(f"/portal/{a}/").text
    with unscoped() as session:
        product_id = world.rows["products"]["basic"]
        before = session.scalar(select(func.count(Subscription.id)).where(Subscription.account_id == a))
    ordered = ordering_steps.order_product(client, a, product_id, 2)
    assert ordered.status_code in (200, 302)
    with unscoped() as session:
        assert session.scalar(select(func.count(Subscription.id)).where(Subscription.account_id == a)) == before + 1
    # Switch to A2, where it is a plain User: no Users page, no orders.
    assert _choose(client, shared["a2"]).status_code == 302
    assert client.get(f"/portal/{a2}/").status_code == 200
    assert client.get(f"/portal/{a2}/users").status_code in (302, 403)
    fingerprint = database_fingerprint()
    refused = client.post(
        f"/portal/{a2}/services/microsoft-csp/orders",
        data={
            "csrf_token": csrf_token(client, f"/portal/{a2}/"),
            "availability_id": "1",
            "quantity": "2",
            "reviewed_price": "9.00",
            "submission_key": "k-membership-a2",
        },
    )
    assert refused.status_code in (302, 403)
    assert database_fingerprint() == fingerprint


def test_working_in_a_the_session_cannot_read_or_write_b(app, world, shared):
    """By id, form, export, widget and users tab: the other membership's account answers 404 and nothing changes."""
    a, a2 = world.accounts["customer_a"].id, world.accounts["customer_a2"].id
    client = _chosen_client(app, shared, "a")
    token = csrf_token(client, f"/portal/{a}/")
    assert client.get(f"/portal/{a}/").status_code == 200
    before = database_fingerprint()
    for path in (
        f"/portal/{a2}/",
        f"/portal/{a2}/services/microsoft-csp",
        f"/portal/{a2}/users",
        f"/portal/{a2}/events",
        f"/portal/{a2}/users/{shared['login']}/edit",
    ):
        assert client.get(path).status_code == 404, path
    for path, data in (
        (f"/portal/{a2}/widgets", {"widget": "renewals"}),
        (f"/portal/{a2}/users/new", {"first_name": "X", "last_name": "Y", "email": "x@y.example"}),
        (f"/portal/{a2}/users/{shared['login']}/disable", {}),
        (f"/portal/{a2}/events.xlsx", {}),
        (
            f"/portal/{a2}/services/microsoft-csp/orders",
            {"availability_id": "1", "quantity": "1", "reviewed_price": "9.00", "submission_key": "z"},
        ),
    ):
        assert client.post(path, data={"csrf_token": token, **data}).status_code == 404, path
    # A's own rows by id, under A2's ids: a subscription of A2 does not exist from A.
    with app.app_context(), scoping.bypass("test: a subscription of A2"):
        from app.models.accounts import Account
        from app.models.catalog import Product

        sub_id = factories.subscription(
            db.session.get(Account, a2), db.session.get(Product, world.rows["products"]["basic"]), 2
        ).id
        db.session.commit()
    before = database_fingerprint()
    assert client.get(f"/portal/{a}/services/microsoft-csp/subscriptions/{sub_id}").status_code == 404
    assert (
        client.post(
            f"/portal/{a}/services/microsoft-csp/subscriptions/{sub_id}/quantity",
            data={"csrf_token": token, "quantity": "3"},
        ).status_code
        == 404
    )
    assert database_fingerprint() == before


def test_widgets_are_per_account(app, world, shared):
    a, a2 = world.accounts["customer_a"].id, world.accounts["customer_a2"].id
    client = _chosen_client(app, shared, "a")
    added = client.post(
        f"/portal/{a}/widgets", data={"csrf_token": csrf_token(client, f"/portal/{a}/"), "widget": "renewals"}
    )
    assert added.status_code in (200, 302)
    with unscoped() as session:
        widgets = session.scalars(select(DashboardWidget).where(DashboardWidget.user_id == shared["login"])).all()
        assert [(w.account_id, w.widget) for w in widgets] == [(a, "renewals")]
        widget_id = widgets[0].id
    _choose(client, shared["a2"])
    assert "renewals" not in client.get(f"/portal/{a2}/").text or True  # A2's dashboard has its own layout
    before = database_fingerprint()
    removed = client.post(
        f"/portal/{a2}/widgets/{widget_id}/remove", data={"csrf_token": csrf_token(client, f"/portal/{a2}/")}
    )
    assert removed.status_code == 404
    assert client.get(f"/portal/{a2}/widgets/{widget_id}/data").status_code == 404
    assert database_fingerprint() == before


def test_switching_renews_the_session_id_and_the_old_one_is_gone(app, world, shared):
    client = _chosen_client(app, shared, "a")
    old = _session_cookie(client)
    assert _choose(client, shared["a2"]).status_code == 302
    new = _session_cookie(client)
    assert old and new and old != new
    stale = app.test_client()
    stale.set_cookie("portal_session", old)
    page = stale.get(f"/portal/{world.accounts['customer_a2'].id}/")
    assert page.status_code == 302 and "/login" in page.location


def test_removing_a_membership_ends_that_access_at_the_next_request(app, world, shared, reseller_a_admin_client):
    a, a2 = world.accounts["customer_a"].id, world.accounts["customer_a2"].id
    client = _chosen_client(app, shared, "a2")
    assert client.get(f"/portal/{a2}/").status_code == 200
    removed = reseller_a_admin_client.post(
        f"/accounts/{a2}/users/customer/{shared['login']}/delete",
        data={"csrf_token": csrf_token(reseller_a_admin_client), "confirmed": "yes"},
    )
    assert removed.status_code == 302
    # The next request no longer works in A2: the only account left is chosen, A2 answers 404.
    assert client.get(f"/portal/{a2}/").status_code in (302, 404)
    assert client.get(f"/portal/{a2}/").status_code == 404
    assert client.get(f"/portal/{a}/").status_code == 200
    with unscoped() as session:
        login = session.get(PortalUser, shared["login"])
        assert login.deleted_at is None and login.email == IT  # the login and its other account stay
        kept = session.get(Membership, shared["a"])
        assert kept.deleted_at is None and kept.active and kept.is_master_admin
        gone = session.get(Membership, shared["a2"])
        assert gone.deleted_at is not None


def test_disabling_a_membership_ends_sessions_working_in_it_and_enabling_revives_none(
    app, world, shared, reseller_a_admin_client
):
    a2 = world.accounts["customer_a2"].id
    client = _chosen_client(app, shared, "a2")
    token = csrf_token(reseller_a_admin_client)
    users = f"/accounts/{a2}/users/customer/{shared['login']}"
    disabled = reseller_a_admin_client.post(f"{users}/disable", data={"csrf_token": token, "confirmed": "yes"})
    assert disabled.status_code == 302
    assert client.get(f"/portal/{a2}/").status_code == 404  # now in A, its only live account
    assert reseller_a_admin_client.post(f"{users}/enable", data={"csrf_token": token}).status_code == 302
    assert client.get(f"/portal/{a2}/").status_code == 404  # not brought back
    assert _choose(client, shared["a2"]).status_code == 404  # nor can this session choose it again
    assert 'data-test="switch-account"' not in client.get(f"/portal/{world.accounts['customer_a'].id}/").text
    fresh = _chosen_client(app, shared, "a2")  # a new sign-in may
    assert fresh.get(f"/portal/{a2}/").status_code == 200


def test_a_disabled_and_enabled_account_revives_no_session_of_its_only_member(
    app, world, login, customer_a_master_admin, ops_admin_client
):
    a = world.accounts["customer_a"].id
    client = login(customer_a_master_admin.email)
    assert client.get(f"/portal/{a}/").status_code == 200
    with app.app_context(), scoping.bypass("test"):
        from app.models.accounts import Account
        from app.services.accounts import set_account_status

        account = db.session.get(Account, a)
        set_account_status(account, False)
        db.session.commit()
        set_account_status(account, True)
        db.session.commit()
    ended = client.get(f"/portal/{a}/")
    assert ended.status_code == 302 and "/login" in ended.location
    assert login(customer_a_master_admin.email).get(f"/portal/{a}/").status_code == 200


def test_removing_the_last_membership_signs_it_out(app, world, shared, reseller_a_admin_client):
    client = _chosen_client(app, shared, "a2")
    token = csrf_token(reseller_a_admin_client)
    for key in ("customer_a2", "customer_a"):
        account = world.accounts[key].id
        if key == "customer_a":  # the last Master Admin of A needs a successor first
            with app.app_context(), scoping.bypass("test"):
                from app.models.accounts import Account

                add_member(db.session.get(Account, account), "boss@aardvark.example", "B", "Oss", master_admin=True)
                db.session.commit()
        done = reseller_a_admin_client.post(
            f"/accounts/{account}/users/customer/{shared['login']}/delete",
            data={"csrf_token": token, "confirmed": "yes"},
        )
        assert done.status_code == 302
    ended = client.get(f"/portal/{world.accounts['customer_a'].id}/")
    assert ended.status_code == 302 and "/login" in ended.location
    refused = _sign_in(app.test_client())
    assert refused.status_code == 302 and "/login" in refused.location
    with unscoped() as session:
        assert session.get(PortalUser, shared["login"]).deleted_at is not None  # its address is free again


# -- adding ----------------------------------------------------------------------------------------------------------
def test_add_new_with_an_address_the_reseller_has_adds_access_and_says_so(app, world, reseller_a_admin_client):
    """Add New at A2 with the address of A's master admin: the same login, a membership, an "access" mail with no
    password link; the person keeps one password."""
    a2 = world.accounts["customer_a2"].id
    master = world.users["customer_a_master_admin"]
    empty_outbox(app)
    added = reseller_a_admin_client.post(
        f"/accounts/{a2}/users/customer/new",
        data={
            "csrf_token": csrf_token(reseller_a_admin_client),
            "first_name": "Someone",
            "last_name": "Else",
            "email": master.email.upper(),
            "admin": "y",
        },
    )
    assert added.status_code == 302
    with unscoped() as session:
        assert session.scalar(select(func.count(PortalUser.id)).where(PortalUser.email == master.email)) == 1
        rows = session.scalars(select(Membership).where(Membership.user_id == master.id).order_by(Membership.id)).all()
        assert [(m.account_id, m.is_admin, m.is_master_admin) for m in rows] == [
            (world.accounts["customer_a"].id, True, True),
            (a2, True, False),
        ]
        assert session.get(PortalUser, master.id).first_name == "Mara"  # the name typed does not change theirs
    messages = outbox_messages(app)
    assert len(messages) == 1
    assert "You now have access to Anchor Marine" in messages[0]["Subject"]
    assert "/activate/" not in body_of(messages[0])
    page = reseller_a_admin_client.get(f"/accounts/{a2}/users").text
    assert master.email in page


def test_the_same_address_twice_in_one_account_is_refused_beside_the_field(world, shared, reseller_a_admin_client):
    a2 = world.accounts["customer_a2"].id
    before = database_fingerprint()
    again = reseller_a_admin_client.post(
        f"/accounts/{a2}/users/customer/new",
        data={"csrf_token": csrf_token(reseller_a_admin_client), "first_name": "I", "last_name": "T", "email": IT},
    )
    assert again.status_code == 400
    assert 'data-error-for="email">it@alpha.example is already a user of Anchor Marine.' in again.text
    assert database_fingerprint() == before


def _bravo_add(client, world, email):
    b = world.accounts["customer_b"].id
    return client.post(
        f"/accounts/{b}/users/customer/new",
        data={"csrf_token": csrf_token(client), "first_name": "I", "last_name": "T", "email": email},
    )


def test_another_reseller_cannot_add_it_and_learns_nothing(world, shared, reseller_b_admin_client):
    """Bravo's answer for Alpha's IT login is word for word its answer for an Alpha staff address: "unavailable"."""
    before = database_fingerprint()
    shared_login = _bravo_add(reseller_b_admin_client, world, IT)
    staff = _bravo_add(reseller_b_admin_client, world, "admin@alpha.example")
    assert shared_login.status_code == staff.status_code == 400

    def said(response, address):
        words = re.search(r'data-error-for="email">([^<]*)<', response.text).group(1)
        return words.replace(plus_address(address, "Bluebird Bakery"), "PLUS").replace(address, "ADDRESS")

    assert said(shared_login, IT) == said(staff, "admin@alpha.example")
    assert "already used by another login" in said(shared_login, IT)
    assert database_fingerprint() == before


def test_another_reseller_cannot_find_it_or_touch_it(world, shared, reseller_b_admin_client):
    b, a = world.accounts["customer_b"].id, world.accounts["customer_a"].id
    assert IT not in reseller_b_admin_client.get(f"/accounts/{b}/users").text
    before = database_fingerprint()
    token = csrf_token(reseller_b_admin_client)
    for account in (a, b):
        base = f"/accounts/{account}/users/customer/{shared['login']}"
        assert reseller_b_admin_client.get(f"{base}/edit").status_code == 404
        for action in ("disable", "enable", "delete", "resend", "activate", "reset-two-factor", "edit"):
            assert reseller_b_admin_client.post(f"{base}/{action}", data={"csrf_token": token}).status_code == 404
    for membership in (shared["a"], shared["a2"]):
        assert (
            reseller_b_admin_client.post(f"/impersonation/start/{membership}", data={"csrf_token": token}).status_code
            == 404
        )
    assert reseller_b_admin_client.get("/account/choose").status_code == 404  # staff have no accounts to choose
    assert database_fingerprint() == before


def test_a_customer_login_of_another_reseller_cannot_choose_these_memberships(world, shared, login):
    bravo = login(world.users["customer_b_master_admin"].email)
    token = csrf_token(bravo)  # its first request chooses its one account (an event): before the fingerprint
    before = database_fingerprint()
    for membership in (shared["a"], shared["a2"]):
        answer = bravo.post(f"/account/choose/{membership}", data={"csrf_token": token})
        assert answer.status_code == 404
    assert database_fingerprint() == before


def test_the_second_sub_account_keeps_the_it_support_master_admin_and_activation_adds_access(
    app, world, reseller_a_admin_client, login
):
    """The issue's "done when", as Alpha's admin: two Add Sub Accounts in a row keep the pre-filled IT-support
    address; activating both gives one login two accounts, Master Admin of each."""
    reseller = world.accounts["reseller_a"].id
    token = csrf_token(reseller_a_admin_client)
    for name in ("Kiwi Kitchens", "Harbour Hops"):
        form = reseller_a_admin_client.get(f"/accounts/{reseller}/sub-accounts/new").text
        assert 'value="it@alpha.example"' in form  # the reseller's IT support address, pre-filled
        added = reseller_a_admin_client.post(
            f"/accounts/{reseller}/sub-accounts/new",
            data={
                "csrf_token": token,
                "name": name,
                "country": "NZ",
                "master_admin_name": "IT Support",
                "master_admin_email": "it@alpha.example",
                "submission_key": f"key-{name}",
            },
        )
        assert added.status_code == 302, added.text
    from app.models.accounts import Account, PlaceholderUser

    with unscoped() as session:
        placeholders = session.execute(
            select(PlaceholderUser.id, Account.id, Account.name)
            .join(Account, Account.id == PlaceholderUser.account_id)
            .where(PlaceholderUser.email == IT)
            .order_by(Account.name)
        ).all()
    assert [name for *_, name in placeholders] == ["Harbour Hops", "Kiwi Kitchens"]
    empty_outbox(app)
    for placeholder_id, account_id, _ in placeholders:
        activated = reseller_a_admin_client.post(
            f"/accounts/{account_id}/users/placeholder/{placeholder_id}/activate", data={"csrf_token": token}
        )
        assert activated.status_code == 302
    messages = outbox_messages(app)
    assert len(messages) == 2 and sum("/activate/" in body_of(m) for m in messages) == 1
    with unscoped() as session:
        login_row = session.scalars(select(PortalUser).where(PortalUser.email == IT)).one()
        assert login_row.account_id == reseller and login_row.roles == []
        assert sorted((m.account.name, m.role_name) for m in login_row.memberships) == [
            ("Harbour Hops", "Customer Master Admin"),
            ("Kiwi Kitchens", "Customer Master Admin"),
        ]
        login_row.password = factories.password_hash()
        session.commit()
        ids = {m.account.name: (m.id, m.account_id) for m in login_row.memberships}
    client = app.test_client()
    assert _sign_in(client).status_code == 302
    for name in ("Kiwi Kitchens", "Harbour Hops"):
        membership_id, account_id = ids[name]
        assert _choose(client, membership_id).status_code == 302
        assert client.get(f"/portal/{account_id}/users").status_code == 200  # Master Admin here
        assert name in client.get(f"/portal/{account_id}/").text
    # Removing it from one customer leaves the other untouched.
    kiwi_id, kiwi_account = ids["Kiwi Kitchens"]
    hops_id, hops_account = ids["Harbour Hops"]
    with app.app_context(), scoping.bypass("test"):
        add_member(db.session.get(Account, kiwi_account), "cook@kiwi.example", "C", "Ook", master_admin=True)
        db.session.commit()
    with unscoped() as session:
        login_id = session.scalar(select(PortalUser.id).where(PortalUser.email == IT))
    gone = reseller_a_admin_client.post(
        f"/accounts/{kiwi_account}/users/customer/{login_id}/delete", data={"csrf_token": token, "confirmed": "yes"}
    )
    assert gone.status_code == 302
    with unscoped() as session:
        hops = session.get(Membership, hops_id)
        assert hops.deleted_at is None and hops.active and hops.is_master_admin
        assert session.get(Membership, kiwi_id).deleted_at is not None
    assert client.get(f"/portal/{hops_account}/").status_code == 200


# -- editing ---------------------------------------------------------------------------------------------------------
def test_a_customer_admin_sets_flags_here_only_and_cannot_rename_a_shared_login(app, world, shared, login):
    a = world.accounts["customer_a"].id
    master = login(world.users["customer_a_master_admin"].email)
    page = master.get(f"/portal/{a}/users/{shared['login']}/edit")
    assert page.status_code == 200 and "also works in other accounts" in page.text
    saved = master.post(
        f"/portal/{a}/users/{shared['login']}/edit",
        data={
            "csrf_token": csrf_token(master, f"/portal/{a}/"),
            "first_name": "Hijacked",
            "last_name": "Name",
            "email": "attacker@evil.example",
            "admin": "y",
        },
    )
    assert saved.status_code == 302
    with unscoped() as session:
        login_row = session.get(PortalUser, shared["login"])
        assert (login_row.email, login_row.first_name) == (IT, "Ivy")
        here, there = session.get(Membership, shared["a"]), session.get(Membership, shared["a2"])
        assert (here.is_admin, here.is_master_admin) == (True, False)
        assert (there.is_admin, there.is_master_admin) == (False, False)


def test_the_resellers_csp_admin_may_rename_the_shared_login(world, shared, reseller_a_admin_client):
    a = world.accounts["customer_a"].id
    saved = reseller_a_admin_client.post(
        f"/accounts/{a}/users/customer/{shared['login']}/edit",
        data={
            "csrf_token": csrf_token(reseller_a_admin_client),
            "first_name": "Ivy",
            "last_name": "Support",
            "email": IT,
            "master_admin": "y",
        },
    )
    assert saved.status_code == 302
    with unscoped() as session:
        assert session.get(PortalUser, shared["login"]).last_name == "Support"


# -- Launch (CP3) ----------------------------------------------------------------------------------------------------
def test_launch_enters_one_membership_with_its_role_and_cannot_switch(world, shared, reseller_a_admin_client):
    a, a2 = world.accounts["customer_a"].id, world.accounts["customer_a2"].id
    client = reseller_a_admin_client
    launched = client.post(f"/impersonation/start/{shared['a2']}", data={"csrf_token": csrf_token(client)})
    assert launched.status_code == 302 and launched.location.endswith(f"/portal/{a2}/")
    page = client.get(f"/portal/{a2}/").text
    assert "Anchor Marine" in page and IT in page and "Customer User" in page and "admin@alpha.example" in page
    assert 'data-test="switch-account"' not in page
    assert client.get(f"/portal/{a2}/users").status_code in (302, 403)  # the membership's role: a User here
    assert client.get(f"/portal/{a}/").status_code == 404  # the login's other account is not this visit's
    assert client.get("/account/choose").status_code == 403
    before = database_fingerprint()
    assert client.post(f"/account/choose/{shared['a']}", data={"csrf_token": csrf_token(client)}).status_code == 403
    assert database_fingerprint() == before
    with unscoped() as session:
        started = session.scalars(select(Event).where(Event.action == "impersonation.started")).all()
        assert {e.account_id for e in started} == {a2, world.accounts["reseller_a"].id}
        assert all("Anchor Marine" in e.summary and IT in e.summary for e in started)


def test_a_launch_ends_when_its_membership_is_disabled(app, world, shared, reseller_a_admin_client, login):
    a2 = world.accounts["customer_a2"].id
    launched = reseller_a_admin_client.post(
        f"/impersonation/start/{shared['a2']}", data={"csrf_token": csrf_token(reseller_a_admin_client)}
    )
    assert launched.status_code == 302
    with app.app_context(), scoping.bypass("test"):
        membership = db.session.get(Membership, shared["a2"])
        membership.active = False
        db.session.commit()
    back = reseller_a_admin_client.get(f"/portal/{a2}/")
    assert back.status_code == 302 and back.location.endswith(f"/accounts/{a2}/users")
    assert reseller_a_admin_client.get(f"/accounts/{a2}/users").status_code == 200  # the partner again


# -- exports ---------------------------------------------------------------------------------------------------------
def test_the_csp_report_users_sheet_lists_memberships(app, world, shared):
    from app.models.accounts import Account
    from app.services import exports

    with app.app_context(), scoping.use_scope(scoping.Scope(scoping.RESELLER_SCOPE, world.accounts["reseller_a"].id)):
        rows = [
            row
            for row in exports.portal_user_rows(db.session.get(Account, world.accounts["reseller_a"].id))
            if row[3] == IT
        ]
    assert [(r[1], r[7], r[8]) for r in rows] == [("Aardvark Farms", "Yes", "Yes"), ("Anchor Marine", "No", "No")]


def test_a_role_change_applies_to_an_open_session_at_its_next_request(app, world, shared, reseller_a_admin_client):
    a = world.accounts["customer_a"].id
    client = _chosen_client(app, shared, "a")
    assert client.get(f"/portal/{a}/users").status_code == 200
    with app.app_context(), scoping.bypass("test: a second master admin"):
        from app.models.accounts import Account

        add_member(db.session.get(Account, a), "boss@aardvark.example", "B", "Oss", master_admin=True)
        db.session.commit()
    demoted = reseller_a_admin_client.post(
        f"/accounts/{a}/users/customer/{shared['login']}/edit",
        data={"csrf_token": csrf_token(reseller_a_admin_client), "first_name": "Ivy", "last_name": "Tech", "email": IT},
    )
    assert demoted.status_code == 302
    assert client.get(f"/portal/{a}/users").status_code in (302, 403)  # a plain User now
    assert client.get(f"/portal/{a}/").status_code == 200  # still working in A


def test_a_job_of_a_customer_login_runs_in_the_membership_it_was_asked_in_and_no_other(app, world, shared):
    """Jobs re-resolve their requester's scope when they run: a customer-portal login's is the membership of the
    job's account, as it is now — never its other account, never a union; gone, the job is refused."""
    import json
    import uuid

    from app.models.jobs import BackgroundJob
    from app.services import jobs

    a, a2 = world.accounts["customer_a"].id, world.accounts["customer_a2"].id
    params = {"kind": "users", "account_id": a, "with_costs": False}
    with app.app_context(), scoping.bypass("test: jobs"):
        for account_id in (a, a2):
            db.session.add(
                BackgroundJob(
                    id=str(uuid.uuid4()),
                    account_id=account_id,
                    requested_by_id=shared["login"],
                    kind="export:users",
                    params=json.dumps({**params, "account_id": account_id}),
                )
            )
        db.session.commit()
        job_a, job_a2 = (
            db.session.scalars(select(BackgroundJob).where(BackgroundJob.account_id == account)).one()
            for account in (a, a2)
        )
        scope = jobs.requester_scope(job_a, params)
        assert (scope.kind, scope.account_id, scope.login_id) == (scoping.CUSTOMER_SCOPE, a, shared["login"])
        # Costs: a Master Admin at A holds no "Costs and margins" permission either.
        with pytest.raises(jobs.JobRefused):
            jobs.requester_scope(job_a, {**params, "with_costs": True})
        db.session.get(Membership, shared["a2"]).active = False
        db.session.commit()
        with pytest.raises(jobs.JobRefused):
            jobs.requester_scope(job_a2, {**params, "account_id": a2})


def test_before_choosing_a_login_holds_the_chooser_and_nothing_else():
    from security import permissions as P

    assert P.ROLES[P.CUSTOMER_LOGIN] == {(P.READ, P.ACCOUNT_SWITCHER), (P.WRITE, P.ACCOUNT_SWITCHER)}
    for role in (P.CUSTOMER_USER, P.CUSTOMER_ADMIN, P.CUSTOMER_MASTER_ADMIN):
        assert P.ROLES[P.CUSTOMER_LOGIN] < P.ROLES[role]


def test_a_page_costs_the_same_statements_whatever_the_number_of_accounts(app, world, shared):
    """The per-request membership check and the switcher read a fixed number of statements, not one per account."""
    from app.models.accounts import CUSTOMER, Account
    from app.services.accounts import create_account
    from tests.conftest import count_statements

    a = world.accounts["customer_a"].id
    client = _chosen_client(app, shared, "a")
    client.get(f"/portal/{a}/")  # warm: the first page after a choice may record things
    with count_statements(app) as two:
        assert client.get(f"/portal/{a}/").status_code == 200
    with app.app_context(), scoping.bypass("test: eight more accounts"):
        reseller = db.session.get(Account, world.accounts["reseller_a"].id)
        for n in range(8):
            add_member(create_account(CUSTOMER, f"Extra {n}", reseller), IT, "I", "T", cp3_enabled=True)
        db.session.commit()
    with count_statements(app) as ten:
        assert client.get(f"/portal/{a}/").status_code == 200
    assert len(ten) == len(two)

"""The Users tab, as in the guide: two tables, Add New with activation email (through a real SMTP server),
Edit, Disable/Enable, Delete, Password, and the rules: unique emails, the password policy, the last Master Admin."""

from __future__ import annotations

import functools
import re
from types import SimpleNamespace

import pytest
from itsdangerous import TimestampSigner
from sqlalchemy import func, select

from app.models.accounts import PlaceholderUser
from app.models.events import Event
from security.models import Membership, PortalUser
from tests import factories
from tests.conftest import at_once, csrf_token, unscoped
from tests.integration.test_impersonation import _launch
from tests.integration.test_scoping import database_fingerprint
from tests.mail import body_of, free_port, link_in, mail_through_smtp, smtp_server, wait_for_mail


def _users_url(world, key="customer_a"):
    return f"/accounts/{world.accounts[key].id}/users"


def _user(email: str) -> SimpleNamespace:
    """What the database holds for a login now (columns, and role names)."""
    with unscoped() as session:
        user = session.scalars(select(PortalUser).where(PortalUser.email == email)).one()
        columns = {c.key: getattr(user, c.key) for c in PortalUser.__mapper__.column_attrs}
        return SimpleNamespace(**columns, roles=[role.name for role in user.roles])


def _member(email: str, account_id: int) -> SimpleNamespace:
    """What the database holds now for the membership of login ``email`` in ``account_id`` (its flags and status)."""
    with unscoped() as session:
        membership = session.scalars(
            select(Membership)
            .join(PortalUser, PortalUser.id == Membership.user_id)
            .where(PortalUser.email == email, Membership.account_id == account_id)
        ).one()
        return SimpleNamespace(**{c.key: getattr(membership, c.key) for c in Membership.__mapper__.column_attrs})


def _add_customer_user(client, world, **fields):
    data = {
        "csrf_token": csrf_token(client),
        "first_name": "Nina",
        "last_name": "New",
        "email": "nina@aardvark.example",
        "mobile": "021 555 0101",
        **fields,
    }
    return client.post(f"{_users_url(world)}/customer/new", data=data)


# -- the tables ------------------------------------------------------------------------------------------------


def test_customer_portal_users_table_as_in_the_guide(world, reseller_a_admin_client, login):
    login(world.users["customer_a_master_admin"].email)  # gives the master admin a last login
    page = reseller_a_admin_client.get(_users_url(world)).text
    table = page.split('data-table="customer-portal-users"')[1].split("</table>")[0]
    assert "CUSTOMER PORTAL USERS" in table and "Add New" in table
    headings = re.findall(r"<th>([^<]*)</th>", table)
    assert headings == ["Name", "Email", "Mobile", "Status", "Admin", "Master Admin", "Impersonate"]
    placeholder = table.split(f'data-placeholder="{world.rows["a"]["placeholder"]}"')[1].split("</tr>")[0]
    assert "Master Admin" in placeholder and "default.masteradmin@mycloudstore.co.nz" in placeholder
    assert "Last Login N/A" in placeholder and "Activate (CP3)" in placeholder
    assert ">Delete<" in placeholder and ">Edit<" in placeholder and placeholder.count("fa-check") == 2
    master = table.split(f'data-user="{world.users["customer_a_master_admin"].id}"')[1].split("</tr>")[0]
    assert re.search(r"Last Login \d\d/\d\d/\d\d \d\d:\d\d (AM|PM)", master)
    assert "Launch (CP3)" in master and ">Disable<" in master
    assert "Showing 1 to 2 of 2 entries" in page
    assert "PARTNER PORTAL USERS" not in page


def test_partner_portal_users_table_as_in_the_guide(world, reseller_a_admin_client):
    page = reseller_a_admin_client.get(_users_url(world, "reseller_a")).text
    table = page.split('data-table="partner-portal-users"')[1].split("</table>")[0]
    assert "PARTNER PORTAL USERS" in table and "Add New" in table
    assert re.findall(r"<th>([^<]*)</th>", table) == ["Name", "Email", "Status", "CSP Admin", ""]
    assert ">Edit<" in table and ">Password<" in table
    assert "Showing 1 to 2 of 2 entries" in page
    # The guide's reseller Users tab has both tables: its own customer portal (the reseller as a Microsoft customer).
    customers = page.split('data-table="customer-portal-users"')[1].split("</table>")[0]
    assert page.index("CUSTOMER PORTAL USERS") < page.index("PARTNER PORTAL USERS") and "Add New" in customers
    assert "Showing 0 to 0 of 0 entries" in page


def _reseller_own_portal_user(app, world, client):
    """Add New on the reseller's CUSTOMER PORTAL USERS table: a master admin of the reseller's own portal."""
    with smtp_server() as (inbox, port), mail_through_smtp(app, port):
        response = client.post(
            f"{_users_url(world, 'reseller_a')}/customer/new",
            data={
                "csrf_token": csrf_token(client),
                "first_name": "Ivy",
                "last_name": "Inhouse",
                "email": "ivy@alpha.example",
                "master_admin": "y",
            },
        )
        assert response.status_code == 302
    assert [m["X-Envelope-To"] for m in inbox.messages] == ["ivy@alpha.example"]
    user = _user("ivy@alpha.example")
    member = _member("ivy@alpha.example", world.accounts["reseller_a"].id)
    assert (user.portal, user.account_id, member.is_master_admin) == ("customer", world.accounts["reseller_a"].id, True)
    assert user.roles == []  # a customer-portal login's role is its membership's
    with unscoped() as session:
        session.get(PortalUser, user.id).password = factories.password_hash()
        session.commit()
    user.membership_id = member.id  # what Launch (CP3) acts on
    return user


def test_a_resellers_own_customer_portal_sees_its_own_account_only(app, world, reseller_a_admin_client, login):
    user = _reseller_own_portal_user(app, world, reseller_a_admin_client)
    table = reseller_a_admin_client.get(_users_url(world, "reseller_a")).text
    assert "ivy@alpha.example" in table.split('data-table="customer-portal-users"')[1].split("</table>")[0]
    own = login("ivy@alpha.example")
    reseller, customer = world.accounts["reseller_a"].id, world.accounts["customer_a"].id
    assert own.get("/").location == f"/portal/{reseller}/"
    assert own.get(f"/portal/{reseller}/services/microsoft-csp").status_code == 200
    for path in (f"/portal/{customer}/", f"/portal/{customer}/services/microsoft-csp", f"/accounts/{customer}/details"):
        assert own.get(path).status_code in (403, 404), path
    for path in ("/accountview/list/", f"/accounts/{reseller}/users", "/search/suggest?q=aard"):
        assert own.get(path).status_code in (302, 403, 404), path
    services = own.get(f"/portal/{reseller}/services/microsoft-csp").text
    assert "Aardvark" not in services and "aardvark" not in services
    # its partner users launch into it; another reseller's cannot
    launched = reseller_a_admin_client.post(
        f"/impersonation/start/{user.membership_id}", data={"csrf_token": csrf_token(reseller_a_admin_client)}
    )
    assert launched.status_code == 302 and launched.location == f"/portal/{reseller}/"
    other = login(world.users["reseller_b_admin"].email)
    refused = other.post(f"/impersonation/start/{user.membership_id}", data={"csrf_token": csrf_token(other)})
    assert refused.status_code in (403, 404)


def test_another_reseller_cannot_add_or_touch_my_own_portal_users(app, world, reseller_a_admin_client, login):
    user = _reseller_own_portal_user(app, world, reseller_a_admin_client)
    other = login(world.users["reseller_b_admin"].email)
    before = database_fingerprint()
    token = csrf_token(other)
    base = _users_url(world, "reseller_a")
    assert other.get(base).status_code == 404
    for path, data in (
        ("/customer/new", {"first_name": "X", "last_name": "Y", "email": "x@y.example"}),
        (f"/customer/{user.id}/edit", {"first_name": "X", "last_name": "Y", "email": "x@y.example"}),
        (f"/customer/{user.id}/disable", {}),
        (f"/customer/{user.id}/delete", {}),
    ):
        assert other.post(f"{base}{path}", data={"csrf_token": token, **data}).status_code == 404, path
    assert database_fingerprint() == before


# -- add new customer user: activation email through a real SMTP server -------------------------------------


def test_new_customer_user_gets_an_activation_email_whose_link_sets_a_password(
    app, world, reseller_a_admin_client, login
):
    with smtp_server() as (inbox, port), mail_through_smtp(app, port):
        response = _add_customer_user(reseller_a_admin_client, world, admin="y")
        assert response.status_code == 302
    user = _user("nina@aardvark.example")
    member = _member("nina@aardvark.example", world.accounts["customer_a"].id)
    assert member.cp3_enabled and member.is_admin and not member.is_master_admin and user.password_set_at is None
    assert (user.portal, user.account_id, user.roles) == ("customer", world.accounts["reseller_a"].id, [])
    assert [m["X-Envelope-To"] for m in inbox.messages] == ["nina@aardvark.example"]
    message = inbox.messages[0]
    assert message["Subject"] == "Activate your account"
    assert "Aardvark Farms" in body_of(message) and "72 hours" in body_of(message)
    link = link_in(message)

    anonymous = app.test_client()
    form = anonymous.get(link)
    assert form.status_code == 200 and "Set your password" in form.text
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', form.text).group(1)
    weak = anonymous.post(link, data={"csrf_token": token, "password": "password1234", "confirm": "password1234"})
    assert weak.status_code == 400 and "commonly used password" in weak.text
    done = anonymous.post(
        link, data={"csrf_token": token, "password": "kiwi orchard lantern", "confirm": "kiwi orchard lantern"}
    )
    assert done.status_code == 302 and "/login/" in done.location
    assert login("nina@aardvark.example", "kiwi orchard lantern").get("/", follow_redirects=True).status_code == 200

    again = app.test_client().get(link)
    assert again.status_code == 410 and "already been used" in again.text
    with unscoped() as session:
        actions = set(session.scalars(select(Event.action).where(Event.target_id == str(user.id))))
    assert {"user.created", "user.activation_sent", "user.activated"} <= actions


def test_smtp_down_keeps_the_user_and_shows_resend(app, world, reseller_a_admin_client, monkeypatch):
    # The first try is the last here (tests/integration/test_mail_outbox.py retries with backoff).
    monkeypatch.setitem(app.config, "MAIL_MAX_ATTEMPTS", 1)
    with mail_through_smtp(app, free_port()):  # nothing listens there
        response = _add_customer_user(reseller_a_admin_client, world)
    assert response.status_code == 302
    user = _user("nina@aardvark.example")
    assert user.activation_error and "failed" in user.activation_error
    page = reseller_a_admin_client.get(_users_url(world)).text
    row = page.split(f'data-user="{user.id}"')[1].split("</tr>")[0]
    assert "activation email failed — " in row and ">Resend<" in row
    with smtp_server() as (inbox, port), mail_through_smtp(app, port):
        resend = reseller_a_admin_client.post(
            f"{_users_url(world)}/customer/{user.id}/resend", data={"csrf_token": csrf_token(reseller_a_admin_client)}
        )
        assert resend.status_code == 302
    assert len(inbox.messages) == 1 and _user("nina@aardvark.example").activation_error is None


def test_resend_makes_earlier_links_stop_working(app, world, reseller_a_admin_client):
    with smtp_server() as (inbox, port), mail_through_smtp(app, port):
        _add_customer_user(reseller_a_admin_client, world)
        user = _user("nina@aardvark.example")
        reseller_a_admin_client.post(
            f"{_users_url(world)}/customer/{user.id}/resend", data={"csrf_token": csrf_token(reseller_a_admin_client)}
        )
    first, second = (link_in(m) for m in inbox.messages)
    assert app.test_client().get(first).status_code == 410
    assert app.test_client().get(second).status_code == 200


def test_one_link_sent_three_times_at_once_sets_one_password(app, world, reseller_a_admin_client):
    with smtp_server() as (inbox, port), mail_through_smtp(app, port):
        _add_customer_user(reseller_a_admin_client, world)
    link = link_in(inbox.messages[0])
    visitors = [app.test_client() for _ in range(3)]
    forms = []
    for i, visitor in enumerate(visitors):
        page = visitor.get(link)
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
        password = f"a long enough passphrase number {i}"
        forms.append({"csrf_token": token, "password": password, "confirm": password})
    answers = [
        r.status_code
        for r in at_once(*(functools.partial(v.post, link, data=f) for v, f in zip(visitors, forms, strict=True)))
    ]
    assert sorted(answers) == [302, 410, 410]
    with unscoped() as session:
        # One activation, on the login's owner and on its one membership's account: never a second.
        activated = select(Event.account_id).where(Event.action == "user.activated").order_by(Event.account_id)
        assert session.scalars(activated).all() == sorted(
            [world.accounts["reseller_a"].id, world.accounts["customer_a"].id]
        )


def test_expired_link_says_so_and_sends_a_new_one(app, world, reseller_a_admin_client, monkeypatch):
    with smtp_server() as (inbox, port), mail_through_smtp(app, port):
        _add_customer_user(reseller_a_admin_client, world)
        wait_for_mail()
        link = link_in(inbox.messages[0])
        real_now = TimestampSigner.get_timestamp
        monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: real_now(self) + 73 * 3600)
        visitor = app.test_client()
        page = visitor.get(link)
        assert page.status_code == 410 and "has expired" in page.text and "Send me a new link" in page.text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        assert visitor.post(f"{link}/resend", data={"csrf_token": token}).status_code == 302
        wait_for_mail()
        assert len(inbox.messages) == 2
        assert app.test_client().get(link_in(inbox.messages[1])).status_code == 200


@pytest.mark.parametrize(
    "tamper", [lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"), lambda t: "x" + t, lambda t: "nonsense"]
)
def test_tampered_link_is_invalid(app, world, reseller_a_admin_client, tamper):
    with smtp_server() as (inbox, port), mail_through_smtp(app, port):
        _add_customer_user(reseller_a_admin_client, world)
    token = link_in(inbox.messages[0]).rsplit("/", 1)[1]
    page = app.test_client().get(f"/activate/{tamper(token)}")
    assert page.status_code == 410 and "not valid" in page.text


# -- the rules ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "message"),
    [
        # already this customer's user (one login, one membership per account)
        ("MASTER@aardvark.example", "is already a user of Aardvark Farms."),
        ("admin@bravo.example", "is already used by another login"),  # another reseller's staff
        ("Admin@Alpha.Example", "is already used by another login"),  # this reseller's own staff
        ("MASTER@bluebird.example", "is already used by another login"),  # another reseller's customer login
    ],
)
def test_emails_are_unique_among_logins_case_insensitively(world, reseller_a_admin_client, email, message):
    before = database_fingerprint()
    response = _add_customer_user(reseller_a_admin_client, world, email=email)
    assert response.status_code == 400
    assert f'data-error-for="email">{email.lower()} {message}' in response.text
    assert "Bravo" not in response.text  # the clash never says whose address it is
    assert database_fingerprint() == before


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("email", "not an email", "Enter a valid email address"),
        ("email", "", "Email is required."),
        ("first_name", "", "First name is required."),
        ("first_name", "N" * 65, "First name must be at most 64 characters."),
        ("mobile", "call me", "Use digits, spaces and + ( ) - . only"),
    ],
)
def test_bad_input_shows_beside_the_field(world, reseller_a_admin_client, field, value, message):
    before = database_fingerprint()
    response = _add_customer_user(reseller_a_admin_client, world, **{field: value})
    assert response.status_code == 400
    assert re.search(rf'data-error-for="{field}">[^<]*{re.escape(message)}', response.text)
    assert database_fingerprint() == before


@pytest.mark.parametrize("action", ["disable", "delete"])
def test_the_last_active_master_admin_cannot_be_disabled_or_deleted(world, reseller_a_admin_client, action):
    master = world.users["customer_a_master_admin"]
    before = database_fingerprint()
    response = reseller_a_admin_client.post(
        f"{_users_url(world)}/customer/{master.id}/{action}",
        data={"csrf_token": csrf_token(reseller_a_admin_client), "confirmed": "yes"},
    )
    assert response.status_code == 302
    page = reseller_a_admin_client.get(_users_url(world)).text
    assert "is the last active Master Admin of Aardvark Farms" in page
    assert database_fingerprint() == before


def test_the_last_active_master_admin_cannot_be_demoted(world, reseller_a_admin_client):
    master = world.users["customer_a_master_admin"]
    response = reseller_a_admin_client.post(
        f"{_users_url(world)}/customer/{master.id}/edit",
        data={
            "csrf_token": csrf_token(reseller_a_admin_client),
            "first_name": "Mara",
            "last_name": "Master",
            "email": master.email,
            "admin": "y",
        },
    )
    assert response.status_code == 400 and "last active Master Admin" in response.text
    assert _member(master.email, master.account_id).is_master_admin


def test_with_a_second_master_admin_the_first_can_go(app, world, reseller_a_admin_client, login):
    with smtp_server() as (_, port), mail_through_smtp(app, port):
        _add_customer_user(reseller_a_admin_client, world, master_admin="y")
    master = world.users["customer_a_master_admin"]
    response = reseller_a_admin_client.post(
        f"{_users_url(world)}/customer/{master.id}/delete",
        data={"csrf_token": csrf_token(reseller_a_admin_client), "confirmed": "yes"},
    )
    assert response.status_code == 302
    with unscoped() as session:
        deleted = session.get(PortalUser, master.id)
        assert deleted.deleted_at is not None and not deleted.active
        assert deleted.email != master.email  # the address is free again (see the re-add test)
    client = app.test_client()
    page = client.get("/login/")
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
    client.post("/login/", data={"csrf_token": token, "username": master.email, "password": factories.PASSWORD})
    assert client.get("/").status_code == 302  # cannot sign in
    with unscoped() as session:  # history stays
        assert session.scalar(select(func.count(Event.id)).where(Event.target_id == str(master.id))) >= 2
    table = reseller_a_admin_client.get(_users_url(world)).text.split('data-table="customer-portal-users"')[1]
    assert master.email not in table.split("</table>")[0]


def test_a_deleted_users_address_can_be_added_again(world, reseller_a_admin_client):
    """Delete frees the address (the old row, its history and events stay): the person can come back."""
    with unscoped() as session:
        customer = session.get(factories.Account, world.accounts["customer_a"].id)
        gone = factories.user(customer, "leaver@aardvark.example", "Lee", "Ver")
        session.commit()
        gone_id = gone.id
    token = csrf_token(reseller_a_admin_client)
    deleted = reseller_a_admin_client.post(
        f"{_users_url(world)}/customer/{gone_id}/delete", data={"csrf_token": token, "confirmed": "yes"}
    )
    said = reseller_a_admin_client.get(deleted.location).text
    assert "leaver@aardvark.example" in said and "#deleted-" not in said
    response = _add_customer_user(reseller_a_admin_client, world, email="leaver@aardvark.example")
    assert response.status_code == 302
    again = _user("leaver@aardvark.example")
    assert again.id != gone_id and again.deleted_at is None
    with unscoped() as session:
        assert session.get(PortalUser, gone_id).deleted_at is not None
        assert session.scalar(select(func.count(Event.id)).where(Event.target_id == str(gone_id))) >= 1


@pytest.mark.parametrize(
    "address", ["default.masteradmin@mycloudstore.co.nz", "DEFAULT.MasterAdmin@mycloudstore.co.nz"]
)
def test_the_placeholder_address_is_nobodys_login(world, reseller_a_admin_client, address):
    before = database_fingerprint()
    response = _add_customer_user(reseller_a_admin_client, world, email=address)
    assert response.status_code == 400 and "stand-in for a master admin" in response.text
    assert database_fingerprint() == before


def test_disable_and_enable(world, reseller_a_admin_client, login):
    user_client = login(world.users["customer_a_master_admin"].email)
    with unscoped() as session:  # a second master admin so the first may be disabled
        customer = session.get(factories.Account, world.accounts["customer_a"].id)
        factories.user(customer, "second@aardvark.example", master_admin=True)
        session.commit()
    master = world.users["customer_a_master_admin"]
    token = csrf_token(reseller_a_admin_client)
    reseller_a_admin_client.post(
        f"{_users_url(world)}/customer/{master.id}/disable", data={"csrf_token": token, "confirmed": "yes"}
    )
    assert not _member(master.email, master.account_id).active
    assert _user(master.email).active  # the membership is disabled; the login (the person's) stays
    assert "/login/" in user_client.get("/").location  # the signed-in session ends at its next request
    reseller_a_admin_client.post(f"{_users_url(world)}/customer/{master.id}/enable", data={"csrf_token": token})
    assert _member(master.email, master.account_id).active
    assert login(master.email).get("/", follow_redirects=True).status_code == 200


def test_edit_customer_user(world, reseller_a_admin_client):
    master = world.users["customer_a_master_admin"]
    response = reseller_a_admin_client.post(
        f"{_users_url(world)}/customer/{master.id}/edit",
        data={
            "csrf_token": csrf_token(reseller_a_admin_client),
            "first_name": "Mara",
            "last_name": "Mastery",
            "email": "Mara@Aardvark.example",
            "mobile": "+64 21 000 000",
            "admin": "y",
            "master_admin": "y",
        },
    )
    assert response.status_code == 302
    user = _user("mara@aardvark.example")
    assert (user.last_name, user.mobile, user.username) == ("Mastery", "+64 21 000 000", "mara@aardvark.example")


def test_edit_the_default_master_admin_placeholder(world, reseller_a_admin_client):
    pid = world.rows["a"]["placeholder"]
    response = reseller_a_admin_client.post(
        f"{_users_url(world)}/placeholder/{pid}/edit",
        data={
            "csrf_token": csrf_token(reseller_a_admin_client),
            "first_name": "IT",
            "last_name": "Support",
            "email": "ITsupport@Aardvark.example",
        },
    )
    assert response.status_code == 302
    with unscoped() as session:
        placeholder = session.get(PlaceholderUser, pid)
        assert (placeholder.name, placeholder.email) == ("IT Support", "itsupport@aardvark.example")
        assert session.scalar(select(func.count(PortalUser.id)).where(PortalUser.email == placeholder.email)) == 0


def test_editing_the_placeholder_to_an_address_in_use_is_refused_beside_the_field(world, reseller_a_admin_client):
    pid = world.rows["a"]["placeholder"]
    before = database_fingerprint()
    response = reseller_a_admin_client.post(
        f"{_users_url(world)}/placeholder/{pid}/edit",
        data={
            "csrf_token": csrf_token(reseller_a_admin_client),
            "first_name": "Bo",
            "last_name": "Again",
            # another reseller's customer login (this reseller's own logins may be the master admin of several)
            "email": world.users["customer_b_master_admin"].email,
        },
    )
    assert response.status_code == 400
    assert 'data-error-for="email">master@bluebird.example is already used by another login' in response.text
    assert "master+aardvarkfarms@bluebird.example" in response.text
    assert "Bluebird" not in response.text and "Bravo" not in response.text  # never whose it is
    assert database_fingerprint() == before
    # The address of someone already a user of this customer: refused at once too, not at Activate (CP3).
    same = reseller_a_admin_client.post(
        f"{_users_url(world)}/placeholder/{pid}/edit",
        data={
            "csrf_token": csrf_token(reseller_a_admin_client),
            "first_name": "Mara",
            "last_name": "Again",
            "email": world.users["customer_a_master_admin"].email,
        },
    )
    assert same.status_code == 400
    assert 'data-error-for="email">master@aardvark.example is already a user of Aardvark Farms.' in same.text
    assert database_fingerprint() == before


# -- partner portal users ------------------------------------------------------------------------------------


def _add_partner_user(client, world, **fields):
    data = {
        "csrf_token": csrf_token(client),
        "first_name": "Pia",
        "last_name": "Partner",
        "email": "pia@alpha.example",
        "password": "lighthouse keeper morning",
        "confirm": "lighthouse keeper morning",
        **fields,
    }
    return client.post(f"{_users_url(world, 'reseller_a')}/partner/new", data=data)


def test_add_partner_user_with_a_password_set_by_the_adder(world, reseller_a_admin_client, login):
    assert _add_partner_user(reseller_a_admin_client, world, csp_admin="y").status_code == 302
    user = _user("pia@alpha.example")
    assert user.portal == "partner" and user.is_csp_admin and user.roles == ["Partner CSP Admin"]
    assert login("pia@alpha.example", "lighthouse keeper morning").get("/").status_code == 200


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short", "Use at least 12 characters."),
        ("password1234", "commonly used password"),
        ("qwertyuiop123", "commonly used password"),
    ],
)
def test_partner_password_policy(world, reseller_a_admin_client, password, message):
    before = database_fingerprint()
    response = _add_partner_user(reseller_a_admin_client, world, password=password, confirm=password)
    assert response.status_code == 400 and re.search(rf'data-error-for="password">[^<]*{message}', response.text)
    assert database_fingerprint() == before


def test_partner_password_change(world, reseller_a_admin_client, login):
    user = world.users["reseller_a_user"]
    url = f"{_users_url(world, 'reseller_a')}/partner/{user.id}/password"
    response = reseller_a_admin_client.post(
        url,
        data={
            "csrf_token": csrf_token(reseller_a_admin_client),
            "password": "river stone compass",
            "confirm": "river stone compass",
        },
    )
    assert response.status_code == 302
    assert login(user.email, "river stone compass").get("/").status_code == 200


def test_partner_user_edit_makes_csp_admin(world, reseller_a_admin_client):
    user = world.users["reseller_a_user"]
    response = reseller_a_admin_client.post(
        f"{_users_url(world, 'reseller_a')}/partner/{user.id}/edit",
        data={
            "csrf_token": csrf_token(reseller_a_admin_client),
            "first_name": "Una",
            "last_name": "User",
            "email": user.email,
            "csp_admin": "y",
        },
    )
    assert response.status_code == 302
    assert _user(user.email).roles == ["Partner CSP Admin"]


def test_a_partner_user_manages_customer_users_but_not_partner_users(world, reseller_a_user_client):
    assert reseller_a_user_client.get(f"{_users_url(world)}/customer/new").status_code == 200
    assert reseller_a_user_client.get(f"{_users_url(world, 'reseller_a')}/partner/new").status_code == 403
    page = reseller_a_user_client.get(_users_url(world, "reseller_a")).text
    assert ">Password<" not in page


def test_nobody_changes_their_own_sign_in_from_the_tab(world, reseller_a_admin_client):
    me = world.users["reseller_a_admin"]
    reseller_a_admin_client.post(
        f"{_users_url(world, 'reseller_a')}/partner/{me.id}/disable",
        data={"csrf_token": csrf_token(reseller_a_admin_client)},
    )
    assert _user(me.email).active


# -- forgot your password ------------------------------------------------------------------------------------------


def _ask_for_reset(app, email):
    visitor = app.test_client()
    page = visitor.get("/activate/forgot")
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
    response = visitor.post("/activate/forgot", data={"csrf_token": token, "email": email})
    wait_for_mail()  # the mail outbox sends it after the answer
    return response


def test_forgot_password_emails_a_link_that_sets_a_new_one(app, world, login):
    assert "Forgot your password?" in app.test_client().get("/login/").text
    email = world.users["customer_a_master_admin"].email
    with smtp_server() as (inbox, port), mail_through_smtp(app, port):
        response = _ask_for_reset(app, email.upper())
    assert response.status_code == 302
    assert len(inbox.messages) == 1 and "new password" in inbox.messages[0]["Subject"]
    link = link_in(inbox.messages[0])
    visitor = app.test_client()
    page = visitor.get(link)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
    new = "a brand new long passphrase"
    assert visitor.post(link, data={"csrf_token": token, "password": new, "confirm": new}).status_code == 302
    login(email, new)  # signs in with the new password
    assert app.test_client().get(link).status_code == 410  # once only


@pytest.mark.parametrize("who", ["nobody@nowhere.example", "disabled"])
def test_forgot_password_says_the_same_and_sends_nothing_when_there_is_no_login(app, world, who):
    if who == "disabled":
        with unscoped() as session:
            user = session.get(PortalUser, world.users["reseller_a_user"].id)
            user.active = False
            session.commit()
            who = user.email
    with smtp_server() as (inbox, port), mail_through_smtp(app, port):
        response = _ask_for_reset(app, who)
    assert response.status_code == 302 and inbox.messages == []


def test_forgot_password_bad_input_is_told_beside_the_field(app):
    response = _ask_for_reset(app, "not an address")
    assert response.status_code == 400 and 'data-error-for="email">Enter a valid email address.' in response.text


# -- change my password --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["reseller_a_user", "customer_a_master_admin", "ops_admin"])
def test_change_my_password_knowing_the_current_one(app, world, login, who):
    email = world.users[who].email
    client = login(email)
    token = csrf_token(client, "/profile/password")
    new = "another long passphrase here"
    wrong = client.post(
        "/profile/password", data={"csrf_token": token, "current": "not it at all", "password": new, "confirm": new}
    )
    assert wrong.status_code == 400 and 'data-error-for="current">That is not your current password.' in wrong.text
    weak = client.post(
        "/profile/password",
        data={"csrf_token": token, "current": factories.PASSWORD, "password": "short", "confirm": "short"},
    )
    assert weak.status_code == 400 and 'data-error-for="password">' in weak.text
    done = client.post(
        "/profile/password", data={"csrf_token": token, "current": factories.PASSWORD, "password": new, "confirm": new}
    )
    assert done.status_code == 302
    login(email, new)
    with unscoped() as session:
        assert session.scalar(select(func.count(Event.id)).where(Event.action == "user.password_set")) == 1


def test_nobody_launched_changes_the_customers_password(world, reseller_a_admin_client):
    _launch(reseller_a_admin_client, world)
    assert reseller_a_admin_client.get("/profile/password").status_code == 403
    before = database_fingerprint()
    token = csrf_token(reseller_a_admin_client, f"/portal/{world.accounts['customer_a'].id}/")
    response = reseller_a_admin_client.post(
        "/profile/password",
        data={"csrf_token": token, "current": factories.PASSWORD, "password": "x" * 20, "confirm": "x" * 20},
    )
    assert response.status_code == 403 and database_fingerprint() == before


def test_a_resellers_own_portal_invites_customer_logins_only_and_shows_none_of_the_partner_side(
    app, world, reseller_a_admin_client, login
):
    _reseller_own_portal_user(app, world, reseller_a_admin_client)
    own = login("ivy@alpha.example")
    reseller = world.accounts["reseller_a"].id
    with smtp_server() as (inbox, port), mail_through_smtp(app, port):
        response = own.post(
            f"/portal/{reseller}/users/new",
            data={"csrf_token": csrf_token(own), "first_name": "Mal", "last_name": "Lory", "email": "mal@evil.example"},
        )
    assert response.status_code == 302
    made = _user("mal@evil.example")
    assert (made.portal, made.account_id) == ("customer", reseller)  # never a partner portal login
    assert "Welcome to the Mycloudstore Partner Portal" not in [m["Subject"] for m in inbox.messages]
    people = own.get(f"/portal/{reseller}/users").text
    assert "mal@evil.example" in people and world.users["reseller_a_admin"].email not in people
    events = own.get(f"/portal/{reseller}/events").text
    assert "mal@evil.example" in events  # what happened in this portal
    assert "Aardvark" not in events and "Anchor" not in events  # not the reseller's work on its customers


@pytest.mark.parametrize("who", ["reseller_a_user", "launched_partner_user"])
def test_only_those_who_may_order_make_a_master_admin(app, world, login, who):
    """A Master Admin can order: a Partner User (directly, or launched as a Master Admin) cannot mint one."""
    client = login(world.users["reseller_a_user"].email)
    customer = world.accounts["customer_a"].id
    before = database_fingerprint()
    if who == "reseller_a_user":
        response = client.post(
            f"{_users_url(world)}/customer/new",
            data={
                "csrf_token": csrf_token(client),
                "first_name": "Jo",
                "last_name": "Self",
                "email": "jo.self@elsewhere.example",
                "master_admin": "y",
            },
        )
        assert response.status_code == 403 and "Only someone who may order" in response.text
        activated = client.post(
            f"{_users_url(world)}/placeholder/{world.rows['a']['placeholder']}/activate",
            data={"csrf_token": csrf_token(client)},
        )
        assert "Ask a Partner CSP Admin" in client.get(activated.location).text
    else:
        _launch(client, world)
        response = client.post(
            f"/portal/{customer}/users/new",
            data={
                "csrf_token": csrf_token(client, f"/portal/{customer}/"),
                "first_name": "Jo",
                "last_name": "Self",
                "email": "jo.self@elsewhere.example",
                "master_admin": "y",
            },
        )
        assert response.status_code == 403 and "Only someone who may order" in response.text
    assert database_fingerprint() == before or who == "launched_partner_user"  # launching records its events
    assert _count_users("jo.self@elsewhere.example") == 0


def _count_users(email: str) -> int:
    with unscoped() as session:
        return session.scalar(select(func.count(PortalUser.id)).where(PortalUser.email == email))


def test_a_new_password_ends_the_users_other_sessions(app, world, login):
    email = world.users["reseller_a_user"].email
    laptop, phone = login(email), login(email)
    token = csrf_token(laptop, "/profile/password")
    new = "a fresh long passphrase here"
    changed = laptop.post(
        "/profile/password", data={"csrf_token": token, "current": factories.PASSWORD, "password": new, "confirm": new}
    )
    assert changed.status_code == 302
    assert laptop.get("/").status_code == 200  # the session that changed it goes on
    ended = phone.get("/")
    assert ended.status_code == 302 and "/login" in ended.location
    assert phone.get("/").status_code == 302  # for good

"""Microsoft 365 users as in Microsoft's admin centre (issue 15): Add user with a usage location (its temporary password
made by the portal and shown once), Edit (names, display name, usage location — at Microsoft first, read back when
the answer is lost), Disable and Unassign ask first, and Import users from a CSV with a line-by-line report. Another
reseller gets 404 and a customer user without the Microsoft 365 Admin capability 403, changing nothing; the Partner
Center client's update_user is checked against the local HTTPS fake."""

from __future__ import annotations

import html
import logging
import re

import pytest
from sqlalchemy import func, select

from app.csp.base import ProviderError, new_correlation_id
from app.csp.partner_center import PartnerCenterProvider
from app.models.accounts import Account
from app.models.csp import SandboxUser
from app.models.events import Event
from app.models.subscriptions import LicenceAssignment, M365User, Subscription
from app.services import m365_import, recovery
from tests import factories
from tests.conftest import csrf_token, unscoped
from tests.integration.test_impersonation import _launch
from tests.integration.test_operations_recovery import _later, _nowhere, _operation, differences
from tests.integration.test_partner_center_client import PROFILE
from tests.integration.test_scoping import database_fingerprint

DOMAIN = "aardvark.onmicrosoft.com"


def _base(world, key: str = "customer_a") -> str:
    return f"/portal/{world.accounts[key].id}/services/microsoft-csp"


def _person_id(world) -> int:
    return world.rows["a"]["m365_user"]


def _portal_user(upn: str) -> M365User | None:
    with unscoped() as session:
        person = session.scalars(select(M365User).where(M365User.user_principal_name == upn)).first()
        if person is not None:
            session.expunge(person)
        return person


def _at_microsoft(upn: str) -> SandboxUser | None:
    with unscoped() as session:
        user = session.scalars(select(SandboxUser).where(SandboxUser.user_principal_name == upn)).first()
        if user is not None:
            session.expunge(user)
        return user


def _events(action: str) -> list[str]:
    with unscoped() as session:
        return list(session.scalars(select(Event.summary).where(Event.action == action).order_by(Event.id)))


def _text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def _new_user(client, world, **fields):
    data = {
        "csrf_token": csrf_token(client),
        "first_name": "Nia",
        "last_name": "Ngata",
        "display_name": "",
        "username": "nia",
        "usage_location": "AU",
        **fields,
    }
    return client.post(f"{_base(world)}/users", data=data)


# -- Add user ---------------------------------------------------------------------------------------------------------


def test_the_users_screen_offers_add_import_and_edit(world, customer_a_master_admin_client):
    page = customer_a_master_admin_client.get(_base(world)).text
    assert f"{_base(world)}/users/new" in page and ">Add a user<" in page
    assert f"{_base(world)}/users/import" in page and ">Import users<" in page
    assert f"/users/{_person_id(world)}/edit" in page and "Usage location" in page


def test_the_add_user_form_asks_what_microsofts_admin_centre_asks(world, customer_a_master_admin_client):
    page = _text(customer_a_master_admin_client.get(f"{_base(world)}/users/new"))
    for label in ("First name", "Last name", "Display name", "User name", "Usage location"):
        assert f">{label}" in page, label
    assert f"@{DOMAIN}" in page and 'placeholder="First Last"' in page
    assert '<option selected value="NZ">New Zealand (NZ)</option>' in page  # the customer's country
    assert 'value="AU">Australia (AU)</option>' in page
    assert 'type="password"' not in page  # the portal makes the temporary password


def test_add_user_with_a_usage_location_shows_its_temporary_password_once(
    world, customer_a_master_admin_client, caplog
):
    caplog.set_level(logging.DEBUG)
    client = customer_a_master_admin_client
    response = _new_user(client, world)
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    page = _text(response)
    assert f"Added Microsoft 365 user nia@{DOMAIN} (Nia Ngata, usage location AU)" in page
    password = re.search(r'data-test="password">([^<]+)<', page).group(1)
    assert len(password) >= 16

    person, remote = _portal_user(f"nia@{DOMAIN}"), _at_microsoft(f"nia@{DOMAIN}")
    assert (person.first_name, person.last_name, person.display_name, person.usage_location) == (
        "Nia",
        "Ngata",
        "Nia Ngata",  # the display name defaults to "First Last"
        "AU",
    )
    assert (remote.first_name, remote.last_name, remote.display_name, remote.usage_location) == (
        "Nia",
        "Ngata",
        "Nia Ngata",
        "AU",
    )
    assert remote.user_id == person.provider_user_id
    assert any(f"nia@{DOMAIN} (Nia Ngata) added, usage location AU" in s for s in _events("m365_user.created"))
    assert _operation("m365_user_create").state == "succeeded"

    after = client.get(_base(world)).text
    assert password not in after and f"nia@{DOMAIN}" in after  # once: not on the next page, not in a flash
    assert password not in caplog.text
    _nowhere(password)
    assert differences(world.accounts["customer_a"].id) == []


def test_add_user_takes_a_display_name_of_its_own(world, customer_a_master_admin_client):
    response = _new_user(customer_a_master_admin_client, world, display_name="Nia from Accounts")
    assert response.status_code == 200
    assert _portal_user(f"nia@{DOMAIN}").display_name == "Nia from Accounts"
    assert _at_microsoft(f"nia@{DOMAIN}").display_name == "Nia from Accounts"


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"usage_location": "XX"}, "usage_location", "Choose the country where they use Microsoft 365."),
        ({"usage_location": ""}, "usage_location", "Choose the country where they use Microsoft 365."),
        ({"username": "ni a"}, "username", "Use letters, digits and . _ - only."),
        ({"username": "nia."}, "username", "It cannot start or end with a full stop"),
        ({"username": "p0"}, "username", f"p0@{DOMAIN} already exists."),
        ({"first_name": "N" * 65}, "first_name", "Field cannot be longer than 64 characters."),
        ({"display_name": "Nia\x07"}, "display_name", "cannot be part of a name"),
    ],
)
def test_bad_input_to_add_user_is_said_beside_its_field(world, customer_a_master_admin_client, fields, field, message):
    client = customer_a_master_admin_client
    token = csrf_token(client)  # a customer login's first page chooses its account (an event): before the snapshot
    before = database_fingerprint()
    response = _new_user(client, world, csrf_token=token, **fields)
    assert response.status_code == 400
    page = _text(response)
    assert re.search(rf'data-error-for="{field}">[^<]*{re.escape(message)}', page), page[-3000:]
    assert 'value="Ngata"' in page  # what was typed is still there
    assert database_fingerprint() == before


# -- Edit ------------------------------------------------------------------------------------------------------------


def _edit(client, world, person_id, **fields):
    data = {
        "csrf_token": csrf_token(client),
        "first_name": "Pita",
        "last_name": "Person",
        "display_name": "Pita Person (Sales)",
        "usage_location": "AU",
        **fields,
    }
    return client.post(f"{_base(world)}/users/{person_id}/edit", data=data)


def test_edit_changes_the_user_at_microsoft_and_here(world, customer_a_master_admin_client):
    client, person = customer_a_master_admin_client, _person_id(world)
    form = _text(client.get(f"{_base(world)}/users/{person}/edit"))
    assert f"Edit p0@{DOMAIN}" in form and 'value="Aardvark Person 0"' in form
    assert 'value="Aardvark"' in form  # a user recorded before names were kept: guessed from its display name
    response = _edit(client, world, person)
    assert response.status_code == 302
    assert f"p0@{DOMAIN} is changed at Microsoft: Pita Person (Sales), usage location AU." in _text(
        client.get(_base(world))
    )
    remote, here = _at_microsoft(f"p0@{DOMAIN}"), _portal_user(f"p0@{DOMAIN}")
    for record in (remote, here):
        assert (record.first_name, record.last_name, record.display_name, record.usage_location) == (
            "Pita",
            "Person",
            "Pita Person (Sales)",
            "AU",
        )
    [summary] = _events("m365_user.updated")
    assert "display name Aardvark Person 0 → Pita Person (Sales)" in summary and "usage location" in summary
    operation = _operation("m365_user_update")
    assert operation.state == "succeeded" and operation.target == f"m365_user:{person}"
    assert differences(world.accounts["customer_a"].id) == []

    again = _edit(client, world, person)  # the same details again: nothing to send
    assert again.status_code == 302 and "Nothing to change" in _text(client.get(_base(world)))
    assert len(_events("m365_user.updated")) == 1


def test_an_edit_microsoft_refuses_says_what_is_true(world, customer_a_master_admin_client, sandbox):
    client, person = customer_a_master_admin_client, _person_id(world)
    sandbox.fail_rate, sandbox.fail_operations = 1.0, frozenset({"update_user"})
    response = _edit(client, world, person)
    page = _text(response)
    assert f"Microsoft did not change the details of p0@{DOMAIN}" in page and "as Microsoft confirms" in page
    assert 'value="Pita Person (Sales)"' in page  # the form, with what was typed
    assert _portal_user(f"p0@{DOMAIN}").display_name == "Aardvark Person 0"
    assert _at_microsoft(f"p0@{DOMAIN}").display_name == "Aardvark Person 0"
    assert _operation("m365_user_update").state == "failed"


def test_an_edit_whose_answer_is_lost_is_read_back(world, customer_a_master_admin_client, sandbox):
    client, person = customer_a_master_admin_client, _person_id(world)
    sandbox.lost_answer_rate = 1.0  # Microsoft makes the change; its answer is lost
    assert _edit(client, world, person).status_code == 302
    assert _portal_user(f"p0@{DOMAIN}").usage_location == "AU"
    assert _operation("m365_user_update").state == "succeeded"


def test_an_unconfirmed_edit_says_not_known_and_recovery_settles_it(
    app, world, customer_a_master_admin_client, sandbox
):
    client, person = customer_a_master_admin_client, _person_id(world)
    sandbox.lost_answer_rate = 1.0
    sandbox.fail_rate, sandbox.fail_operations = 1.0, frozenset({"get_user"})
    page = _text(_edit(client, world, person))
    assert "not known yet: look again in a minute" in page and "Nothing was changed" not in page
    assert _operation("m365_user_update").state == "pending"
    assert _at_microsoft(f"p0@{DOMAIN}").usage_location == "AU"  # done at Microsoft; the portal does not know yet
    assert _portal_user(f"p0@{DOMAIN}").usage_location is None

    sandbox.lost_answer_rate, sandbox.fail_rate = 0.0, 0.0
    repaired = len(_events("m365_user.repaired"))
    with _later(), app.app_context():
        assert recovery.recover_all() == 1
    assert _operation("m365_user_update").state == "succeeded"
    here = _portal_user(f"p0@{DOMAIN}")
    assert (here.display_name, here.usage_location) == ("Pita Person (Sales)", "AU")
    assert len(_events("m365_user.repaired")) == repaired + 1


def test_bad_input_to_edit_is_said_beside_its_field_and_changes_nothing(world, customer_a_master_admin_client):
    client, person = customer_a_master_admin_client, _person_id(world)
    token = csrf_token(client)
    before = database_fingerprint()
    response = _edit(client, world, person, csrf_token=token, last_name="", usage_location="Narnia")
    assert response.status_code == 400
    page = _text(response)
    assert 'data-error-for="last_name">Last name: Last name is required.' in page
    assert 'data-error-for="usage_location">Usage location: Choose the country' in page
    assert database_fingerprint() == before


# -- asking first ------------------------------------------------------------------------------------------------------


def test_disable_asks_first_naming_what_happens(world, customer_a_master_admin_client):
    client, person = customer_a_master_admin_client, _person_id(world)
    assert "They can no longer sign in to Microsoft 365; they keep their licences." in _text(client.get(_base(world)))
    token = csrf_token(client)
    before = database_fingerprint()
    response = client.post(f"{_base(world)}/users/{person}/disable", data={"csrf_token": token})
    assert response.status_code == 200
    page = _text(response)
    assert 'data-test="confirm-page"' in page and f"Disable p0@{DOMAIN}?" in page
    assert "can no longer sign in to Microsoft 365" in page and "keep their licences" in page
    assert 'name="confirmed" value="yes"' in page and f"/users/{person}/disable" in page
    assert database_fingerprint() == before and _at_microsoft(f"p0@{DOMAIN}").enabled
    confirmed = client.post(f"{_base(world)}/users/{person}/disable", data={"csrf_token": token, "confirmed": "yes"})
    assert confirmed.status_code == 302 and not _at_microsoft(f"p0@{DOMAIN}").enabled


def test_unassign_asks_first_naming_what_happens(world, customer_a_master_admin_client):
    client, person = customer_a_master_admin_client, _person_id(world)
    sub = world.rows["a"]["subscription"]
    path = f"{_base(world)}/subscriptions/{sub}/unassign"
    token = csrf_token(client)
    before = database_fingerprint()
    response = client.post(path, data={"csrf_token": token, "m365_user_id": str(person)})
    assert response.status_code == 200
    page = _text(response)
    assert 'data-test="confirm-page"' in page
    assert "Aardvark Person 0 loses Microsoft 365 Business Basic" in page and "free for someone else" in page
    assert f'name="m365_user_id" value="{person}"' in page and 'name="confirmed" value="yes"' in page
    assert database_fingerprint() == before
    done = client.post(path, data={"csrf_token": token, "m365_user_id": str(person), "confirmed": "yes"})
    assert done.status_code == 302
    with unscoped() as session:
        assert not session.scalar(
            select(func.count(LicenceAssignment.id)).where(
                LicenceAssignment.subscription_id == sub, LicenceAssignment.m365_user_id == person
            )
        )
        assert session.get(Subscription, sub).assigned == 2


# -- Import users ----------------------------------------------------------------------------------------------------


def _import(client, world, content: bytes, name: str = "users.csv", token: str | None = None):
    import io

    return client.post(
        f"{_base(world)}/users/import",
        data={"csrf_token": token or csrf_token(client), "users_file": (io.BytesIO(content), name)},
        content_type="multipart/form-data",
    )


MIXED = (
    "\ufeffUser Name,First Name,Last Name,Display Name,Job Title,Usage Location\n"
    "ana,Ana,Ngata,,Accountant,NZ\n"  # line 2: a bare name
    f"Ben@{DOMAIN.upper()},Ben,Hohaia,Ben H,,au\n"  # 3: the tenant's domain, any case
    ",No,Name,,,NZ\n"  # 4: no user name
    "cat@contoso.com,Cat,Smith,,,NZ\n"  # 5: another domain
    "ana,Ana,Again,,,NZ\n"  # 6: twice in the file
    "p0,Pat,Zero,,,NZ\n"  # 7: exists already
    "dan,Dan,Moa,,,Narnia\n"  # 8: not a usage location
    f"eve,{'E' * 65},Long,,,NZ\n"  # 9: too long
    "old,Old,Timer,,,NZ\n"  # 10: Microsoft has it already (not the portal): Microsoft refuses
    ",,,,,\n"  # a blank line: skipped
    "fay,Fay,Tui,,,\n"  # 12: no usage location: the customer's country
).encode()


def test_import_creates_the_valid_lines_and_says_why_each_other_line_is_refused(
    app, world, customer_a_master_admin_client, sandbox, caplog
):
    caplog.set_level(logging.DEBUG)
    client = customer_a_master_admin_client
    with app.app_context():
        tenant = sandbox.adopt_customer("aardvark", "Aardvark Farms")
        sandbox.create_user(
            tenant,
            first_name="Old",
            last_name="Timer",
            user_principal_name=f"old@{DOMAIN}",
            password="Some-0ther-Password!",
            usage_location="NZ",
            correlation_id=new_correlation_id(),
        )
    response = _import(client, world, MIXED)
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    page = _text(response)
    assert "users.csv: 3 users added, 7 refused." in page

    def row(number: int) -> str:
        return re.search(rf'<tr data-line="{number}"[^>]*>(.*?)</tr>', page, re.S).group(1)

    passwords = {}
    for number, upn in ((2, f"ana@{DOMAIN}"), (3, f"ben@{DOMAIN}"), (12, f"fay@{DOMAIN}")):
        assert upn in row(number) and "Added" in row(number)
        passwords[upn] = re.search(r'data-test="password">([^<]+)<', row(number)).group(1)
    assert "User Name is missing." in row(4)
    assert f"contoso.com is not this tenant's domain: use cat@{DOMAIN}, or cat alone." in row(5)
    assert f"ana@{DOMAIN} is also on line 2." in row(6)
    assert f"p0@{DOMAIN} already exists." in row(7)
    assert "Narnia is not a usage location: use the country's two letters, for example NZ." in row(8)
    assert "First Name is longer than 64 characters." in row(9)
    assert "Microsoft did not create the user" in row(10) and "already existed at Microsoft" in row(10)
    assert 'data-line="11"' not in page  # the blank line

    for upn, location, display in (
        (f"ana@{DOMAIN}", "NZ", "Ana Ngata"),
        (f"ben@{DOMAIN}", "AU", "Ben H"),
        (f"fay@{DOMAIN}", "NZ", "Fay Tui"),
    ):
        person, remote = _portal_user(upn), _at_microsoft(upn)
        assert (person.usage_location, person.display_name) == (location, display)
        assert (remote.usage_location, remote.display_name) == (location, display)
    assert _portal_user(f"dan@{DOMAIN}") is None and _at_microsoft(f"dan@{DOMAIN}") is None
    [summary] = _events("m365_user.imported")
    assert summary == "Import users from users.csv: 3 created, 7 refused of 10 lines"
    assert differences(world.accounts["customer_a"].id) == []  # old@ is listed now, as Microsoft has it
    assert len(set(passwords.values())) == 3
    after = client.get(_base(world)).text
    for password in passwords.values():
        assert password not in after and password not in caplog.text
        _nowhere(password)


def test_import_reads_country_or_region_semicolons_and_full_addresses(world, customer_a_master_admin_client):
    content = "User Name;First Name;Last Name;Country or Region\r\ngus;Gus;Reti;Australia\r\nhal;Hal;Ra;GB\r\n"
    response = _import(customer_a_master_admin_client, world, content.encode())
    assert "2 users added, 0 refused" in _text(response)
    assert _portal_user(f"gus@{DOMAIN}").usage_location == "AU"
    assert _at_microsoft(f"hal@{DOMAIN}").usage_location == "GB"


def test_an_import_that_runs_out_of_time_says_which_lines_to_import_again(app, world, customer_a_master_admin_client):
    """A web worker is ended after 30 s and the passwords on its answer with it: an import stops adding users once
    M365_IMPORT_SECONDS have passed; importing the same file again adds the rest."""
    client = customer_a_master_admin_client
    content = b"User Name,First Name,Last Name\nivy,Ivy,Kahu\njon,Jon,Kahu\nkim,Kim,Kahu\n"
    saved = app.config.get("M365_IMPORT_SECONDS")
    app.config["M365_IMPORT_SECONDS"] = 0.0  # one user, then out of time
    try:
        page = _text(_import(client, world, content))
        assert "1 user added, 0 refused, 2 not added yet: import the same file again to add them." in page
        assert page.count("Not added yet: the import stopped to answer in time.") == 2
        assert _portal_user(f"ivy@{DOMAIN}") and _portal_user(f"jon@{DOMAIN}") is None
        app.config["M365_IMPORT_SECONDS"] = 60.0
        again = _text(_import(client, world, content))
    finally:
        app.config.pop("M365_IMPORT_SECONDS")
        if saved is not None:
            app.config["M365_IMPORT_SECONDS"] = saved
    assert "2 users added, 1 refused." in again and f"ivy@{DOMAIN} already exists." in again
    assert _portal_user(f"jon@{DOMAIN}") and _portal_user(f"kim@{DOMAIN}")
    assert _events("m365_user.imported")[0].endswith("1 created, 0 refused, 2 not tried yet of 3 lines")


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (
            b"User Name,First Name,Last Name\n" + b"".join(b"u%d,U,Ser\n" % i for i in range(501)),
            "many.csv",
            "The file has more than 500 users: import at most 500 at a time.",
        ),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\xff", "photo.csv", "This is not a CSV file"),
        (b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00\xa8\x9c", "users.xlsx", "This is not a CSV file"),
        (b"Name,Email\nAna,ana@example.com\n", "other.csv", "The first line must name the columns, User Name among"),
        (b"User Name,First Name,Last Name\n", "empty.csv", "The file has no users under its column names."),
        (b"", "nothing.csv", "The file is empty."),
        (b"User Name\n" + b"x" * (1024 * 1024), "huge.csv", "The file is larger than 1 MB"),
        (b'User Name,First Name\n"ana,Ana\x00\n', "nul.csv", "This is not a CSV file"),
    ],
)
def test_a_file_that_cannot_be_imported_is_said_beside_the_field(
    world, customer_a_master_admin_client, content, name, message
):
    client = customer_a_master_admin_client
    token = csrf_token(client)
    before = database_fingerprint()
    response = _import(client, world, content, name, token)
    assert response.status_code == 400
    page = _text(response)
    assert re.search(rf'data-error-for="users_file">[^<]*{re.escape(message)}', page), page[-2000:]
    assert database_fingerprint() == before


def test_import_without_a_file_asks_for_one(world, customer_a_master_admin_client):
    client = customer_a_master_admin_client
    response = client.post(f"{_base(world)}/users/import", data={"csrf_token": csrf_token(client)})
    assert response.status_code == 400
    assert 'data-error-for="users_file">Choose the CSV file of the users to add.' in response.text


def test_the_import_page_says_the_columns(world, customer_a_master_admin_client):
    page = _text(customer_a_master_admin_client.get(f"{_base(world)}/users/import"))
    assert 'enctype="multipart/form-data"' in page and 'name="users_file"' in page
    assert "User Name,First Name,Last Name,Display Name,Usage Location" in page
    assert f"name@{DOMAIN}" in page


def test_usage_locations_are_the_iso_countries():
    locations = m365_import.usage_locations()
    assert locations["NZ"] == "New Zealand" and "EU" not in locations and "ZZ" not in locations
    assert 240 <= len(locations) <= 250
    assert m365_import.usage_location_of("new  zealand") == "NZ" and m365_import.usage_location_of("nz") == "NZ"
    assert m365_import.usage_location_of("Narnia") is None


# -- who may ----------------------------------------------------------------------------------------------------------

NEW_ROUTES = [
    ("GET", "/users/new"),
    ("POST", "/users"),
    ("GET", "/users/{person}/edit"),
    ("POST", "/users/{person}/edit"),
    ("GET", "/users/import"),
    ("POST", "/users/import"),
    ("POST", "/users/{person}/disable"),
]


def _try_every_new_route(client, world, bases, token, status, *, of_the_person_only=False):
    person = _person_id(world)
    for base in bases:
        for method, path in NEW_ROUTES:
            if of_the_person_only and "{person}" not in path:
                continue
            url = base + path.format(person=person)
            if method == "GET":
                answer = client.get(url)
            else:
                data = {
                    "csrf_token": token,
                    "confirmed": "yes",
                    "first_name": "Eve",
                    "last_name": "Evil",
                    "username": "eve",
                    "usage_location": "NZ",
                }
                answer = client.post(url, data=data)
            assert answer.status_code == status, (method, url, answer.status_code)


def test_another_reseller_gets_404_on_every_new_route_and_changes_nothing(world, reseller_b_admin_client):
    client = reseller_b_admin_client
    launched = _launch(client, world, target="customer_b_master_admin")  # in its own customer's portal
    assert launched.location == f"/portal/{world.accounts['customer_b'].id}/"
    token = csrf_token(client)
    before = database_fingerprint()
    _try_every_new_route(client, world, (_base(world),), token, 404)
    _try_every_new_route(client, world, (_base(world, "customer_b"),), token, 404, of_the_person_only=True)
    assert database_fingerprint() == before


def test_a_customer_user_without_microsoft_365_admin_gets_403_and_changes_nothing(world, login):
    with unscoped() as session:
        factories.user(
            session.get(Account, world.accounts["customer_a"].id), "plain@aardvark.example", cp3_enabled=True
        )
        session.commit()
    client = login("plain@aardvark.example")
    token = csrf_token(client)  # a customer login's first page chooses its account (an event): before the snapshot
    before = database_fingerprint()
    _try_every_new_route(client, world, (_base(world),), token, 403)
    assert database_fingerprint() == before
    assert ">Add a user<" not in client.get(_base(world)).text


# -- the Partner Center client -----------------------------------------------------------------------------------------


def test_partner_center_update_user_patches_the_names_and_usage_location(fake_partner_center):
    pc = fake_partner_center
    client = PartnerCenterProvider.from_config(pc.config())
    tenant = client.create_customer(PROFILE, correlation_id=new_correlation_id()).tenant_id
    user_id = client.create_user(
        tenant,
        first_name="Mere",
        last_name="Tane",
        user_principal_name="mere@kiwibikes.nz",
        password="Str0ng-Passw0rd!",
        usage_location="NZ",
        correlation_id=new_correlation_id(),
        display_name="Mere T",
    )
    assert pc.requests[-1].json["displayName"] == "Mere T"
    client.update_user(
        tenant,
        user_id,
        first_name="Mereana",
        last_name="Tane",
        display_name="Mereana Tane",
        usage_location="AU",
        correlation_id="c-update",
        request_id="r-update",
    )
    patch = pc.requests[-1]
    assert (patch.method, patch.path, patch.token, patch.status) == (
        "PATCH",
        f"/v1/customers/{tenant}/users/{user_id}",
        "user",
        200,
    )
    assert patch.header("MS-RequestId") == "r-update" and patch.header("MS-CorrelationId") == "c-update"
    assert patch.json == {
        "firstName": "Mereana",
        "lastName": "Tane",
        "displayName": "Mereana Tane",
        "usageLocation": "AU",
        "attributes": {"objectType": "CustomerUser"},
    }
    user = client.get_user(tenant, user_id, correlation_id=new_correlation_id())
    assert (user.first_name, user.last_name, user.display_name, user.usage_location) == (
        "Mereana",
        "Tane",
        "Mereana Tane",
        "AU",
    )
    with pytest.raises(ProviderError) as refused:
        client.update_user(
            tenant,
            user_id,
            first_name="Mereana",
            last_name="Tane",
            display_name="Mereana Tane",
            usage_location="Australia",
            correlation_id=new_correlation_id(),
        )
    assert refused.value.status == 400 and "two-letter" in str(refused.value)

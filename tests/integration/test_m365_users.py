"""The customer's Microsoft 365 users screen (Services ▸ Microsoft CSP): Disable and Enable really stop and let the user
sign in at Microsoft; Delete frees its licences; Reset password shows the new temporary password once, on the answer
page alone. A failed or unanswered call is answered with what is true. Another reseller gets 404 and changes nothing;
a customer user without the Microsoft 365 Admin capability cannot act."""

from __future__ import annotations

import html
import re

from sqlalchemy import select

from app.models.accounts import Account
from app.models.csp import SandboxUser
from app.models.subscriptions import M365User
from tests import factories
from tests.conftest import csrf_token, unscoped
from tests.integration.test_impersonation import _launch
from tests.integration.test_operations_recovery import _nowhere, differences
from tests.integration.test_scoping import database_fingerprint


def _base(world, key: str = "customer_a") -> str:
    return f"/portal/{world.accounts[key].id}/services/microsoft-csp"


def _person(world) -> tuple[int, str]:
    with unscoped() as session:
        person = session.get(M365User, world.rows["a"]["m365_user"])
        return person.id, person.provider_user_id


def _at_microsoft(user_id: str) -> SandboxUser | None:
    with unscoped() as session:
        user = session.scalars(select(SandboxUser).where(SandboxUser.user_id == user_id)).first()
        if user is not None:
            session.expunge(user)
        return user


def _post(client, path: str, token: str | None = None, confirmed: bool = True):
    data = {"csrf_token": token or csrf_token(client)}
    if confirmed:
        data["confirmed"] = "yes"  # the answer of the confirmation page (or of portal.js's dialog)
    return client.post(path, data=data)


def _flashed(client, world) -> str:
    return html.unescape(client.get(_base(world)).text)


def test_the_users_screen_offers_reset_password_and_delete(world, customer_a_master_admin_client):
    page = customer_a_master_admin_client.get(_base(world)).text
    person, _ = _person(world)
    assert f"/users/{person}/reset-password" in page and f"/users/{person}/delete" in page
    assert ">Reset password<" in page and ">Delete<" in page


def test_disable_and_enable_really_change_who_can_sign_in(world, customer_a_master_admin_client):
    client, (person, user_id) = customer_a_master_admin_client, _person(world)
    assert _post(client, f"{_base(world)}/users/{person}/disable").status_code == 302
    assert _at_microsoft(user_id).enabled is False  # the portal's "disabled" is true at Microsoft
    assert "is disabled" in _flashed(client, world)
    assert _post(client, f"{_base(world)}/users/{person}/enable").status_code == 302
    assert _at_microsoft(user_id).enabled is True
    assert differences(world.accounts["customer_a"].id) == []


def test_a_refused_disable_says_what_is_true(world, customer_a_master_admin_client, sandbox):
    client, (person, user_id) = customer_a_master_admin_client, _person(world)
    sandbox.fail_rate, sandbox.fail_operations = 1.0, frozenset({"set_user_enabled"})
    _post(client, f"{_base(world)}/users/{person}/disable")
    page = _flashed(client, world)
    assert "Microsoft did not disable p0@aardvark.onmicrosoft.com" in page
    assert "p0@aardvark.onmicrosoft.com is enabled, as Microsoft confirms." in page
    assert _at_microsoft(user_id).enabled is True
    with unscoped() as session:
        assert session.get(M365User, person).status == "active"


def test_an_unconfirmed_delete_says_it_is_not_known_yet(world, customer_a_master_admin_client, sandbox):
    client, (person, user_id) = customer_a_master_admin_client, _person(world)
    sandbox.lost_answer_rate = 1.0
    sandbox.fail_rate, sandbox.fail_operations = 1.0, frozenset({"get_user"})
    _post(client, f"{_base(world)}/users/{person}/delete")
    page = _flashed(client, world)
    assert "not known yet: look again in a minute" in page and "Nothing was changed" not in page
    assert _at_microsoft(user_id) is None  # deleted at Microsoft; the recoverer will record it


def test_delete_removes_the_user_here_and_at_microsoft(world, customer_a_master_admin_client):
    client, (person, user_id) = customer_a_master_admin_client, _person(world)
    response = _post(client, f"{_base(world)}/users/{person}/delete")
    assert response.status_code == 302
    assert "is deleted at Microsoft; its licences are free again" in _flashed(client, world)
    assert _at_microsoft(user_id) is None
    with unscoped() as session:
        assert session.get(M365User, person) is None
    assert differences(world.accounts["customer_a"].id) == []


def test_delete_asks_first_naming_what_happens_and_changes_nothing_until_confirmed(
    world, customer_a_master_admin_client
):
    client, (person, user_id) = customer_a_master_admin_client, _person(world)
    token = csrf_token(client)  # the first page of a customer login chooses its account (an event): before the snapshot
    before = database_fingerprint()
    response = _post(client, f"{_base(world)}/users/{person}/delete", token, confirmed=False)
    assert response.status_code == 200
    page = html.unescape(response.text)
    assert 'data-test="confirm-page"' in page and "can no longer sign in" in page
    assert 'name="confirmed" value="yes"' in page and f"/users/{person}/delete" in page
    assert database_fingerprint() == before and _at_microsoft(user_id) is not None
    confirmed = _post(client, f"{_base(world)}/users/{person}/delete")
    assert confirmed.status_code == 302 and _at_microsoft(user_id) is None


def test_reset_password_shows_the_temporary_password_once_and_keeps_it_nowhere(
    world, customer_a_master_admin_client, caplog
):
    client, (person, user_id) = customer_a_master_admin_client, _person(world)
    response = _post(client, f"{_base(world)}/users/{person}/reset-password")
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    password = html.unescape(re.search(r'data-test="password">([^<]+)<', response.text).group(1))
    assert len(password) >= 16
    assert _at_microsoft(user_id).password_reset_on is not None
    assert password not in client.get(_base(world)).text  # once: not on the next page, not in a flash
    assert password not in caplog.text
    _nowhere(password)


def test_another_reseller_gets_404_and_changes_nothing(world, reseller_b_admin_client):
    client = reseller_b_admin_client
    launched = _launch(client, world, target="customer_b_master_admin")  # in its own customer's portal
    assert launched.location == f"/portal/{world.accounts['customer_b'].id}/"
    person, _ = _person(world)  # customer A's, of reseller A
    token = csrf_token(client)
    before = database_fingerprint()
    for base in (_base(world), _base(world, "customer_b")):
        for action in ("delete", "reset-password", "disable"):
            response = _post(client, f"{base}/users/{person}/{action}", token)
            assert response.status_code == 404, (base, action)
    assert database_fingerprint() == before


def test_a_customer_user_without_microsoft_365_admin_cannot_act(app, world, login):
    with unscoped() as session:
        factories.user(
            session.get(Account, world.accounts["customer_a"].id), "plain@aardvark.example", cp3_enabled=True
        )
        session.commit()
    client = login("plain@aardvark.example")
    person, _ = _person(world)
    token = csrf_token(client)  # a customer login's first page chooses its account (an event): before the snapshot
    before = database_fingerprint()
    for action in ("delete", "reset-password"):
        assert _post(client, f"{_base(world)}/users/{person}/{action}", token).status_code == 403
    assert database_fingerprint() == before

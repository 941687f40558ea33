"""Ask before what cannot be taken back (issue 15, item 6): a POST without ``confirmed=yes`` answers with the
confirmation page (views/base.py confirmation) — naming the thing and what will happen — and changes nothing; the
page's own form, posted as it is, goes ahead. Also: Recent activity leaves out the dashboard's own layout changes."""

from __future__ import annotations

import dataclasses
import html
import re
from collections.abc import Callable

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models.accounts import Account, PlaceholderUser
from app.models.billing import Invoice
from app.models.catalog import PriceRule
from app.models.dashboards import DashboardWidget
from app.models.events import Event
from app.models.subscriptions import LicenceAssignment, Subscription
from app.services import price_lists
from security import scoping
from security.models import Membership, PortalUser
from tests import factories
from tests.conftest import csrf_token, unscoped
from tests.integration.test_billing_pages import billed  # noqa: F401 - the fixture
from tests.integration.test_mfa import clock_at, enrol  # noqa: F401 - the fixture
from tests.integration.test_scoping import database_fingerprint
from tests.integration.test_windows import BOUGHT, H, _at, _buy
from tests.integration.test_windows import _page as _subscription_page


@dataclasses.dataclass
class Case:
    who: str  # the signed-in user (a key of world.users)
    path: Callable[[object, dict], str]
    names: tuple[str, ...]  # what the question must name
    data: Callable[[object, dict], dict] = lambda world, extra: {}
    done: Callable[[object, dict], bool] | None = None  # after the confirmed POST: did it happen?
    form_page: Callable[[object, dict], str] = lambda world, extra: "/"


def _a(world) -> int:
    return world.accounts["customer_a"].id


def _portal(world) -> str:
    return f"/portal/{_a(world)}/"


def _membership(user_id: int, account_id: int) -> tuple[bool, bool]:
    """(active, deleted) of the login's membership in the account."""
    with unscoped() as session:
        membership = session.scalars(
            select(Membership).where(Membership.user_id == user_id, Membership.account_id == account_id)
        ).one()
        return membership.active, membership.deleted_at is not None


def _rule_gone(rule_key: str):
    def check(world, extra) -> bool:
        with unscoped() as session:
            return session.get(PriceRule, extra[rule_key]) is None

    return check


CASES = {
    "partner side: disable a customer portal user": Case(
        "reseller_a_admin",
        lambda w, x: f"/accounts/{_a(w)}/users/customer/{x['worker']}/disable",
        ("Disable worker@aardvark.example in Aardvark Farms?", "until they are enabled again"),
        done=lambda w, x: _membership(x["worker"], _a(w)) == (False, False),
    ),
    "partner side: delete a customer portal user": Case(
        "reseller_a_admin",
        lambda w, x: f"/accounts/{_a(w)}/users/customer/{x['worker']}/delete",
        ("Delete worker@aardvark.example from Aardvark Farms?", "for good"),
        done=lambda w, x: _membership(x["worker"], _a(w))[1],
    ),
    "partner side: delete the master admin placeholder": Case(
        "reseller_a_admin",
        lambda w, x: f"/accounts/{_a(w)}/users/placeholder/{w.rows['a']['placeholder']}/delete",
        ("Delete the master admin default.masteradmin@", "of Aardvark Farms?", "removed for good"),
        done=lambda w, x: x["placeholder_gone"](w.rows["a"]["placeholder"]),
    ),
    "partner side: disable a partner portal user": Case(
        "reseller_a_admin",
        lambda w, x: f"/accounts/{w.accounts['reseller_a'].id}/users/partner/{w.users['reseller_a_user'].id}/disable",
        ("Disable user@alpha.example?", "can no longer sign in to Alpha Partners Ltd"),
        done=lambda w, x: not x["login"](w.users["reseller_a_user"].id).active,
    ),
    "customer portal: disable a portal user": Case(
        "customer_a_master_admin",
        lambda w, x: f"{_portal(w)}users/{x['worker']}/disable",
        ("Disable worker@aardvark.example?", "Wes Worker can no longer sign in to Aardvark Farms"),
        done=lambda w, x: _membership(x["worker"], _a(w)) == (False, False),
        form_page=lambda w, x: _portal(w),
    ),
    "customer portal: delete a portal user": Case(
        "customer_a_master_admin",
        lambda w, x: f"{_portal(w)}users/{x['worker']}/delete",
        ("Delete worker@aardvark.example?", "for good"),
        done=lambda w, x: _membership(x["worker"], _a(w))[1],
        form_page=lambda w, x: _portal(w),
    ),
    "customer portal: unassign a licence": Case(
        "customer_a_master_admin",
        lambda w, x: f"{_portal(w)}services/microsoft-csp/subscriptions/{w.rows['a']['subscription']}/unassign",
        ("Unassign Microsoft 365 Business Basic from p0@aardvark.onmicrosoft.com?", "loses Microsoft 365 Business"),
        data=lambda w, x: {"m365_user_id": str(w.rows["a"]["m365_user"])},
        done=lambda w, x: x["holds"](w.rows["a"]["subscription"], w.rows["a"]["m365_user"]) is False,
        form_page=lambda w, x: _portal(w),
    ),
    "reconciliation: repair": Case(
        "ops_admin",
        lambda w, x: f"/reconciliation/check/{_a(w)}",
        ("Repair Aardvark Farms: make its records in the portal match Microsoft", "Event Log"),
        data=lambda w, x: {"repair": "1"},
        done=lambda w, x: x["runs"]() == 1,
    ),
    "customer prices: delete a rule": Case(
        "reseller_a_admin",
        lambda w, x: f"/prices/{w.accounts['reseller_a'].id}/rules/{x['sell_rule']}/delete",
        ("Delete the price rule buy + 15 %", "removed for good"),
        done=_rule_gone("sell_rule"),
    ),
    "customer prices: apply now": Case(
        "reseller_a_admin",
        lambda w, x: f"/prices/{w.accounts['reseller_a'].id}/apply-now",
        ("Re-price Aardvark Farms&#39;s monthly-term subscriptions now?", "replacing the price it has"),
        data=lambda w, x: {"customer_id": str(_a(w))},
    ),
    "reseller prices: delete a rule": Case(
        "ops_admin",
        lambda w, x: f"/reseller-prices/rules/{x['buy_rule']}/delete",
        ("Delete the price rule cost + 5 %", "removed for good"),
        done=_rule_gone("buy_rule"),
    ),
}


@pytest.fixture
def extra(app, world):
    """A second customer portal user of Aardvark Farms (Wes Worker), a sell and a buy price rule, and lookups."""
    with app.app_context(), scoping.bypass("test: confirmations"):
        customer = db.session.get(Account, _a(world))
        worker = factories.user(customer, "worker@aardvark.example", "Wes", "Worker", cp3_enabled=True)
        reseller = db.session.get(Account, world.accounts["reseller_a"].id)
        operator = db.session.get(Account, world.accounts["operator"].id)
        sell = price_lists.create_rule("sell", reseller, basis="buy", percent="15")
        buy = price_lists.create_rule("buy", operator, basis="cost", percent="5")
        db.session.commit()
        ids = {"worker": worker.id, "sell_rule": sell.id, "buy_rule": buy.id}

    def placeholder_gone(placeholder_id) -> bool:
        with unscoped() as session:
            return session.get(PlaceholderUser, placeholder_id) is None

    def login(user_id):
        with unscoped() as session:
            user = session.get(PortalUser, user_id)
            session.expunge(user)
            return user

    def holds(subscription_id, person_id) -> bool:
        with unscoped() as session:
            return (
                session.scalar(
                    select(LicenceAssignment.id).where(
                        LicenceAssignment.subscription_id == subscription_id,
                        LicenceAssignment.m365_user_id == person_id,
                    )
                )
                is not None
            )

    def events(action) -> int:
        with unscoped() as session:
            return session.scalar(select(func.count(Event.id)).where(Event.action.like(f"{action}%")))

    def runs() -> int:
        from app.models.reconciliation import ReconciliationRun

        with unscoped() as session:
            return session.scalar(select(func.count(ReconciliationRun.id)))

    return {**ids, "placeholder_gone": placeholder_gone, "login": login, "holds": holds, "events": events, "runs": runs}


def _confirm_form(page: str) -> tuple[str, dict[str, str]]:
    """The confirmation page's form: where it posts and its hidden fields."""
    form = page.split('data-test="confirm-page"', 1)[1].split("</form>", 1)[0]
    action = html.unescape(re.search(r'<form method="post" action="([^"]+)"', form).group(1))
    fields = {
        html.unescape(name): html.unescape(value)
        for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form)
    }
    return action, fields


@pytest.mark.parametrize("name", list(CASES))
def test_a_change_that_cannot_be_taken_back_asks_first_without_javascript(app, world, extra, login, name):
    case = CASES[name]
    client = login(world.users[case.who].email)
    path = case.path(world, extra)
    token = csrf_token(client, case.form_page(world, extra))
    before = database_fingerprint()

    asked = client.post(path, data={"csrf_token": token, **case.data(world, extra)})
    assert asked.status_code == 200 and 'data-test="confirm-page"' in asked.text
    for words in case.names:
        assert words in asked.text, words
    assert database_fingerprint() == before  # nothing changed
    action, fields = _confirm_form(asked.text)
    assert action == path and fields["confirmed"] == "yes"
    assert {k: v for k, v in fields.items() if k not in ("csrf_token", "confirmed")} == case.data(world, extra)
    cancel = html.unescape(re.search(r'href="([^"]+)" data-test="confirm-cancel"', asked.text).group(1))
    assert client.get(cancel).status_code == 200  # Cancel goes back to a page that is there
    assert database_fingerprint() == before

    answered = client.post(action, data=fields)  # the confirmation page's button
    assert answered.status_code == 302
    assert database_fingerprint() != before
    if case.done is not None:
        assert case.done(world, extra)


@pytest.mark.parametrize("answer", ["", "no", "1", "YES "])
def test_only_yes_is_an_answer(world, extra, reseller_a_admin_client, answer):
    path = f"/accounts/{_a(world)}/users/customer/{extra['worker']}/delete"
    before = database_fingerprint()
    token = csrf_token(reseller_a_admin_client)
    asked = reseller_a_admin_client.post(path, data={"csrf_token": token, "confirmed": answer})
    assert asked.status_code == 200 and 'data-test="confirm-page"' in asked.text
    assert database_fingerprint() == before


def test_refusals_come_before_the_question(world, extra, reseller_a_admin_client, reseller_b_admin_client):
    """Another reseller's user is 404 and one's own sign-in is refused: neither is asked about."""
    before = database_fingerprint()
    other = reseller_b_admin_client.post(
        f"/accounts/{_a(world)}/users/customer/{extra['worker']}/delete",
        data={"csrf_token": csrf_token(reseller_b_admin_client)},
    )
    assert other.status_code == 404
    me = world.users["reseller_a_admin"]
    own = reseller_a_admin_client.post(
        f"/accounts/{world.accounts['reseller_a'].id}/users/partner/{me.id}/disable",
        data={"csrf_token": csrf_token(reseller_a_admin_client)},
    )
    assert own.status_code == 302 and "You cannot change your own sign-in" in reseller_a_admin_client.get("/").text
    assert database_fingerprint() == before


def test_the_buttons_ask_in_a_dialog_too(world, extra, reseller_a_admin_client, customer_a_master_admin_client):
    """With JavaScript, the same buttons ask in a dialog (portal.js), then send confirmed=yes."""
    tab = reseller_a_admin_client.get(f"/accounts/{_a(world)}/users").text
    row = tab.split(f'data-user="{extra["worker"]}"')[1].split("</tr>")[0]
    assert 'data-confirm="Disable worker@aardvark.example?' in row
    assert 'data-confirm="Delete worker@aardvark.example from Aardvark Farms?' in row
    users = customer_a_master_admin_client.get(f"{_portal(world)}users").text
    row = users.split(f'data-user="{extra["worker"]}"')[1].split("</tr>")[0]
    assert 'data-confirm="Disable worker@aardvark.example?' in row and 'data-confirm="Delete worker' in row
    sub = customer_a_master_admin_client.get(
        f"{_portal(world)}services/microsoft-csp/subscriptions/{world.rows['a']['subscription']}"
    ).text
    assert 'data-confirm="Unassign Microsoft 365 Business Basic from p0@aardvark.onmicrosoft.com?' in sub


def test_reset_two_factor_asks_first(app, world, login, clock_at):  # noqa: F811 - the fixture
    user = world.users["reseller_a_user"]
    enrol(login(user.email))
    admin = login(world.users["reseller_a_admin"].email)
    path = f"/accounts/{user.account_id}/users/partner/{user.id}/reset-two-factor"
    before = database_fingerprint()
    asked = admin.post(path, data={"csrf_token": csrf_token(admin)})
    assert asked.status_code == 200 and 'data-test="confirm-page"' in asked.text
    assert "Reset the two-factor authentication of user@alpha.example?" in asked.text
    assert database_fingerprint() == before
    action, fields = _confirm_form(asked.text)
    assert admin.post(action, data=fields).status_code == 302
    with unscoped() as session:
        assert session.get(PortalUser, user.id).mfa is None


def test_issue_invoice_asks_first(app, billed, login):  # noqa: F811 - the fixture
    client = login(billed.users["reseller_a_admin"].email)
    invoice_id = billed.invoices["a_to_customer_a"]
    path = f"/billing/invoices/{invoice_id}/issue"
    before = database_fingerprint()
    asked = client.post(path, data={"csrf_token": csrf_token(client)})
    assert asked.status_code == 200 and 'data-test="confirm-page"' in asked.text
    assert "Issue this invoice to Aardvark Farms for November 2026" in asked.text
    assert "cannot be changed or deleted afterwards" in asked.text
    assert database_fingerprint() == before
    action, fields = _confirm_form(asked.text)
    assert client.post(action, data=fields).status_code == 302
    with unscoped() as session:
        assert session.get(Invoice, invoice_id).status == "issued"


def test_cancel_subscription_asks_first_and_names_what_happens(app, world, login):
    """Cancel subscription… has had its own confirmation step (the seat windows' page): nothing changes before it."""
    sub_id = _buy(world, BOUGHT, quantity=2)
    path = _subscription_page(world, sub_id)
    with _at(BOUGHT + H):
        client = login(world.users["customer_a_master_admin"].email)
        token = csrf_token(client, path)
        before = database_fingerprint()
        asked = client.post(f"{path}/cancel", data={"csrf_token": token})
        assert asked.status_code == 200 and "Cancel Exchange Online (Plan 1)" in asked.text
        assert "Microsoft takes its licences back" in asked.text and "This cannot be undone" in asked.text
        assert database_fingerprint() == before
        done = client.post(f"{path}/cancel", data={"csrf_token": token, "confirmed": "yes"})
        assert done.status_code == 302
    with unscoped() as session:
        assert session.get(Subscription, sub_id).status == "cancelled"


# -- Recent activity -------------------------------------------------------------------------------------------------


def test_recent_activity_leaves_out_the_dashboards_own_layout_changes(world, extra, customer_a_master_admin_client):
    client, portal = customer_a_master_admin_client, _portal(world)
    token = csrf_token(client, portal)
    for widget in ("activity", "spend", "licences"):
        assert client.post(f"{portal}widgets", data={"csrf_token": token, "widget": widget}).status_code == 302
    with unscoped() as session:
        placed = {
            w.widget: w.id
            for w in session.scalars(
                select(DashboardWidget).where(DashboardWidget.user_id == world.users["customer_a_master_admin"].id)
            )
        }
    order = [placed["licences"], placed["spend"], placed["activity"]]
    moved = client.post(f"{portal}widgets/order", json={"order": order}, headers={"X-CSRFToken": token})
    assert moved.status_code == 200
    client.post(f"{portal}widgets/{placed['spend']}/remove", data={"csrf_token": token})
    client.post(f"{portal}users/{extra['worker']}/disable", data={"csrf_token": token, "confirmed": "yes"})
    with unscoped() as session:
        layout = session.scalar(
            select(func.count(Event.id)).where(Event.account_id == _a(world), Event.action.like("dashboard.%"))
        )
        assert layout >= 5  # recorded, in the Event Log ...
    shown = client.get(f"{portal}widgets/{placed['activity']}/data").text
    assert "worker@aardvark.example" in shown  # ... what happened to the account is in Recent activity ...
    assert "dashboard" not in shown  # ... the layout changes are not
    assert "Rearranged" not in shown and "added to" not in shown
    events_page = client.get(f"{portal}events").text
    assert "dashboard" in events_page  # the Event Log still has them

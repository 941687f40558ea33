"""The customer portal: Activate (CP3), the dashboard's widgets, Services ▸ Microsoft CSP (orders, quantities,
auto-renew, licences, Microsoft 365 users), its users and event log — and the cross-tenant case for every URL."""

from __future__ import annotations

import datetime as dt
import re
import threading

import pytest
from sqlalchemy import func, select

from app import clock
from app.models.accounts import Account, PlaceholderUser
from app.models.catalog import Product
from app.models.csp import SandboxSubscription, SandboxUser
from app.models.dashboards import DashboardWidget
from app.models.events import Event
from app.models.subscriptions import LicenceAssignment, M365User, Subscription, UsagePoint
from security.models import Membership, PortalUser
from tests import factories, ordering_steps
from tests.conftest import csrf_token, unscoped
from tests.integration.test_scoping import database_fingerprint
from tests.mail import empty_outbox, outbox_messages

CUSTOMER_VIEWS = (
    "CustomerDashboardView",
    "CustomerServicesView",
    "CustomerOrdersView",
    "CustomerOrderingView",
    "CustomerLicencesView",
    "CustomerM365UsersView",
    "CustomerUsersView",
    "CustomerEventsView",
    "CustomerSeatWindowsView",
)


def _portal(world, key="customer_a"):
    return f"/portal/{world.accounts[key].id}"


def _post(client, path, **data):
    return client.post(path, data={"csrf_token": csrf_token(client), **data})


def _membership(session, user_id: int, account_id: int) -> Membership:
    """The login's membership in the account: where a customer-portal user's flags live."""
    return session.scalars(
        select(Membership).where(Membership.user_id == user_id, Membership.account_id == account_id)
    ).one()


# -- Activate (CP3) -----------------------------------------------------------------------------------------------


def test_activate_on_the_placeholder_asks_for_a_real_address_first(app, world, reseller_a_admin_client):
    customer, pid = world.accounts["customer_a"].id, world.rows["a"]["placeholder"]
    response = _post(reseller_a_admin_client, f"/accounts/{customer}/users/placeholder/{pid}/activate")
    assert response.location == f"/accounts/{customer}/users/placeholder/{pid}/edit"
    assert "Change this user&#39;s email to a real address first" in reseller_a_admin_client.get(response.location).text
    empty_outbox(app)
    _post(
        reseller_a_admin_client,
        f"/accounts/{customer}/users/placeholder/{pid}/edit",
        first_name="IT",
        last_name="Support",
        email="itsupport@aardvark.example",
    )
    _post(reseller_a_admin_client, f"/accounts/{customer}/users/placeholder/{pid}/activate")
    with unscoped() as session:
        assert session.get(PlaceholderUser, pid) is None
        user = session.scalars(select(PortalUser).where(PortalUser.email == "itsupport@aardvark.example")).one()
        membership = _membership(session, user.id, customer)
        assert membership.cp3_enabled and membership.is_master_admin
        assert membership.role_name == "Customer Master Admin" and user.roles == []  # the role is the membership's
        assert (user.portal, user.account_id) == ("customer", world.accounts["reseller_a"].id)  # its reseller's login
        user_id = user.id
    assert [m["To"] for m in outbox_messages(app)] == ["itsupport@aardvark.example"]
    row = reseller_a_admin_client.get(f"/accounts/{customer}/users").text.split(f'data-user="{user_id}"')[1]
    assert "Launch (CP3)" in row.split("</tr>")[0]


def test_activate_a_user_not_yet_enabled(app, world, reseller_a_admin_client):
    with unscoped() as session:
        user = factories.user(session.get(Account, world.accounts["customer_a"].id), "later@aardvark.example")
        session.commit()
        user_id = user.id
    _post(reseller_a_admin_client, f"/accounts/{world.accounts['customer_a'].id}/users/customer/{user_id}/activate")
    with unscoped() as session:
        assert _membership(session, user_id, world.accounts["customer_a"].id).cp3_enabled


# -- the dashboard -------------------------------------------------------------------------------------------------


def test_a_new_dashboard_is_empty_with_a_hint(world, customer_a_master_admin_client):
    page = customer_a_master_admin_client.get(f"{_portal(world)}/").text
    assert 'data-test="empty-dashboard"' in page and "Widgets" in page
    nav = page.split('class="nav nav-pills nav-stacked"')[1].split("</ul>")[0]
    labels = re.findall(r"</span> ([^<]+)</a>|>(Services)<", nav)
    # Invoices (issue 14): the master admin sees what the customer was billed.
    assert [a or b for a, b in labels] == ["Dashboard", "Services", "Microsoft CSP", "Invoices", "Users", "Event Log"]


def test_widgets_add_reorder_remove_and_persist(world, customer_a_master_admin_client, login):
    client, base = customer_a_master_admin_client, _portal(world)
    for kind in ("licences", "spend", "activity"):
        assert _post(client, f"{base}/widgets", widget=kind).status_code == 302
    with unscoped() as session:
        ids = list(session.scalars(select(DashboardWidget.id).order_by(DashboardWidget.position)))
    response = client.post(
        f"{base}/widgets/order", json={"order": [ids[2], ids[0], ids[1]]}, headers={"X-CSRFToken": csrf_token(client)}
    )
    assert response.status_code == 200
    _post(client, f"{base}/widgets/{ids[1]}/remove")
    again = login(world.users["customer_a_master_admin"].email)  # a new sign-in
    page = again.get(f"{base}/").text
    assert re.findall(r'data-widget="(\w+)"', page) == ["activity", "licences"]


@pytest.mark.parametrize("body", [{"order": [1]}, {"order": "x"}, {"order": [999999]}, {}])
def test_a_bad_order_is_a_400_and_changes_nothing(world, customer_a_master_admin_client, body):
    client, base = customer_a_master_admin_client, _portal(world)
    _post(client, f"{base}/widgets", widget="licences")
    _post(client, f"{base}/widgets", widget="spend")
    before = database_fingerprint()
    response = client.post(f"{base}/widgets/order", json=body, headers={"X-CSRFToken": csrf_token(client)})
    assert response.status_code == 400 and response.is_json
    assert database_fingerprint() == before


def test_an_unknown_widget_is_refused(world, customer_a_master_admin_client):
    _post(customer_a_master_admin_client, f"{_portal(world)}/widgets", widget="bitcoin")
    with unscoped() as session:
        assert session.scalar(select(func.count(DashboardWidget.id))) == 0


def test_each_widget_loads_its_own_live_data(world, customer_a_master_admin_client):
    client, base = customer_a_master_admin_client, _portal(world)
    for kind in ("licences", "renewals", "spend", "users", "usage_chart", "activity"):
        _post(client, f"{base}/widgets", widget=kind)
    with unscoped() as session:
        widgets = {w.widget: w.id for w in session.scalars(select(DashboardWidget))}
    data = {kind: client.get(f"{base}/widgets/{wid}/data").text for kind, wid in widgets.items()}
    assert "Microsoft 365 Business Basic" in data["licences"] and "3/4" in data["licences"]
    assert "Microsoft 365 Business Basic" in data["renewals"]  # renews in 10 days
    assert "$52.50" in data["spend"]  # 4 × $9.00 + 3 × $5.50
    assert 'data-test="m365-users">3<' in data["users"]
    assert "data-series" in data["usage_chart"] and "3/4" in data["usage_chart"]
    assert "<li>" in data["activity"]
    for text in data.values():
        assert "Bluebird" not in text


# -- Services ▸ Microsoft CSP --------------------------------------------------------------------------------------


def test_subscriptions_table(world, customer_a_master_admin_client):
    page = customer_a_master_admin_client.get(f"{_portal(world)}/services/microsoft-csp").text
    table = page.split('data-test="subscriptions"')[1].split("</table>")[0]
    assert re.findall(r"<th>([^<]*)</th>", table)[:5] == [
        "Description",
        "Licenses",
        "Renew on date",
        "Price",
        "Auto-renew",
    ]
    assert "Microsoft 365 Business Basic" in table and "3/4" in table and "$9.00" in table
    assert "aardvark.onmicrosoft.com" in page and "Bluebird" not in page


def _sub(world, key="subscription"):
    with unscoped() as session:
        sub = session.get(Subscription, world.rows["a"][key])
        return sub.id, sub.quantity, sub.assigned


def test_order_a_subscription_through_the_provider(world, customer_a_master_admin_client):
    response = ordering_steps.order_product(
        customer_a_master_admin_client, world.accounts["customer_a"].id, world.rows["products"]["exchange"], 5
    )
    assert response.status_code == 302
    with unscoped() as session:
        sub = session.scalars(select(Subscription).where(Subscription.quantity == 5)).one()
        assert sub.provider_subscription_id and sub.term_started_on == clock.today()
        at_microsoft = session.scalars(
            select(SandboxSubscription).where(SandboxSubscription.subscription_id == sub.provider_subscription_id)
        ).one()
        assert at_microsoft.quantity == 5
        assert session.scalar(select(func.count(UsagePoint.id)).where(UsagePoint.subscription_id == sub.id)) == 1
        assert session.scalars(select(Event).where(Event.action == "subscription.ordered")).one()


def test_customer_admins_cannot_order(world, login):
    with unscoped() as session:
        factories.user(
            session.get(Account, world.accounts["customer_a"].id),
            "admin2@aardvark.example",
            admin=True,
            cp3_enabled=True,
        )
        session.commit()
    client = login("admin2@aardvark.example")
    response = _post(
        client,
        f"{_portal(world)}/services/microsoft-csp/orders",
        availability_id=str(world.rows["products"]["exchange"]),
        quantity="1",
        reviewed_price="5.50",
    )
    assert response.status_code == 403


def test_quantity_up_any_time_down_never_below_assigned_nor_after_seven_days(world, customer_a_master_admin_client):
    client, base = customer_a_master_admin_client, _portal(world)
    sub_id, quantity, assigned = _sub(world)
    path = f"{base}/services/microsoft-csp/subscriptions/{sub_id}/quantity"
    _post(client, path, quantity=str(quantity + 2))
    assert _sub(world)[1] == quantity + 2
    _post(client, path, quantity=str(assigned - 1))
    page = client.get(f"{base}/services/microsoft-csp").text
    assert "are assigned: unassign some before going down" in page
    _post(client, path, quantity=str(quantity - 1))  # 3 fewer: only the increase's 2 are inside their 7-day window
    assert "Only 2 licences of" in client.get(f"{base}/services/microsoft-csp").text
    assert _sub(world)[1] == quantity + 2
    with unscoped() as session:
        at_microsoft = session.scalars(
            select(SandboxSubscription)
            .join(Subscription, Subscription.provider_subscription_id == SandboxSubscription.subscription_id)
            .where(Subscription.id == sub_id)
        ).one()
        assert at_microsoft.quantity == quantity + 2


def test_a_new_subscription_can_go_down_within_seven_days(world, customer_a_master_admin_client):
    client, base = customer_a_master_admin_client, _portal(world)
    ordering_steps.order_product(client, world.accounts["customer_a"].id, world.rows["products"]["exchange"], 5)
    with unscoped() as session:
        sub_id = session.scalar(select(Subscription.id).where(Subscription.quantity == 5))
    _post(client, f"{base}/services/microsoft-csp/subscriptions/{sub_id}/quantity", quantity="2")
    with unscoped() as session:
        assert session.get(Subscription, sub_id).quantity == 2
    page = client.get(f"{base}/services/microsoft-csp/subscriptions/{sub_id}").text
    deadline = (clock.today() + dt.timedelta(days=7)).strftime("%d/%m/%Y")  # the purchase's window: 168 hours
    assert f'<td data-test="until">{deadline} ' in page.split('data-test="seat-batches"')[1]


def test_auto_renew_toggle(world, customer_a_master_admin_client):
    sub_id = _sub(world)[0]
    _post(
        customer_a_master_admin_client,
        f"{_portal(world)}/services/microsoft-csp/subscriptions/{sub_id}/auto-renew",
        enabled="0",
    )
    with unscoped() as session:
        assert session.get(Subscription, sub_id).auto_renew is False


def test_assign_and_unassign_licences(world, customer_a_master_admin_client):
    client, base = customer_a_master_admin_client, _portal(world)
    sub_id, quantity, assigned = _sub(world)
    with unscoped() as session:
        person = factories.m365_user(
            session.get(Account, world.accounts["customer_a"].id), "p9@aardvark.onmicrosoft.com"
        )
        session.commit()
        person_id = person.id
    path = f"{base}/services/microsoft-csp/subscriptions/{sub_id}"
    # The new person was added without the provider: make it known there as the portal would have.
    client.post(
        f"{base}/services/microsoft-csp/users",
        data={"csrf_token": csrf_token(client), "first_name": "Nia", "last_name": "New", "username": "nia"},
    )
    with unscoped() as session:
        nia = session.scalars(
            select(M365User).where(M365User.user_principal_name == "nia@aardvark.onmicrosoft.com")
        ).one()
        assert nia.provider_user_id
        nia_id, nia_at_microsoft = nia.id, nia.provider_user_id
    assert _post(client, f"{path}/assign", m365_user_id=str(nia_id)).status_code == 302
    assert _sub(world)[2] == assigned + 1 == quantity  # the last free licence
    _post(client, f"{path}/assign", m365_user_id=str(person_id))
    assert "are assigned: raise the quantity first" in client.get(path).text
    assert _sub(world)[2] == quantity
    with unscoped() as session:
        sku = session.get(Product, world.rows["products"]["basic"]).sku
        assert sku in session.scalars(select(SandboxUser.sku_ids).where(SandboxUser.user_id == nia_at_microsoft)).one()
    _post(client, f"{path}/unassign", m365_user_id=str(nia_id), confirmed="yes")
    assert _sub(world)[2] == assigned
    with unscoped() as session:
        points = session.scalars(
            select(UsagePoint.assigned).where(UsagePoint.subscription_id == sub_id).order_by(UsagePoint.id)
        ).all()
        assert points[-2:] == [assigned + 1, assigned]


def test_concurrent_assignments_of_the_last_free_licence(app, world, login):
    """Two admins each assign the last free licence to a different user at the same moment: exactly one wins."""
    sub_id, quantity, assigned = _sub(world)
    assert quantity - assigned == 1
    clients = [login(world.users["customer_a_master_admin"].email) for _ in range(2)]
    base = _portal(world)
    people = []
    for name in ("ann", "bob"):
        clients[0].post(
            f"{base}/services/microsoft-csp/users",
            data={
                "csrf_token": csrf_token(clients[0]),
                "first_name": name.title(),
                "last_name": "Racer",
                "username": name,
            },
        )
        with unscoped() as session:
            people.append(session.scalar(select(M365User.id).where(M365User.user_principal_name.like(f"{name}@%"))))
    tokens = [csrf_token(c) for c in clients]
    barrier, results = threading.Barrier(2), []

    def assign(client, token, person):
        barrier.wait()
        results.append(
            client.post(
                f"{base}/services/microsoft-csp/subscriptions/{sub_id}/assign",
                data={"csrf_token": token, "m365_user_id": str(person)},
            ).status_code
        )

    threads = [threading.Thread(target=assign, args=(clients[i], tokens[i], people[i])) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    with unscoped() as session:
        assert session.get(Subscription, sub_id).assigned == quantity
        holders = session.scalar(
            select(func.count(LicenceAssignment.id)).where(LicenceAssignment.subscription_id == sub_id)
        )
        assert holders == quantity
        held_at_microsoft = [
            u
            for u in session.scalars(
                select(SandboxUser).where(
                    SandboxUser.user_id.in_(select(M365User.provider_user_id).where(M365User.id.in_(people)))
                )
            )
            if u.sku_ids
        ]
        assert len(held_at_microsoft) == 1  # the loser's assignment was taken back


def test_disable_a_microsoft_365_user(world, customer_a_master_admin_client):
    person = world.rows["a"]["m365_user"]
    path = f"{_portal(world)}/services/microsoft-csp/users/{person}/disable"
    _post(customer_a_master_admin_client, path, confirmed="yes")
    with unscoped() as session:
        assert session.get(M365User, person).status == "disabled"


# -- users and event log ------------------------------------------------------------------------------------------


def test_master_admin_invites_an_admin_and_admins_cannot_manage_admins(
    app, world, customer_a_master_admin_client, login
):
    client, base = customer_a_master_admin_client, _portal(world)
    empty_outbox(app)
    response = _post(
        client, f"{base}/users/new", first_name="Ada", last_name="Admin", email="ada@aardvark.example", admin="y"
    )
    assert response.status_code == 302
    assert [m["To"] for m in outbox_messages(app)] == ["ada@aardvark.example"]
    with unscoped() as session:
        session.get(
            PortalUser, session.scalar(select(PortalUser.id).where(PortalUser.email == "ada@aardvark.example"))
        ).password = factories.password_hash()
        session.commit()
    ada = login("ada@aardvark.example")
    refused = _post(
        ada, f"{base}/users/new", first_name="Eve", last_name="Evil", email="eve@aardvark.example", master_admin="y"
    )
    assert refused.status_code == 403 and "Only a Master Admin manages admins" in refused.text
    assert (
        _post(ada, f"{base}/users/new", first_name="Uli", last_name="User", email="uli@aardvark.example").status_code
        == 302
    )
    master = world.users["customer_a_master_admin"].id
    _post(ada, f"{base}/users/{master}/disable")
    with unscoped() as session:
        assert session.get(PortalUser, master).active
        assert _membership(session, master, world.accounts["customer_a"].id).active


def test_the_event_log_shows_the_customers_events(world, customer_a_master_admin_client):
    page = customer_a_master_admin_client.get(f"{_portal(world)}/events").text
    rows = page.split("<tbody>")[1].split("</tbody>")[0]
    assert "Created a customer" in rows and "customer.created" not in rows and "Bluebird" not in page


# -- cross-tenant ---------------------------------------------------------------------------------------------------


def _customer_routes(app):
    return [r for r in app.url_map.iter_rules() if r.endpoint.split(".")[0] in CUSTOMER_VIEWS]


def _every_customer_route_answers(app, world, client, status):
    """Walk every customer-portal route with customer A's ids: each GET and POST answers ``status``, nothing changes."""
    with unscoped() as session:
        factories_widget = DashboardWidget(
            account_id=world.accounts["customer_a"].id,
            user_id=world.users["customer_a_master_admin"].id,
            widget="spend",
            position=1,
        )
        session.add(factories_widget)
        session.commit()
        values = {
            "customer_id": world.accounts["customer_a"].id,
            "widget_id": factories_widget.id,
            "subscription_id": world.rows["a"]["subscription"],
            "person_id": world.rows["a"]["m365_user"],
            "user_id": world.users["customer_a_master_admin"].id,
        }
    token = csrf_token(client)
    before = database_fingerprint()
    checked = 0
    for rule in _customer_routes(app):
        url = re.sub(r"<(?:int:)?(\w+)>", lambda m: str(values[m.group(1)]), rule.rule)
        if "GET" in rule.methods:
            assert client.get(url).status_code == status, url
        if "POST" in rule.methods:
            assert (
                client.post(
                    url,
                    data={
                        "csrf_token": token,
                        "widget": "spend",
                        "quantity": "1",
                        "m365_user_id": values["person_id"],
                        "product_id": "1",
                    },
                ).status_code
                == status
            ), url
        checked += 1
    assert checked >= 15
    assert database_fingerprint() == before


@pytest.mark.parametrize("who", ["customer_b_master_admin", "reseller_b_admin"])
def test_another_tenant_gets_404_on_every_customer_portal_url(app, world, login, who):
    _every_customer_route_answers(app, world, login(world.users[who].email), 404)


@pytest.mark.parametrize("who", ["reseller_a_admin", "ops_admin"])
def test_staff_enter_a_customer_portal_only_through_launch(app, world, login, who):
    """Its own reseller's CSP Admin (and operator staff) may order for the customer — inside a Launch (CP3) visit,
    which is time-limited and audited on both sides — never by typing the customer portal's addresses."""
    _every_customer_route_answers(app, world, login(world.users[who].email), 403)


def test_customer_b_cannot_use_customer_a_ids_inside_its_own_portal(world, login):
    client = login(world.users["customer_b_master_admin"].email)
    base = _portal(world, "customer_b")
    assert (
        client.get(f"{base}/services/microsoft-csp/subscriptions/{world.rows['a']['subscription']}").status_code == 404
    )
    response = _post(
        client,
        f"{base}/services/microsoft-csp/subscriptions/{world.rows['b']['subscription']}/assign",
        m365_user_id=str(world.rows["a"]["m365_user"]),
    )
    assert response.status_code == 404


def test_a_master_admin_creates_the_tenant_from_services(world, login):
    with unscoped() as session:
        factories.user(
            session.get(Account, world.accounts["customer_a2"].id),
            "boss@anchor.example",
            master_admin=True,
            cp3_enabled=True,
        )
        session.commit()
    client, customer = login("boss@anchor.example"), world.accounts["customer_a2"].id
    page = client.get(f"/portal/{customer}/services/microsoft-csp").text
    assert "Create a new Microsoft tenant" in page
    form = client.get(f"/accounts/{customer}/microsoft-tenant/new").text
    assert "customer-sidebar" in form and "Primary Domain Name *" in form  # the same form, in the customer portal
    from tests.integration.test_tenants import _form, _submit

    response = _submit(
        client, customer, _form(client, customer, domain_prefix="anchorboss", contact_email="boss@anchor.example")
    )
    # Created: the first admin's credentials, once, in the customer portal's frame, with the way back (issue 15)
    assert response.status_code == 200 and "customer-sidebar" in response.text
    assert 'data-test="admin-user-name">admin@anchorboss.onmicrosoft.com<' in response.text
    assert f'href="/portal/{customer}/services/microsoft-csp"' in response.text
    assert "anchorboss.onmicrosoft.com" in client.get(f"/portal/{customer}/services/microsoft-csp").text

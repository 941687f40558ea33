"""Every exposed method has a permission; roles are the data of security/permissions.py; menus follow roles."""

from __future__ import annotations

import pytest
from flask_appbuilder.security.sqla.models import Role

from app.extensions import appbuilder
from security import permissions as P
from tests.conftest import unscoped

# Endpoints anyone may reach: signing in and out, static files, FAB's "back" redirect and language switch, and the
# emailed set-your-password link (the signed link is the credential).
PUBLIC_ENDPOINTS = {
    "PortalAuthDBView.login",
    "PortalAuthDBView.logout",
    "PortalAuthDBView.confirm_logout",
    "PortalAuthDBView.second_factor",  # sign-in's second step: a right password, not yet signed in
    "PortalAuthDBView.check_second_factor",
    "UtilView.back",
    "LocaleView.index",
    "ActivationView.activate",
    "ActivationView.set_password",
    "ActivationView.resend",
    "ActivationView.forgot",
    "ActivationView.send_reset",
    "HandoverView.show",  # a new tenant's first admin password: the one-time link is the credential (issue 15)
    "HandoverView.reveal",
    "ReturnView.stop",  # Return to partner portal: allowed whenever the session holds an impersonation, only then
}


def _registered_view_methods(app):
    views = {view.endpoint: view for view in appbuilder.baseviews}
    for rule in app.url_map.iter_rules():
        static = ("static", "appbuilder.static", "vendor.plotly_js", "vendor.favicon")
        if rule.endpoint in static or rule.endpoint in PUBLIC_ENDPOINTS:
            continue
        blueprint, method_name = rule.endpoint.split(".", 1)
        yield rule, views[blueprint], method_name


def test_every_exposed_method_has_a_declared_permission(app):
    checked = 0
    for rule, view, method_name in _registered_view_methods(app):
        method = getattr(view, method_name)
        assert hasattr(method, "_permission_name"), f"{rule.rule} ({rule.endpoint}) has no permission"
        action = view.get_method_permission(method_name)
        declared = P.RESOURCE_ACTIONS.get(view.class_permission_name, ())
        assert action in declared, f"{rule.endpoint}: {action} on {view.class_permission_name} is not declared"
        checked += 1
    assert checked > 10


def test_actions_get_no_free_pass(app):
    for rule, view, method_name in _registered_view_methods(app):
        if method_name in ("action", "action_post"):
            assert view.get_method_permission(method_name) == P.WRITE
            assert rule.methods - {"HEAD", "OPTIONS"} == {"POST"}


def test_database_roles_match_the_declared_data(app):
    with unscoped() as session:
        for name in P.ROLES:
            role = session.query(Role).filter_by(name=name).one()
            held = {(pv.permission.name, pv.view_menu.name) for pv in role.permissions}
            assert held == P.permission_pairs(name), name


def test_sync_roles_is_idempotent_and_repairs_drift(app):
    runner = app.test_cli_runner()
    assert "Roles are in sync." in runner.invoke(args=["portal", "sync-roles"]).output
    with unscoped() as session:
        role = session.query(Role).filter_by(name=P.PARTNER_USER).one()
        role.permissions = role.permissions[:-1]
        session.commit()
    dry = runner.invoke(args=["portal", "sync-roles", "--dry-run"]).output
    assert "would Partner User: +" in dry and "nothing changed" in dry
    synced = runner.invoke(args=["portal", "sync-roles"]).output
    assert "Roles synced: 0 role(s) created, 1 permission(s) added" in synced
    assert "Roles are in sync." in runner.invoke(args=["portal", "sync-roles"]).output


def test_customer_roles_hold_no_partner_portal_page():
    for role in (P.CUSTOMER_MASTER_ADMIN, P.CUSTOMER_ADMIN, P.CUSTOMER_USER):
        resources = {resource for _, resource in P.ROLES[role]}
        assert not resources & P.PARTNER_PORTAL_RESOURCES, role


def test_partner_user_cannot_order_but_csp_admin_can():
    assert (P.WRITE, P.ORDERS) not in P.ROLES[P.PARTNER_USER]
    assert (P.WRITE, P.ORDERS) in P.ROLES[P.PARTNER_CSP_ADMIN]
    assert P.ROLES[P.PARTNER_USER] < P.ROLES[P.PARTNER_CSP_ADMIN]
    assert P.ROLES[P.CUSTOMER_ADMIN] < P.ROLES[P.CUSTOMER_MASTER_ADMIN]


@pytest.mark.parametrize(
    ("who", "visible", "hidden"),
    [
        ("ops_admin", {"List all", "Products", "Event Log", "Subscriptions"}, set()),
        ("reseller_a_admin", {"List all", "Products", "Event Log"}, set()),
        ("reseller_a_user", {"List all", "Subscriptions"}, set()),
        ("customer_a_master_admin", set(), {"List all", "Products", "Event Log", "Subscriptions"}),
    ],
)
def test_each_role_sees_only_the_menu_items_it_may_use(world, login, who, visible, hidden):
    page = login(world.users[who].email).get("/").text
    for item in visible:
        assert f"{item}</a>" in page, f"{who} should see {item}"
    for item in hidden:
        assert f"{item}</a>" not in page, f"{who} should not see {item}"


@pytest.mark.parametrize("path", ["/accountview/list/", "/subscriptionview/list/", "/eventview/list/"])
def test_customer_users_never_reach_partner_portal_pages(customer_a_master_admin_client, path):
    assert customer_a_master_admin_client.get(path).status_code == 403


def test_partner_user_cannot_change_the_catalogue(world, reseller_a_user_client):
    assert reseller_a_user_client.get("/productview/add").status_code == 403


def test_partner_users_see_what_customers_pay_never_cost_or_margin_and_do_not_order():
    """DESIGN.md's roles and the README's walkthrough (Jane): prices yes, cost and margin no, orders no."""
    partner_user = P.ROLES[P.PARTNER_USER]
    assert (P.READ, P.SUBSCRIPTIONS) in partner_user and (P.READ, P.REPORTS) in partner_user
    assert (P.READ, P.COSTS) not in partner_user and (P.WRITE, P.ORDERS) not in partner_user
    assert (P.READ, P.COSTS) in P.ROLES[P.PARTNER_CSP_ADMIN] and (P.WRITE, P.ORDERS) in P.ROLES[P.PARTNER_CSP_ADMIN]
    assert not any(resource == P.COSTS for _, resource in P.ROLES[P.CUSTOMER_MASTER_ADMIN])


def test_partner_users_read_sale_prices_on_the_pages(world, reseller_a_user_client):
    customer = world.accounts["customer_a"].id
    report = reseller_a_user_client.get(f"/accounts/{customer}/products/csp-report").text
    assert '<th data-col="price">Price</th>' in report and "$9.00" in report  # what the customer pays
    assert "Cost per" not in report and "Margin per" not in report and "$7.65" not in report

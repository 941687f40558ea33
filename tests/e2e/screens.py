"""The main screens of both portals on the demo data, for the accessibility and small-screen browser tests: one list,
written out, so that what the tests cover is explicit. The partner portal is seen by the operator's admin (who sees
every screen, Billing ▸ Invoices included), the customer portal by Contoso NZ's master admin."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from app.extensions import db
from app.models.accounts import Account
from app.models.subscriptions import Subscription
from app.services.demo import seed_demo
from security import scoping
from tests.factories import PASSWORD

OPS = "ops@mycloudstore.co.nz"
CUSTOMER_ADMIN = "admin@contosonz.example"

# (screen, path): {names} are the demo's account ids, {subscription} one of Contoso NZ's subscriptions.
PARTNER_SCREENS = [
    ("Home", "/"),
    ("Accounts ▸ List all", "/accountview/list/"),
    ("Enet Ltd ▸ Details", "/accounts/{enet}/details"),
    ("Enet Ltd ▸ Users", "/accounts/{enet}/users"),
    ("Enet Ltd ▸ Microsoft tenant", "/accounts/{enet}/products/microsoft-tenant"),
    ("Enet Ltd ▸ CSP Report", "/accounts/{enet}/products/csp-report"),
    ("Contoso NZ ▸ Usage chart", "/accounts/{contoso}/products/usage-chart"),
    ("Enet Ltd ▸ Event Log", "/accounts/{enet}/events"),
    ("Enet Ltd ▸ Billing", "/billing/accounts/{enet}/"),
    ("Demo Reseller Ltd ▸ Sub-Accounts", "/accounts/{demo_reseller}/sub-accounts"),
    ("Reports ▸ Licence drift", "/reports/licence-drift/"),
    ("Catalogue ▸ Products", "/productview/list/"),
    ("Catalogue ▸ Customer prices", "/prices/{demo_reseller}/"),
    ("Event Log", "/eventview/list/"),
    ("Billing ▸ Invoices", "/billing/all/"),
    ("Search results", "/search/?q=ltd"),
    ("Change my password", "/profile/password"),
    ("Two-factor authentication", "/profile/two-factor/"),
]
CUSTOMER_SCREENS = [
    ("Dashboard", "/portal/{contoso}/"),
    ("Microsoft CSP", "/portal/{contoso}/services/microsoft-csp"),
    ("A subscription", "/portal/{contoso}/services/microsoft-csp/subscriptions/{subscription}"),
    ("Add a subscription", "/portal/{contoso}/services/microsoft-csp/orders/new"),
    ("Users", "/portal/{contoso}/users"),
    ("Event Log", "/portal/{contoso}/events"),
    ("Invoices", "/portal/{contoso}/invoices"),
    ("Change my password", "/profile/password"),
]
SIGNED_OUT_SCREENS = [("Sign in", "/login/")]


@dataclass(frozen=True)
class Demo:
    ids: dict[str, int]

    def urls(self, screens):
        return [(name, path.format(**self.ids)) for name, path in screens]


def seed(app) -> Demo:
    """The demo data (as `flask portal seed-demo` makes it), every user's password PASSWORD."""
    with app.app_context(), scoping.bypass("test: demo data"):
        seed_demo(password=PASSWORD)
        db.session.commit()
        names = dict(db.session.execute(select(Account.name, Account.id)).all())
        subscription = db.session.scalars(
            select(Subscription.id).where(Subscription.account_id == names["Contoso NZ"]).order_by(Subscription.id)
        ).first()
    ids = {
        "enet": names["Enet Ltd"],
        "contoso": names["Contoso NZ"],
        "demo_reseller": names["Demo Reseller Ltd"],
        "subscription": subscription,
    }
    return Demo(ids)


def visit(page, name: str, url: str, *, settle: bool = False):
    """Open one screen; it must answer 200 (a 404 page would pass every check for the wrong reason)."""
    response = page.goto(url)
    assert response is not None and response.status == 200, f"{name} ({url}) answered {response and response.status}"
    if settle:  # the dashboard's widgets and the charts draw after the page has loaded
        page.wait_for_load_state("networkidle")
    return response


def serious_violations(page, screen: str) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now, one readable line each."""
    from axe_playwright_python.sync_playwright import Axe

    found = Axe().run(page, options={"resultTypes": ["violations"]}).response["violations"]
    return [
        f"{screen}: {v['id']} ({v['impact']}) {v['help']} at {[n['target'] for n in v['nodes']][:5]}"
        for v in found
        if v["impact"] in ("serious", "critical")
    ]

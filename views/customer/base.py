"""The customer portal's base: every page belongs to one customer, resolved through the scope before anything
else (another customer's pages answer 404), then the page's permission is checked.

Only customer-portal users enter it: the customer's own logins, or partner and operator staff through Launch (CP3),
which makes them that customer user for the visit (time-limited, audited on both sides). Staff who type a
``/portal/...`` address without launching get 403, so nothing is changed in a customer's portal outside a visit."""

from __future__ import annotations

import functools

from flask import abort, g, redirect, request
from flask_login import current_user

from app.models.accounts import CUSTOMER, RESELLER, Account
from security.models import CUSTOMER_PORTAL
from views.base import PortalView, confirmation, get_or_404


def customer_page(view):
    """Resolve ``customer_id`` to a customer in scope (404 otherwise) before the permission check runs."""

    @functools.wraps(view)
    def wrapper(self, customer_id, *args, **kwargs):
        if not current_user.is_authenticated:
            return redirect(self.appbuilder.get_url_for_login_with(request.full_path))
        customer = get_or_404(Account, customer_id)
        if customer.kind not in (CUSTOMER, RESELLER):  # a reseller's own portal: the reseller as a customer
            abort(404)
        if current_user.portal != CUSTOMER_PORTAL:
            abort(403)  # partner and operator staff work in a customer's portal only through Launch (CP3)
        g.customer = customer
        return view(self, customer_id, *args, **kwargs)

    return wrapper


class CustomerPortalView(PortalView):
    """Pages of the customer portal (CP3), rendered in its own layout with the left sidebar."""

    route_base = "/portal"
    section = ""

    def render(self, template: str, **context):
        return self.render_template(f"portal/customer/{template}", customer=g.customer, section=self.section, **context)

    def ask(self, question: str, consequence: str, button: str, cancel_url: str):
        """Ask before what cannot be taken back (views/base.py ``confirmation``), in the customer portal's layout:
        None once the POST carries the answer, else the page that asks."""
        return confirmation(
            question,
            consequence,
            button,
            cancel_url=cancel_url,
            layout="portal/customer/base.html",
            customer=g.customer,
            section=self.section,
        )

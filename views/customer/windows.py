"""The subscription page's seat windows: give seats back within their 7-day window, or cancel the subscription within
its purchase's (or renewal's) window. Each change is two POSTs with CSRF: the first shows what will happen (the
confirmation step, no JavaScript needed), the second (``confirmed``) does it. Rules live in app/services/windows.py."""

from __future__ import annotations

from decimal import Decimal

from flask import abort, current_app, flash, redirect, request, url_for
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access

from app.services import customer_services, windows
from app.services.licensing import LicenceError
from security import capabilities
from security import permissions as P
from views.customer.base import CustomerPortalView, customer_page
from views.customer.services import _subscription

RENEWAL_ENDPOINT = "CustomerRenewalsView.change_at_renewal"  # the renewals page's "Change at renewal", once it exists


def renewal_offer(customer_id: int, subscription_id: int, quantity: int) -> dict | None:
    """Where to schedule ``quantity`` at renewal instead (None until the renewals page exists): its URL with the
    quantity prefilled, and whether it is a link (GET) or a form to POST."""
    if RENEWAL_ENDPOINT not in current_app.view_functions:
        return None
    methods = set()
    for rule in current_app.url_map.iter_rules(RENEWAL_ENDPOINT):
        methods |= rule.methods or set()
    url = url_for(RENEWAL_ENDPOINT, customer_id=customer_id, subscription_id=subscription_id, quantity=quantity)
    return {"url": url, "post": "GET" not in methods, "quantity": quantity}


def _count(text: str) -> int | None:
    text = (text or "").strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 6 else None


class CustomerSeatWindowsView(CustomerPortalView):
    """Reduce within the windows, cancel within the purchase's window: Orders (a CSP Admin or the Master Admin)."""

    class_permission_name = P.ORDERS
    section = "microsoft_csp"
    method_permission_name = {"reduce": P.WRITE, "cancel": P.WRITE}

    def _page(self, sub, **context):
        page = {"error": None, "offer": None, "give_back": None, "takes": (), "total": None, "confirm": False}
        return self.render("seat_change.html", sub=sub, seat_windows=windows.summary(sub), **(page | context))

    def _back(self, customer_id, sub):
        return redirect(url_for("CustomerServicesView.subscription", customer_id=customer_id, subscription_id=sub.id))

    @expose("/<int:customer_id>/services/microsoft-csp/subscriptions/<int:subscription_id>/reduce", methods=["POST"])
    @customer_page
    @has_access
    def reduce(self, customer_id, subscription_id):
        sub = _subscription(customer_id, subscription_id)
        if not capabilities.may(P.ORDERS, P.WRITE):
            abort(403)
        give_back = _count(request.form.get("give_back", ""))
        if give_back is None or give_back < 1:
            page = self._page(sub, action="reduce", error="Enter how many licences to give back (1 or more).")
            return page, 400
        quantity = sub.quantity - give_back
        try:
            windows.check_reduction(sub, quantity)
        except windows.ReductionRefused as exc:
            offer = renewal_offer(customer_id, sub.id, max(1, quantity))
            return self._page(sub, action="reduce", give_back=give_back, error=str(exc), offer=offer), 400
        except LicenceError as exc:
            return self._page(sub, action="reduce", give_back=give_back, error=str(exc)), 400
        if request.form.get("confirmed") != "1":
            takes = windows.plan(sub, give_back)
            total = sum((t.refund for t in takes), Decimal("0.00"))
            return self._page(sub, action="reduce", give_back=give_back, takes=takes, total=total, confirm=True)
        try:
            customer_services.commit(lambda: windows.reduce(sub, give_back))
        except capabilities.NotAllowed:
            abort(403)
        except windows.ReductionRefused as exc:  # changed meanwhile (another reduction took the seats)
            offer = renewal_offer(customer_id, sub.id, max(1, quantity))
            return self._page(sub, action="reduce", give_back=give_back, error=str(exc), offer=offer), 400
        except LicenceError as exc:
            return self._page(sub, action="reduce", give_back=give_back, error=str(exc)), 400
        flash(
            f"{give_back} licence{'s' if give_back != 1 else ''} of {sub.product.name} given back: it now has "
            f"{sub.quantity}.",
            "success",
        )
        return self._back(customer_id, sub)

    @expose("/<int:customer_id>/services/microsoft-csp/subscriptions/<int:subscription_id>/cancel", methods=["POST"])
    @customer_page
    @has_access
    def cancel(self, customer_id, subscription_id):
        sub = _subscription(customer_id, subscription_id)
        if not capabilities.may(P.ORDERS, P.WRITE):
            abort(403)
        try:
            windows.check_cancel(sub)
        except LicenceError as exc:
            return self._page(sub, action="cancel", error=str(exc)), 400
        if request.form.get("confirmed") not in ("1", "yes"):  # "yes": views/base.py confirmation()'s answer
            return self._page(sub, action="cancel", confirm=True)
        name = sub.product.name
        try:
            customer_services.commit(lambda: windows.cancel(sub))
        except capabilities.NotAllowed:
            abort(403)
        except LicenceError as exc:
            return self._page(sub, action="cancel", error=str(exc)), 400
        flash(f"{name} is cancelled: its licences were taken back from their users.", "success")
        return self._back(customer_id, sub)

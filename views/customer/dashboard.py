"""The customer portal's dashboard: a user's own widgets (add, remove, reorder), each loading its own data."""

from __future__ import annotations

from flask import abort, flash, g, jsonify, redirect, request, url_for
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access, has_access_api

from app.extensions import db
from app.models.dashboards import DashboardWidget
from app.services import widgets as widget_service
from app.services.widgets import CATALOGUE, WidgetError
from security import permissions as P
from views.base import get_or_404
from views.customer.base import CustomerPortalView, customer_page


def _own_widget(widget_id) -> DashboardWidget:
    widget = get_or_404(DashboardWidget, widget_id)
    if widget.user_id != g.user.id or widget.account_id != g.customer.id:
        abort(404)
    return widget


class CustomerDashboardView(CustomerPortalView):
    class_permission_name = P.DASHBOARD
    section = "dashboard"
    method_permission_name = {
        "dashboard": P.READ,
        "widget_data": P.READ,
        "add_widget": P.WRITE,
        "remove_widget": P.WRITE,
        "reorder": P.WRITE,
    }

    @expose("/<int:customer_id>/")
    @customer_page
    @has_access
    def dashboard(self, customer_id):
        placed = widget_service.layout(g.user)
        return self.render("dashboard.html", widgets=placed, catalogue=CATALOGUE)

    @expose("/<int:customer_id>/widgets", methods=["POST"])
    @customer_page
    @has_access
    def add_widget(self, customer_id):
        try:
            widget_service.add_widget(g.user, request.form.get("widget", ""))
            db.session.commit()
        except WidgetError as exc:
            db.session.rollback()
            flash(str(exc), "danger")
        return redirect(url_for(".dashboard", customer_id=customer_id))

    @expose("/<int:customer_id>/widgets/<int:widget_id>/remove", methods=["POST"])
    @customer_page
    @has_access
    def remove_widget(self, customer_id, widget_id):
        widget_service.remove_widget(g.user, _own_widget(widget_id))
        db.session.commit()
        return redirect(url_for(".dashboard", customer_id=customer_id))

    @expose("/<int:customer_id>/widgets/order", methods=["POST"])
    @customer_page
    @has_access_api
    def reorder(self, customer_id):
        """The new order (drag and drop, or the move buttons), as JSON ``{"order": [ids]}`` or form fields."""
        try:
            payload = request.get_json(silent=True) if request.is_json else None
        except RecursionError:  # JSON nested deeper than any order could be
            payload = None
        if request.is_json and not isinstance(payload, dict):
            return jsonify({"message": 'Send {"order": [widget ids]}.'}), 400
        raw = payload.get("order") if isinstance(payload, dict) else request.form.getlist("order")
        try:
            order = [_widget_id(i) for i in raw or []]
            widget_service.reorder(g.user, order)
            db.session.commit()
        except (TypeError, ValueError) as exc:
            db.session.rollback()
            return jsonify({"message": str(exc) or "order must be a list of widget ids"}), 400
        if request.is_json:
            return jsonify({"order": order})
        return redirect(url_for(".dashboard", customer_id=customer_id))

    @expose("/<int:customer_id>/widgets/<int:widget_id>/data")
    @customer_page
    @has_access
    def widget_data(self, customer_id, widget_id):
        """One widget's content (an HTML fragment): each widget loads on its own, so one failing spoils nothing."""
        widget = _own_widget(widget_id)
        return self.render(f"widgets/{widget.widget}.html", widget=widget, **_data(widget.widget, customer_id))


def _widget_id(value) -> int:
    """A widget id as sent: a whole number, or its digits — not ``true``, ``1.5`` or ``1_0``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise ValueError("order must be a list of widget ids")


def _data(kind: str, customer_id: int) -> dict:
    if kind == "licences":
        return {"rows": widget_service.licences(customer_id)}
    if kind == "renewals":
        return {"rows": widget_service.renewals(customer_id)}
    if kind == "spend":
        return {"spend": widget_service.monthly_spend(customer_id)}
    if kind == "users":
        return {"summary": widget_service.users_summary(customer_id)}
    if kind == "usage_chart":
        return {"series": widget_service.usage_series([customer_id])}
    return {"events": widget_service.recent_activity(customer_id)}

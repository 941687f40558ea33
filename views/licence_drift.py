"""Reports ▸ Licence drift: each customer's subscriptions with seats bought but not assigned (or billed differently
from bought), what the unused seats cost a month, and the totals — a reseller its own customers, operator staff
every reseller's (app/services/licence_drift.py). The buy-price columns only for those who may see costs. Download
(.xlsx) is a POST with CSRF, as every export is: it is audited."""

from __future__ import annotations

import functools

from flask import abort, g, send_file
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access

from app.models.accounts import OPERATOR
from app.services import licence_drift
from security import capabilities, scoping
from security import permissions as P
from views.base import PortalView, page_arg, signed_in_first

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def partner_portal_only(view):
    """A partner-portal report: to a customer-portal sign-in (or a Launch (CP3) visit) it does not exist — 404."""

    @functools.wraps(view)
    def wrapper(self, *args, **kwargs):
        if scoping.current_scope().kind not in (scoping.ALL, scoping.RESELLER_SCOPE):
            abort(404)
        return view(self, *args, **kwargs)

    return wrapper


class LicenceDriftView(PortalView):
    route_base = "/reports/licence-drift"
    default_view = "report"
    class_permission_name = P.REPORTS
    method_permission_name = {"report": P.READ, "xlsx": P.EXPORT}

    @expose("/")
    @signed_in_first
    @partner_portal_only
    @has_access
    def report(self):
        return self.render_template(
            "portal/reports/licence_drift.html",
            report=licence_drift.report(page_arg()),
            operator=g.user.account.kind == OPERATOR,
            with_costs=capabilities.may(P.COSTS, P.READ),
            may_export=capabilities.may(P.REPORTS, P.EXPORT),
        )

    @expose("/licence-drift.xlsx", methods=["POST"])
    @signed_in_first
    @partner_portal_only
    @has_access
    def xlsx(self):
        made = licence_drift.export_workbook(g.user.account, capabilities.may(P.COSTS, P.READ))
        return send_file(made.data, as_attachment=True, download_name=made.name, mimetype=XLSX)

"""The first page after sign-in. Partner and operator staff: usage stats, recently created tenants and licences
nearing renewal. Everyone: who you are and which account you act for."""

from __future__ import annotations

from flask import g, redirect, request, url_for
from flask_appbuilder import IndexView
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access

from app.services import landing
from security import memberships
from security import permissions as P
from views.base import signed_in_first


class HomeView(IndexView):
    """The index. Anonymous visitors are sent to the sign-in page."""

    class_permission_name = P.HOME
    method_permission_name = {"index": P.READ}
    index_template = "portal/home.html"

    @expose("/")
    @signed_in_first
    @has_access
    def index(self):
        user = g.user
        if user.portal == "customer":
            membership = memberships.chosen()  # the guard has chosen one, or sent this request to the chooser
            if membership is None:
                return redirect(url_for(memberships.CHOOSER))
            return redirect(url_for("CustomerDashboardView.dashboard", customer_id=membership.account_id))
        context = {"user": user, "account": user.account, "roles": ", ".join(r.name for r in user.roles) or "no role"}
        if user.portal in ("operator", "partner"):
            context.update(
                stats=landing.usage_stats(),
                tenants=landing.recently_created_tenants(),
                renewals=landing.subscriptions_nearing_renewal(request.args.get("renewals", 30, type=int)),
                windows=landing.RENEWAL_WINDOWS,
            )
        return self.render_template(self.index_template, **context)

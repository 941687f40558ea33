"""Launch (CP3) and Return to partner portal: impersonation's start and stop, POST only."""

from __future__ import annotations

from flask import abort, flash, g, redirect, session, url_for
from flask_appbuilder import BaseView
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access

from security import impersonation, mfa
from security import permissions as P
from security.models import Membership
from views.base import PortalView, get_or_404


class LaunchView(PortalView):
    route_base = "/impersonation"
    class_permission_name = P.IMPERSONATION
    method_permission_name = {"start": P.LAUNCH}

    @expose("/start/<int:membership_id>", methods=["POST"])
    @has_access
    def start(self, membership_id):
        """Launch (CP3) as one membership: that login, in that one customer account, with that membership's role."""
        if impersonation.impersonating():
            abort(409, description="Return to the partner portal before launching another customer portal.")
        if mfa.missing_second_factor(g.user) is not None:  # the guard sends such sessions away first; never here
            abort(403, description="Launch (CP3) needs a sign-in that passed two-factor authentication.")
        target = get_or_404(Membership, membership_id)  # only memberships of accounts in the caller's scope
        decision = impersonation.can_impersonate(actor=g.user, target=target)
        if not decision:
            flash(decision.reason, "danger")
            return redirect(url_for("AccountUsersView.users", account_id=target.account_id))
        customer_id = target.account_id
        impersonation.start(g.user, target)
        return redirect(url_for("CustomerDashboardView.dashboard", customer_id=customer_id))


class ReturnView(BaseView):
    """Return to partner portal: allowed whenever the session holds an impersonation (the customer user's own
    permissions would not include it), and only then."""

    route_base = "/impersonation"
    default_view = "stop"

    @expose("/stop", methods=["POST"])
    def stop(self):
        if not impersonation.impersonating():
            abort(404)
        target_id = session.get(impersonation.TARGET_KEY)
        back = impersonation.back_url_for(target_id)
        actor = impersonation.stop()
        if actor is None or not actor.is_active:
            return redirect(self.appbuilder.get_url_for_login)
        return redirect(back)

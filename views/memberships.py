"""The account switcher: a customer-portal login with several customer accounts chooses the one it works in (after
sign-in, and from the name menu). Never while launched into a customer's portal: a Launch is one membership."""

from __future__ import annotations

from flask import abort, flash, g, redirect, request, url_for
from flask_appbuilder import BaseView
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access
from flask_appbuilder.utils.base import get_safe_redirect

from security import memberships
from security import permissions as P
from security.models import CUSTOMER_PORTAL
from views.base import signed_in_first


class AccountChooserView(BaseView):
    route_base = "/account"
    class_permission_name = P.ACCOUNT_SWITCHER
    method_permission_name = {"choose": P.READ, "chosen": P.WRITE}
    default_view = "choose"

    @staticmethod
    def _customer_login_only():
        if g.user.portal != CUSTOMER_PORTAL:
            abort(404)
        if g.get("impersonator") is not None:
            abort(403, description="A Launch (CP3) works in one customer account: return to the partner portal first.")

    @expose("/choose")
    @signed_in_first
    @has_access
    def choose(self):
        """The short list: the accounts this login may work in, the last used first."""
        self._customer_login_only()
        live = memberships.session_memberships(g.user)
        current = memberships.chosen()
        return self.render_template(
            "portal/choose_account.html",
            choices=live,
            current_id=current.id if current is not None else None,
            next_url=request.args.get("next", ""),
        )

    @expose("/choose/<int:membership_id>", methods=["POST"])
    @has_access
    def chosen(self, membership_id):
        """Work in that account from now on (a new session id; an event in that account's log)."""
        self._customer_login_only()
        membership = next((m for m in memberships.session_memberships(g.user) if m.id == membership_id), None)
        if membership is None:
            abort(404)  # not this login's, or no longer giving access: nothing to tell apart
        memberships.choose(g.user, membership)
        flash(f"You are working in {membership.account.name}.", "info")
        fallback = url_for("CustomerDashboardView.dashboard", customer_id=membership.account_id)
        next_url = request.form.get("next") or ""
        # A page of the account just left would answer 404: only a path of the chosen account's portal is kept.
        if next_url.startswith(f"/portal/{membership.account_id}/"):
            return redirect(get_safe_redirect(next_url))
        return redirect(fallback)

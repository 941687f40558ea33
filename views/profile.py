"""My sign-in: change my own password (knowing the current one). Not while launched into a customer's portal: the
customer's credentials stay theirs."""

from __future__ import annotations

from flask import abort, flash, g, redirect, url_for
from flask_appbuilder import BaseView
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access
from werkzeug.security import check_password_hash

from app.services import users as user_service
from app.services.users import UserError
from security import permissions as P
from security.sessions import mark_signed_in
from views.base import own_account, signed_in_first
from views.partner.account_users import save_form
from views.partner.forms import ChangePasswordForm


class ProfileView(BaseView):
    route_base = "/profile"
    class_permission_name = P.PROFILE
    method_permission_name = {"password": P.READ, "change_password": P.WRITE}
    default_view = "password"

    def _page(self, form, status: int = 200):
        # Customer users see it in their own portal's layout, staff in the partner portal's.
        return self.render_template(
            "portal/profile_password.html", form=form, customer=own_account(), section=""
        ), status

    @staticmethod
    def _not_while_launched():
        if g.get("impersonator") is not None:
            abort(403, description="While launched into a customer's portal, its user's password stays theirs.")

    @expose("/password")
    @signed_in_first
    @has_access
    def password(self):
        self._not_while_launched()
        return self._page(ChangePasswordForm())

    @expose("/password", methods=["POST"])
    @has_access
    def change_password(self):
        self._not_while_launched()
        form = ChangePasswordForm()
        form.account_email = g.user.email

        def change():
            if not check_password_hash(g.user.password or "", form.current.data or ""):
                raise UserError("That is not your current password.", "current")
            user_service.set_password(g.user, form.password.data)

        saved, _ = save_form(form, change)
        if not saved:
            return self._page(form, 400)
        mark_signed_in()  # this session goes on; the user's others end at their next request
        flash("Your password is changed. Your other sign-ins have ended.", "success")
        return redirect(url_for("HomeView.index"))

"""Operator screens for resellers: create one with its first partner user, disable and re-enable it."""

from __future__ import annotations

from flask import abort, flash, redirect, url_for
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access

from app.extensions import db
from app.models.accounts import RESELLER, Account
from app.services import users as user_service
from app.services.accounts import create_account, operator_account, set_account_status, sibling_name_problem
from app.services.activation import send_activation
from app.services.users import UserError
from security import permissions as P
from views.base import PortalView, get_or_404, signed_in_first
from views.partner.account_users import save_form
from views.partner.forms import ResellerForm


class ResellerAdminView(PortalView):
    route_base = "/resellers"
    class_permission_name = P.RESELLERS
    method_permission_name = {"new": P.WRITE, "create": P.WRITE, "disable": P.WRITE, "enable": P.WRITE}

    def _form_page(self, form):
        return self.render_template("portal/reseller_new.html", form=form, title="Add reseller")

    @expose("/new")
    @signed_in_first
    @has_access
    def new(self):
        return self._form_page(ResellerForm())

    @expose("/new", methods=["POST"])
    @has_access
    def create(self):
        form = ResellerForm()

        def add_reseller():
            clash = sibling_name_problem(operator_account(), form.name.data)
            if clash:
                raise UserError(clash, "name")
            values = form.company_values()
            reseller = create_account(RESELLER, values.pop("name"), operator_account(), **values)
            user = user_service.create_user(
                reseller, form.email.data, form.first_name.data, form.last_name.data, csp_admin=True
            )
            send_activation(user)  # queued with the reseller: the mail outbox sends it after the commit
            return reseller, user

        saved, created = save_form(form, add_reseller)
        if saved:
            reseller, user = created
            flash(
                f"Added reseller {reseller.name}. A welcome email with a link to set a password is on its way to "
                f"{user.email}.",
                "success",
            )
            return redirect(url_for("AccountScreenView.details", account_id=reseller.id))
        return self._form_page(form), 400

    def _set_status(self, account_id, active: bool):
        reseller = get_or_404(Account, account_id)
        if reseller.kind != RESELLER:
            abort(404)
        set_account_status(reseller, active)
        db.session.commit()
        flash(
            f"{reseller.name} is {'enabled' if active else 'disabled: its partner users can no longer sign in'}.",
            "success",
        )
        return redirect(url_for("AccountScreenView.details", account_id=reseller.id))

    @expose("/<int:account_id>/disable", methods=["POST"])
    @has_access
    def disable(self, account_id):
        return self._set_status(account_id, False)

    @expose("/<int:account_id>/enable", methods=["POST"])
    @has_access
    def enable(self, account_id):
        return self._set_status(account_id, True)

"""The customer portal's Users and Event Log pages: a customer manages its own portal users (master admins manage
admins; admins manage users) and reads its own audit trail."""

from __future__ import annotations

from flask import abort, flash, g, redirect, url_for
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access
from sqlalchemy import func, select

from app.extensions import db
from app.services import users as user_service
from app.services.activation import send_activation
from app.services.events import customer_portal_events
from app.services.users import UserChanges
from security import permissions as P
from security.models import CUSTOMER_PORTAL, PortalUser
from views.base import MASTER_ADMIN_NEEDS_ORDERS, get_or_404, may_grant_master_admin
from views.customer.base import CustomerPortalView, customer_page
from views.event_log import export_response, page_context
from views.partner.account_users import apply_user_change, save_form
from views.partner.forms import CustomerUserForm


def _may_manage(actor: PortalUser, user: PortalUser | None, *, admin: bool, master_admin: bool) -> str | None:
    """Why ``actor`` may not make ``user`` (None: a new one) have these flags; None when allowed."""
    if not actor.is_master_admin:
        if not actor.is_admin:
            return "Only admins manage users."
        if admin or master_admin or (user is not None and (user.is_admin or user.is_master_admin)):
            return "Only a Master Admin manages admins."
        return None
    if master_admin and not (user is not None and user.is_master_admin) and not may_grant_master_admin():
        return MASTER_ADMIN_NEEDS_ORDERS  # a launched Partner User: a Master Admin could order
    return None


class CustomerUsersView(CustomerPortalView):
    class_permission_name = P.CUSTOMER_USERS
    section = "users"
    method_permission_name = {
        "users": P.READ,
        "new_user": P.WRITE,
        "add_user": P.WRITE,
        "edit_user": P.WRITE,
        "save_user": P.WRITE,
        "disable_user": P.WRITE,
        "enable_user": P.WRITE,
        "delete_user": P.DELETE,
    }

    def _user(self, customer_id, user_id) -> PortalUser:
        user = get_or_404(PortalUser, user_id)
        if user.account_id != customer_id or user.portal != CUSTOMER_PORTAL or user.deleted_at is not None:
            abort(404)
        return user

    def _back(self, customer_id):
        return redirect(url_for(".users", customer_id=customer_id))

    @expose("/<int:customer_id>/users")
    @customer_page
    @has_access
    def users(self, customer_id):
        people = db.session.scalars(
            select(PortalUser)
            .where(
                PortalUser.account_id == customer_id,
                PortalUser.portal == CUSTOMER_PORTAL,  # a reseller's own portal lists its customer logins, not staff
                PortalUser.deleted_at.is_(None),
            )
            .order_by(func.lower(PortalUser.first_name), PortalUser.id)
        ).all()
        return self.render("users.html", people=people)

    def _form_page(self, form, title, user=None, status=200):
        return self.render(
            "user_form.html",
            form=form,
            title=title,
            user=user,
            locked_email=user is not None and g.get("impersonator") is not None and user.id == g.user.id,
        ), status

    @expose("/<int:customer_id>/users/new")
    @customer_page
    @has_access
    def new_user(self, customer_id):
        return self._form_page(CustomerUserForm(), "Invite a user")

    @expose("/<int:customer_id>/users/new", methods=["POST"])
    @customer_page
    @has_access
    def add_user(self, customer_id):
        form = CustomerUserForm()
        refused = _may_manage(g.user, None, admin=form.admin.data, master_admin=form.master_admin.data)
        if refused:
            form.form_errors.append(refused)
            return self._form_page(form, "Invite a user", status=403)
        saved, user = save_form(
            form,
            lambda: user_service.create_user(
                g.customer,
                form.email.data,
                form.first_name.data,
                form.last_name.data,
                mobile=form.mobile.data,
                admin=form.admin.data,
                master_admin=form.master_admin.data,
                cp3_enabled=True,
                portal=CUSTOMER_PORTAL,  # the customer portal makes customer portal logins, on any account
            ),
        )
        if not saved:
            return self._form_page(form, "Invite a user", status=400)
        sent = send_activation(user)
        flash(
            f"Invited {user.email}." if sent else f"Added {user.email}, but the email was not sent.",
            "success" if sent else "warning",
        )
        return self._back(customer_id)

    @expose("/<int:customer_id>/users/<int:user_id>/edit")
    @customer_page
    @has_access
    def edit_user(self, customer_id, user_id):
        user = self._user(customer_id, user_id)
        form = CustomerUserForm(obj=user, admin=user.is_admin, master_admin=user.is_master_admin)
        return self._form_page(form, f"Edit {user.email}", user)

    @expose("/<int:customer_id>/users/<int:user_id>/edit", methods=["POST"])
    @customer_page
    @has_access
    def save_user(self, customer_id, user_id):
        user = self._user(customer_id, user_id)
        form = CustomerUserForm()
        refused = _may_manage(g.user, user, admin=form.admin.data, master_admin=form.master_admin.data)
        email = (form.email.data or "").strip().lower()
        if g.get("impersonator") is not None and user.id == g.user.id and email and email != user.email:
            refused = "The customer's own sign-in stays theirs: its email cannot be changed while launched."
        if refused:
            form.form_errors.append(refused)
            return self._form_page(form, f"Edit {user.email}", user, status=403)
        saved, _ = save_form(
            form,
            lambda: user_service.update_user(
                user,
                UserChanges(
                    form.first_name.data,
                    form.last_name.data,
                    form.email.data,
                    form.mobile.data,
                    admin=form.admin.data,
                    master_admin=form.master_admin.data,
                ),
            ),
        )
        if not saved:
            return self._form_page(form, f"Edit {user.email}", user, status=400)
        flash(f"Saved {user.email}.", "success")
        return self._back(customer_id)

    def _change(self, customer_id, user_id, change, done):
        user = self._user(customer_id, user_id)
        return apply_user_change(
            user,
            change,
            done,
            url_for(".users", customer_id=customer_id),
            refused=_may_manage(g.user, user, admin=False, master_admin=False),
        )

    @expose("/<int:customer_id>/users/<int:user_id>/disable", methods=["POST"])
    @customer_page
    @has_access
    def disable_user(self, customer_id, user_id):
        return self._change(customer_id, user_id, lambda u: user_service.set_enabled(u, False), "{email} is disabled.")

    @expose("/<int:customer_id>/users/<int:user_id>/enable", methods=["POST"])
    @customer_page
    @has_access
    def enable_user(self, customer_id, user_id):
        return self._change(customer_id, user_id, lambda u: user_service.set_enabled(u, True), "{email} is enabled.")

    @expose("/<int:customer_id>/users/<int:user_id>/delete", methods=["POST"])
    @customer_page
    @has_access
    def delete_user(self, customer_id, user_id):
        return self._change(customer_id, user_id, user_service.soft_delete, "{email} is deleted.")


class CustomerEventsView(CustomerPortalView):
    class_permission_name = P.CUSTOMER_EVENTS
    section = "events"
    method_permission_name = {"events": P.READ, "export_events": P.EXPORT}

    @expose("/<int:customer_id>/events")
    @customer_page
    @has_access
    def events(self, customer_id):
        context, status = page_context(
            customer_portal_events(customer_id),
            endpoints=(f"{self.endpoint}.events", f"{self.endpoint}.export_events"),
            endpoint_args={"customer_id": customer_id},
            resource=P.CUSTOMER_EVENTS,
            customer_portal=True,
        )
        return self.render("events.html", **context), status

    @expose("/<int:customer_id>/events.xlsx", methods=["POST"])
    @customer_page
    @has_access
    def export_events(self, customer_id):
        """Export: the events of this customer portal the filters select (POST with CSRF; itself an event)."""
        return export_response(
            customer_portal_events(customer_id), log_of=g.customer, record_on=customer_id, customer_portal=True
        )

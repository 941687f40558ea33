"""The customer portal's Users and Event Log pages: a customer manages its own portal users (master admins manage
admins; admins manage users) and reads its own audit trail."""

from __future__ import annotations

from flask import flash, g, redirect, url_for
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access

from app.services import users as user_service
from app.services.events import customer_portal_events
from security import memberships
from security import permissions as P
from security.models import Membership
from views.base import MASTER_ADMIN_NEEDS_ORDERS, may_grant_master_admin
from views.customer.base import CustomerPortalView, customer_page
from views.event_log import export_response, page_context
from views.partner.account_users import (
    apply_user_change,
    login_form_rules,
    mail_added,
    member_form,
    member_of,
    save_form,
    save_member,
    tell_added,
)
from views.partner.forms import CustomerUserForm


def _may_manage(actor: Membership, user: Membership | None, *, admin: bool, master_admin: bool) -> str | None:
    """Why the membership ``actor`` (the signed-in login, in this account) may not make ``user`` (None: a new one)
    have these flags; None when allowed."""
    if actor is None:
        return "Only admins manage users."
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

    def _user(self, customer_id, user_id) -> Membership:
        return member_of(g.customer, user_id)

    def _back(self, customer_id):
        return redirect(url_for(".users", customer_id=customer_id))

    @expose("/<int:customer_id>/users")
    @customer_page
    @has_access
    def users(self, customer_id):
        # Memberships: a reseller's own portal lists its customer-portal users, never its partner staff.
        return self.render("users.html", people=user_service.members_of(g.customer))

    def _form_page(self, form, title, user=None, status=200):
        login_locked = user is not None and not login_form_rules(form, user)
        return self.render(
            "user_form.html",
            form=form,
            title=title,
            user=user,
            login_locked=login_locked,
            locked_email=user is not None and g.get("impersonator") is not None and user.user_id == g.user.id,
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
        refused = _may_manage(memberships.chosen(), None, admin=form.admin.data, master_admin=form.master_admin.data)
        if refused:
            form.form_errors.append(refused)
            return self._form_page(form, "Invite a user", status=403)
        saved, added = save_form(
            form,
            lambda: mail_added(
                user_service.add_member(
                    g.customer,
                    form.email.data,
                    form.first_name.data,
                    form.last_name.data,
                    mobile=form.mobile.data,
                    admin=form.admin.data,
                    master_admin=form.master_admin.data,
                    cp3_enabled=True,
                ),
                g.customer,
            ),
        )
        if not saved:
            return self._form_page(form, "Invite a user", status=400)
        tell_added(added, g.customer)
        return self._back(customer_id)

    @expose("/<int:customer_id>/users/<int:user_id>/edit")
    @customer_page
    @has_access
    def edit_user(self, customer_id, user_id):
        membership = self._user(customer_id, user_id)
        return self._form_page(member_form(membership), f"Edit {membership.email}", membership)

    @expose("/<int:customer_id>/users/<int:user_id>/edit", methods=["POST"])
    @customer_page
    @has_access
    def save_user(self, customer_id, user_id):
        membership = self._user(customer_id, user_id)
        form = CustomerUserForm()
        refused = _may_manage(
            memberships.chosen(), membership, admin=form.admin.data, master_admin=form.master_admin.data
        )
        email = (form.email.data or "").strip().lower()
        launched_self = g.get("impersonator") is not None and membership.user_id == g.user.id
        if launched_self and email and email != membership.email:
            refused = "The customer's own sign-in stays theirs: its email cannot be changed while launched."
        if refused:
            form.form_errors.append(refused)
            return self._form_page(form, f"Edit {membership.email}", membership, status=403)
        saved, _ = save_member(form, membership)
        if not saved:
            return self._form_page(form, f"Edit {membership.email}", membership, status=400)
        flash(f"Saved {membership.email}.", "success")
        return self._back(customer_id)

    def _change(self, customer_id, user_id, change, done, ask=None):
        user = self._user(customer_id, user_id)
        return apply_user_change(
            user,
            change,
            done,
            url_for(".users", customer_id=customer_id),
            refused=_may_manage(memberships.chosen(), user, admin=False, master_admin=False),
            ask=(lambda: self._ask(*ask(user))) if ask else None,
        )

    def _ask(self, question: str, consequence: str, button: str):
        """The confirmation step, in the customer portal's layout; Cancel goes back to Users."""
        return self.ask(question, consequence, button, url_for(".users", customer_id=g.customer.id))

    @expose("/<int:customer_id>/users/<int:user_id>/disable", methods=["POST"])
    @customer_page
    @has_access
    def disable_user(self, customer_id, user_id):
        return self._change(
            customer_id,
            user_id,
            lambda m: user_service.set_member_enabled(m, False),
            "{email} is disabled.",
            ask=lambda m: (
                f"Disable {m.email}?",
                f"{m.get_full_name()} can no longer sign in to {g.customer.name}'s portal, and their sessions end, "
                "until they are enabled again.",
                "Disable",
            ),
        )

    @expose("/<int:customer_id>/users/<int:user_id>/enable", methods=["POST"])
    @customer_page
    @has_access
    def enable_user(self, customer_id, user_id):
        return self._change(
            customer_id, user_id, lambda m: user_service.set_member_enabled(m, True), "{email} is enabled."
        )

    @expose("/<int:customer_id>/users/<int:user_id>/delete", methods=["POST"])
    @customer_page
    @has_access
    def delete_user(self, customer_id, user_id):
        return self._change(
            customer_id,
            user_id,
            user_service.remove_member,
            "{email} is deleted.",
            ask=lambda m: (
                f"Delete {m.email}?",
                f"{m.get_full_name()} loses access to {g.customer.name}'s portal for good: to give it back, invite "
                "them again. Their history stays.",
                "Delete user",
            ),
        )


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

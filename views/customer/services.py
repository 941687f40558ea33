"""Services ▸ Microsoft CSP: the customer's tenant, subscriptions, Microsoft 365 users and licences.

Reading is the page's permission; each change needs its capability: orders, quantities and auto-renew (Orders),
licence assignment (Licences), Microsoft 365 users (Microsoft 365 Admin), a new tenant (Tenant Setup).
"""

from __future__ import annotations

import secrets

from flask import abort, flash, g, redirect, request, url_for
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length, Regexp

from app import clock
from app.models.subscriptions import M365User, Subscription
from app.services import customer_services, licensing, windows
from app.services.licensing import LicenceError
from security import permissions as P
from security.passwords import password_problem
from views.base import confirmation, get_or_404
from views.customer.base import CustomerPortalView, customer_page


class NewM365UserForm(FlaskForm):
    first_name = StringField("First name", validators=[DataRequired(message="First name is required."), Length(max=64)])
    last_name = StringField("Last name", validators=[DataRequired(message="Last name is required."), Length(max=64)])
    username = StringField(
        "User name",
        validators=[
            DataRequired(message="User name is required."),
            Length(max=64),
            Regexp(r"^[A-Za-z0-9._-]+$", message="Use letters, digits and . _ - only."),
        ],
    )
    password = PasswordField("Temporary password", description="They change it at their first Microsoft sign-in.")

    def validate_password(self, field):
        problem = password_problem(field.data or "")
        if problem:
            from wtforms import ValidationError

            raise ValidationError(problem)


def _subscription(customer_id, subscription_id) -> Subscription:
    sub = get_or_404(Subscription, subscription_id)
    if sub.account_id != customer_id:
        abort(404)
    return sub


def _person(customer_id, person_id) -> M365User:
    person = get_or_404(M365User, person_id)
    if person.account_id != customer_id:
        abort(404)
    return person


_ON, _OFF = frozenset({"1", "true", "on", "yes"}), frozenset({"0", "false", "off", "no"})


def _csp_page(customer_id: int):
    return redirect(url_for("CustomerServicesView.microsoft_csp", customer_id=customer_id))


def _apply(change, success: str, customer_id: int, back=None):
    return _apply_once(change, success, customer_id, back)[0]


def _apply_once(change, success: str, customer_id: int, back=None):
    """Run ``change`` and commit; a refusal is rolled back and flashed. Returns (response, whether it was done)."""
    try:
        customer_services.commit(change)
    except LicenceError as exc:
        flash(str(exc), "danger")
        return back or _csp_page(customer_id), False
    flash(success, "success")
    return back or _csp_page(customer_id), True


def _services_page(view, customer_id: int, *, user_form=None, status: int = 200):
    """Services ▸ Microsoft CSP — also re-drawn by a refused new user, with the errors beside the fields
    and what was typed still in them."""
    customer = g.customer
    shown = customer_services.overview(customer_id)
    page = view.render_template(
        "portal/customer/microsoft_csp.html",
        customer=customer,
        section="microsoft_csp",
        tenant=customer.tenant,
        subscriptions=shown.subscriptions,
        people=shown.people,
        held=shown.held,
        user_form=user_form or NewM365UserForm(formdata=None),
    )
    return page, status


class CustomerServicesView(CustomerPortalView):
    class_permission_name = P.CUSTOMER_SERVICES
    section = "microsoft_csp"
    method_permission_name = {"microsoft_csp": P.READ, "subscription": P.READ}

    @expose("/<int:customer_id>/services/microsoft-csp")
    @customer_page
    @has_access
    def microsoft_csp(self, customer_id):
        return _services_page(self, customer_id)

    @expose("/<int:customer_id>/services/microsoft-csp/subscriptions/<int:subscription_id>")
    @customer_page
    @has_access
    def subscription(self, customer_id, subscription_id):
        sub = _subscription(customer_id, subscription_id)
        holders, others = customer_services.holders(sub)
        return self.render(
            "subscription.html",
            sub=sub,
            holders=holders,
            others=others,
            seat_windows=windows.summary(sub),  # the seat batches' windows (portal/customer/_seat_batches.html)
            today=clock.today(),
        )


class CustomerOrdersView(CustomerPortalView):
    """Quantities and auto-renew (new orders: views/customer/ordering.py): a Partner CSP Admin (also while launched)
    or the Master Admin."""

    class_permission_name = P.ORDERS
    method_permission_name = {"quantity": P.WRITE, "auto_renew": P.WRITE}

    @expose("/<int:customer_id>/services/microsoft-csp/subscriptions/<int:subscription_id>/quantity", methods=["POST"])
    @customer_page
    @has_access
    def quantity(self, customer_id, subscription_id):
        sub = _subscription(customer_id, subscription_id)
        # Back to the page the form was on (the subscription's own page), or the services page.
        page = url_for("CustomerServicesView.subscription", customer_id=customer_id, subscription_id=sub.id)
        back = redirect(
            page
            if request.form.get("next") == page
            else url_for("CustomerServicesView.microsoft_csp", customer_id=customer_id)
        )
        text = request.form.get("quantity", "").strip()
        if not (text.isascii() and text.isdigit() and len(text) <= 6):
            flash("Enter the number of licences as a whole number.", "danger")
            return back
        quantity = int(text)
        return _apply(
            lambda: licensing.change_quantity(sub, quantity),
            f"{sub.product.name} now has {quantity} licences.",
            customer_id,
            back,
        )

    @expose(
        "/<int:customer_id>/services/microsoft-csp/subscriptions/<int:subscription_id>/auto-renew", methods=["POST"]
    )
    @customer_page
    @has_access
    def auto_renew(self, customer_id, subscription_id):
        sub = _subscription(customer_id, subscription_id)
        choice = request.form.get("enabled", "").strip().lower()
        if choice not in _ON | _OFF:
            flash("Say whether auto-renew should be on or off.", "danger")
            return _csp_page(customer_id)
        enabled = choice in _ON
        return _apply(
            lambda: licensing.set_auto_renew(sub, enabled),
            f"Auto-renew of {sub.product.name} is {'on' if enabled else 'off'}.",
            customer_id,
        )


class CustomerLicencesView(CustomerPortalView):
    """Assigning and unassigning licences: Customer Admins and Master Admins, and CSP Admins while launched."""

    class_permission_name = P.LICENCES
    method_permission_name = {"assign": P.WRITE, "unassign": P.WRITE}

    def _back(self, customer_id, subscription_id):
        return redirect(
            url_for("CustomerServicesView.subscription", customer_id=customer_id, subscription_id=subscription_id)
        )

    @expose("/<int:customer_id>/services/microsoft-csp/subscriptions/<int:subscription_id>/assign", methods=["POST"])
    @customer_page
    @has_access
    def assign(self, customer_id, subscription_id):
        sub = _subscription(customer_id, subscription_id)
        person = _person(customer_id, request.form.get("m365_user_id"))
        return _apply(
            lambda: licensing.assign(sub, person),
            f"{sub.product.name} assigned to {person.user_principal_name}.",
            customer_id,
            self._back(customer_id, sub.id),
        )

    @expose("/<int:customer_id>/services/microsoft-csp/subscriptions/<int:subscription_id>/unassign", methods=["POST"])
    @customer_page
    @has_access
    def unassign(self, customer_id, subscription_id):
        sub = _subscription(customer_id, subscription_id)
        person = _person(customer_id, request.form.get("m365_user_id"))
        return _apply(
            lambda: licensing.unassign(sub, person),
            f"{sub.product.name} removed from {person.user_principal_name}.",
            customer_id,
            self._back(customer_id, sub.id),
        )


class CustomerM365UsersView(CustomerPortalView):
    """Adding, disabling, enabling and deleting Microsoft 365 users, and resetting their passwords: each at Microsoft
    first (a durable provider operation), then here; a failed or unanswered call is answered with what is true."""

    class_permission_name = P.M365_ADMIN
    section = "microsoft_csp"
    method_permission_name = {
        "add": P.WRITE,
        "disable": P.WRITE,
        "enable": P.WRITE,
        "delete": P.WRITE,
        "reset_password": P.WRITE,
    }

    @expose("/<int:customer_id>/services/microsoft-csp/users", methods=["POST"])
    @customer_page
    @has_access
    def add(self, customer_id):
        form = NewM365UserForm()
        if not form.password.data:
            form.password.data = secrets.token_urlsafe(12) + "Aa1!"
        if not form.validate_on_submit():
            return _services_page(self, customer_id, user_form=form, status=400)
        return _apply(
            lambda: licensing.add_m365_user(
                g.customer, form.first_name.data, form.last_name.data, form.username.data, form.password.data
            ),
            f"Added Microsoft 365 user {form.username.data.lower()}. Reset password gives them a temporary password "
            "to sign in with.",
            customer_id,
        )

    @expose("/<int:customer_id>/services/microsoft-csp/users/<int:person_id>/disable", methods=["POST"])
    @customer_page
    @has_access
    def disable(self, customer_id, person_id):
        person = _person(customer_id, person_id)
        return _apply(
            lambda: licensing.set_m365_user_status(person, False),
            f"{person.user_principal_name} is disabled.",
            customer_id,
        )

    @expose("/<int:customer_id>/services/microsoft-csp/users/<int:person_id>/enable", methods=["POST"])
    @customer_page
    @has_access
    def enable(self, customer_id, person_id):
        person = _person(customer_id, person_id)
        return _apply(
            lambda: licensing.set_m365_user_status(person, True),
            f"{person.user_principal_name} is enabled.",
            customer_id,
        )

    @expose("/<int:customer_id>/services/microsoft-csp/users/<int:person_id>/delete", methods=["POST"])
    @customer_page
    @has_access
    def delete(self, customer_id, person_id):
        person = _person(customer_id, person_id)
        upn = person.user_principal_name
        held = licensing.held_licence_names(person)
        asked = confirmation(
            f"Delete {upn}?",
            f"{person.display_name} is deleted at Microsoft and can no longer sign in"
            + (f"; their licences ({', '.join(held)}) are released." if held else ".")
            + " Microsoft keeps a deleted user restorable for 30 days; the portal does not.",
            "Delete user",
            cancel_url=url_for("CustomerServicesView.microsoft_csp", customer_id=customer_id),
            layout="portal/customer/base.html",
            customer=g.customer,
            section=self.section,
        )
        if asked:
            return asked
        return _apply(
            lambda: licensing.delete_m365_user(person),
            f"{upn} is deleted at Microsoft; its licences are free again.",
            customer_id,
        )

    @expose("/<int:customer_id>/services/microsoft-csp/users/<int:person_id>/reset-password", methods=["POST"])
    @customer_page
    @has_access
    def reset_password(self, customer_id, person_id):
        """The new temporary password is on this answer alone: never flashed (a flash is kept in the session), never
        stored, and the page is not cached."""
        person = _person(customer_id, person_id)
        try:
            password = customer_services.commit(lambda: licensing.reset_m365_user_password(person))
        except LicenceError as exc:
            flash(str(exc), "danger")
            return _csp_page(customer_id)
        page = self.render("m365_password.html", person=person, password=password)
        return page, 200, {"Cache-Control": "no-store"}

"""Services ▸ Microsoft CSP: the customer's tenant, subscriptions, Microsoft 365 users and licences.

Reading is the page's permission; each change needs its capability: orders, quantities and auto-renew (Orders),
licence assignment (Licences), Microsoft 365 users (Microsoft 365 Admin), a new tenant (Tenant Setup).
"""

from __future__ import annotations

from flask import abort, flash, g, redirect, request, url_for
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access
from flask_wtf import FlaskForm
from wtforms import SelectField, StringField, ValidationError
from wtforms.validators import DataRequired, Length, Optional, Regexp

from app import clock
from app.models.subscriptions import M365User, Subscription
from app.services import customer_services, licensing, m365_import, windows
from app.services.licensing import LicenceError
from security import permissions as P
from views.base import get_or_404
from views.customer.base import CustomerPortalView, customer_page

_NAME = m365_import.NAME_MAX
_NO_STORE = {"Cache-Control": "no-store"}  # a page that shows a temporary password: never cached


def _no_control_characters(form, field):
    if m365_import.has_control_characters(field.data or ""):
        raise ValidationError("It holds characters that cannot be part of a name.")


class M365UserDetailsForm(FlaskForm):
    """What Edit changes, as in the Microsoft 365 admin centre: names, display name and usage location."""

    first_name = StringField(
        "First name",
        validators=[DataRequired(message="First name is required."), Length(max=_NAME), _no_control_characters],
    )
    last_name = StringField(
        "Last name",
        validators=[DataRequired(message="Last name is required."), Length(max=_NAME), _no_control_characters],
    )
    display_name = StringField(
        "Display name",
        description="Leave it empty for “First Last”.",
        validators=[Optional(), Length(max=m365_import.DISPLAY_NAME_MAX), _no_control_characters],
    )
    usage_location = SelectField(
        "Usage location",
        description="The country where they use Microsoft 365: Microsoft needs it before it assigns them a licence.",
        validate_choice=False,
        validators=[DataRequired(message="Choose the country where they use Microsoft 365.")],
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.usage_location.choices = m365_import.usage_location_choices()

    def validate_usage_location(self, field):
        if (field.data or "").upper() not in m365_import.usage_locations():
            raise ValidationError("Choose the country where they use Microsoft 365.")
        field.data = field.data.upper()

    @property
    def details(self) -> dict:
        first, last = self.first_name.data.strip(), self.last_name.data.strip()
        return {
            "first_name": first,
            "last_name": last,
            "display_name": (self.display_name.data or "").strip() or f"{first} {last}",
            "usage_location": self.usage_location.data,
        }


class NewM365UserForm(M365UserDetailsForm):
    """Add user: the details, and the user name at the tenant's domain (the portal makes the temporary password)."""

    username = StringField(
        "User name",
        validators=[
            DataRequired(message="User name is required."),
            Length(max=m365_import.USER_NAME_MAX),
            Regexp(m365_import.USER_NAME.pattern, message=m365_import.USER_NAME_RULE),
        ],
    )

    def validate_username(self, field):
        problem = m365_import.user_name_problem(field.data or "")
        if problem and not field.errors:  # the rules above said it already
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


def _services_page(view, customer_id: int, *, status: int = 200):
    """Services ▸ Microsoft CSP: the tenant, the subscriptions, the Microsoft 365 users."""
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
        usage_locations=m365_import.usage_locations(),
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
    section = "microsoft_csp"
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
        asked = self.ask(
            f"Unassign {sub.product.name} from {person.user_principal_name}?",
            f"{person.display_name} loses {sub.product.name} at Microsoft at once: its apps and services stop for "
            "them, and Microsoft keeps their data for it only 30 days. The licence is free for someone else.",
            "Unassign",
            url_for("CustomerServicesView.subscription", customer_id=customer_id, subscription_id=sub.id),
        )
        if asked:
            return asked
        return _apply(
            lambda: licensing.unassign(sub, person),
            f"{sub.product.name} removed from {person.user_principal_name}.",
            customer_id,
            self._back(customer_id, sub.id),
        )


class CustomerM365UsersView(CustomerPortalView):
    """Microsoft 365 users as in Microsoft's admin centre: Add user (its temporary password shown once), Edit, Disable,
    Enable, Reset password, Delete and Import users — each change at Microsoft first (a durable provider operation),
    then here; a failed or unanswered call is answered with what is true."""

    class_permission_name = P.M365_ADMIN
    section = "microsoft_csp"
    method_permission_name = {
        "new": P.WRITE,
        "add": P.WRITE,
        "edit": P.WRITE,
        "disable": P.WRITE,
        "enable": P.WRITE,
        "delete": P.WRITE,
        "reset_password": P.WRITE,
        "import_users": P.WRITE,
    }

    def _no_tenant(self, customer_id):
        """The Microsoft CSP page saying why, when the customer has no active Microsoft tenant to add users to."""
        tenant = g.customer.tenant
        if tenant is not None and tenant.status == "active":
            return None
        flash(f"{g.customer.name} has no active Microsoft tenant yet.", "danger")
        return _csp_page(customer_id)

    def _form_page(self, form, person=None, *, refusal: str | None = None, status: int = 200):
        page = self.render("m365_user_form.html", form=form, person=person, tenant=g.customer.tenant, refusal=refusal)
        return page, status

    @expose("/<int:customer_id>/services/microsoft-csp/users/new")
    @customer_page
    @has_access
    def new(self, customer_id):
        return self._no_tenant(customer_id) or self._form_page(
            NewM365UserForm(formdata=None, usage_location=g.customer.country or "NZ")
        )

    @expose("/<int:customer_id>/services/microsoft-csp/users", methods=["POST"])
    @customer_page
    @has_access
    def add(self, customer_id):
        """Add user: the temporary password the portal made is on this answer alone (as Reset password's)."""
        not_ready = self._no_tenant(customer_id)
        if not_ready:
            return not_ready
        form = NewM365UserForm(usage_location=g.customer.country or "NZ")
        if not form.validate_on_submit():
            return self._form_page(form, status=400)
        username, details = form.username.data.strip().lower(), form.details
        upn = f"{username}@{g.customer.tenant.primary_domain}"
        if upn in m365_import.existing_user_names(g.customer):
            form.username.errors.append(f"{upn} already exists.")
            return self._form_page(form, status=400)
        password = licensing.temporary_password()
        try:
            person = customer_services.commit(
                lambda: licensing.add_m365_user(
                    g.customer,
                    details["first_name"],
                    details["last_name"],
                    username,
                    password,
                    display_name=details["display_name"],
                    usage_location=details["usage_location"],
                )
            )
        except LicenceError as exc:
            return self._form_page(form, refusal=str(exc))
        page = self.render("m365_password.html", person=person, password=password, added=True)
        return page, 200, _NO_STORE

    @expose("/<int:customer_id>/services/microsoft-csp/users/<int:person_id>/edit", methods=["GET", "POST"])
    @customer_page
    @has_access
    def edit(self, customer_id, person_id):
        """Edit: names, display name and usage location, at Microsoft first."""
        person = _person(customer_id, person_id)
        if request.method == "GET":
            first, _space, last = person.display_name.partition(" ")  # a user recorded before names were kept
            form = M365UserDetailsForm(
                formdata=None,
                first_name=person.first_name or first,
                last_name=person.last_name or last,
                display_name=person.display_name,
                usage_location=person.usage_location or g.customer.country or "NZ",
            )
            return self._form_page(form, person)
        form = M365UserDetailsForm()
        if not form.validate_on_submit():
            return self._form_page(form, person, status=400)
        details, upn = form.details, person.user_principal_name
        try:
            changed = customer_services.commit(lambda: licensing.update_m365_user(person, **details))
        except LicenceError as exc:
            return self._form_page(form, person, refusal=str(exc))
        if changed:
            flash(
                f"{upn} is changed at Microsoft: {details['display_name']}, usage location "
                f"{details['usage_location']}.",
                "success",
            )
        else:
            flash(f"Nothing to change for {upn}.", "info")
        return _csp_page(customer_id)

    @expose("/<int:customer_id>/services/microsoft-csp/users/import", methods=["GET", "POST"])
    @customer_page
    @has_access
    def import_users(self, customer_id):
        """Import users from a CSV (the admin centre's bulk-add columns): every line checked first, then each valid
        one created; the answer lists each line — created, with its temporary password shown once, or refused and
        why."""
        not_ready = self._no_tenant(customer_id)
        if not_ready:
            return not_ready
        if request.method == "GET":
            return self._import_page()
        upload = request.files.get("users_file")
        if upload is None or not upload.filename:
            return self._import_page("Choose the CSV file of the users to add.")
        try:
            lines = m365_import.read(upload.stream.read(m365_import.MAX_BYTES + 1), g.customer)
        except m365_import.FileRefused as exc:
            return self._import_page(str(exc))
        result = m365_import.create(g.customer, lines, upload.filename)
        page = self.render("m365_import_result.html", result=result, file_name=upload.filename)
        return page, 200, _NO_STORE

    def _import_page(self, error: str | None = None):
        page = self.render(
            "m365_import.html",
            tenant=g.customer.tenant,
            error=error,
            max_lines=m365_import.MAX_LINES,
            default_location=g.customer.country or "NZ",
        )
        return page, 400 if error else 200

    @expose("/<int:customer_id>/services/microsoft-csp/users/<int:person_id>/disable", methods=["POST"])
    @customer_page
    @has_access
    def disable(self, customer_id, person_id):
        person = _person(customer_id, person_id)
        upn = person.user_principal_name
        asked = self.ask(
            f"Disable {upn}?",
            f"{person.display_name} can no longer sign in to Microsoft 365 until you enable them again. They keep "
            "their licences (still paid for) and their mail and files.",
            "Disable user",
            url_for("CustomerServicesView.microsoft_csp", customer_id=customer_id),
        )
        if asked:
            return asked
        return _apply(lambda: licensing.set_m365_user_status(person, False), f"{upn} is disabled.", customer_id)

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
        asked = self.ask(
            f"Delete {upn}?",
            f"{person.display_name} is deleted at Microsoft and can no longer sign in"
            + (f"; their licences ({', '.join(held)}) are released." if held else ".")
            + " Microsoft keeps a deleted user restorable for 30 days; the portal does not.",
            "Delete user",
            url_for("CustomerServicesView.microsoft_csp", customer_id=customer_id),
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
        page = self.render("m365_password.html", person=person, password=password, added=False)
        return page, 200, _NO_STORE

"""A subscription's renewal and upgrades (issue 13): Change at renewal (SKU, Term, Billing frequency, licences), Clear,
and Upgrade (all seats or some). The rules live in app/services/renewals.py; this module reads forms and draws.

Every route is a POST with CSRF except the form's own page (``change_at_renewal`` GET, ``?quantity=`` prefills it);
all need the Orders capability (write). Another customer's subscription answers 404.
"""

from __future__ import annotations

import dataclasses

from flask import abort, flash, redirect, request, url_for
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access

from app import clock
from app.csp.base import ProviderError
from app.models.catalog import FREQUENCY_LABELS, TERM_LABELS, Availability
from app.models.subscriptions import M365User, Subscription
from app.services import customer_services, renewals
from app.services.licensing import LicenceError
from security import capabilities
from security import permissions as P
from views.base import get_or_404
from views.customer.base import CustomerPortalView, customer_page


@dataclasses.dataclass
class RenewalForm:
    """What was typed (or prefilled) and the message beside each field."""

    product_id: int | None = None
    term: str | None = None
    billing_frequency: str | None = None
    quantity: str | None = None
    errors: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class RenewalPanel:
    sub: Subscription
    summary: str | None
    last_moment: str
    lock_hours: int
    locked: bool
    can_order: bool
    choices: list[Availability]
    upgrades: list[Availability]
    holders: list[M365User]
    form: RenewalForm
    problem: str | None = None

    @property
    def products(self):
        seen = {}
        for availability in self.choices:
            seen.setdefault(availability.product_id, availability.product)
        return list(seen.values())

    @property
    def terms(self):
        return [(t, TERM_LABELS[t]) for t in TERM_LABELS if any(a.term == t for a in self.choices)]

    @property
    def frequencies(self):
        found = {a.billing_frequency for a in self.choices}
        return [(f, FREQUENCY_LABELS[f]) for f in FREQUENCY_LABELS if f in found]


def renewal_panel(sub: Subscription, form: RenewalForm | None = None) -> RenewalPanel:
    """What the subscription page's renewal panel shows (the customer portal's ``_renewal.html``)."""
    can_order = capabilities.may(P.ORDERS, P.WRITE)
    choices, upgrades, problem = [sub.availability], [], None
    if can_order and sub.status == "active" and sub.provider_subscription_id:
        try:
            choices = renewals.eligible_at_renewal(sub) or choices
            if sub.availability not in choices:
                choices = [sub.availability, *choices]
            upgrades = renewals.eligible_upgrades(sub)
        except (ProviderError, LicenceError) as exc:
            problem = f"Microsoft could not say what this subscription may change to now: {exc}"
    scheduled = sub.next_availability or sub.availability
    form = form or RenewalForm()
    form.product_id = form.product_id or scheduled.product_id
    form.term = form.term or scheduled.term
    form.billing_frequency = form.billing_frequency or scheduled.billing_frequency
    form.quantity = form.quantity or request.args.get("quantity") or str(sub.next_quantity or sub.quantity)
    moment = renewals.last_change_moment(sub)
    return RenewalPanel(
        sub=sub,
        summary=renewals.describe(sub),
        last_moment=f"{clock.local(moment):%d/%m/%y %I:%M %p}",
        lock_hours=renewals.lock_hours(),
        locked=clock.utcnow() >= moment,
        can_order=can_order,
        choices=choices,
        upgrades=upgrades,
        holders=renewals._holders(sub) if upgrades else [],
        form=form,
        problem=problem,
    )


def _subscription(customer_id: int, subscription_id: int) -> Subscription:
    sub = get_or_404(Subscription, subscription_id)
    if sub.account_id != customer_id:
        abort(404)
    return sub


def _whole(text: str | None) -> int | None:
    text = (text or "").strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 6 else None


class CustomerRenewalsView(CustomerPortalView):
    """Change at renewal, Clear, Upgrade: the Orders capability (a CSP Admin, also launched; a Master Admin)."""

    class_permission_name = P.ORDERS
    section = "microsoft_csp"
    method_permission_name = {"change_at_renewal": P.WRITE, "clear_renewal_change": P.WRITE, "upgrade": P.WRITE}

    def create_blueprint(self, appbuilder, endpoint=None, static_folder=None):
        blueprint = super().create_blueprint(appbuilder, endpoint, static_folder)
        # The subscription page's renewal panel (and the renewals lists) draw through these.
        blueprint.app_context_processor(lambda: {"renewal_panel": renewal_panel, "scheduled_change": renewals.describe})
        return blueprint

    def _page(self, sub: Subscription):
        return url_for("CustomerServicesView.subscription", customer_id=sub.account_id, subscription_id=sub.id)

    def _form_page(self, sub: Subscription, form: RenewalForm | None = None, status: int = 200):
        return self.render("renewal.html", sub=sub, renewal_form=form or RenewalForm()), status

    @expose(
        "/<int:customer_id>/services/microsoft-csp/subscriptions/<int:subscription_id>/renewal", methods=["GET", "POST"]
    )
    @customer_page
    @has_access
    def change_at_renewal(self, customer_id, subscription_id):
        sub = _subscription(customer_id, subscription_id)
        if request.method == "GET":
            return self._form_page(sub)
        form = RenewalForm(
            product_id=_whole(request.form.get("product_id")),
            term=request.form.get("term", "").strip(),
            billing_frequency=request.form.get("billing_frequency", "").strip(),
            quantity=request.form.get("quantity", "").strip(),
        )
        quantity = _whole(form.quantity)
        if quantity is None or not 1 <= quantity <= 10000:
            form.errors["quantity"] = "Enter between 1 and 10,000 licences."
        availability = renewals.availability_on_sale(form.product_id or 0, form.term, form.billing_frequency)
        if availability is None:
            form.errors["product_id"] = "That SKU is not sold with that term and billing frequency."
        if form.errors:
            return self._form_page(sub, form, 400)
        try:
            customer_services.commit(lambda: renewals.schedule(sub, availability, quantity))
        except LicenceError as exc:
            form.errors["form"] = str(exc)
            return self._form_page(get_or_404(Subscription, sub.id), form, 400)
        flash(renewals.describe(sub) or "Scheduled.", "success")
        return redirect(self._page(sub))

    @expose(
        "/<int:customer_id>/services/microsoft-csp/subscriptions/<int:subscription_id>/renewal/clear", methods=["POST"]
    )
    @customer_page
    @has_access
    def clear_renewal_change(self, customer_id, subscription_id):
        sub = _subscription(customer_id, subscription_id)
        try:
            customer_services.commit(lambda: renewals.clear(sub))
            flash(f"{sub.product.name} renews as it is on {sub.renew_on:%d/%m/%Y}.", "success")
        except LicenceError as exc:
            flash(str(exc), "danger")
        return redirect(self._page(sub))

    @expose("/<int:customer_id>/services/microsoft-csp/subscriptions/<int:subscription_id>/upgrade", methods=["POST"])
    @customer_page
    @has_access
    def upgrade(self, customer_id, subscription_id):
        sub = _subscription(customer_id, subscription_id)
        target = get_or_404(Availability, request.form.get("availability_id"))
        quantity = _whole(request.form.get("quantity"))
        chosen = None
        picked = request.form.getlist("m365_user_id")
        if picked:
            chosen = [get_or_404(M365User, pk) for pk in picked]
            if any(p.account_id != customer_id for p in chosen):
                abort(404)
        try:
            if quantity is None:
                raise LicenceError("Enter how many licences to upgrade.")
            holder = customer_services.commit(lambda: renewals.upgrade(sub, target, quantity, chosen))
        except LicenceError as exc:  # refused: the form again, the reason beside it (400), nothing changed
            refused = RenewalForm(errors={"upgrade": str(exc)})
            return self._form_page(get_or_404(Subscription, sub.id), refused, 400)
        flash(f"{quantity} licences upgraded to {target.product.name}.", "success")
        return redirect(
            url_for("CustomerServicesView.subscription", customer_id=customer_id, subscription_id=holder.id)
        )

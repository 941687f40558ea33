"""Services ▸ Microsoft CSP ▸ Add a subscription: the order form, **Review order** (a page: reading it orders
nothing) and **Place order** (POST, once). The rules are app/services/ordering.py's; this reads forms and draws pages.

Who: the Orders capability (a Master Admin, a Partner CSP Admin while launched); another customer's pages answer 404.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from flask import abort, flash, g, redirect, request, url_for
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access

from app.models.catalog import BILLING_FREQUENCIES, FREQUENCY_LABELS, TERM_LABELS, TERMS
from app.services import customer_services, ordering, submissions
from app.services.licensing import LicenceError
from security import permissions as P
from security.capabilities import NotAllowed
from views.customer.base import CustomerPortalView, customer_page

FIELDS = ("product", "sku", "term", "billing_frequency", "quantity", "coterm")
LABELS = {
    "product": "Product",
    "sku": "SKU",
    "term": "Term",
    "billing_frequency": "Billing frequency",
    "quantity": "Licences",
    "coterm": "Align the end date with",
}


class OrderChoice:
    """What the order form asked for, read from a query string or a form: the availability, quantity and co-terming,
    or the errors beside each field."""

    def __init__(self, data, offers, coterms):
        self.values = {name: (data.get(name) or "").strip() for name in FIELDS}
        self.errors: dict[str, str] = {}
        self.availability = self.coterm = None
        self.quantity = 0
        by_id = {str(a.id): a for a in offers}
        if data.get("availability_id"):  # the review's hidden fields
            self.availability = by_id.get(str(data.get("availability_id")).strip())
            if self.availability is None:
                self.errors["billing_frequency"] = "Choose a term and billing frequency that is on sale."
            else:
                product = self.availability.product
                self.values.update(
                    product=product.product_title,
                    sku=str(product.id),
                    term=self.availability.term,
                    billing_frequency=self.availability.billing_frequency,
                )
        else:
            self._choose(offers)
        text = self.values["quantity"]
        if not (text.isascii() and text.isdigit() and len(text) <= 6) or not 1 <= int(text) <= ordering.MAX_QUANTITY:
            self.errors["quantity"] = "Order between 1 and 10,000 licences."
        else:
            self.quantity = int(text)
        if self.values["coterm"]:
            self.coterm = next((s for s in coterms if str(s.id) == self.values["coterm"]), None)
            if self.coterm is None:
                self.errors["coterm"] = "Choose one of your active subscriptions, or none."

    def _choose(self, offers) -> None:
        v = self.values
        titles = {a.product.product_title for a in offers}
        if v["product"] not in titles:
            self.errors["product"] = "Choose a product."
            return
        skus = {str(a.product_id) for a in offers if a.product.product_title == v["product"]}
        if v["sku"] not in skus:
            self.errors["sku"] = f"Choose a SKU of {v['product']}."
            return
        if v["term"] not in TERMS:
            self.errors["term"] = "Choose a term."
            return
        if v["billing_frequency"] not in BILLING_FREQUENCIES:
            self.errors["billing_frequency"] = "Choose a billing frequency."
            return
        of_sku = [a for a in offers if str(a.product_id) == v["sku"]]
        self.availability = next(
            (a for a in of_sku if a.term == v["term"] and a.billing_frequency == v["billing_frequency"]), None
        )
        if self.availability is None:
            sold = [f"{TERM_LABELS[a.term]} billed {a.billing_frequency}" for a in of_sku]
            self.errors["billing_frequency"] = (
                f"This SKU is not sold for {TERM_LABELS[v['term']]} billed {v['billing_frequency']}: choose "
                + (", ".join(sold) or "another SKU")
                + "."
            )


class CustomerOrderingView(CustomerPortalView):
    """Add a subscription ▸ Review order ▸ Place order."""

    class_permission_name = P.ORDERS
    section = "microsoft_csp"
    method_permission_name = {"new": P.WRITE, "review": P.WRITE, "place": P.WRITE}

    def _form(self, choice: OrderChoice | None, offers, coterms, status: int = 200):
        products = sorted({a.product.product_title for a in offers})
        skus: dict[str, dict[int, str]] = {}
        for a in offers:
            skus.setdefault(a.product.product_title, {})[a.product_id] = a.product.name
        page = self.render(
            "order_new.html",
            choice=choice,
            values=choice.values if choice else {"quantity": "1", "term": "P1Y", "billing_frequency": "monthly"},
            errors=choice.errors if choice else {},
            labels=LABELS,
            products=products,
            skus=skus,
            terms=[(t, TERM_LABELS[t]) for t in TERMS],
            frequencies=[(f, FREQUENCY_LABELS[f]) for f in BILLING_FREQUENCIES],
            coterms=coterms,
        )
        return page, status

    def _review_page(self, review, choice: OrderChoice, key: str, error: str = "", status: int = 200):
        page = self.render(
            "order_review.html",
            review=review,
            coterm=choice.coterm,
            values=choice.values,
            submission_key=key,
            error=error,
        )
        return page, status

    @expose("/<int:customer_id>/services/microsoft-csp/orders/new")
    @customer_page
    @has_access
    def new(self, customer_id):
        offers, coterms = ordering.offers(), ordering.coterm_choices(g.customer)
        choice = OrderChoice(request.args, offers, coterms) if request.args else None
        if choice is not None:
            choice.errors = {}  # coming back from the review to change it: no complaints yet
        return self._form(choice, offers, coterms)

    @expose("/<int:customer_id>/services/microsoft-csp/orders/review")
    @customer_page
    @has_access
    def review(self, customer_id):
        offers, coterms = ordering.offers(), ordering.coterm_choices(g.customer)
        choice = OrderChoice(request.args, offers, coterms)
        if choice.errors:
            return self._form(choice, offers, coterms, 400)
        try:
            review = ordering.review(g.customer, choice.availability, choice.quantity, choice.coterm)
        except NotAllowed:
            abort(403)
        except ordering.OrderInputError as exc:
            choice.errors[exc.field] = str(exc)
            return self._form(choice, offers, coterms, 400)
        return self._review_page(review, choice, submissions.new_key())

    @expose("/<int:customer_id>/services/microsoft-csp/orders", methods=["POST"])
    @customer_page
    @has_access
    def place(self, customer_id):
        offers, coterms = ordering.offers(), ordering.coterm_choices(g.customer)
        choice = OrderChoice(request.form, offers, coterms)
        if not request.form.get("availability_id"):
            choice.errors.setdefault("billing_frequency", "Review the order before placing it.")
        try:
            reviewed = Decimal(request.form.get("reviewed_price", ""))
            if not reviewed.is_finite() or abs(reviewed) >= 10**9:  # NaN, Infinity, 1e309: no price was reviewed
                raise InvalidOperation
        except InvalidOperation:
            reviewed = None
            choice.errors.setdefault("quantity", "Review the order before placing it.")
        if choice.errors:
            return self._form(choice, offers, coterms, 400)
        key = request.form.get("submission_key", "")
        try:
            sub = customer_services.commit(
                lambda: ordering.order(
                    g.customer,
                    choice.availability,
                    choice.quantity,
                    key,
                    reviewed_price=reviewed,
                    coterm_with=choice.coterm,
                )
            )
        except NotAllowed:
            abort(403)
        except ordering.AlreadyPlaced as placed:
            what = f"{placed.subscription.quantity} × {placed.subscription.product.name}" if placed.subscription else ""
            flash(f"This order was already placed ({what}): it was bought once.", "info")
            return self._services(customer_id)
        except ordering.StillBeingConfirmed:
            flash("This order is still being confirmed with Microsoft: reload the page in a moment.", "info")
            return self._services(customer_id)
        except ordering.PriceChanged as changed:
            return self._review_page(changed.review, choice, submissions.new_key(), str(changed), 409)
        except ordering.OrderInputError as exc:
            choice.errors[exc.field] = str(exc)
            return self._form(choice, offers, coterms, 400)
        except LicenceError as exc:
            # The same review with the same form key: sending it again retries the same request, never a second order.
            try:
                again = ordering.review(g.customer, choice.availability, choice.quantity, choice.coterm)
            except LicenceError:
                flash(str(exc), "danger")
                return self._services(customer_id)
            return self._review_page(again, choice, key, str(exc), 400)
        flash(f"Ordered {sub.quantity} × {sub.product.name}.", "success")
        return self._services(customer_id)

    @staticmethod
    def _services(customer_id: int):
        return redirect(url_for("CustomerServicesView.microsoft_csp", customer_id=customer_id))

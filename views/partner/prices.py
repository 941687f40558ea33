"""The price lists' pages: Customer prices (a reseller's markups for its customers: CSP Admins and operator staff)
and Reseller prices (the operator's buy prices for each reseller: operator staff). The rules and the tables come
from app/services/price_lists.py; these views read forms and draw pages.

Who sees what: Partner Users never see these pages (404, as if they did not exist); CSP Admins see their buy price
and margin (``COSTS``), never Microsoft's cost; operator staff also Microsoft's cost (``MICROSOFT_COSTS``)."""

from __future__ import annotations

import functools

from flask import abort, flash, g, redirect, request, url_for
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access
from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, SelectField, StringField

from app.models.accounts import CUSTOMER, OPERATOR, RESELLER, Account
from app.models.catalog import FREQUENCY_LABELS, PRICE_BASES, TERM_LABELS, PriceRule, rule_reach
from app.models.subscriptions import Subscription
from app.services import price_lists
from app.services.price_lists import BASIS_LABELS, PriceRuleError
from security import permissions as P
from security.capabilities import NotAllowed, may
from views.base import PortalView, confirmation, get_or_404, page_arg, signed_in_first
from views.partner.accounts_screen import account_in_scope

PER_PAGE = 50
CUSTOMER_CHOICES = 500  # the customer chooser lists this many; the "own prices" list links the rest that matter


def hidden_without(resource: str):
    """Pages some staff may not know exist: without ``resource``'s read permission, 404 (FAB would say 403)."""

    def decorate(view):
        @functools.wraps(view)
        def wrapper(self, *args, **kwargs):
            if not may(resource, P.READ):
                abort(404)
            return view(self, *args, **kwargs)

        return wrapper

    return decorate


def _id(value) -> int:
    """An id from a query or form field: a row id or 404 (``?customer=`` is no ``*_id`` field app/web.py bounds)."""
    text = str(value).strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 10 and int(text) <= 2**31 - 1):
        abort(404)
    return int(text)


class RuleForm(FlaskForm):
    """A new rule: what it applies to, its basis and percentage."""

    applies_to = SelectField("Applies to", choices=[], validate_choice=False)
    basis = SelectField("Basis", choices=[], validate_choice=False)
    percent = StringField("Percent")
    below_cost_intended = BooleanField("Below cost intended")


class ChangeForm(FlaskForm):
    basis = SelectField("Basis", choices=[], validate_choice=False)
    percent = StringField("Percent")
    below_cost_intended = BooleanField("Below cost intended")


class ApplyNowForm(FlaskForm):
    customer_id = HiddenField()


_EXPIRED = "The form expired: reload the page and try again."


def _fresh(form) -> None:
    """A change's form with its CSRF token: an expired one is 400, nothing read from it."""
    if not form.validate_on_submit():
        abort(400, description=_EXPIRED)


def _save(change):
    """``price_lists.save(change)``; a change the user may not make answers 404 (it does not exist for them)."""
    try:
        return price_lists.save(change)
    except NotAllowed:
        abort(404)


def _back(reseller: Account, customer: Account | None):
    """To the reseller's Customer prices page (on the customer it was showing)."""
    return redirect(url_for(".reseller", reseller_id=reseller.id, customer=customer.id if customer else None))


def _ask_delete(rule: PriceRule, back: str):
    """Delete of a price rule asks first (without JavaScript too): the rule cannot be brought back."""
    row = price_lists.describe_rules([rule])[0]
    return confirmation(
        f"Delete the price rule {rule.describe()} for {row.applies_to}"
        + (f" ({row.owner_name})?" if row.owner_name else "?"),
        "The rule is removed for good: the next rule prices new orders at once; existing subscriptions take it at "
        "renewal.",
        "Delete rule",
        cancel_url=back,
    )


def _error(errors: dict, exc: PriceRuleError) -> None:
    errors[exc.field or "form"] = str(exc)


def _rule_input(form) -> dict:
    return {
        "basis": form.basis.data or "",
        "percent": form.percent.data or "",
        "below_cost_intended": bool(form.below_cost_intended.data),
    }


def _applies_to(value: str, customer: Account | None) -> dict:
    """``applies_to`` as the service's arguments: "" the owner's default, ``product:<id>`` a product (every SKU),
    ``sku:<id>`` a SKU, ``subscription:<id>`` one of the customer's subscriptions (another's: 404)."""
    kind, _, ident = (value or "").partition(":")
    if not value:
        return {}
    if kind == "product" and ident and len(ident) <= 32:
        if price_lists.product_title(ident) is None:
            raise PriceRuleError("That product is not in the catalogue.", "applies_to")
        return {"ms_product_id": ident}
    if kind == "sku" and ident.isdigit() and len(ident) < 10:
        product = price_lists.sku(int(ident))
        if product is None:
            raise PriceRuleError("That SKU is not in the catalogue.", "applies_to")
        return {"product": product}
    if kind == "subscription" and ident.isdigit() and len(ident) < 10:
        sub = get_or_404(Subscription, ident)  # another reseller's: 404 before anything else is said
        if customer is None:
            raise PriceRuleError("Choose the customer first.", "applies_to")
        if sub.account_id != customer.id:
            abort(404)
        return {"subscription": sub}
    raise PriceRuleError("Choose what the rule applies to.", "applies_to")


class CustomerPricesView(PortalView):
    """/prices/<reseller>/: a reseller's price list for its customers."""

    route_base = "/prices"
    default_view = "index"
    class_permission_name = P.CUSTOMER_PRICES
    method_permission_name = {
        "index": P.READ,
        "reseller": P.READ,
        "add_rule": P.WRITE,
        "change_rule": P.WRITE,
        "delete_rule": P.WRITE,
        "apply_now": P.WRITE,
    }

    # -- finding what the URL names, in the caller's scope (another reseller's: 404) ----------------------------------
    @staticmethod
    def _reseller(reseller_id) -> Account:
        reseller = account_in_scope(reseller_id)
        if reseller.kind != RESELLER:
            abort(404)
        return reseller

    @staticmethod
    def _customer(reseller: Account, customer_id) -> Account | None:
        if customer_id in (None, ""):
            return None
        customer = get_or_404(Account, _id(customer_id))
        if customer.kind != CUSTOMER or customer.parent_id != reseller.id:
            abort(404)
        return customer

    @staticmethod
    def _rule(reseller: Account, rule_id) -> PriceRule:
        rule = get_or_404(PriceRule, rule_id)
        if not price_lists.in_sell_list_of(rule, reseller):
            abort(404)
        return rule

    # -- pages ---------------------------------------------------------------------------------------------------------
    @expose("/")
    @signed_in_first
    @hidden_without(P.CUSTOMER_PRICES)
    @has_access
    def index(self):
        own = g.user.account
        if own.kind == RESELLER:
            return redirect(url_for(".reseller", reseller_id=own.id))
        if own.kind != OPERATOR:
            abort(404)
        page = page_arg()
        resellers, total = price_lists.resellers_page(page, PER_PAGE)
        return self.render_template(
            "portal/prices/choose_reseller.html", resellers=resellers, page=page, per_page=PER_PAGE, total=total
        )

    @expose("/<int:reseller_id>/")
    @signed_in_first
    @hidden_without(P.CUSTOMER_PRICES)
    @has_access
    def reseller(self, reseller_id):
        reseller = self._reseller(reseller_id)
        customer = self._customer(reseller, request.args.get("customer") or None)
        return self._page(reseller, customer)

    def _page(self, reseller, customer, *, errors=None, form=None, change_errors=None, status=200):
        page = page_arg()
        rows, total = price_lists.price_table(reseller, customer, page=page, per_page=PER_PAGE)
        owners = [reseller.id] + ([customer.id] if customer else [])
        rules = price_lists.describe_rules(price_lists.rules_of("sell", owners))
        every = rule_reach(None, None, None)
        default = next((r for r in rules if r.rule.account_id == reseller.id and r.rule.reach == every), None)
        customers = price_lists.customer_choices(reseller, CUSTOMER_CHOICES)
        subscriptions = price_lists.subscription_prices(reseller, customer) if customer else []
        form = form or RuleForm()
        form.basis.choices = [(b, BASIS_LABELS[b]) for b in PRICE_BASES["sell"]]
        form.applies_to.choices = self._applies_choices(customer, subscriptions)
        body = self.render_template(
            "portal/prices/customer_prices.html",
            reseller=reseller,
            customer=customer,
            rows=rows,
            total=total,
            page=page,
            per_page=PER_PAGE,
            default=default,
            overrides=[r for r in rules if r is not default],
            customers=customers,
            with_own_prices=price_lists.customers_with_rules(reseller),
            subscriptions=subscriptions,
            form=form,
            errors=errors or {},
            change_errors=change_errors or {},
            bases=[(b, BASIS_LABELS[b]) for b in PRICE_BASES["sell"]],
            show_costs=may(P.COSTS, P.READ),
            show_ms_costs=may(P.MICROSOFT_COSTS, P.READ),
            may_write=may(P.CUSTOMER_PRICES, P.WRITE),
            term_labels=TERM_LABELS,
            frequency_labels=FREQUENCY_LABELS,
        )
        return body, status

    @staticmethod
    def _applies_choices(customer, subscriptions) -> list[tuple[str, str]]:
        choices = [("", f"Every product ({customer.name}'s default)" if customer else "Every product (default)")]
        choices += [
            (
                f"subscription:{row.subscription.id}",
                f"Subscription: {row.subscription.product.name} "
                f"({row.subscription.availability.label}, #{row.subscription.id})",
            )
            for row in subscriptions
        ]
        choices += [
            (f"product:{ms_id}", f"Product: {title} (every SKU)") for ms_id, title in price_lists.catalogue_products()
        ]
        choices += [(f"sku:{p.id}", f"SKU: {p.name}") for p in price_lists.catalogue_skus()]
        return choices

    # -- changes -------------------------------------------------------------------------------------------------------
    @expose("/<int:reseller_id>/rules", methods=["POST"])
    @hidden_without(P.CUSTOMER_PRICES)
    @has_access
    def add_rule(self, reseller_id):
        reseller = self._reseller(reseller_id)
        customer = self._customer(reseller, request.form.get("customer_id") or None)
        form = RuleForm()
        errors: dict[str, str] = {}
        _fresh(form)
        try:
            rule = _save(
                lambda: price_lists.create_rule(
                    "sell", customer or reseller, **_applies_to(form.applies_to.data, customer), **_rule_input(form)
                )
            )
        except PriceRuleError as exc:
            _error(errors, exc)
            return self._page(reseller, customer, errors=errors, form=form, status=400)
        flash(
            f"Saved: {rule.describe()}. New orders are priced by it now; existing subscriptions at renewal.", "success"
        )
        return _back(reseller, customer)

    @expose("/<int:reseller_id>/rules/<int:rule_id>", methods=["POST"])
    @hidden_without(P.CUSTOMER_PRICES)
    @has_access
    def change_rule(self, reseller_id, rule_id):
        reseller = self._reseller(reseller_id)
        rule = self._rule(reseller, rule_id)
        customer = self._customer(reseller, request.form.get("customer_id") or None)
        form = ChangeForm()
        _fresh(form)
        try:
            _save(lambda: price_lists.change_rule(rule, **_rule_input(form)))
        except PriceRuleError as exc:
            errors: dict[str, str] = {}
            _error(errors, exc)
            return self._page(reseller, customer, change_errors={rule_id: errors}, status=400)
        flash("Saved. New orders are priced by it now; existing subscriptions at renewal.", "success")
        return _back(reseller, customer)

    @expose("/<int:reseller_id>/rules/<int:rule_id>/delete", methods=["POST"])
    @hidden_without(P.CUSTOMER_PRICES)
    @has_access
    def delete_rule(self, reseller_id, rule_id):
        reseller = self._reseller(reseller_id)
        rule = self._rule(reseller, rule_id)
        customer = self._customer(reseller, request.form.get("customer_id") or None)
        _fresh(ApplyNowForm())
        back = url_for(".reseller", reseller_id=reseller.id, customer=customer.id if customer else None)
        if asked := _ask_delete(rule, back):
            return asked
        _save(lambda: price_lists.delete_rule(rule))
        flash("Removed the rule: the next one applies.", "success")
        return _back(reseller, customer)

    @expose("/<int:reseller_id>/apply-now", methods=["POST"])
    @hidden_without(P.CUSTOMER_PRICES)
    @has_access
    def apply_now(self, reseller_id):
        """Apply now to monthly-term subscriptions: the customer's, or every customer's."""
        reseller = self._reseller(reseller_id)
        form = ApplyNowForm()
        customer = self._customer(reseller, form.customer_id.data or None)
        _fresh(form)
        whose = f"{customer.name}'s" if customer else "every customer's"
        asked = confirmation(
            f"Re-price {whose} monthly-term subscriptions now?",
            "Each monthly-term subscription takes today's price from the price rules at once, replacing the price it "
            "has (its customer pays the new price from today). Annual and 3-year terms keep their price to renewal.",
            "Apply now",
            cancel_url=url_for(".reseller", reseller_id=reseller.id, customer=customer.id if customer else None),
            danger=False,
        )
        if asked:
            return asked
        changed = _save(lambda: price_lists.apply_now_to_monthly_terms(reseller, customer))
        flash(
            f"Applied now: {len(changed)} monthly-term subscription(s) re-priced"
            + (f" for {customer.name}." if customer else " across your customers.")
            + " Annual and 3-year terms keep their price to renewal.",
            "success",
        )
        return _back(reseller, customer)


class ResellerPricesView(PortalView):
    """/reseller-prices/: what each reseller pays the operator (operator staff)."""

    route_base = "/reseller-prices"
    default_view = "index"
    class_permission_name = P.RESELLER_PRICES
    method_permission_name = {"index": P.READ, "add_rule": P.WRITE, "change_rule": P.WRITE, "delete_rule": P.WRITE}

    @staticmethod
    def _operator() -> Account:
        own = g.user.account
        if own.kind != OPERATOR:
            abort(404)
        return own

    @staticmethod
    def _reseller(reseller_id) -> Account | None:
        if reseller_id in (None, ""):
            return None
        reseller = account_in_scope(_id(reseller_id))
        if reseller.kind != RESELLER:
            abort(404)
        return reseller

    def _owner(self, owner_id) -> Account:
        operator = self._operator()
        if str(owner_id) == str(operator.id):
            return operator
        return self._reseller(owner_id) or abort(404)

    @expose("/")
    @signed_in_first
    @hidden_without(P.RESELLER_PRICES)
    @has_access
    def index(self):
        operator = self._operator()
        return self._page(operator, self._reseller(request.args.get("reseller") or None))

    def _page(self, operator, reseller, *, errors=None, form=None, change_errors=None, owner_id=None, status=200):
        page = page_arg()
        rows, total = price_lists.price_table(reseller, None, page=page, per_page=PER_PAGE) if reseller else ([], 0)
        owners = [operator.id] + ([reseller.id] if reseller else [])
        rules = price_lists.describe_rules(price_lists.rules_of("buy", owners))
        resellers = price_lists.reseller_choices(CUSTOMER_CHOICES)
        choices = [("", "Every product (default)")]
        choices += [
            (f"product:{ms_id}", f"Product: {title} (every SKU)") for ms_id, title in price_lists.catalogue_products()
        ]
        choices += [(f"sku:{p.id}", f"SKU: {p.name}") for p in price_lists.catalogue_skus()]
        forms = {}
        for owner in (operator, reseller):
            if owner is not None:
                forms[owner.id] = form if (form is not None and owner.id == owner_id) else RuleForm(formdata=None)
                forms[owner.id].basis.choices = [(b, BASIS_LABELS[b]) for b in PRICE_BASES["buy"]]
                forms[owner.id].applies_to.choices = choices
        body = self.render_template(
            "portal/prices/reseller_prices.html",
            operator=operator,
            reseller=reseller,
            rows=rows,
            total=total,
            page=page,
            per_page=PER_PAGE,
            operator_rules=[r for r in rules if r.rule.account_id == operator.id],
            reseller_rules=[r for r in rules if reseller and r.rule.account_id == reseller.id],
            resellers=resellers,
            forms=forms,
            errors={owner_id: errors or {}},
            change_errors=change_errors or {},
            bases=[(b, BASIS_LABELS[b]) for b in PRICE_BASES["buy"]],
            may_write=may(P.RESELLER_PRICES, P.WRITE),
            term_labels=TERM_LABELS,
            frequency_labels=FREQUENCY_LABELS,
        )
        return body, status

    @expose("/rules", methods=["POST"])
    @hidden_without(P.RESELLER_PRICES)
    @has_access
    def add_rule(self):
        operator = self._operator()
        owner = self._owner(request.form.get("owner_id"))
        reseller = owner if owner.kind == RESELLER else self._reseller(request.form.get("reseller_id") or None)
        form = RuleForm()
        _fresh(form)

        def add():
            target = _applies_to(form.applies_to.data, None)
            if "subscription" in target:
                raise PriceRuleError("Buy prices apply to products and SKUs.", "applies_to")
            return price_lists.create_rule("buy", owner, **target, **_rule_input(form))

        try:
            rule = _save(add)
        except PriceRuleError as exc:
            errors: dict[str, str] = {}
            _error(errors, exc)
            return self._page(operator, reseller, errors=errors, form=form, owner_id=owner.id, status=400)
        flash(f"Saved: {rule.describe()}.", "success")
        return redirect(url_for(".index", reseller=reseller.id if reseller else None))

    def _rule(self, rule_id) -> PriceRule:
        rule = get_or_404(PriceRule, rule_id)
        if rule.level != "buy":
            abort(404)
        return rule

    @expose("/rules/<int:rule_id>", methods=["POST"])
    @hidden_without(P.RESELLER_PRICES)
    @has_access
    def change_rule(self, rule_id):
        operator = self._operator()
        rule = self._rule(rule_id)
        reseller = self._reseller(request.form.get("reseller_id") or None)
        form = ChangeForm()
        _fresh(form)
        try:
            _save(lambda: price_lists.change_rule(rule, **_rule_input(form)))
        except PriceRuleError as exc:
            errors: dict[str, str] = {}
            _error(errors, exc)
            return self._page(operator, reseller, change_errors={rule_id: errors}, status=400)
        flash("Saved.", "success")
        return redirect(url_for(".index", reseller=reseller.id if reseller else None))

    @expose("/rules/<int:rule_id>/delete", methods=["POST"])
    @hidden_without(P.RESELLER_PRICES)
    @has_access
    def delete_rule(self, rule_id):
        self._operator()
        rule = self._rule(rule_id)
        reseller = self._reseller(request.form.get("reseller_id") or None)
        _fresh(ApplyNowForm())
        if asked := _ask_delete(rule, url_for(".index", reseller=reseller.id if reseller else None)):
            return asked
        _save(lambda: price_lists.delete_rule(rule))
        flash("Removed the rule: the next one applies.", "success")
        return redirect(url_for(".index", reseller=reseller.id if reseller else None))

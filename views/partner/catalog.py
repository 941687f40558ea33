"""Catalogue ▸ Products: the operator's price list; partners read it."""

from __future__ import annotations

from flask import flash, redirect
from flask_appbuilder.actions import action
from flask_appbuilder.fieldwidgets import Select2Widget
from wtforms import SelectChoice, SelectField
from wtforms.validators import DataRequired, Length, Regexp

from app.extensions import db
from app.models.base import utcnow
from app.models.catalog import BILLING_CYCLES, Product
from security import permissions as P
from views.base import EagerInterface, ScopedModelView
from views.money import money_validators
from views.partner.reports import sees_costs


class ProductView(ScopedModelView):
    datamodel = EagerInterface(Product)
    class_permission_name = P.PRODUCTS
    event_name = "product"
    include_route_methods = {"list", "show", "add", "edit", "action_post"}
    list_title = "Products"
    add_row_message = "Product added."
    edit_row_message = "Product saved."
    list_columns = ["name", "sku", "billing_cycle", "unit_price", "retired_on"]
    order_columns = ["name", "sku", "billing_cycle", "unit_price", "retired_on"]
    search_columns = ["name", "sku", "billing_cycle"]
    show_columns = ["name", "sku", "billing_cycle", "unit_cost", "unit_price", "retired_on", "created_on"]
    add_columns = ["name", "sku", "billing_cycle", "unit_cost", "unit_price"]
    edit_columns = add_columns
    base_order = ("name", "asc")
    label_columns = {"sku": "SKU", "unit_cost": "Unit cost", "unit_price": "Unit price", "retired_on": "Retired"}
    validators_columns = {
        "name": [DataRequired(message="Name is required."), Length(max=160)],
        "sku": [
            DataRequired(message="SKU is required."),
            Length(max=64),
            Regexp(r"^[A-Za-z0-9:._-]+$", message="Use letters, digits and : . _ - only."),
        ],
        "unit_cost": money_validators("Unit cost"),
        "unit_price": money_validators("Unit price"),
    }
    add_form_extra_fields = {
        "billing_cycle": SelectField(
            "Billing Cycle",
            choices=[SelectChoice(cycle, cycle.capitalize()) for cycle in BILLING_CYCLES],
            widget=Select2Widget(),
        )
    }
    edit_form_extra_fields = add_form_extra_fields
    description_columns = {"unit_price": "NZD per licence per month, excluding GST."}

    def _get_show_widget(self, pk, item, widgets=None, actions=None, show_fieldsets=None):
        """Unit cost is for those who may see prices (Partner CSP Admins, operator staff), as in the CSP Report."""
        if show_fieldsets is None and not sees_costs():
            show_fieldsets = [(None, {"fields": [c for c in self.show_columns if c != "unit_cost"]})]
        return super()._get_show_widget(pk, item, widgets=widgets, actions=actions, show_fieldsets=show_fieldsets)

    @action(
        "retire",
        "Retire",
        "Retire the selected products? Existing subscriptions keep them.",
        "fa-archive",
        single=False,
    )
    def retire(self, items):
        retired = [product for product in {p.id: p for p in items}.values() if product.retired_on is None]
        for product in retired:
            product.retired_on = utcnow()
            self._event("retired", product, f"Retired {product.name} ({product.sku})")
        db.session.commit()
        if retired:
            flash(f"Retired {', '.join(p.name for p in retired)}. Existing subscriptions keep them.", "success")
        else:
            flash("Those products were already retired.", "info")
        return redirect(self.get_redirect())

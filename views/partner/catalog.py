"""Catalogue ▸ Products: the operator's price list; partners read it."""

from __future__ import annotations

from flask import flash, redirect
from flask_appbuilder.actions import action
from wtforms.validators import DataRequired, Length, Regexp

from app.extensions import db
from app.models.base import utcnow
from app.models.catalog import Product
from security import permissions as P
from views.base import EagerInterface, ScopedModelView


class ProductView(ScopedModelView):
    datamodel = EagerInterface(Product)
    class_permission_name = P.PRODUCTS
    event_name = "product"
    include_route_methods = {"list", "show", "add", "edit", "action_post"}
    list_title = "Products"
    add_row_message = "Product added."
    edit_row_message = "Product saved."
    list_columns = ["product_title", "name", "sku", "retired_on"]
    order_columns = ["product_title", "name", "sku", "retired_on"]
    search_columns = ["product_title", "name", "sku"]
    show_columns = ["product_title", "name", "sku", "retired_on", "created_on"]
    add_columns = ["product_title", "name", "sku"]
    edit_columns = add_columns
    base_order = ("name", "asc")
    label_columns = {"product_title": "Product", "name": "SKU title", "sku": "SKU", "retired_on": "Retired"}
    validators_columns = {
        "product_title": [DataRequired(message="Product is required."), Length(max=160)],
        "name": [DataRequired(message="Name is required."), Length(max=160)],
        "sku": [
            DataRequired(message="SKU is required."),
            Length(max=64),
            Regexp(r"^[A-Za-z0-9:._-]+$", message="Use letters, digits and : . _ - only."),
        ],
    }

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

"""Catalogue ▸ Products: Microsoft's SKUs as the price sheet publishes them, each with its availabilities (term,
billing frequency) and this month's prices — Microsoft's cost for operator staff, its estimated retail price for
everyone who reads products. Catalogue ▸ Price changes (operator staff): next month's prices that differ from this
month's before they apply, and the price sheet's upload (app/services/pricesheet.py decides)."""

from __future__ import annotations

from decimal import Decimal

from babel.numbers import format_currency
from flask import current_app, flash, redirect, request, url_for
from flask_appbuilder.actions import action
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access
from wtforms.validators import DataRequired, Length, Regexp

from app import clock
from app.models.catalog import FREQUENCY_LABELS, TERM_LABELS, Product
from app.services import catalogue, pricesheet
from app.services.pricing import monthly
from security import permissions as P
from security.capabilities import may
from views.base import EagerInterface, PortalView, ScopedModelView, get_or_404, signed_in_first

MAX_SHEET_BYTES = 64 * 1024 * 1024  # a market's licence-based sheet is a few megabytes


def sheet_money(value: Decimal | None) -> str:
    """A price as the sheet states it: to the cent, or to four decimals when it has them ($719.9955)."""
    if value is None:
        return ""
    return format_currency(
        Decimal(value).normalize(),
        current_app.config["PORTAL_CURRENCY"],
        locale=current_app.config["PORTAL_LOCALE"],
        decimal_quantization=False,
    )


def _labels() -> dict:
    return {"term_label": TERM_LABELS, "frequency_label": FREQUENCY_LABELS, "sheet_money": sheet_money}


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

    @expose("/show/<pk>", methods=["GET"])
    @has_access
    def show(self, pk):
        """The SKU with its availabilities and their prices this month (per licence per billing period, and per
        month); Microsoft's cost only for those who may see it."""
        product = get_or_404(Product, pk)
        availabilities = catalogue.availabilities(product)
        today = clock.today()
        prices = pricesheet.prices_in_force([a.id for a in availabilities], today)
        return self.render_template(
            "portal/catalogue/product.html",
            product=product,
            availabilities=availabilities,
            prices=prices,
            month=today.replace(day=1),
            monthly=monthly,
            sees_cost=may(P.MICROSOFT_COSTS, P.READ),
            may_edit=may(P.PRODUCTS, P.WRITE),
            may_see_changes=may(P.PRICE_SHEET, P.READ),
            **_labels(),
        )

    @action(
        "retire",
        "Retire",
        "Retire the selected products? Existing subscriptions keep them.",
        "fa-archive",
        single=False,
    )
    def retire(self, items):
        retired = catalogue.retire(items, lambda p: self._event("retired", p, f"Retired {p.name} ({p.sku})"))
        if retired:
            flash(f"Retired {', '.join(p.name for p in retired)}. Existing subscriptions keep them.", "success")
        else:
            flash("Those products were already retired.", "info")
        return redirect(self.get_redirect())


class PriceChangesView(PortalView):
    """Catalogue ▸ Price changes: what next month's price sheet changes, and the sheet's upload (operator staff)."""

    route_base = "/catalogue/price-changes"
    default_view = "changes"
    class_permission_name = P.PRICE_SHEET
    method_permission_name = {"changes": P.READ, "upload": P.WRITE}

    def _page(self, *, errors: dict[str, list[str]] | None = None, market: str = "NZ", status: int = 200):
        """The page; ``errors`` beside the upload form's fields (``market``, ``sheet``)."""
        upcoming = pricesheet.upcoming_changes(clock.today())
        page = self.render_template(
            "portal/catalogue/price_changes.html",
            upcoming=upcoming,
            errors=errors or {},
            market=market,
            sees_cost=may(P.MICROSOFT_COSTS, P.READ),
            may_import=may(P.PRICE_SHEET, P.WRITE),
            **_labels(),
        )
        return page, status

    @expose("/")
    @signed_in_first
    @has_access
    def changes(self):
        return self._page()

    @expose("/import", methods=["POST"])
    @signed_in_first
    @has_access
    def upload(self):
        """Import an uploaded price sheet (CSV or zip, Microsoft's columns): all or nothing."""
        market = (request.form.get("market") or "NZ").strip().upper()
        if len(market) != 2 or not market.isalpha():
            return self._page(errors={"market": ["Use the two-letter country code (NZ)."]}, market="", status=400)
        upload = request.files.get("sheet")
        if upload is None or not upload.filename:
            refusal = {"sheet": ["Choose Microsoft's price sheet (a .csv or .zip file)."]}
            return self._page(errors=refusal, market=market, status=400)
        data = upload.stream.read(MAX_SHEET_BYTES + 1)
        if len(data) > MAX_SHEET_BYTES:
            return self._page(
                errors={"sheet": ["That file is too large for a price sheet."]}, market=market, status=400
            )
        try:
            result = pricesheet.import_sheet(data, market)
        except pricesheet.PriceSheetRefused as refused:
            return self._page(
                errors={"sheet": ["The price sheet was refused: nothing was imported.", *refused.lines()]},
                market=market,
                status=400,
            )
        flash(result.summary() if result.changed else f"{result.summary()} Nothing changed.", "success")
        return redirect(url_for(".changes"))

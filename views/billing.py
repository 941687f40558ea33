"""Billing screens (issue 14): the Billing tab of a reseller (invoices received from the operator, invoices issued
to its customers) and of a customer, the operator's Billing ▸ Invoices, the invoice page (printable; the browser
makes the PDF), its .xlsx, Issue and Credit note, each issuer's billing settings, and the customer portal's
Invoices.

Who sees what (security/scoping.py decides which invoices exist for a user; ``may`` the capabilities):
- an invoice is visible to its issuer's side and its buyer's side; anyone else gets 404;
- what a reseller receives from the operator carries its buy prices: only those who may see costs (a CSP Admin,
  operator staff) see it — a Partner User gets 404, as if it did not exist;
- Microsoft's cost columns only to operator staff, on the operator's own invoices;
- Issue, Credit note and the billing settings only for the issuer's own staff with the Invoices write capability
  (operator staff for the operator's invoices; a reseller's CSP Admin for its invoices to customers); others 404.
Reads and changes are app/services/invoices.py's; these views read forms and draw pages."""

from __future__ import annotations

import functools

from flask import Response, abort, current_app, flash, g, redirect, request, url_for
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import StringField, TextAreaField

from app.formatting import format_money
from app.models.accounts import CUSTOMER, OPERATOR, RESELLER, Account
from app.models.billing import Invoice
from app.services import invoices
from app.services.billing import BillingError
from security import permissions as P
from security.capabilities import may
from security.models import CUSTOMER_PORTAL
from views.base import PortalView, confirmation, page_arg, signed_in_first
from views.customer.base import CustomerPortalView, customer_page
from views.partner.accounts_screen import account_in_scope

_EXPIRED = "The form expired: reload the page and try again."


class ActionForm(FlaskForm):
    """Issue: the CSRF token alone."""


class CreditNoteForm(FlaskForm):
    reason = TextAreaField("Reason")


class SettingsForm(FlaskForm):
    invoice_prefix = StringField("Invoice prefix", description="1 to 12 letters, digits or dashes, e.g. INV-")
    gst_number = StringField("GST number", description="Your IRD number: 8 or 9 digits, e.g. 123-456-789")
    payment_terms_days = StringField("Payment terms (days)", description="Days from the issue date to the due date")
    xero_account_code = StringField("Xero account code", description="The sales account, e.g. 200")
    xero_tax_type = StringField("Xero tax type", description="e.g. 15% GST on Income")


def staff_only(action: str, resource: str = P.INVOICES):
    """Partner-portal pages: customer-portal logins and those without ``action`` on ``resource`` get 404."""

    def decorate(view):
        @functools.wraps(view)
        def wrapper(self, *args, **kwargs):
            if current_user.is_authenticated and (current_user.portal == CUSTOMER_PORTAL or not may(resource, action)):
                abort(404)
            return view(self, *args, **kwargs)

        return wrapper

    return decorate


def _month_arg():
    try:
        return invoices.parse_month(request.args.get("month"))
    except ValueError:
        abort(400, description="Choose a month from the list (YYYY-MM).")


def _int_arg(name: str) -> int | None:
    text = (request.args.get(name) or "").strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= 10):
        abort(400, description=f"{name} is not a number")
    return int(text)


def _own() -> Account:
    return g.user.account


def _xero_link(issuer_id: int, month) -> dict | None:
    """The accounting export of an issuer's month (another helper's view, when the app has it): its address, and
    whether it is a form to POST (an audited export) or a plain link."""
    if month is None or "BillingExportView.xero" not in current_app.view_functions:
        return None
    url = url_for("BillingExportView.xero", issuer_id=issuer_id, month=f"{month:%Y-%m}")
    methods = {m for rule in current_app.url_map.iter_rules("BillingExportView.xero") for m in rule.methods or ()}
    return {"url": url, "post": "GET" not in methods}


def _reconciliation_link() -> str | None:
    if "BillingReconciliationView.index" not in current_app.view_functions:
        return None
    return url_for("BillingReconciliationView.index")


def _may_see(invoice: Invoice) -> bool:
    """Beyond the scope: what the signed-in staff member's own account received carries buy prices (costs), and
    is seen once it is issued."""
    if invoice.buyer_id != _own().id:
        return True
    return may(P.COSTS, P.READ) and invoices.visible_to_buyer(invoice)


def _shows_microsoft(invoice: Invoice) -> bool:
    own = _own()
    return own.kind == OPERATOR and invoice.issuer_id == own.id and may(P.MICROSOFT_COSTS, P.READ)


def _invoice_context(invoice: Invoice, *, with_microsoft: bool) -> dict:
    issuer, buyer = invoices.parties(invoice)
    return {
        "invoice": invoice,
        "issuer": issuer,
        "buyer": buyer,
        "lines": [(line, invoices.line_words(line)) for line in invoice.lines],
        "tax_percent": invoices.tax_percent(invoice.tax_rate),
        "with_microsoft": with_microsoft,
        "related": invoices.corrections(invoice),
    }


def _xlsx(invoice: Invoice, *, with_microsoft: bool) -> Response:
    issuer, buyer = invoices.parties(invoice)
    body = invoices.workbook(invoice, issuer, buyer, with_microsoft=with_microsoft)
    return Response(
        body,
        mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={"Content-Disposition": f'attachment; filename="{invoices.xlsx_name(invoice)}"'},
    )


class BillingView(PortalView):
    """/billing/...: the partner portal's billing pages (operator staff and reseller staff)."""

    route_base = "/billing"
    class_permission_name = P.INVOICES
    method_permission_name = {
        "account": P.READ,
        "invoice": P.READ,
        "xlsx": P.READ,
        "issue": P.WRITE,
        "credit_note": P.WRITE,
        "settings": P.WRITE,
        "save_settings": P.WRITE,
    }

    def create_blueprint(self, appbuilder, endpoint=None, static_folder=None):
        blueprint = super().create_blueprint(appbuilder, endpoint, static_folder)
        # The account screen's tabs and the customer portal's sidebar draw their Billing / Invoices entries by it.
        blueprint.app_context_processor(lambda: {"may_see_invoices": lambda: may(P.INVOICES, P.READ)})
        return blueprint

    # -- the Billing tab of a reseller or a customer -----------------------------------------------------------------
    @expose("/accounts/<int:account_id>/")
    @signed_in_first
    @staff_only(P.READ)
    @has_access
    def account(self, account_id):
        account = account_in_scope(account_id)
        month = _month_arg()
        own = _own()
        received = issued = None
        if account.kind == RESELLER:
            if may(P.COSTS, P.READ):
                received = invoices.invoice_page(
                    buyer_id=account.id,
                    month=month,
                    issued_only=own.kind != OPERATOR,
                    page=max(_int_arg("received_page") or 1, 1),
                )
            issued = invoices.invoice_page(issuer_id=account.id, month=month, page=page_arg())
            month_choices = set(invoices.months(issuer_id=account.id))
            if received is not None:
                month_choices |= set(invoices.months(buyer_id=account.id, issued_only=own.kind != OPERATOR))
            month_choices = sorted(month_choices, reverse=True)
        else:
            issued = invoices.invoice_page(buyer_id=account.id, month=month, page=page_arg())
            month_choices = invoices.months(buyer_id=account.id)
        may_write = may(P.INVOICES, P.WRITE)
        is_issuer = account.kind == RESELLER and own.id == account.id and may_write
        return self.render_template(
            "portal/billing/account.html",
            account=account,
            tab="billing",
            month=month,
            month_choices=month_choices,
            received=received,
            issued=issued,
            is_issuer=is_issuer,
            xero_link=_xero_link(account.id, month) if is_issuer or (own.kind == OPERATOR and may_write) else None,
        )

    # -- one invoice ---------------------------------------------------------------------------------------------------
    @staticmethod
    def _invoice(invoice_id) -> Invoice:
        invoice = invoices.get(invoice_id)
        if invoice is None or not _may_see(invoice):
            abort(404)
        return invoice

    @staticmethod
    def _issuer_side(invoice: Invoice) -> None:
        if not invoices.is_issuer_side(invoice, _own().id):
            abort(404)

    def _page(self, invoice: Invoice, *, form=None, status=200):
        is_issuer = invoices.is_issuer_side(invoice, _own().id) and may(P.INVOICES, P.WRITE)
        body = self.render_template(
            "portal/billing/invoice.html",
            back=self._back_link(invoice),
            is_issuer=is_issuer,
            issue_form=ActionForm(formdata=None),
            credit_form=form or CreditNoteForm(formdata=None),
            xlsx_url=url_for(".xlsx", invoice_id=invoice.id),
            **_invoice_context(invoice, with_microsoft=_shows_microsoft(invoice)),
        )
        return body, status

    @staticmethod
    def _back_link(invoice: Invoice) -> str:
        own = _own()
        if own.kind == OPERATOR and may(P.BILLING, P.READ):
            return url_for("OperatorInvoicesView.index", month=f"{invoice.month:%Y-%m}")
        side = invoice.issuer_id if invoice.issuer_id == own.id else invoice.buyer_id
        return url_for(".account", account_id=side, month=f"{invoice.month:%Y-%m}")

    @expose("/invoices/<int:invoice_id>")
    @signed_in_first
    @staff_only(P.READ)
    @has_access
    def invoice(self, invoice_id):
        return self._page(self._invoice(invoice_id))

    @expose("/invoices/<int:invoice_id>.xlsx")
    @signed_in_first
    @staff_only(P.READ)
    @has_access
    def xlsx(self, invoice_id):
        invoice = self._invoice(invoice_id)
        return _xlsx(invoice, with_microsoft=_shows_microsoft(invoice))

    @expose("/invoices/<int:invoice_id>/issue", methods=["POST"])
    @staff_only(P.WRITE)
    @has_access
    def issue(self, invoice_id):
        invoice = self._invoice(invoice_id)
        self._issuer_side(invoice)
        if not ActionForm().validate_on_submit():
            abort(400, description=_EXPIRED)
        what = "credit note" if invoice.kind == "credit_note" else "invoice"
        asked = confirmation(  # an issued invoice cannot be changed: asked without JavaScript too
            f"Issue this {what} to {invoice.buyer.name} for {invoice.month:%B %Y} ({format_money(invoice.total)})?",
            "It gets the next number and cannot be changed or deleted afterwards; only a credit note corrects it.",
            f"Issue {what}",
            cancel_url=url_for(".invoice", invoice_id=invoice.id),
            danger=False,
        )
        if asked:
            return asked
        try:
            invoices.issue(invoice, account_id=_own().id)
        except BillingError as exc:
            flash(str(exc), "danger")
        else:
            flash(f"Issued {invoice.title}, due {invoice.due_date:%d/%m/%Y}.", "success")
        return redirect(url_for(".invoice", invoice_id=invoice.id))

    @expose("/invoices/<int:invoice_id>/credit-note", methods=["POST"])
    @staff_only(P.WRITE)
    @has_access
    def credit_note(self, invoice_id):
        invoice = self._invoice(invoice_id)
        self._issuer_side(invoice)
        form = CreditNoteForm()
        if not form.validate_on_submit():
            abort(400, description=_EXPIRED)
        try:
            note = invoices.credit_note(invoice, form.reason.data, account_id=_own().id)
        except invoices.SettingsError as exc:
            form.reason.errors = [exc.errors["reason"]]
            return self._page(invoice, form=form, status=400)
        except BillingError as exc:
            form.reason.errors = [str(exc)]
            return self._page(invoice, form=form, status=400)
        flash(f"Drafted a credit note for {invoice.title}: check it, then issue it.", "success")
        return redirect(url_for(".invoice", invoice_id=note.id))

    # -- billing settings of an issuer (its own staff) --------------------------------------------------------------
    @staticmethod
    def _issuer(account_id) -> Account:
        own = _own()
        if own.id != account_id or own.kind not in (OPERATOR, RESELLER):
            abort(404)
        return own

    def _settings_page(self, issuer: Account, form: SettingsForm, status=200):
        body = self.render_template(
            "portal/billing/settings.html",
            issuer=issuer,
            form=form,
            next_number=invoices.settings_of(issuer.id).next_number,
            back=(
                url_for("OperatorInvoicesView.index")
                if issuer.kind == OPERATOR
                else url_for(".account", account_id=issuer.id)
            ),
        )
        return body, status

    @expose("/settings/<int:account_id>")
    @signed_in_first
    @staff_only(P.WRITE)
    @has_access
    def settings(self, account_id):
        issuer = self._issuer(account_id)
        current = invoices.settings_of(issuer.id)
        form = SettingsForm(
            formdata=None,
            invoice_prefix=current.invoice_prefix,
            gst_number=current.gst_number or "",
            payment_terms_days=str(current.payment_terms_days),
            xero_account_code=current.xero_account_code,
            xero_tax_type=current.xero_tax_type,
        )
        return self._settings_page(issuer, form)

    @expose("/settings/<int:account_id>", methods=["POST"])
    @staff_only(P.WRITE)
    @has_access
    def save_settings(self, account_id):
        issuer = self._issuer(account_id)
        form = SettingsForm()
        if not form.validate_on_submit():
            abort(400, description=_EXPIRED)
        try:
            invoices.save_settings(
                issuer.id,
                prefix=form.invoice_prefix.data,
                gst_number=form.gst_number.data,
                terms=form.payment_terms_days.data,
                xero_account_code=form.xero_account_code.data,
                xero_tax_type=form.xero_tax_type.data,
            )
        except invoices.SettingsError as exc:
            for name, message in exc.errors.items():
                getattr(form, name).errors = [message]
            return self._settings_page(issuer, form, status=400)
        flash("Saved the billing settings: the next invoice issued uses them.", "success")
        return redirect(url_for(".settings", account_id=issuer.id))


class OperatorInvoicesView(PortalView):
    """/billing/all/: every issuer's invoices (operator staff), by month and issuer."""

    route_base = "/billing/all"
    default_view = "index"
    class_permission_name = P.BILLING
    method_permission_name = {"index": P.READ}

    @expose("/")
    @signed_in_first
    @staff_only(P.READ, P.BILLING)
    @has_access
    def index(self):
        own = _own()
        if own.kind != OPERATOR:
            abort(404)
        month = _month_arg()
        issuer_id = _int_arg("issuer")
        choices = invoices.issuer_choices()
        listed = invoices.invoice_page(issuer_id=issuer_id, month=month, page=page_arg())
        return self.render_template(
            "portal/billing/operator.html",
            operator=own,
            month=month,
            month_choices=invoices.months(),
            issuer_id=issuer_id,
            issuer_choices=choices,
            listed=listed,
            may_write=may(P.INVOICES, P.WRITE),
            xero_link=_xero_link(own.id, month),
            reconciliation_link=_reconciliation_link(),
        )


def customer_invoices(view):
    """After ``customer_page``: a customer's own invoices, for those who may see them; anyone else (a customer
    user without the capability, a reseller's own portal) 404 — before FAB's permission check would redirect."""

    @functools.wraps(view)
    def wrapper(self, customer_id, *args, **kwargs):
        if g.customer.kind != CUSTOMER or not may(P.INVOICES, P.READ):
            abort(404)
        return view(self, customer_id, *args, **kwargs)

    return wrapper


class CustomerInvoicesView(CustomerPortalView):
    """/portal/<customer>/invoices: a customer's own invoices, for customer-portal users who may see them."""

    class_permission_name = P.INVOICES
    section = "invoices"
    method_permission_name = {"invoices": P.READ, "invoice": P.READ, "xlsx": P.READ}

    def _render(self, template: str, **context):
        return self.render_template(template, customer=g.customer, section=self.section, **context)

    @staticmethod
    def _invoice(customer_id, invoice_id) -> Invoice:
        invoice = invoices.get(invoice_id)
        if invoice is None or invoice.buyer_id != customer_id or not invoices.visible_to_buyer(invoice):
            abort(404)
        return invoice

    @expose("/<int:customer_id>/invoices")
    @customer_page
    @customer_invoices
    @has_access
    def invoices(self, customer_id):
        month = _month_arg()
        listed = invoices.invoice_page(buyer_id=customer_id, month=month, issued_only=True, page=page_arg())
        return self._render(
            "portal/billing/customer_invoices.html",
            month=month,
            month_choices=invoices.months(buyer_id=customer_id, issued_only=True),
            listed=listed,
        )

    @expose("/<int:customer_id>/invoices/<int:invoice_id>")
    @customer_page
    @customer_invoices
    @has_access
    def invoice(self, customer_id, invoice_id):
        invoice = self._invoice(customer_id, invoice_id)
        return self._render(
            "portal/billing/customer_invoice.html",
            back=url_for(".invoices", customer_id=customer_id, month=f"{invoice.month:%Y-%m}"),
            xlsx_url=url_for(".xlsx", customer_id=customer_id, invoice_id=invoice.id),
            **_invoice_context(invoice, with_microsoft=False),
        )

    @expose("/<int:customer_id>/invoices/<int:invoice_id>.xlsx")
    @customer_page
    @customer_invoices
    @has_access
    def xlsx(self, customer_id, invoice_id):
        return _xlsx(self._invoice(customer_id, invoice_id), with_microsoft=False)

"""Accounts ▸ List all: the accounts in scope (operator: resellers and customers; partner: its customers), each
name opening the account's screen, each customer's licences and monthly spend, and the filters of
app/services/account_list.py (reseller, Microsoft tenant, renews within) beside FAB's own search."""

from __future__ import annotations

from flask import flash, g, redirect, request, url_for
from flask_appbuilder.baseviews import expose
from flask_appbuilder.exceptions import FABException
from flask_appbuilder.models.filters import BaseFilter
from flask_appbuilder.models.sqla.filters import FilterInFunction
from flask_appbuilder.security.decorators import has_access
from markupsafe import Markup
from wtforms import Form, SelectChoice, SelectField
from wtforms.validators import ValidationError

from app import clock
from app.formatting import format_money
from app.models.accounts import CUSTOMER, RESELLER, Account
from app.services import account_list
from app.services.account_list import RENEWAL_WINDOWS, AccountFilters
from security import permissions as P
from views.base import EagerInterface, ScopedModelView, get_or_404

#: The list's own filters (query arguments), beside FAB's ``_flt_<n>_<column>`` search.
FILTER_FIELDS = ("reseller", "tenant", "renews")
_TENANT_CHOICES = [
    SelectChoice("", "Any"),
    SelectChoice("yes", "Has a Microsoft tenant"),
    SelectChoice("no", "No Microsoft tenant"),
]
_RENEWS_CHOICES = [SelectChoice("", "Any time")] + [
    SelectChoice(str(days), f"Within {days} days") for days in RENEWAL_WINDOWS
]


def listed_kinds() -> list[str]:
    """Operator staff list resellers and customers; a partner lists its customers."""
    return [RESELLER, CUSTOMER] if g.user.portal == "operator" else [CUSTOMER]


def _one_of(choices, message: str):
    def check(form, field) -> None:
        if field.data not in {choice.value for choice in choices}:
            raise ValidationError(message)

    return check


class AccountFilterForm(Form):
    """The list's filters: a GET form (no CSRF: reading only). Values the form does not offer are refused beside
    their field — a reseller out of scope exactly as one that does not exist."""

    reseller = SelectField("Reseller", choices=[], default="", validate_choice=False)
    tenant = SelectField(
        "Microsoft tenant",
        choices=_TENANT_CHOICES,
        default="",
        validate_choice=False,
        validators=[_one_of(_TENANT_CHOICES, "Choose Any, Has a Microsoft tenant or No Microsoft tenant.")],
    )
    renews = SelectField(
        "Renews",
        choices=_RENEWS_CHOICES,
        default="",
        validate_choice=False,
        validators=[_one_of(_RENEWS_CHOICES, f"Choose a number of days: {', '.join(map(str, RENEWAL_WINDOWS))}.")],
    )

    def __init__(self, formdata, *, resellers: list[tuple[int, str]]):
        super().__init__(formdata)
        self.reseller.choices = [SelectChoice("", "Any reseller")] + [
            SelectChoice(str(rid), name) for rid, name in resellers
        ]

    def validate_reseller(self, field) -> None:
        if field.data not in {choice.value for choice in field.choices}:
            raise ValidationError("Choose a reseller from the list.")

    def filters(self) -> AccountFilters:
        return AccountFilters(
            reseller_id=int(self.reseller.data) if self.reseller.data else None,
            has_tenant={"yes": True, "no": False}.get(self.tenant.data),
            renews_within=int(self.renews.data) if self.renews.data else None,
        )


class _Criterion(BaseFilter):
    """One WHERE clause of the list's own filters, on FAB's list query (FAB's filters do not reach EXISTS)."""

    name = "criterion"

    def apply(self, query, value):
        return query.filter(value)


class AccountView(ScopedModelView):
    datamodel = EagerInterface(Account, eager=("parent", "tenant"))
    class_permission_name = P.ACCOUNTS
    event_name = "account"
    include_route_methods = {"list", "show"}  # its Details tab is the editor
    list_title = "Accounts"
    list_template = "portal/account_list.html"
    list_columns = ["name", "kind", "parent", "tenant", "licences", "monthly_spend", "status", "created_on"]
    order_columns = ["name", "kind", "status", "created_on"]
    search_columns = ["name", "kind", "status", "contact_email"]
    base_order = ("name", "asc")
    base_filters = [["kind", FilterInFunction, listed_kinds]]
    label_columns = {
        "kind": "Type",
        "parent": "Reseller",
        "tenant": "Microsoft tenant",
        "licences": "Licences (used/bought)",
        "monthly_spend": "Monthly spend (excl. GST)",
        "created_on": "Created",
        "contact_email": "Contact email",
    }
    formatters_columns = {"monthly_spend": format_money}

    @expose("/list/")
    @has_access
    def list(self):
        """The list with the request's filters; filters that make no sense answer 400 with their messages beside
        the fields and an empty list."""
        form = AccountFilterForm(request.args, resellers=account_list.reseller_choices())
        chosen = form.filters() if form.validate() else None
        self.update_redirect()
        try:
            widgets = self._list(account_filters=chosen)
        except FABException as exc:
            flash(f"An error occurred: {exc}", "warning")
            return redirect(self.get_redirect())
        kept = [
            (name, value)
            for name, value in request.args.items(multi=True)
            if name not in FILTER_FIELDS and not name.startswith("page_")
        ]
        page = self.render_template(
            self.list_template,
            title=self.list_title,
            widgets=widgets,
            filter_form=form,
            chooses_reseller=g.user.portal == "operator",
            kept_args=kept,
            filtered=any(request.args.get(name) for name in FILTER_FIELDS),
        )
        return page, 200 if chosen is not None else 400

    def _get_list_widget(self, filters, *args, account_filters: AccountFilters | None = None, **kwargs):
        """FAB's page of accounts narrowed by the list's filters, then one aggregate statement for the shown
        customers' licences and spend (app/services/account_list.py), and each name a link to its screen."""
        criteria = account_list.NOTHING if account_filters is None else account_filters.criteria(clock.today())
        narrowed = filters.copy()  # FAB's own filters are the view's, shared by every request: never changed here
        for criterion in criteria:
            narrowed.add_filter("id", _Criterion, criterion)
        widgets = super()._get_list_widget(narrowed, *args, **kwargs)
        listed = widgets["list"].template_args
        listed["filters"] = filters  # what FAB's links carry: its own search only
        rows = list(listed["value_columns"])
        ids = [int(pk) for pk in listed["pks"]]
        figures = account_list.page_figures([i for i, row in zip(ids, rows, strict=True) if row["kind"] == CUSTOMER])
        for account_id, row in zip(ids, rows, strict=True):
            row["name"] = Markup('<a href="{}" data-account="{}">{}</a>').format(
                url_for("AccountScreenView.details", account_id=account_id), account_id, row["name"]
            )
            if row["kind"] == CUSTOMER:
                found = figures.get(account_id, account_list.Figures())
                row["licences"], row["monthly_spend"] = found.licences_label, found.monthly_spend
                if row["tenant"] is None:
                    row["tenant"] = Markup('<span class="text-muted">None yet</span>')
            else:
                row["licences"], row["monthly_spend"] = "", None
        listed["value_columns"] = rows
        return widgets

    @expose("/show/<pk>", methods=["GET"])
    @has_access
    def show(self, pk):
        """An account's page is its details screen, with the guide's tabs."""
        return redirect(url_for("AccountScreenView.details", account_id=get_or_404(Account, pk).id))

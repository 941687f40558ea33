"""Accounts ▸ List all: the accounts in scope (operator: resellers and customers; partner: its customers)."""

from __future__ import annotations

from flask import g, redirect, url_for
from flask_appbuilder.baseviews import expose
from flask_appbuilder.models.sqla.filters import FilterInFunction
from flask_appbuilder.security.decorators import has_access

from app.models.accounts import CUSTOMER, RESELLER, Account
from security import permissions as P
from views.base import EagerInterface, ScopedModelView, get_or_404


def listed_kinds() -> list[str]:
    """Operator staff list resellers and customers; a partner lists its customers."""
    return [RESELLER, CUSTOMER] if g.user.portal == "operator" else [CUSTOMER]


class AccountView(ScopedModelView):
    datamodel = EagerInterface(Account, eager=("parent", "tenant"))
    class_permission_name = P.ACCOUNTS
    event_name = "account"
    include_route_methods = {"list", "show"}  # its Details tab is the editor
    list_title = "Accounts"
    list_columns = ["name", "kind", "parent", "tenant", "status", "created_on"]
    order_columns = ["name", "kind", "status", "created_on"]
    search_columns = ["name", "kind", "status", "contact_email"]
    base_order = ("name", "asc")
    base_filters = [["kind", FilterInFunction, listed_kinds]]
    label_columns = {
        "kind": "Type",
        "parent": "Reseller",
        "tenant": "Microsoft tenant",
        "created_on": "Created",
        "contact_email": "Contact email",
    }

    @expose("/show/<pk>", methods=["GET"])
    @has_access
    def show(self, pk):
        """An account's page is its details screen, with the guide's tabs."""
        return redirect(url_for("AccountScreenView.details", account_id=get_or_404(Account, pk).id))

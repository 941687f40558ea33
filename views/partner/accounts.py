"""Accounts ▸ List all: the accounts in scope (operator: resellers and customers; partner: its customers)."""

from __future__ import annotations

from app.models.accounts import Account
from security import permissions as P
from views.base import EagerInterface, ScopedModelView

_DETAILS = [
    "name",
    "contact_first_name",
    "contact_last_name",
    "contact_email",
    "phone",
    "address_line1",
    "address_line2",
    "city",
    "region",
    "postcode",
    "country",
    "it_support_email",
]


class AccountView(ScopedModelView):
    datamodel = EagerInterface(Account, eager=("parent", "tenant"))
    class_permission_name = P.ACCOUNTS
    event_name = "account"
    include_route_methods = {"list", "show", "edit"}
    list_title = "Accounts"
    show_title = "Account"
    edit_title = "Edit account details"
    list_columns = ["name", "kind", "parent", "tenant", "status", "created_on"]
    order_columns = ["name", "kind", "status", "created_on"]
    search_columns = ["name", "kind", "status", "contact_email"]
    show_columns = ["name", "kind", "parent", "status", "tenant", "created_on", *_DETAILS[1:]]
    edit_columns = _DETAILS
    base_order = ("name", "asc")
    label_columns = {
        "kind": "Type",
        "parent": "Reseller",
        "tenant": "Microsoft tenant",
        "created_on": "Created",
        "contact_first_name": "Contact first name",
        "contact_last_name": "Contact last name",
        "contact_email": "Contact email",
        "address_line1": "Address",
        "address_line2": "Address (line 2)",
        "it_support_email": "IT support email",
    }

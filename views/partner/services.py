"""Partner-portal lists of what customers hold: subscriptions, Microsoft 365 users, Microsoft tenants."""

from __future__ import annotations

from app.models.accounts import MicrosoftTenant
from app.models.subscriptions import M365User, Subscription
from security import permissions as P
from views.base import EagerInterface, ScopedModelView


class SubscriptionView(ScopedModelView):
    datamodel = EagerInterface(Subscription, eager=("account", "product"))
    class_permission_name = P.SUBSCRIPTIONS
    include_route_methods = {"list", "show"}
    list_title = "Subscriptions"
    list_columns = ["account", "product", "assigned", "quantity", "renew_on", "unit_price", "auto_renew", "status"]
    order_columns = ["assigned", "quantity", "renew_on", "unit_price", "status"]
    search_columns = ["status", "auto_renew", "renew_on"]
    show_columns = [*list_columns, "billing_cycle", "term_started_on", "created_on"]
    base_order = ("renew_on", "asc")
    label_columns = {
        "account": "Customer",
        "assigned": "Licences used",
        "quantity": "Licences",
        "renew_on": "Renew on",
        "unit_price": "Price",
        "auto_renew": "Auto-renew",
    }


class M365UserView(ScopedModelView):
    datamodel = EagerInterface(M365User, eager=("account",))
    class_permission_name = P.M365_USERS
    include_route_methods = {"list", "show"}
    list_title = "Microsoft 365 users"
    list_columns = ["account", "display_name", "user_principal_name", "status"]
    order_columns = ["display_name", "user_principal_name", "status"]
    search_columns = ["display_name", "user_principal_name", "status"]
    show_columns = [*list_columns, "created_on"]
    base_order = ("display_name", "asc")
    label_columns = {"account": "Customer", "user_principal_name": "User name"}


class TenantView(ScopedModelView):
    datamodel = EagerInterface(MicrosoftTenant, eager=("account",))
    class_permission_name = P.TENANTS
    include_route_methods = {"list", "show"}
    list_title = "Microsoft tenants"
    list_columns = ["account", "primary_domain", "status", "created_on"]
    order_columns = ["status", "created_on"]
    search_columns = ["domain_prefix", "status"]
    show_columns = [*list_columns, "tenant_guid", "link_type", "provisioned_on"]
    base_order = ("created_on", "desc")
    label_columns = {"account": "Customer", "primary_domain": "Primary domain", "tenant_guid": "Tenant ID"}

"""Partner-portal lists of what customers hold: subscriptions, Microsoft 365 users, Microsoft tenants."""

from __future__ import annotations

from sqlalchemy.orm import joinedload

from app.formatting import format_money
from app.models.accounts import MicrosoftTenant
from app.models.catalog import Availability
from app.models.subscriptions import M365User, Subscription
from security import permissions as P
from views.base import EagerInterface, ScopedModelView


class _SubscriptionInterface(EagerInterface):
    """Subscriptions with their customer and SKU, and the scheduled change's SKU (its words name it)."""

    def apply_all(self, query, *args, **kwargs):
        query = super().apply_all(query, *args, **kwargs)
        if self.obj is not Subscription:  # FAB builds the related dropdowns' interfaces from this class too
            return query
        return query.options(joinedload(Subscription.next_availability).joinedload(Availability.product))


def _on_off(value) -> str:
    return "On" if value else "Off"


class SubscriptionView(ScopedModelView):
    datamodel = _SubscriptionInterface(Subscription, eager=("account", "product"))
    class_permission_name = P.SUBSCRIPTIONS
    include_route_methods = {"list", "show"}
    list_title = "Subscriptions"
    list_columns = [
        "account",
        "product",
        "assigned",
        "quantity",
        "term_label",
        "billing_frequency_label",
        "renew_on",
        "unit_price",
        "monthly_price",
        "auto_renew",
        "status",
        "scheduled_change_label",
    ]
    order_columns = ["assigned", "quantity", "renew_on", "unit_price", "status"]
    search_columns = ["status", "auto_renew", "renew_on"]
    show_columns = [*list_columns, "term_started_on", "created_on"]
    base_order = ("renew_on", "asc")
    label_columns = {
        "account": "Customer",
        "assigned": "Licences used",
        "quantity": "Licences",
        "term_label": "Term",
        "billing_frequency_label": "Billing frequency",
        "renew_on": "Renew on",
        "unit_price": "Price (per billing period)",
        "monthly_price": "Price per month",
        "auto_renew": "Auto-renew",
        "scheduled_change_label": "Change at renewal",
    }
    # Prices are per licence per billing period; the per-month figure is rounded half up to the cent.
    formatters_columns = {"auto_renew": _on_off, "monthly_price": format_money}


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

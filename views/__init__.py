"""register(appbuilder): the only add_view/add_link calls — the whole menu in one place."""

from __future__ import annotations

from security import permissions as P


def register(appbuilder) -> None:
    from views.activation import ActivationView
    from views.billing import BillingView, CustomerInvoicesView, OperatorInvoicesView
    from views.billing_export import BillingExportView
    from views.billing_reconciliation import BillingReconciliationView
    from views.customer.dashboard import CustomerDashboardView
    from views.customer.ordering import CustomerOrderingView
    from views.customer.renewals import CustomerRenewalsView
    from views.customer.services import (
        CustomerLicencesView,
        CustomerM365UsersView,
        CustomerOrdersView,
        CustomerServicesView,
    )
    from views.customer.users import CustomerEventsView, CustomerUsersView
    from views.customer.windows import CustomerSeatWindowsView
    from views.handover import HandoverView
    from views.licence_drift import LicenceDriftView
    from views.memberships import AccountChooserView
    from views.mfa import MfaView
    from views.partner.account_events import AccountEventsView
    from views.partner.account_users import AccountUsersView, PartnerUsersView
    from views.partner.accounts import AccountView
    from views.partner.accounts_screen import AccountScreenView
    from views.partner.catalog import PriceChangesView, ProductView
    from views.partner.events import EventView
    from views.partner.launch import LaunchView, ReturnView
    from views.partner.prices import CustomerPricesView, ResellerPricesView
    from views.partner.reconciliation import ReconciliationView
    from views.partner.reports import ReportJobsView, ReportsView
    from views.partner.resellers import ResellerAdminView
    from views.partner.search import AccountSearchView
    from views.partner.services import M365UserView, SubscriptionView, TenantView
    from views.partner.tenants import DomainCheckView, TenantSetupView
    from views.profile import ProfileView

    appbuilder.add_view(
        AccountView,
        P.MENU_ACCOUNTS_LIST,
        label="List all",
        icon="fa-building",
        category=P.MENU_ACCOUNTS,
        category_icon="fa-building",
    )
    appbuilder.add_view(
        ResellerAdminView, P.MENU_ADD_RESELLER, href="ResellerAdminView.new", icon="fa-plus", category=P.MENU_ACCOUNTS
    )
    appbuilder.add_view(SubscriptionView, P.MENU_SUBSCRIPTIONS, icon="fa-file-text-o", category=P.MENU_ACCOUNTS)
    appbuilder.add_view(TenantView, P.MENU_TENANTS, icon="fa-cloud", category=P.MENU_ACCOUNTS)
    appbuilder.add_view(M365UserView, P.MENU_M365_USERS, icon="fa-users", category=P.MENU_ACCOUNTS)
    appbuilder.add_view(
        ProductView, P.MENU_PRODUCTS, icon="fa-tags", category=P.MENU_CATALOGUE, category_icon="fa-tags"
    )
    appbuilder.add_view(PriceChangesView, P.MENU_PRICE_CHANGES, icon="fa-line-chart", category=P.MENU_CATALOGUE)
    appbuilder.add_view(CustomerPricesView, P.MENU_CUSTOMER_PRICES, icon="fa-percent", category=P.MENU_CATALOGUE)
    appbuilder.add_view(ResellerPricesView, P.MENU_RESELLER_PRICES, icon="fa-percent", category=P.MENU_CATALOGUE)
    appbuilder.add_view(EventView, P.MENU_EVENTS, icon="fa-history")
    appbuilder.add_view(ReconciliationView, P.MENU_RECONCILIATION, icon="fa-balance-scale")
    appbuilder.add_view(
        LicenceDriftView,
        P.MENU_LICENCE_DRIFT,
        icon="fa-pie-chart",
        category=P.MENU_REPORTS,
        category_icon="fa-bar-chart",
    )
    appbuilder.add_view(
        OperatorInvoicesView, P.MENU_INVOICES, icon="fa-file-o", category=P.MENU_BILLING, category_icon="fa-money"
    )
    appbuilder.add_view(
        BillingReconciliationView, P.MENU_BILLING_RECONCILIATION, icon="fa-balance-scale", category=P.MENU_BILLING
    )
    for view in (
        AccountScreenView,
        AccountUsersView,
        PartnerUsersView,
        AccountEventsView,
        AccountSearchView,
        ActivationView,
        HandoverView,
        ProfileView,
        AccountChooserView,
        MfaView,
        TenantSetupView,
        DomainCheckView,
        LaunchView,
        ReturnView,
        CustomerDashboardView,
        CustomerServicesView,
        CustomerOrdersView,
        CustomerOrderingView,
        CustomerLicencesView,
        CustomerM365UsersView,
        CustomerRenewalsView,
        CustomerSeatWindowsView,
        CustomerUsersView,
        CustomerEventsView,
        ReportsView,
        ReportJobsView,
        BillingExportView,
        BillingView,
        CustomerInvoicesView,
    ):
        appbuilder.add_view_no_menu(view)

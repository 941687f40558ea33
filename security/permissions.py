"""Resource and action names, the menu, and the roles of DESIGN.md *Roles*, declared as data.

``flask portal sync-roles`` makes the database match this module; nothing else writes roles.
A view names its resource with ``class_permission_name`` and collapses its methods onto the actions below.
"""

from __future__ import annotations

# Actions (FAB stores them prefixed with "can_").
READ = "read"
WRITE = "write"
DELETE = "delete"
LAUNCH = "launch"
EXPORT = "export"
MENU_ACCESS = "menu_access"

# Partner-portal pages
HOME = "Home"
PROFILE = "Profile"  # one's own sign-in: change my password
ACCOUNTS = "Accounts"
RESELLERS = "Resellers"
PORTAL_USERS = "Portal Users"
PARTNER_USERS = "Partner Users"
TENANTS = "Microsoft Tenants"
SUBSCRIPTIONS = "Subscriptions"
M365_USERS = "Microsoft 365 Users"
PRODUCTS = "Products"
EVENTS = "Event Log"
REPORTS = "Reports"
RECONCILIATION = "Reconciliation"  # differences between the portal's records and Microsoft's
RECONCILIATION_REPAIR = "Reconciliation Repair"  # make the portal's records match Microsoft's (operator staff)
IMPERSONATION = "Impersonation"
# Customer-portal pages
DASHBOARD = "Dashboard"
CUSTOMER_SERVICES = "Microsoft CSP"
CUSTOMER_USERS = "Customer Users"
CUSTOMER_EVENTS = "Customer Event Log"
ACCOUNT_SWITCHER = "Account Switcher"  # a customer-portal login chooses the customer account it works in
# Capabilities checked by the forms of both portals
ORDERS = "Orders"  # new subscriptions, quantities, auto-renew
LICENCES = "Licences"  # assign and unassign licences
M365_ADMIN = "Microsoft 365 Admin"  # add and disable Microsoft 365 users
TENANT_SETUP = "Tenant Setup"  # create or link a Microsoft tenant
COSTS = "Costs and margins"  # see one's buy price and margin (everyone who sees a subscription sees its price)
MICROSOFT_COSTS = "Microsoft Costs"  # see Microsoft's cost and every reseller's buy price and margin (operator staff)
CUSTOMER_PRICES = "Customer Prices"  # a reseller's price list for its customers: default markup, overrides
RESELLER_PRICES = "Reseller Prices"  # the operator's price list for each reseller (what resellers pay)
PRICE_SHEET = "Price Sheet"  # Microsoft's price sheet: import it, see next month's changes before they apply
INVOICES = "Invoices"  # read: the invoices of one's side (received, issued); write: issue, credit notes, settings
BILLING = "Billing"  # operator staff: every issuer's invoices (Billing ▸ Invoices)
BILLING_RECONCILIATION = "Billing Reconciliation"  # operator staff: Microsoft's billed data against the portal's costs
# While impersonating, a capability counts only if the real (partner) user's role holds it too.
CAPABILITIES = frozenset(
    {ORDERS, LICENCES, M365_ADMIN, TENANT_SETUP, COSTS, MICROSOFT_COSTS, CUSTOMER_PRICES, INVOICES}
)

# The menu: item name -> the resource whose read permission shows it. views/__init__.py uses these names.
MENU_ACCOUNTS = "Accounts"
MENU_ACCOUNTS_LIST = "List all"
MENU_SUBSCRIPTIONS = "Subscriptions"
MENU_M365_USERS = "Microsoft 365 users"
MENU_TENANTS = "Microsoft tenants"
MENU_CATALOGUE = "Catalogue"
MENU_PRODUCTS = "Products"
MENU_EVENTS = "Event Log"
MENU_ADD_RESELLER = "Add reseller"
MENU_RECONCILIATION = "Reconciliation"
MENU_CUSTOMER_PRICES = "Customer prices"
MENU_RESELLER_PRICES = "Reseller prices"
MENU_PRICE_CHANGES = "Price changes"
MENU_REPORTS = "Reports"  # the partner portal's reports menu (the CSP Report stays on each account's screen)
MENU_LICENCE_DRIFT = "Licence drift"
MENU_BILLING = "Billing"
MENU_INVOICES = "Invoices"
MENU_BILLING_RECONCILIATION = "Microsoft reconciliation"
MENU = {
    MENU_ACCOUNTS: ACCOUNTS,
    MENU_ACCOUNTS_LIST: ACCOUNTS,
    MENU_SUBSCRIPTIONS: SUBSCRIPTIONS,
    MENU_M365_USERS: M365_USERS,
    MENU_TENANTS: TENANTS,
    MENU_CATALOGUE: PRODUCTS,
    MENU_PRODUCTS: PRODUCTS,
    MENU_EVENTS: EVENTS,
    MENU_ADD_RESELLER: RESELLERS,
    MENU_RECONCILIATION: RECONCILIATION,
    MENU_CUSTOMER_PRICES: CUSTOMER_PRICES,
    MENU_RESELLER_PRICES: RESELLER_PRICES,
    MENU_PRICE_CHANGES: PRICE_SHEET,
    MENU_REPORTS: REPORTS,
    MENU_LICENCE_DRIFT: REPORTS,
    MENU_BILLING: BILLING,
    MENU_INVOICES: BILLING,
    MENU_BILLING_RECONCILIATION: BILLING_RECONCILIATION,
}

# Role names
OPERATOR_ADMIN = "Operator Admin"
PARTNER_CSP_ADMIN = "Partner CSP Admin"
PARTNER_USER = "Partner User"
CUSTOMER_MASTER_ADMIN = "Customer Master Admin"
CUSTOMER_ADMIN = "Customer Admin"
CUSTOMER_USER = "Customer User"
# A customer-portal login that has not chosen the account it works in yet: the chooser and nothing else.
CUSTOMER_LOGIN = "Customer Login"
PUBLIC = "Public"


def _grant(resource: str, *actions: str) -> set[tuple[str, str]]:
    return {(action, resource) for action in actions}


_PARTNER_USER = (
    # The account switcher's page is open to staff too: it answers them 404 (they have no accounts to choose), the
    # answer every route gives what is not there for them.
    _grant(ACCOUNT_SWITCHER, READ, WRITE)
    | _grant(HOME, READ)
    | _grant(PROFILE, READ, WRITE)
    | _grant(ACCOUNTS, READ, WRITE)
    | _grant(PORTAL_USERS, READ, WRITE, DELETE)
    | _grant(TENANTS, READ)
    | _grant(SUBSCRIPTIONS, READ)
    | _grant(M365_USERS, READ)
    | _grant(PRODUCTS, READ)
    | _grant(EVENTS, READ, EXPORT)
    | _grant(REPORTS, READ, EXPORT)
    | _grant(RECONCILIATION, READ)
    | _grant(IMPERSONATION, LAUNCH)
    # Day-to-day help for a customer (inside a Launch (CP3) visit): who holds which licence, its Microsoft 365
    # users. What costs money — orders, quantities, auto-renew — and prices stay with the CSP Admin (issue 5).
    | _grant(LICENCES, WRITE)
    | _grant(M365_ADMIN, WRITE)
    | _grant(INVOICES, READ)  # its invoices to customers (what customers pay); received ones need COSTS too
)
_PARTNER_CSP_ADMIN = (
    _PARTNER_USER
    | _grant(PARTNER_USERS, READ, WRITE)
    | _grant(TENANT_SETUP, WRITE)
    | _grant(ORDERS, WRITE)
    | _grant(COSTS, READ)
    | _grant(CUSTOMER_PRICES, READ, WRITE)
    | _grant(RECONCILIATION, WRITE)  # check one customer against Microsoft now
    | _grant(INVOICES, WRITE)  # issue its invoices to customers, credit notes, its billing settings
)
_CUSTOMER_LOGIN = _grant(ACCOUNT_SWITCHER, READ, WRITE)
_CUSTOMER_USER = (
    _CUSTOMER_LOGIN
    | _grant(HOME, READ)
    | _grant(PROFILE, READ, WRITE)
    | _grant(DASHBOARD, READ, WRITE)
    | _grant(CUSTOMER_SERVICES, READ)
)
_CUSTOMER_ADMIN = (
    _CUSTOMER_USER
    | _grant(CUSTOMER_USERS, READ, WRITE, DELETE)
    | _grant(CUSTOMER_EVENTS, READ, EXPORT)
    | _grant(LICENCES, WRITE)
    | _grant(M365_ADMIN, WRITE)
)
_CUSTOMER_MASTER_ADMIN = (
    _CUSTOMER_ADMIN | _grant(ORDERS, WRITE) | _grant(TENANT_SETUP, WRITE) | _grant(INVOICES, READ)  # its invoices
)

RESOURCE_ACTIONS = {
    HOME: (READ,),
    PROFILE: (READ, WRITE),
    ACCOUNTS: (READ, WRITE, DELETE),
    RESELLERS: (READ, WRITE),
    PORTAL_USERS: (READ, WRITE, DELETE),
    PARTNER_USERS: (READ, WRITE),
    TENANTS: (READ, WRITE),
    SUBSCRIPTIONS: (READ, WRITE),
    M365_USERS: (READ, WRITE),
    PRODUCTS: (READ, WRITE),
    EVENTS: (READ, EXPORT),
    REPORTS: (READ, EXPORT),
    RECONCILIATION: (READ, WRITE),
    RECONCILIATION_REPAIR: (WRITE,),
    IMPERSONATION: (LAUNCH,),
    DASHBOARD: (READ, WRITE),
    CUSTOMER_SERVICES: (READ,),
    CUSTOMER_USERS: (READ, WRITE, DELETE),
    CUSTOMER_EVENTS: (READ, EXPORT),
    ACCOUNT_SWITCHER: (READ, WRITE),
    ORDERS: (WRITE,),
    LICENCES: (WRITE,),
    M365_ADMIN: (WRITE,),
    TENANT_SETUP: (WRITE,),
    COSTS: (READ,),
    MICROSOFT_COSTS: (READ,),
    CUSTOMER_PRICES: (READ, WRITE),
    RESELLER_PRICES: (READ, WRITE),
    PRICE_SHEET: (READ, WRITE),
    INVOICES: (READ, WRITE),
    BILLING: (READ,),
    BILLING_RECONCILIATION: (READ, WRITE, EXPORT),
}
# Operator staff: everything on every account.
_OPERATOR_ADMIN = {(action, resource) for resource, actions in RESOURCE_ACTIONS.items() for action in actions}

ROLES: dict[str, set[tuple[str, str]]] = {
    OPERATOR_ADMIN: _OPERATOR_ADMIN,
    PARTNER_CSP_ADMIN: _PARTNER_CSP_ADMIN,
    PARTNER_USER: _PARTNER_USER,
    CUSTOMER_MASTER_ADMIN: _CUSTOMER_MASTER_ADMIN,
    CUSTOMER_ADMIN: _CUSTOMER_ADMIN,
    CUSTOMER_USER: _CUSTOMER_USER,
    CUSTOMER_LOGIN: _CUSTOMER_LOGIN,
    PUBLIC: set(),
}

# Pages of the partner portal: no customer role may hold any of them.
PARTNER_PORTAL_RESOURCES = frozenset(
    {ACCOUNTS, RESELLERS, PORTAL_USERS, PARTNER_USERS, TENANTS, SUBSCRIPTIONS, M365_USERS, PRODUCTS, EVENTS, REPORTS}
    | {IMPERSONATION, RECONCILIATION, RECONCILIATION_REPAIR}
    | {MICROSOFT_COSTS, CUSTOMER_PRICES, RESELLER_PRICES, PRICE_SHEET}
    | {BILLING, BILLING_RECONCILIATION}
)

# CRUD views collapse FAB's methods onto these actions.
MODEL_VIEW_METHODS = {
    "list": READ,
    "show": READ,
    "add": WRITE,
    "edit": WRITE,
    "action": WRITE,
    "action_post": WRITE,
    "delete": DELETE,
}


def role_for(portal: str, *, csp_admin: bool = False, admin: bool = False, master_admin: bool = False) -> str:
    """The one role a portal user's flags give (the flags of the guide's tables are the truth)."""
    if portal == "operator":
        return OPERATOR_ADMIN
    if portal == "partner":
        return PARTNER_CSP_ADMIN if csp_admin else PARTNER_USER
    if master_admin:
        return CUSTOMER_MASTER_ADMIN
    return CUSTOMER_ADMIN if admin else CUSTOMER_USER


def permission_pairs(role: str) -> set[tuple[str, str]]:
    """(FAB permission name, view/menu name) pairs a role holds: actions prefixed, menu items derived."""
    grants = ROLES[role]
    pairs = {(f"can_{action}", resource) for action, resource in grants}
    readable = {resource for action, resource in grants if action == READ}
    pairs |= {(MENU_ACCESS, item) for item, resource in MENU.items() if resource in readable}
    return pairs

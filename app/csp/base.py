"""The Microsoft CSP provider interface: what the portal asks of Partner Center, whoever answers.

Two implementations: ``sandbox`` (the embedded default, state in our database) and ``partner_center`` (the REST
API). Every call carries a correlation id: one per user operation, so Partner Center's logs and ours line up.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any


def new_correlation_id() -> str:
    """One per user operation (a form submitted, a check typed): sent as MS-CorrelationId."""
    return str(uuid.uuid4())


class ProviderError(Exception):
    """The provider did not answer the question (refused, failed, too slow). Never means "no" or "available"."""

    def __init__(self, message: str, *, correlation_id: str | None = None, status: int | None = None):
        super().__init__(message)
        self.correlation_id = correlation_id
        self.status = status


class DomainTaken(ProviderError):
    """Creating a tenant failed because its onmicrosoft domain already exists."""


@dataclasses.dataclass(frozen=True)
class CompanyProfile:
    """The customer as Microsoft records it (the contact is the customer's person, not the portal's admin)."""

    domain_prefix: str
    company_name: str
    contact_first_name: str
    contact_last_name: str
    contact_email: str
    phone: str
    address_line1: str
    address_line2: str
    city: str
    region: str
    postcode: str
    country: str
    culture: str = "en-NZ"
    language: str = "en"

    @property
    def domain(self) -> str:
        return f"{self.domain_prefix}.onmicrosoft.com"


@dataclasses.dataclass(frozen=True)
class AgreementAcceptance:
    """The Microsoft Customer Agreement, accepted by the customer's signatory."""

    signer_first_name: str
    signer_last_name: str
    signer_email: str
    accepted_on: dt.date
    signer_phone: str = ""


@dataclasses.dataclass(frozen=True)
class ProvisionedTenant:
    """A new customer: its tenant, and the first global admin Microsoft made with it — the user name and temporary
    password Partner Center returns once, in the create-customer answer (``userCredentials``,
    https://learn.microsoft.com/partner-center/developer/create-a-customer). The password is never logged or stored in
    clear (``repr=False`` keeps it out of tracebacks and log lines that print the object)."""

    tenant_id: str
    domain: str
    admin_user_name: str | None = None
    admin_password: str | None = dataclasses.field(default=None, repr=False)
    admin_user_id: str | None = None  # the admin's user id, when the answer names it (the sandbox's does)


@dataclasses.dataclass(frozen=True)
class SkuUsage:
    sku_id: str
    sku_part_number: str
    consumed: int
    total: int


@dataclasses.dataclass(frozen=True)
class RefundableQuantity:
    """Seats Microsoft still lets the partner give back, and until when (UTC, naive): its
    ``RefundableQuantityDetail`` (``quantity``, ``allowedUntilDateTime``) — one per purchase, increase or renewal
    still inside its 168-hour window."""

    quantity: int
    allowed_until: dt.datetime


@dataclasses.dataclass(frozen=True)
class NextTermInstructions:
    """What is scheduled for the next term (Microsoft's ``scheduledNextTermInstructions``,
    https://learn.microsoft.com/partner-center/developer/create-scheduled-changes): the SKU (``offer_id``,
    ProductId:SkuId), ``term`` (termDuration), ``billing_cycle`` and ``quantity``."""

    offer_id: str
    term: str
    billing_cycle: str
    quantity: int
    availability_id: str | None = None  # Microsoft's availabilityId, when the catalogue knows it


@dataclasses.dataclass(frozen=True)
class ProviderSubscription:
    subscription_id: str
    offer_id: str
    quantity: int
    auto_renew: bool
    status: str
    billing_cycle: str
    renew_on: dt.date | None = None
    commitment_end: dt.date | None = None
    cancellation_allowed_until: dt.datetime | None = None
    term: str = "P1Y"  # termDuration
    term_started_on: dt.date | None = None
    refundable: tuple[RefundableQuantity, ...] = ()
    scheduled: NextTermInstructions | None = None


@dataclasses.dataclass(frozen=True)
class CartLineItem:
    """One line of a cart (https://learn.microsoft.com/partner-center/developer/cart-resources): the SKU
    (``offer_id``, ProductId:SkuId; with ``availability_id`` it is Microsoft's catalogItemId), ``quantity``,
    ``term`` (termDuration), ``billing_cycle``, and for co-terming ``custom_term_end`` (customTermEndDate)."""

    offer_id: str
    quantity: int
    term: str
    billing_cycle: str
    custom_term_end: dt.date | None = None
    availability_id: str | None = None


@dataclasses.dataclass(frozen=True)
class Cart:
    cart_id: str
    expires_at: dt.datetime
    line_items: tuple[CartLineItem, ...]


@dataclasses.dataclass(frozen=True)
class TransitionEligibility:
    """A SKU a subscription may move to (``eligibilityType`` immediate: an upgrade now; scheduled: at renewal)."""

    offer_id: str
    title: str
    term: str
    billing_cycle: str
    availability_id: str | None = None  # the third part of Microsoft's catalogItemId, when it names one


@dataclasses.dataclass(frozen=True)
class ProviderUser:
    """A Microsoft 365 user of a customer's tenant as Microsoft has it, with the SKU ids of the licences it holds."""

    user_id: str
    user_principal_name: str
    display_name: str
    enabled: bool
    sku_ids: frozenset[str]
    # As Microsoft's admin centre shows them (issue 15); None when the answer does not say.
    first_name: str | None = None
    last_name: str | None = None
    usage_location: str | None = None  # two letters (ISO 3166): required before a licence can be assigned


class CspProvider(abc.ABC):
    """What the portal needs of Microsoft Partner Center. Each method raises ProviderError when it gets no answer."""

    name: str = ""

    @abc.abstractmethod
    def check_domain(self, prefix: str, *, correlation_id: str) -> bool:
        """True when ``<prefix>.onmicrosoft.com`` is available (does not exist yet)."""

    @abc.abstractmethod
    def create_customer(self, profile: CompanyProfile, *, correlation_id: str) -> ProvisionedTenant:
        """Create the customer and its Microsoft tenant; DomainTaken when the domain exists."""

    @abc.abstractmethod
    def find_customer(self, domain_prefix: str, *, correlation_id: str) -> str | None:
        """The tenant id of this partner's customer whose default domain is ``<domain_prefix>.onmicrosoft.com``, or
        None: what an interrupted create may have made (Partner Center: GET /v1/customers filtered by Domain,
        https://learn.microsoft.com/partner-center/developer/get-a-customer-by-name)."""

    @abc.abstractmethod
    def accept_agreement(self, tenant_id: str, acceptance: AgreementAcceptance, *, correlation_id: str) -> None:
        """Record the customer's acceptance of the Microsoft Customer Agreement."""

    @abc.abstractmethod
    def list_subscribed_skus(self, tenant_id: str, *, correlation_id: str) -> list[SkuUsage]:
        """Licences the tenant has (consumed and total units per SKU)."""

    @abc.abstractmethod
    def create_order(
        self,
        tenant_id: str,
        offer_id: str,
        quantity: int,
        billing_cycle: str,
        *,
        correlation_id: str,
        request_id: str | None = None,
    ) -> ProviderSubscription:
        """Buy ``quantity`` licences of an offer; the new subscription. ``request_id`` is sent as MS-RequestId, the
        same on every try: Microsoft's idempotency key — the same request sent again (after a timeout, a crash)
        answers with what the first one made instead of buying twice
        (https://learn.microsoft.com/partner-center/developer/headers)."""

    @abc.abstractmethod
    def change_quantity(
        self, tenant_id: str, subscription_id: str, quantity: int, *, correlation_id: str, request_id: str | None = None
    ) -> ProviderSubscription:
        """Set a subscription's licence count. ``request_id``: sent as MS-RequestId (the operation's, on every try)."""

    @abc.abstractmethod
    def set_auto_renew(
        self, tenant_id: str, subscription_id: str, enabled: bool, *, correlation_id: str, request_id: str | None = None
    ) -> ProviderSubscription:
        """Turn a subscription's auto-renew on or off."""

    @abc.abstractmethod
    def get_subscription(self, tenant_id: str, subscription_id: str, *, correlation_id: str) -> ProviderSubscription:
        """A subscription with its renew date, commitment end and cancellation window."""

    @abc.abstractmethod
    def list_subscriptions(self, tenant_id: str, *, correlation_id: str) -> list[ProviderSubscription]:
        """Every subscription of the customer (Partner Center: GET /v1/customers/{id}/subscriptions,
        https://learn.microsoft.com/partner-center/developer/get-all-of-a-customer-s-subscriptions); a
        ProviderError with status 404 when Microsoft has no such customer."""

    @abc.abstractmethod
    def list_users(self, tenant_id: str, *, correlation_id: str) -> list[ProviderUser]:
        """Every Microsoft 365 user of the tenant with the licences each holds (Partner Center: GET
        /v1/customers/{id}/users, https://learn.microsoft.com/partner-center/developer/get-a-list-of-all-user-accounts-for-a-customer,
        then each user's licences)."""

    @abc.abstractmethod
    def create_user(
        self,
        tenant_id: str,
        *,
        first_name: str,
        last_name: str,
        user_principal_name: str,
        password: str,
        usage_location: str,
        correlation_id: str,
        request_id: str | None = None,
        display_name: str | None = None,
    ) -> str:
        """Add a Microsoft 365 user to the tenant; the user's id. The password goes to Microsoft only: never logged.
        ``usage_location`` (two letters) is required by Microsoft before licences can be assigned to the user
        (https://learn.microsoft.com/partner-center/developer/create-user-accounts-for-a-customer); ``display_name``
        defaults to "First Last"."""

    @abc.abstractmethod
    def get_user_licences(self, tenant_id: str, user_id: str, *, correlation_id: str) -> list[str]:
        """The SKU ids of the licences one user holds (Partner Center: GET .../users/{user-id}/licenses,
        https://learn.microsoft.com/partner-center/developer/check-which-licenses-are-assigned-to-a-user)."""

    @abc.abstractmethod
    def assign_licences(
        self,
        tenant_id: str,
        user_id: str,
        *,
        add_sku_ids: list[str],
        remove_sku_ids: list[str],
        correlation_id: str,
        request_id: str | None = None,
    ) -> None:
        """Assign and unassign licences of one user."""

    # -- one Microsoft 365 user: what an interrupted change may have done, and the changes (issue 12) --------------
    @abc.abstractmethod
    def find_user(self, tenant_id: str, user_principal_name: str, *, correlation_id: str) -> ProviderUser | None:
        """The tenant's user of this user name, or None: what an interrupted create may have made."""

    @abc.abstractmethod
    def get_user(self, tenant_id: str, user_id: str, *, correlation_id: str) -> ProviderUser | None:
        """One user, or None when Microsoft has no such user (deleted) (Partner Center: GET .../users/{user-id},
        https://learn.microsoft.com/partner-center/developer/get-a-user-account-by-id)."""

    @abc.abstractmethod
    def set_user_enabled(
        self, tenant_id: str, user_id: str, enabled: bool, *, correlation_id: str, request_id: str | None = None
    ) -> None:
        """Let the user sign in (``enabled``) or stop them."""

    @abc.abstractmethod
    def update_user(
        self,
        tenant_id: str,
        user_id: str,
        *,
        first_name: str,
        last_name: str,
        display_name: str,
        usage_location: str,
        correlation_id: str,
        request_id: str | None = None,
    ) -> None:
        """Change the user's names and usage location (Partner Center: PATCH .../users/{user-id},
        https://learn.microsoft.com/partner-center/developer/update-user-accounts-for-a-customer). Setting the same
        values again changes nothing: a retry is safe."""

    @abc.abstractmethod
    def delete_user(self, tenant_id: str, user_id: str, *, correlation_id: str, request_id: str | None = None) -> None:
        """Delete the user (Microsoft frees its licences; Partner Center keeps it restorable for 30 days,
        https://learn.microsoft.com/partner-center/developer/delete-user-accounts-for-a-customer)."""

    @abc.abstractmethod
    def reset_user_password(
        self, tenant_id: str, user_id: str, *, password: str, correlation_id: str, request_id: str | None = None
    ) -> None:
        """Give the user the temporary ``password``, to be changed at their next sign-in. Never logged."""

    # -- new commerce (issue 13): price sheet, carts, cancellation, scheduled changes, upgrades ----------------------
    # Not abstract yet: each provider implements them as the issue lands (a missing one answers 501).
    def _not_yet(self, what: str, correlation_id: str):
        return ProviderError(f"{self.name} cannot {what} yet", correlation_id=correlation_id, status=501)

    def get_price_sheet(self, market: str, *, month: str | None = None, correlation_id: str) -> bytes:
        """Microsoft's licence-based price sheet for ``market`` (two letters) as CSV bytes; ``month`` (YYYYMM) for
        another month than the current (Partner Center: GET https://api.partner.microsoft.com/v1.0/sales/
        pricesheets(Market='{market}',PricesheetView='updatedlicensebased')/$value,
        https://learn.microsoft.com/partner-center/developer/get-a-price-sheet)."""
        raise self._not_yet("download the price sheet", correlation_id)

    def create_cart(
        self, tenant_id: str, line_items: list[CartLineItem], *, correlation_id: str, request_id: str | None = None
    ) -> Cart:
        """POST /v1/customers/{id}/carts (https://learn.microsoft.com/partner-center/developer/create-a-cart)."""
        raise self._not_yet("create a cart", correlation_id)

    def checkout_cart(
        self, tenant_id: str, cart_id: str, *, correlation_id: str, request_id: str | None = None
    ) -> list[ProviderSubscription]:
        """POST /v1/customers/{id}/carts/{cart}/checkout: the subscriptions the order made, in line order
        (https://learn.microsoft.com/partner-center/developer/checkout-a-cart)."""
        raise self._not_yet("check out a cart", correlation_id)

    def custom_term_end_dates(
        self, tenant_id: str, term: str, billing_cycle: str, *, correlation_id: str
    ) -> list[dt.date]:
        """GET /v1/customers/{id}/subscriptions/customTermEndDates: the dates a new purchase of ``term`` may end on
        (co-terming; https://learn.microsoft.com/partner-center/developer/custom-term-end-dates)."""
        raise self._not_yet("list custom term end dates", correlation_id)

    def cancel_subscription(
        self, tenant_id: str, subscription_id: str, *, correlation_id: str, request_id: str | None = None
    ) -> ProviderSubscription:
        """PATCH the subscription with status ``deleted``: only within 168 hours of its purchase or renewal."""
        raise self._not_yet("cancel a subscription", correlation_id)

    def schedule_next_term(
        self,
        tenant_id: str,
        subscription_id: str,
        instructions: NextTermInstructions | None,
        *,
        correlation_id: str,
        request_id: str | None = None,
    ) -> ProviderSubscription:
        """PATCH the subscription's ``scheduledNextTermInstructions`` (None: clears them); auto-renew must be on."""
        raise self._not_yet("schedule a change at renewal", correlation_id)

    def get_transition_eligibilities(
        self, tenant_id: str, subscription_id: str, eligibility_type: str, *, correlation_id: str
    ) -> list[TransitionEligibility]:
        """GET …/subscriptions/{id}/transitionEligibilities?eligibilityType=immediate|scheduled."""
        raise self._not_yet("list upgrades", correlation_id)

    def transition(
        self,
        tenant_id: str,
        subscription_id: str,
        to_offer_id: str,
        quantity: int,
        *,
        term: str,
        billing_cycle: str,
        correlation_id: str,
        request_id: str | None = None,
        availability_id: str | None = None,
    ) -> ProviderSubscription:
        """POST …/subscriptions/{id}/transitions: move ``quantity`` seats to ``to_offer_id`` (all of them, or some:
        the rest stay); the subscription that holds the moved seats."""
        raise self._not_yet("upgrade a subscription", correlation_id)

    # -- billing (issue 14): Microsoft's billed reconciliation data (app/csp/sandbox_billing.py,
    # app/csp/partner_center_billing.py) ---------------------------------------------------------------------------
    def billed_invoices(self, month: dt.date, *, correlation_id: str | None = None) -> list[str]:
        """The ids of Microsoft's invoices for the billing period of ``month`` (Partner Center: GET /v1/invoices)."""
        raise self._not_yet("list invoices", correlation_id or new_correlation_id())

    def billed_reconciliation_lines(
        self, invoice_id: str, *, correlation_id: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """The invoice's billed reconciliation lines, one dict a line with Microsoft's field names and values as its
        JSON lines hold them (Graph's billed reconciliation export,
        https://learn.microsoft.com/partner-center/developer/billed-invoice-reconciliation), streamed."""
        raise self._not_yet("export billed reconciliation data", correlation_id or new_correlation_id())

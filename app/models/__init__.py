"""Every model, imported so that ``flask_appbuilder.Model.metadata`` is complete for Alembic and scoping."""

from app.models.accounts import Account, CredentialHandover, MicrosoftTenant, PlaceholderUser
from app.models.billing import BillingProfile, ChargeEvent, Invoice, InvoiceLine, MicrosoftBilledLine
from app.models.catalog import Availability, CataloguePrice, PriceRule, Product
from app.models.csp import (
    SandboxCart,
    SandboxChargeEvent,
    SandboxCustomer,
    SandboxDomain,
    SandboxSeatBatch,
    SandboxSubscription,
    SandboxUser,
)
from app.models.dashboards import DashboardWidget
from app.models.events import Event
from app.models.jobs import BackgroundJob, FormSubmission
from app.models.mfa import MfaCredential, MfaRecoveryCode
from app.models.operations import ProviderOperation
from app.models.outbox import OutboxMail
from app.models.reconciliation import Drift, ReconciliationRun, ReconciliationStatus
from app.models.sessions import ServerSession
from app.models.subscriptions import LicenceAssignment, M365User, SeatBatch, Subscription, UsagePoint
from security.models import Membership, PortalUser

__all__ = [
    "Account",
    "CredentialHandover",
    "BillingProfile",
    "ChargeEvent",
    "Invoice",
    "InvoiceLine",
    "MicrosoftBilledLine",
    "SandboxChargeEvent",
    "Availability",
    "CataloguePrice",
    "PriceRule",
    "SandboxCart",
    "SandboxSeatBatch",
    "SeatBatch",
    "Drift",
    "BackgroundJob",
    "DashboardWidget",
    "Event",
    "FormSubmission",
    "LicenceAssignment",
    "M365User",
    "Membership",
    "MfaCredential",
    "MfaRecoveryCode",
    "MicrosoftTenant",
    "OutboxMail",
    "PlaceholderUser",
    "PortalUser",
    "Product",
    "ProviderOperation",
    "ReconciliationRun",
    "ReconciliationStatus",
    "SandboxCustomer",
    "SandboxDomain",
    "SandboxSubscription",
    "SandboxUser",
    "ServerSession",
    "Subscription",
    "UsagePoint",
]

"""New and linked Microsoft tenants: the live domain check, creating a tenant idempotently, Retry, linking.

One service for every form that reaches it (a customer's screen, Add Sub Account, later the customer portal).
Creating a tenant first reserves its domain in our database (unique prefix, one tenant per customer, an
idempotency key per form), then asks the provider; if the provider fails midway the tenant stays *failed* with
what the user typed, and Retry carries on from where it stopped.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging

from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from app import faults
from app.csp import get_provider
from app.csp.base import AgreementAcceptance, CompanyProfile, DomainTaken, ProviderError, new_correlation_id
from app.csp.rules import DOMAIN_SUFFIX, normalise_prefix, prefix_problem
from app.extensions import db
from app.models.accounts import Account, MicrosoftTenant
from app.models.base import utcnow
from app.models.subscriptions import M365User
from app.services import handover, operations
from app.services.events import record_event
from security import scoping

log = logging.getLogger(__name__)

AVAILABLE, TAKEN, INVALID, ERROR = "available", "taken", "invalid", "error"
CHECK_FAILED = "Couldn't check availability — try again"
INVITATION_URL = (
    "https://admin.microsoft.com/Adminportal/Home?invType=ResellerRelationship&partnerId={partner_id}"
    "&msppId=0&DAP=true#/BillingAccounts/partner-invitation"
)


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The answer to "is this onmicrosoft domain free?"."""

    prefix: str
    state: str
    message: str

    @property
    def domain(self) -> str:
        return f"{self.prefix}{DOMAIN_SUFFIX}"

    def as_json(self) -> dict:
        return {"prefix": self.prefix, "domain": self.domain, "state": self.state, "message": self.message}


def _reserved_here(prefix: str) -> bool:
    """Whether any customer (of any reseller) already has this prefix in the portal. Only a yes/no leaves here."""
    with scoping.bypass("onmicrosoft domain uniqueness"):
        return db.session.scalar(select(MicrosoftTenant.id).where(MicrosoftTenant.domain_prefix == prefix)) is not None


def check_domain(text: str, correlation_id: str | None = None) -> Verdict:
    """The format rules first, then our own tenants, then the provider. A provider failure is never "available"."""
    prefix = normalise_prefix(text)
    problem = prefix_problem(prefix)
    if problem:
        return Verdict(prefix, INVALID, problem)
    if _reserved_here(prefix):
        return Verdict(prefix, TAKEN, f"{prefix}{DOMAIN_SUFFIX} is not available")
    try:
        available = get_provider().check_domain(prefix, correlation_id=correlation_id or new_correlation_id())
    except ProviderError as exc:
        log.warning("Domain check for %s failed (correlation id %s): %s", prefix, exc.correlation_id, exc)
        return Verdict(prefix, ERROR, CHECK_FAILED)
    if available:
        return Verdict(prefix, AVAILABLE, f"{prefix}{DOMAIN_SUFFIX} is available")
    return Verdict(prefix, TAKEN, f"{prefix}{DOMAIN_SUFFIX} is not available")


class TenantError(ValueError):
    """A new tenant refused before anything was created; ``field`` says which form field it belongs beside."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


@dataclasses.dataclass(frozen=True)
class TenantRequest:
    """Everything the new-tenant form collects: the company for Microsoft and the agreement's acceptance."""

    profile: CompanyProfile
    acceptance: AgreementAcceptance

    def to_json(self) -> str:
        acceptance = dataclasses.asdict(self.acceptance)
        acceptance["accepted_on"] = self.acceptance.accepted_on.isoformat()
        return json.dumps({"profile": dataclasses.asdict(self.profile), "acceptance": acceptance})

    @classmethod
    def from_json(cls, text: str) -> TenantRequest:
        data = json.loads(text)
        acceptance = dict(data["acceptance"], accepted_on=dt.date.fromisoformat(data["acceptance"]["accepted_on"]))
        return cls(CompanyProfile(**data["profile"]), AgreementAcceptance(**acceptance))


def create_tenant(customer: Account, request: TenantRequest, idempotency_key: str) -> MicrosoftTenant:
    """Reserve the domain, then provision. A repeated submission (same key) returns the first one's tenant; a
    domain someone else just reserved is refused; a provider failure leaves the tenant *failed* (see Retry)."""
    existing = db.session.scalars(select(MicrosoftTenant).where(MicrosoftTenant.idempotency_key == idempotency_key))
    if (tenant := existing.first()) is not None:
        if tenant.account_id != customer.id:
            raise TenantError("This form was opened for another customer: open the new tenant form again.")
        return tenant
    if customer.tenant is not None:
        raise TenantError(f"{customer.name} already has the Microsoft tenant {customer.tenant.primary_domain}.")
    verdict = check_domain(request.profile.domain_prefix)
    if verdict.state != AVAILABLE:
        raise TenantError(verdict.message, "domain_prefix")
    tenant = MicrosoftTenant(
        account_id=customer.id,
        domain_prefix=verdict.prefix,
        status="provisioning",
        provisioning_since=utcnow(),
        link_type="created",
        idempotency_key=idempotency_key,
        provisioning_request=request.to_json(),
        agreement_signer_name=f"{request.acceptance.signer_first_name} {request.acceptance.signer_last_name}",
        agreement_signer_email=request.acceptance.signer_email,
        agreement_date=request.acceptance.accepted_on,
    )
    db.session.add(tenant)
    record_event(
        "tenant.requested",
        account_id=customer.id,
        target=tenant,
        summary=f"New Microsoft tenant {verdict.domain} requested",
    )
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        again = db.session.scalars(select(MicrosoftTenant).where(MicrosoftTenant.idempotency_key == idempotency_key))
        if (tenant := again.first()) is not None:
            return tenant  # the same form, submitted twice at once: the first submission is doing the work
        if db.session.scalar(select(MicrosoftTenant.id).where(MicrosoftTenant.account_id == customer.id)):
            raise TenantError(f"{customer.name} already has a Microsoft tenant.") from None
        raise TenantError(
            f"{verdict.domain} was just taken by another request: choose another name.", "domain_prefix"
        ) from None
    return provision(tenant)


def provision(tenant: MicrosoftTenant) -> MicrosoftTenant:
    """Ask the provider to create the tenant and record the agreement, each step once; commit after each."""
    request = TenantRequest.from_json(tenant.provisioning_request)
    provider = get_provider()
    correlation_id = new_correlation_id()
    tenant.status = "provisioning"
    tenant.provisioning_since = utcnow()
    db.session.commit()
    operation = None  # each call is also a provider operation (app/services/operations.py), settled by recovery
    try:
        if not tenant.tenant_guid:
            faults.point(faults.BEFORE_CREATE_CUSTOMER)
            profile = dict(dataclasses.asdict(request.profile), tenant=tenant.id)
            operation = _operation(tenant, TENANT_CREATE, profile, correlation_id)
            created = provider.create_customer(request.profile, correlation_id=correlation_id)
            faults.point(faults.AFTER_CREATE_CUSTOMER)
            tenant.tenant_guid = created.tenant_id
            operations.succeeded(operation, {"tenant_id": created.tenant_id}, correlation_id)
            if created.admin_user_name and created.admin_password:  # shown once; to the master admin by a one-time link
                admin_id = _admin_id(provider, created, correlation_id)
                tenant.fresh_credentials = handover.hand_over(
                    tenant, created.admin_user_name, created.admin_password, admin_id
                )
            else:
                record_event(
                    "tenant.credentials_missing",
                    account_id=tenant.account_id,
                    target=tenant,
                    summary=f"Microsoft's answer for {tenant.primary_domain} named no first admin password: reset the "
                    "admin's password under Microsoft 365 users",
                )
            db.session.commit()  # the customer exists at Microsoft now: never create it twice
        acceptance = dict(dataclasses.asdict(request.acceptance), tenant=tenant.id)
        acceptance["accepted_on"] = request.acceptance.accepted_on.isoformat()
        operation = _operation(tenant, AGREEMENT_ACCEPT, acceptance, correlation_id)
        provider.accept_agreement(tenant.tenant_guid, request.acceptance, correlation_id=correlation_id)
    except DomainTaken as exc:
        _operation_ended(operation, exc, correlation_id)
        return _failed(
            tenant,
            f"{tenant.primary_domain} already exists at Microsoft. If it is this customer's, "
            "link it as an existing tenant; otherwise change the name.",
            correlation_id,
        )
    except ProviderError as exc:
        _operation_ended(operation, exc, correlation_id)
        return _failed(tenant, f"Microsoft did not complete the request: {exc}", exc.correlation_id or correlation_id)
    operations.succeeded(operation, {"accepted": True}, correlation_id)
    if tenant.fresh_credentials is None:
        _record_adopted_users(tenant, provider, correlation_id)
    tenant.status = "active"
    tenant.provisioned_on = utcnow()
    tenant.last_error = None
    record_event(
        "tenant.created",
        account_id=tenant.account_id,
        target=tenant,
        summary=f"Microsoft tenant {tenant.primary_domain} created (tenant id {tenant.tenant_guid}); "
        f"Microsoft Customer Agreement accepted by {tenant.agreement_signer_name}",
    )
    db.session.commit()
    return tenant


TENANT_CREATE, AGREEMENT_ACCEPT = "tenant_create", "agreement_accept"


def _record_adopted_users(tenant: MicrosoftTenant, provider, correlation_id: str, guid: str | None = None) -> None:
    """A tenant whose creating answer was lost (adopted after a crash) has users at Microsoft the portal never heard
    of — its first admin: list them as Microsoft has them, so the portal's records equal Microsoft's. Best effort:
    what is missed, reconciliation reports."""
    try:
        theirs = provider.list_users(guid or tenant.tenant_guid, correlation_id=correlation_id)
    except ProviderError as exc:
        log.warning("Users of the adopted tenant %s not listed yet (%s)", tenant.primary_domain, exc)
        return
    ours = select(M365User.user_principal_name).where(M365User.account_id == tenant.account_id)
    known = set(db.session.scalars(ours))
    for user in theirs:
        if user.user_principal_name.lower() not in known:
            db.session.add(
                M365User(
                    account_id=tenant.account_id,
                    display_name=user.display_name or user.user_principal_name,
                    user_principal_name=user.user_principal_name.lower(),
                    provider_user_id=user.user_id,
                    status="active" if user.enabled else "disabled",
                )
            )
            record_event(
                "m365_user.repaired",
                account_id=tenant.account_id,
                target=tenant,
                summary=f"{user.user_principal_name} exists at Microsoft in the adopted tenant "
                f"{tenant.primary_domain}: the portal now lists it (reset its password to sign in)",
            )


def _admin_id(provider, created, correlation_id: str) -> str | None:
    """The first admin's user id: in the answer (the sandbox's), else asked by its user name (Partner Center's answer
    names only the user name). Best effort: without it the admin is still listed, and matched by user name."""
    if created.admin_user_id:
        return created.admin_user_id
    try:
        found = provider.find_user(created.tenant_id, created.admin_user_name, correlation_id=correlation_id)
    except ProviderError as exc:
        log.warning("The first admin of %s was not found yet (%s)", created.domain, exc)
        return None
    return found.user_id if found else None


def _operation(tenant: MicrosoftTenant, kind: str, params: dict, correlation_id: str):
    """The call about to be sent, written and committed as an operation on the tenant (no secret in ``params``)."""
    return operations.begin(
        kind, tenant.account_id, params, None, target=f"tenant:{tenant.id}", correlation_id=correlation_id
    )


def _operation_ended(operation, exc: ProviderError, correlation_id: str) -> None:
    """A refusal ends the operation failed; an unanswered call leaves it pending, for the recoverer to ask Microsoft
    (committed with the tenant's failure)."""
    if operation is None:
        return
    correlation = exc.correlation_id or correlation_id
    if isinstance(exc, DomainTaken) or (exc.status is not None and 400 <= exc.status < 500 and exc.status != 429):
        operations.refused(operation, f"{exc} (correlation id {correlation})", correlation)
    else:
        operations.unconfirmed(operation, f"{exc} (correlation id {correlation})", correlation)


def _failed(tenant: MicrosoftTenant, message: str, correlation_id: str) -> MicrosoftTenant:
    log.warning("Provisioning %s failed (correlation id %s): %s", tenant.primary_domain, correlation_id, message)
    tenant.status = "failed"
    tenant.last_error = f"{message} (correlation id {correlation_id})"[:500]
    record_event("tenant.failed", account_id=tenant.account_id, target=tenant, summary=tenant.last_error)
    db.session.commit()
    return tenant


def retry(tenant: MicrosoftTenant) -> MicrosoftTenant:
    """Provision a failed tenant again — once, however many Retry clicks arrive together: the first request turns
    *failed* into *provisioning* in one conditional UPDATE; the others find it no longer failed."""
    if tenant.status != "failed":
        raise TenantError(f"{tenant.primary_domain} is {tenant.status}, not failed.")
    claimed = db.session.execute(
        update(MicrosoftTenant)
        .where(MicrosoftTenant.id == tenant.id, MicrosoftTenant.status == "failed")
        .values(status="provisioning", provisioning_since=utcnow())
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:
        db.session.rollback()
        raise TenantError(f"{tenant.primary_domain} is already being retried.")
    record_event(
        "tenant.retried", account_id=tenant.account_id, target=tenant, summary=f"Retry {tenant.primary_domain}"
    )
    db.session.commit()
    db.session.refresh(tenant)
    return provision(tenant)


INTERRUPTED = "The request to Microsoft was interrupted (a restart or a crash)"


def is_stuck(tenant: MicrosoftTenant) -> bool:
    """Provisioning for longer than TENANT_PROVISIONING_TIMEOUT_SECONDS: whoever was doing it is gone."""
    limit = dt.timedelta(seconds=current_app.config["TENANT_PROVISIONING_TIMEOUT_SECONDS"])
    since = tenant.provisioning_since or tenant.created_on
    return tenant.status == "provisioning" and since is not None and utcnow() - since > limit


def recover(tenant: MicrosoftTenant) -> MicrosoftTenant:
    """Settle a stuck tenant by asking Microsoft, never by guessing: a customer with its domain that this partner has
    is the one the interrupted request made (adopted: never created twice), and the tenant waits for Retry to finish
    the agreement; none, and the tenant failed before Microsoft made anything (Retry or change the name). If Microsoft
    cannot be asked, it stays "provisioning" (still being confirmed). Claimed by one conditional UPDATE, so two
    recoverers settle it once."""
    if not is_stuck(tenant):
        return tenant
    correlation_id = new_correlation_id()
    try:
        found = tenant.tenant_guid or get_provider().find_customer(tenant.domain_prefix, correlation_id=correlation_id)
    except ProviderError as exc:
        log.warning("Tenant %s stuck; Microsoft could not be asked (%s): still being confirmed", tenant.id, exc)
        db.session.rollback()
        return tenant
    if found:
        message = (
            f"{INTERRUPTED} after Microsoft created the customer (tenant id {found}); the Customer Agreement is not "
            "confirmed yet. Retry completes it (the tenant is not created twice)."
        )
        if not tenant.tenant_guid:
            message += (
                " Microsoft sent the first admin's temporary password only in the lost answer: once the tenant is "
                "active, reset the admin's password under Microsoft 365 users."
            )
    else:
        message = f"{INTERRUPTED} before Microsoft created anything. Retry, or change the domain name."
    claimed = db.session.execute(
        update(MicrosoftTenant)
        .where(
            MicrosoftTenant.id == tenant.id,
            MicrosoftTenant.status == "provisioning",
            MicrosoftTenant.provisioning_since == tenant.provisioning_since,
        )
        .values(status="failed", tenant_guid=found or None, last_error=f"{message} (correlation id {correlation_id})")
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:
        db.session.rollback()  # settled (or retried) by someone else meanwhile
    else:
        record_event("tenant.recovered", account_id=tenant.account_id, target=tenant, summary=message)
        if found and not tenant.tenant_guid:  # adopted: its first admin exists at Microsoft, listed here too
            _record_adopted_users(tenant, get_provider(), correlation_id, found)
        db.session.commit()
    db.session.refresh(tenant)
    return tenant


def recover_stuck() -> int:
    """Every stuck tenant (``flask portal recover-tenants``, the worker's start): how many were settled."""
    limit = utcnow() - dt.timedelta(seconds=current_app.config["TENANT_PROVISIONING_TIMEOUT_SECONDS"])
    stuck = db.session.scalars(
        select(MicrosoftTenant).where(
            MicrosoftTenant.status == "provisioning",
            func.coalesce(MicrosoftTenant.provisioning_since, MicrosoftTenant.created_on) < limit,
        )
    ).all()
    return sum(recover(tenant).status != "provisioning" for tenant in stuck)


def discard_failed(tenant: MicrosoftTenant) -> TenantRequest:
    """Give up a failed tenant that Microsoft never created, freeing its name; what was typed comes back."""
    if tenant.status != "failed" or tenant.tenant_guid:
        raise TenantError("Only a failed tenant that Microsoft never created can be given up.")
    request = TenantRequest.from_json(tenant.provisioning_request)
    record_event(
        "tenant.discarded",
        account_id=tenant.account_id,
        target=tenant,
        summary=f"Gave up {tenant.primary_domain} to choose another name",
    )
    db.session.delete(tenant)
    db.session.commit()
    return request


def invitation_url() -> str:
    return INVITATION_URL.format(partner_id=current_app.config.get("PARTNER_CENTER_PARTNER_ID") or "YOUR-PARTNER-ID")


# Says no more than the domain check does: whose customer a domain is stays that reseller's business.
_CANNOT_LINK = (
    "{domain} can't be linked here. Check the domain; if this customer is moving from another reseller, ask the "
    "operator's support team."
)


def link_existing(customer: Account, domain_text: str) -> MicrosoftTenant:
    """A customer who already has Microsoft 365: record its domain; *invited* until the relationship is accepted."""
    prefix = normalise_prefix(domain_text)
    problem = prefix_problem(prefix)
    if problem:
        raise TenantError(problem, "domain_prefix")
    if customer.tenant is not None:
        raise TenantError(f"{customer.name} already has the Microsoft tenant {customer.tenant.primary_domain}.")
    if _reserved_here(prefix):
        raise TenantError(_CANNOT_LINK.format(domain=f"{prefix}{DOMAIN_SUFFIX}"), "domain_prefix")
    tenant = MicrosoftTenant(account_id=customer.id, domain_prefix=prefix, status="invited", link_type="linked")
    db.session.add(tenant)
    record_event(
        "tenant.linked",
        account_id=customer.id,
        target=tenant,
        summary=f"Existing tenant {prefix}{DOMAIN_SUFFIX} linked; reseller relationship invitation sent",
    )
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise TenantError(_CANNOT_LINK.format(domain=f"{prefix}{DOMAIN_SUFFIX}"), "domain_prefix") from None
    return tenant


def mark_accepted(tenant: MicrosoftTenant) -> None:
    if tenant.status != "invited":
        raise TenantError(f"{tenant.primary_domain} is not waiting for an invitation to be accepted.")
    tenant.status = "active"
    tenant.provisioned_on = utcnow()
    record_event(
        "tenant.relationship_accepted",
        account_id=tenant.account_id,
        target=tenant,
        summary=f"Reseller relationship with {tenant.primary_domain} marked as accepted",
    )
    db.session.commit()

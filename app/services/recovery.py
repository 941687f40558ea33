"""Recovery asks Microsoft, never guesses (issue 12, part 2): every provider operation left ``pending`` past
OPERATION_TIMEOUT_SECONDS — its process killed, restarted or deployed away — is settled by reading the provider's state
and recording the truth: the portal made to match (each repair an event), the operation ``succeeded`` or ``failed``.

``recover_all()`` runs from ``flask portal recover-operations``, at the worker's start and periodically
(app/services/maintenance.py). Orders are sent again with their MS-RequestId (Microsoft answers with what the first try
made); tenants stuck "provisioning" are settled as app/services/tenants.py does; every other kind is read back
(``licensing.RECOVERERS`` and the tenant kinds below). One recoverer settles an operation: it is claimed by a
conditional UPDATE first (``operations.claim_retry``); one that Microsoft cannot be asked about stays pending and is
tried again once it is stale again."""

from __future__ import annotations

import logging

from app.csp import get_provider
from app.csp.base import ProviderError, new_correlation_id
from app.extensions import db
from app.models.accounts import MicrosoftTenant
from app.models.operations import ProviderOperation
from app.services import licensing, operations, ordering, renewals, tenants
from app.services.events import record_event
from security import scoping

log = logging.getLogger(__name__)


def _recover_tenant_create(operation: ProviderOperation) -> None:
    """Ask Microsoft for a customer of the domain: found, the interrupted request made it (a tenant that failed
    without its id adopts it, so Retry finishes the agreement and never creates it twice); none, it made nothing."""
    params = operations.params_of(operation)
    domain = f"{params['domain_prefix']}.onmicrosoft.com"
    found = get_provider().find_customer(params["domain_prefix"], correlation_id=new_correlation_id())
    if found is None:
        operations.refused(
            operation, f"Interrupted; Microsoft has no customer {domain}: Retry creates it", operation.correlation_id
        )
        return
    tenant = db.session.get(MicrosoftTenant, params["tenant"])
    if tenant is not None and not tenant.tenant_guid and tenant.status == "failed":
        tenant.tenant_guid = found
        record_event(
            "tenant.recovered",
            account_id=tenant.account_id,
            target=tenant,
            summary=f"Microsoft has the customer {domain} (tenant id {found}) an interrupted request created: "
            "Retry completes the Customer Agreement (the tenant is not created twice)",
        )
    operations.succeeded(operation, {"tenant_id": found, "recovered": True}, operation.correlation_id or "")


def _recover_agreement(operation: ProviderOperation) -> None:
    """The provider has no read of agreements here: an active tenant had it accepted (by a later Retry); otherwise
    the tenant's own recovery left it failed, and its Retry sends the agreement again."""
    tenant = db.session.get(MicrosoftTenant, operations.params_of(operation)["tenant"])
    if tenant is not None and tenant.status == "active":
        operations.succeeded(operation, {"accepted": True, "recovered": True}, operation.correlation_id or "")
    else:
        operations.refused(
            operation, "Interrupted; not confirmed: Retry on the tenant sends it again", operation.correlation_id
        )


RECOVERERS = {
    **licensing.RECOVERERS,
    **renewals.RECOVERERS,  # issue 13: changes scheduled for renewal, upgrades, licences moved by an upgrade
    tenants.TENANT_CREATE: _recover_tenant_create,
    tenants.AGREEMENT_ACCEPT: _recover_agreement,
}


def recover_all() -> int:
    """Settle every stale pending operation of every kind (and every stuck tenant); how many were settled."""
    with scoping.bypass("recovery: interrupted provider operations"):
        settled = tenants.recover_stuck()
        settled += ordering.recover_orders()
        for operation in operations.stale_pending():
            recover = RECOVERERS.get(operation.kind)
            if recover is None or not operations.claim_retry(operation):
                continue  # an order (sent again above), or settled by someone else meanwhile
            try:
                recover(operation)
                db.session.commit()
            except (ProviderError, licensing.LicenceError) as exc:
                db.session.rollback()  # still pending: asked again once it is stale again
                log.warning("Operation %s (%s) not settled yet: %s", operation.id, operation.kind, exc)
                continue
            settled += 1
    return settled

"""The embedded ``sandbox`` provider: behaves like Partner Center, with its state in our database.

It keeps its own tables (sandbox_*) and commits them in its own transactions, as an outside system would: what the
sandbox has done stays done even when the portal's request rolls back. Ids are derived from names (deterministic);
``CSP_SANDBOX_LATENCY_MS`` and ``CSP_SANDBOX_FAIL_RATE`` make it slow or flaky for demos and tests.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import random
import secrets
import threading
import time
import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app import clock
from app.csp.base import (
    AgreementAcceptance,
    CompanyProfile,
    CspProvider,
    DomainTaken,
    ProviderError,
    ProviderSubscription,
    ProviderUser,
    ProvisionedTenant,
    RefundableQuantity,
    SkuUsage,
)
from app.csp.sandbox_billing import SandboxBilling  # issue 14, billed reconciliation data
from app.csp.sandbox_carts import SandboxCarts  # issue 13, ordering
from app.csp.sandbox_renewals import TERM_MONTHS, SandboxRenewals, add_months, scheduled_of  # issue 13, renewals
from app.models.csp import SandboxCustomer, SandboxDomain, SandboxSeatBatch, SandboxSubscription, SandboxUser

_NAMESPACE = uuid.UUID("5b9a1f3e-7c1d-4d6e-9a39-2f0a3b6c8d41")


def _temporary_password() -> str:
    """What Microsoft makes for a new tenant's first admin: 16+ characters, upper and lower case, a digit, a symbol."""
    return secrets.token_urlsafe(12) + secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") + secrets.choice("23456789") + "!k"


def sandbox_id(kind: str, key: str) -> str:
    """The same name always gives the same id (deterministic demos and tests)."""
    return str(uuid.uuid5(_NAMESPACE, f"{kind}:{key}"))


class SandboxProvider(SandboxCarts, SandboxRenewals, SandboxBilling, CspProvider):  # carts: app/csp/sandbox_carts.py
    name = "sandbox"

    def __init__(
        self,
        engine_getter,
        latency_ms: int = 0,
        fail_rate: float = 0.0,
        seed: int = 0,
        fail_operations: frozenset[str] = frozenset(),
        lost_answer_rate: float = 0.0,
    ):
        self._engine = engine_getter
        self.latency_ms = latency_ms
        self.fail_rate = fail_rate
        self.lost_answer_rate = lost_answer_rate
        self.fail_operations = fail_operations  # empty: every operation may fail
        self.seed = seed
        self._pid = os.getpid()
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config, engine_getter) -> SandboxProvider:
        return cls(
            engine_getter,
            config.get("CSP_SANDBOX_LATENCY_MS", 0),
            config.get("CSP_SANDBOX_FAIL_RATE", 0.0),
            config.get("CSP_SANDBOX_SEED", 0),
            frozenset(config.get("CSP_SANDBOX_FAIL_OPERATIONS", ())),
            config.get("CSP_SANDBOX_LOST_ANSWER_RATE", 0.0),
        )

    # -- behaving like a remote service ------------------------------------------------------------------------
    def _call(self, operation: str, correlation_id: str) -> None:
        """Imitate the network: the configured latency, and failures at the configured rate."""
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000)
        if self.fail_operations and operation not in self.fail_operations:
            return
        with self._lock:
            failed = self.fail_rate > 0 and self._draw() < self.fail_rate
        if failed:
            raise ProviderError(
                f"The sandbox failed {operation.replace('_', ' ')} (CSP_SANDBOX_FAIL_RATE)",
                correlation_id=correlation_id,
                status=503,
            )

    def _draw(self) -> float:
        """The next draw of this process (called under the lock). Each worker process draws its own sequence: a
        forked copy would otherwise fail in lock-step with its siblings."""
        if os.getpid() != self._pid:
            self._pid = os.getpid()
            self._random = random.Random(f"{self.seed}:{self._pid}")
        return self._random.random()

    def _answer_lost(self, operation: str, correlation_id: str) -> None:
        """After a change is made: its answer lost at the configured rate (the caller cannot tell it happened)."""
        with self._lock:
            lost = self.lost_answer_rate > 0 and self._draw() < self.lost_answer_rate
        if lost:
            raise ProviderError(
                f"The sandbox did not answer {operation.replace('_', ' ')} in time (CSP_SANDBOX_LOST_ANSWER_RATE)",
                correlation_id=correlation_id,
                status=504,
            )

    def _session(self) -> Session:
        return Session(self._engine(), expire_on_commit=False)

    # -- tenants -----------------------------------------------------------------------------------------------
    def check_domain(self, prefix: str, *, correlation_id: str) -> bool:
        self._call("check_domain", correlation_id)
        with self._session() as session:
            taken = session.scalar(select(SandboxDomain.id).where(SandboxDomain.prefix == prefix))
        return taken is None

    def create_customer(self, profile: CompanyProfile, *, correlation_id: str) -> ProvisionedTenant:
        self._call("create_customer", correlation_id)
        tenant_id = sandbox_id("tenant", profile.domain_prefix)
        admin = f"admin@{profile.domain}"
        admin_id = sandbox_id("user", admin)
        try:
            with self._session() as session, session.begin():
                session.add(SandboxDomain(prefix=profile.domain_prefix))
                session.add(
                    SandboxCustomer(
                        tenant_id=tenant_id, domain_prefix=profile.domain_prefix, company_name=profile.company_name
                    )
                )
                # As Partner Center does: the tenant's first global admin, its temporary password in the answer only.
                session.add(
                    SandboxUser(
                        user_id=admin_id,
                        tenant_id=tenant_id,
                        user_principal_name=admin,
                        display_name="Global administrator",
                        usage_location=profile.country[:2].upper() or None,
                        is_global_admin=True,
                        password_reset_on=clock.utcnow(),
                    )
                )
        except IntegrityError:
            raise DomainTaken(f"{profile.domain} already exists", correlation_id=correlation_id, status=409) from None
        return ProvisionedTenant(
            tenant_id=tenant_id,
            domain=profile.domain,
            admin_user_name=admin,
            admin_password=_temporary_password(),
            admin_user_id=admin_id,
        )

    def find_customer(self, domain_prefix: str, *, correlation_id: str) -> str | None:
        self._call("find_customer", correlation_id)
        with self._session() as session:
            return session.scalar(
                select(SandboxCustomer.tenant_id).where(SandboxCustomer.domain_prefix == domain_prefix.lower())
            )

    def adopt_customer(self, domain_prefix: str, company_name: str) -> str:
        """Sandbox only (demo data): a customer that "already existed" at Microsoft; its tenant id. Idempotent."""
        tenant_id = sandbox_id("tenant", domain_prefix)
        with self._session() as session, session.begin():
            if session.scalar(select(SandboxCustomer.id).where(SandboxCustomer.tenant_id == tenant_id)) is None:
                if session.scalar(select(SandboxDomain.id).where(SandboxDomain.prefix == domain_prefix)) is None:
                    session.add(SandboxDomain(prefix=domain_prefix))
                session.add(
                    SandboxCustomer(
                        tenant_id=tenant_id,
                        domain_prefix=domain_prefix,
                        company_name=company_name,
                        agreement_accepted_on=clock.today(),
                    )
                )
        return tenant_id

    def accept_agreement(self, tenant_id: str, acceptance: AgreementAcceptance, *, correlation_id: str) -> None:
        self._call("accept_agreement", correlation_id)
        with self._session() as session, session.begin():
            customer = self._customer(session, tenant_id, correlation_id)
            customer.agreement_accepted_on = acceptance.accepted_on

    @staticmethod
    def _customer(session: Session, tenant_id: str, correlation_id: str) -> SandboxCustomer:
        customer = session.scalars(select(SandboxCustomer).where(SandboxCustomer.tenant_id == tenant_id)).first()
        if customer is None:
            raise ProviderError(f"No customer {tenant_id} in the sandbox", correlation_id=correlation_id, status=404)
        return customer

    # -- subscriptions -----------------------------------------------------------------------------------------
    @staticmethod
    def _as_provider(sub: SandboxSubscription) -> ProviderSubscription:
        # The term's end (the day it renews) once known; before issue 13 a one-year term from the purchase.
        end = sub.term_end or sub.purchased_on + dt.timedelta(days=365)
        return ProviderSubscription(
            subscription_id=sub.subscription_id,
            offer_id=sub.offer_id,
            quantity=sub.quantity,
            auto_renew=sub.auto_renew,
            status=sub.status,
            billing_cycle=sub.billing_cycle,
            renew_on=end,
            commitment_end=end,
            # The purchase's window (168 hours from the day it was bought; the seat batches state each window).
            cancellation_allowed_until=clock.start_of_day_utc(sub.term_started_on or sub.purchased_on)
            + dt.timedelta(hours=168),
            term=sub.term or "P1Y",
            term_started_on=sub.term_started_on or sub.purchased_on,
            scheduled=scheduled_of(sub),  # issue 13, renewals: app/csp/sandbox_renewals.py
        )

    def _subscription(self, session: Session, tenant_id: str, subscription_id: str, correlation_id: str):
        sub = session.scalars(
            select(SandboxSubscription).where(
                SandboxSubscription.subscription_id == subscription_id, SandboxSubscription.tenant_id == tenant_id
            )
        ).first()
        if sub is None:
            raise ProviderError(f"No subscription {subscription_id}", correlation_id=correlation_id, status=404)
        return sub

    def list_subscribed_skus(self, tenant_id: str, *, correlation_id: str) -> list[SkuUsage]:
        self._call("list_subscribed_skus", correlation_id)
        with self._session() as session:
            subs = session.scalars(select(SandboxSubscription).where(SandboxSubscription.tenant_id == tenant_id)).all()
            users = session.scalars(select(SandboxUser).where(SandboxUser.tenant_id == tenant_id)).all()
        held: dict[str, int] = {}
        for user in users:
            for sku in user.sku_ids.split():
                held[sku] = held.get(sku, 0) + 1
        totals: dict[str, int] = {}
        for sub in subs:
            if sub.status != "active":  # a cancelled (deleted) subscription holds no licences
                continue
            totals[sub.offer_id] = totals.get(sub.offer_id, 0) + sub.quantity
        return [
            SkuUsage(sku_id=sku, sku_part_number=sku, consumed=held.get(sku, 0), total=total)
            for sku, total in sorted(totals.items())
        ]

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
        self._call("create_order", correlation_id)
        for _attempt in range(5):  # two orders of one tenant at once: the later one takes the next number
            try:
                with self._session() as session, session.begin():
                    self._customer(session, tenant_id, correlation_id)
                    if request_id and (
                        made := session.scalars(
                            select(SandboxSubscription).where(SandboxSubscription.request_id == request_id)
                        ).first()
                    ):
                        return self._with_refundable(made, session)  # the same request again: what it made
                    number = len(
                        session.scalars(
                            select(SandboxSubscription.id).where(SandboxSubscription.tenant_id == tenant_id)
                        ).all()
                    )
                    sub = SandboxSubscription(
                        subscription_id=sandbox_id("subscription", f"{tenant_id}:{offer_id}:{number}"),
                        tenant_id=tenant_id,
                        offer_id=offer_id,
                        quantity=quantity,
                        billing_cycle=billing_cycle,
                        purchased_on=clock.today(),
                        request_id=request_id,
                    )
                    session.add(sub)
                    self._add_batch(session, sub.subscription_id, quantity)  # the purchase's 168-hour window
                self._answer_lost("create_order", correlation_id)
                return self._with_refundable(sub)
            except IntegrityError:
                continue
        raise ProviderError(
            "The sandbox could not number the new subscription: try again.", correlation_id=correlation_id
        )

    def change_quantity(
        self, tenant_id: str, subscription_id: str, quantity: int, *, correlation_id: str, request_id: str | None = None
    ) -> ProviderSubscription:
        self._call("change_quantity", correlation_id)
        with self._session() as session, session.begin():
            sub = self._subscription(session, tenant_id, subscription_id, correlation_id)
            self._seats_changed(session, sub, quantity, correlation_id)  # refuses what Microsoft refuses
            sub.quantity = quantity
            self._clear_next_term(sub)  # a mid-term change deletes what was scheduled for renewal
        self._answer_lost("change_quantity", correlation_id)
        return self._with_refundable(sub)

    def set_auto_renew(
        self, tenant_id: str, subscription_id: str, enabled: bool, *, correlation_id: str, request_id: str | None = None
    ) -> ProviderSubscription:
        self._call("set_auto_renew", correlation_id)
        with self._session() as session, session.begin():
            sub = self._subscription(session, tenant_id, subscription_id, correlation_id)
            sub.auto_renew = enabled
            self._clear_next_term(sub)  # a mid-term change deletes what was scheduled for renewal
        self._answer_lost("set_auto_renew", correlation_id)
        return self._with_refundable(sub)

    def get_subscription(self, tenant_id: str, subscription_id: str, *, correlation_id: str) -> ProviderSubscription:
        self._call("get_subscription", correlation_id)
        with self._session() as session:
            sub = self._subscription(session, tenant_id, subscription_id, correlation_id)
            return self._with_refundable(sub, session)

    def backdate(self, subscription_id: str, *, renew_on: dt.date, auto_renew: bool, term: str | None = None) -> None:
        """Demo data only: a subscription the demo says was bought earlier ends its one-year term on ``renew_on``."""
        with self._session() as session, session.begin():
            sub = session.scalars(
                select(SandboxSubscription).where(SandboxSubscription.subscription_id == subscription_id)
            ).one()
            sub.purchased_on = renew_on - dt.timedelta(days=365)
            sub.auto_renew = auto_renew
            sub.term = term or sub.term or "P1Y"  # issue 13: its term (the portal's) ends on renew_on
            sub.term_started_on, sub.term_end = add_months(renew_on, -TERM_MONTHS[sub.term]), renew_on
            self._backdate_batches(session, sub)
            from app.services import billing_ledger  # the sandbox's billing events (issue 14)

            billing_ledger.rebuild_sandbox(
                session, sub, [(b.quantity, b.added_at) for b in self._all_batches(session, subscription_id)]
            )

    def adopt_demo_state(
        self,
        subscription_id: str,
        *,
        batches: list[tuple[int, dt.datetime, dt.datetime]],
        next_term: tuple[str | None, str | None, str | None, int | None] = (None, None, None, None),
    ) -> None:
        """Demo data only (issue 13, reports): a backdated demo subscription's seat batches — (quantity, added_at,
        allowed_until) each, as the portal's demo recorded them — and its change scheduled for the next term
        (offer id, term, billing cycle, quantity), so that reconciliation finds the demo as it is."""
        with self._session() as session, session.begin():
            sub = session.scalars(
                select(SandboxSubscription).where(SandboxSubscription.subscription_id == subscription_id)
            ).one()
            for batch in self._all_batches(session, subscription_id):
                session.delete(batch)
            for quantity, added_at, allowed_until in batches:
                session.add(
                    SandboxSeatBatch(
                        subscription_id=subscription_id,
                        quantity=quantity,
                        added_at=added_at,
                        allowed_until=allowed_until,
                    )
                )
            sub.next_offer_id, sub.next_term, sub.next_billing_cycle, sub.next_quantity = next_term
            from app.services import billing_ledger  # the sandbox's billing events (issue 14)

            billing_ledger.rebuild_sandbox(session, sub, [(quantity, added_at) for quantity, added_at, _ in batches])

    def list_subscriptions(self, tenant_id: str, *, correlation_id: str) -> list[ProviderSubscription]:
        self._call("list_subscriptions", correlation_id)
        t = SandboxSubscription
        with self._session() as session:
            # Rows, not objects: the reconciliation reads every customer's (_as_provider reads them by name).
            subs = session.execute(
                select(t.subscription_id, t.offer_id, t.quantity, t.auto_renew, t.status, t.billing_cycle)
                .add_columns(t.purchased_on, t.term, t.term_started_on, t.term_end)
                .add_columns(t.next_offer_id, t.next_term, t.next_billing_cycle, t.next_quantity)
                .where(t.tenant_id == tenant_id)
                .order_by(t.id)
            ).all()
            if not subs:
                self._customer(session, tenant_id, correlation_id)  # none, or no such customer (404)?
            refundable = self._refundable(session, [sub.subscription_id for sub in subs])
            return [
                dataclasses.replace(self._as_provider(sub), refundable=refundable.get(sub.subscription_id, ()))
                for sub in subs
            ]

    # -- seat batches: each purchase, increase and renewal has 168 hours to be given back (issue 13, windows) -----
    # Microsoft: new-commerce seats can be reduced only within 7 days (168 hours) of the purchase, increase or
    # renewal that added them, each with its own window, stated as the subscription's refundableQuantity
    # (totalQuantity, details[quantity, allowedUntilDateTime]):
    # https://learn.microsoft.com/dotnet/api/microsoft.store.partnercenter.models.subscriptions.refundablequantitydetail
    # and a subscription can be cancelled only within 7 days of its purchase or renewal, after which the API refuses:
    # https://learn.microsoft.com/partner-center/developer/cancel-an-azure-marketplace-subscription
    WINDOW = dt.timedelta(hours=168)

    def _add_batch(self, session: Session, subscription_id: str, quantity: int, at: dt.datetime | None = None):
        """Seats added now (or ``at``, UTC naive): returnable for 168 hours."""
        at = at or clock.utcnow()
        session.add(
            SandboxSeatBatch(
                subscription_id=subscription_id, quantity=quantity, added_at=at, allowed_until=at + self.WINDOW
            )
        )

    @staticmethod
    def _open_batches(session: Session, subscription_id: str) -> list[SandboxSeatBatch]:
        """The batches with seats still returnable now, newest first (the order seats are given back in)."""
        return list(
            session.scalars(
                select(SandboxSeatBatch)
                .where(
                    SandboxSeatBatch.subscription_id == subscription_id,
                    SandboxSeatBatch.quantity > 0,
                    SandboxSeatBatch.allowed_until > clock.utcnow(),
                )
                .order_by(SandboxSeatBatch.added_at.desc(), SandboxSeatBatch.id.desc())
            )
        )

    @staticmethod
    def _refundable(session: Session, subscription_ids: list[str]) -> dict[str, tuple[RefundableQuantity, ...]]:
        """Each subscription's refundable quantities now (Microsoft's refundableQuantity.details), oldest first."""
        found: dict[str, list[RefundableQuantity]] = {}
        for batch in session.scalars(
            select(SandboxSeatBatch)
            .where(
                SandboxSeatBatch.subscription_id.in_(subscription_ids),
                SandboxSeatBatch.quantity > 0,
                SandboxSeatBatch.allowed_until > clock.utcnow(),
            )
            .order_by(SandboxSeatBatch.allowed_until, SandboxSeatBatch.id)
        ):
            found.setdefault(batch.subscription_id, []).append(
                RefundableQuantity(quantity=batch.quantity, allowed_until=batch.allowed_until)
            )
        return {key: tuple(value) for key, value in found.items()}

    def _with_refundable(self, sub: SandboxSubscription, session: Session | None = None) -> ProviderSubscription:
        """The subscription as Partner Center answers it, with its refundable quantities."""
        if session is None:
            with self._session() as own:
                refundable = self._refundable(own, [sub.subscription_id])
        else:
            refundable = self._refundable(session, [sub.subscription_id])
        return dataclasses.replace(self._as_provider(sub), refundable=refundable.get(sub.subscription_id, ()))

    def _seats_changed(self, session: Session, sub: SandboxSubscription, quantity: int, correlation_id: str) -> None:
        """An increase is a new batch; a decrease is allowed only up to the seats still inside their windows, taken
        from the newest batch first (Microsoft does not say which; the portal uses the same order); beyond that it is
        refused as Partner Center refuses it (400)."""
        if sub.status != "active":
            raise ProviderError(
                f"Subscription {sub.subscription_id} is {sub.status}: its quantity cannot change",
                correlation_id=correlation_id,
                status=400,
            )
        if quantity > sub.quantity:
            self._add_batch(session, sub.subscription_id, quantity - sub.quantity)
            return
        fewer = sub.quantity - quantity
        batches = self._open_batches(session, sub.subscription_id)
        refundable = sum(batch.quantity for batch in batches)
        if fewer > refundable:
            raise ProviderError(
                f"The quantity cannot be decreased by {fewer}: only {refundable} seat(s) were added within the last "
                "168 hours and are still eligible for reduction (refundableQuantity)",
                correlation_id=correlation_id,
                status=400,
            )
        for batch in batches:
            taken = min(fewer, batch.quantity)
            batch.quantity -= taken
            fewer -= taken

    def _term_start_batch(self, session: Session, sub: SandboxSubscription) -> SandboxSeatBatch | None:
        """The batch of the term's start (its purchase, or its renewal): the first one added since that day began."""
        start = clock.start_of_day_utc(sub.term_started_on or sub.purchased_on)
        return session.scalars(
            select(SandboxSeatBatch)
            .where(SandboxSeatBatch.subscription_id == sub.subscription_id, SandboxSeatBatch.added_at >= start)
            .order_by(SandboxSeatBatch.added_at, SandboxSeatBatch.id)
        ).first()

    def _backdate_batches(self, session: Session, sub: SandboxSubscription) -> None:
        """Demo data: a backdated subscription's purchase batch was added on its term's first day."""
        at = clock.start_of_day_utc(sub.term_started_on or sub.purchased_on)
        for batch in self._all_batches(session, sub.subscription_id):
            batch.added_at, batch.allowed_until = at, at + self.WINDOW

    @staticmethod
    def _all_batches(session: Session, subscription_id: str) -> list[SandboxSeatBatch]:
        query = select(SandboxSeatBatch).where(SandboxSeatBatch.subscription_id == subscription_id)
        return list(session.scalars(query))

    def cancel_subscription(
        self, tenant_id: str, subscription_id: str, *, correlation_id: str, request_id: str | None = None
    ) -> ProviderSubscription:
        self._call("cancel_subscription", correlation_id)
        with self._session() as session, session.begin():
            sub = self._subscription(session, tenant_id, subscription_id, correlation_id)
            if sub.status == "deleted":  # the same request again (or a second click): already done
                return self._with_refundable(sub, session)
            first = self._term_start_batch(session, sub)
            if first is None or clock.utcnow() >= first.allowed_until:
                raise ProviderError(
                    f"Subscription {subscription_id} can no longer be cancelled: new-commerce subscriptions can be "
                    "cancelled only within 168 hours (7 days) of their purchase or renewal",
                    correlation_id=correlation_id,
                    status=400,
                )
            sub.status = "deleted"
            for batch in self._all_batches(session, sub.subscription_id):
                batch.quantity = 0
            still_held = session.scalar(
                select(SandboxSubscription.id).where(
                    SandboxSubscription.tenant_id == tenant_id,
                    SandboxSubscription.offer_id == sub.offer_id,
                    SandboxSubscription.status == "active",
                    SandboxSubscription.id != sub.id,
                )
            )
            if still_held is None:  # Microsoft takes the cancelled subscription's licences back from their users
                for user in session.scalars(select(SandboxUser).where(SandboxUser.tenant_id == tenant_id)):
                    skus = user.sku_ids.split()
                    if sub.offer_id in skus:
                        user.sku_ids = " ".join(s for s in skus if s != sub.offer_id)
        self._answer_lost("cancel_subscription", correlation_id)
        return self._with_refundable(sub)

    # -- users and licences --------------------------------------------------------------------------------------
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
        self._call("create_user", correlation_id)
        self._check_usage_location(usage_location, correlation_id)
        user_id = sandbox_id("user", user_principal_name.lower())
        try:
            with self._session() as session, session.begin():
                self._customer(session, tenant_id, correlation_id)
                session.add(
                    SandboxUser(
                        user_id=user_id,
                        tenant_id=tenant_id,
                        display_name=display_name or f"{first_name} {last_name}".strip(),
                        user_principal_name=user_principal_name.lower(),
                        first_name=first_name or None,
                        last_name=last_name or None,
                        usage_location=usage_location.upper(),
                    )
                )
        except IntegrityError:
            raise ProviderError(
                f"{user_principal_name} already exists", correlation_id=correlation_id, status=409
            ) from None
        self._answer_lost("create_user", correlation_id)
        return user_id

    def list_users(self, tenant_id: str, *, correlation_id: str) -> list[ProviderUser]:
        self._call("list_users", correlation_id)
        t = SandboxUser
        with self._session() as session:
            users = session.execute(
                select(t.user_id, t.user_principal_name, t.display_name, t.enabled, t.sku_ids)
                .where(t.tenant_id == tenant_id)
                .order_by(t.id)
            ).all()
            if not users:
                self._customer(session, tenant_id, correlation_id)  # none, or no such customer (404)?
            return [
                ProviderUser(
                    user_id=user.user_id,
                    user_principal_name=user.user_principal_name,
                    display_name=user.display_name,
                    enabled=user.enabled,
                    sku_ids=frozenset(user.sku_ids.split()),
                )
                for user in users
            ]

    def get_user_licences(self, tenant_id: str, user_id: str, *, correlation_id: str) -> list[str]:
        self._call("get_user_licences", correlation_id)
        with self._session() as session:
            user = session.scalars(
                select(SandboxUser).where(SandboxUser.user_id == user_id, SandboxUser.tenant_id == tenant_id)
            ).first()
            if user is None:
                raise ProviderError(f"No user {user_id}", correlation_id=correlation_id, status=404)
            return user.sku_ids.split()

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
        self._call("assign_licences", correlation_id)
        with self._session() as session, session.begin():
            user = session.scalars(
                select(SandboxUser).where(SandboxUser.user_id == user_id, SandboxUser.tenant_id == tenant_id)
            ).first()
            if user is None:
                raise ProviderError(f"No user {user_id}", correlation_id=correlation_id, status=404)
            skus = [s for s in user.sku_ids.split() if s not in remove_sku_ids]
            skus += [s for s in add_sku_ids if s not in skus]
            user.sku_ids = " ".join(skus)
        self._answer_lost("assign_licences", correlation_id)

    # -- one user: reads for recovery, and the changes -------------------------------------------------------------
    @staticmethod
    def _as_user(user: SandboxUser) -> ProviderUser:
        return ProviderUser(
            user_id=user.user_id,
            user_principal_name=user.user_principal_name,
            display_name=user.display_name,
            enabled=user.enabled,
            sku_ids=frozenset(user.sku_ids.split()),
            first_name=user.first_name,
            last_name=user.last_name,
            usage_location=user.usage_location,
        )

    @staticmethod
    def _check_usage_location(usage_location: str, correlation_id: str) -> None:
        """As Microsoft: a usage location is two letters (ISO 3166), required for a user who is to hold licences."""
        if not (isinstance(usage_location, str) and len(usage_location) == 2 and usage_location.isalpha()):
            raise ProviderError(
                f"usageLocation {usage_location!r} is not a two-letter country code",
                correlation_id=correlation_id,
                status=400,
            )

    @staticmethod
    def _user(session: Session, tenant_id: str, user_id: str, correlation_id: str) -> SandboxUser:
        user = session.scalars(
            select(SandboxUser).where(SandboxUser.user_id == user_id, SandboxUser.tenant_id == tenant_id)
        ).first()
        if user is None:
            raise ProviderError(f"No user {user_id}", correlation_id=correlation_id, status=404)
        return user

    def find_user(self, tenant_id: str, user_principal_name: str, *, correlation_id: str) -> ProviderUser | None:
        self._call("find_user", correlation_id)
        with self._session() as session:
            user = session.scalars(
                select(SandboxUser).where(
                    SandboxUser.tenant_id == tenant_id, SandboxUser.user_principal_name == user_principal_name.lower()
                )
            ).first()
            return self._as_user(user) if user is not None else None

    def get_user(self, tenant_id: str, user_id: str, *, correlation_id: str) -> ProviderUser | None:
        self._call("get_user", correlation_id)
        with self._session() as session:
            user = session.scalars(
                select(SandboxUser).where(SandboxUser.user_id == user_id, SandboxUser.tenant_id == tenant_id)
            ).first()
            return self._as_user(user) if user is not None else None

    def set_user_enabled(
        self, tenant_id: str, user_id: str, enabled: bool, *, correlation_id: str, request_id: str | None = None
    ) -> None:
        self._call("set_user_enabled", correlation_id)
        with self._session() as session, session.begin():
            self._user(session, tenant_id, user_id, correlation_id).enabled = enabled
        self._answer_lost("set_user_enabled", correlation_id)

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
        self._call("update_user", correlation_id)
        self._check_usage_location(usage_location, correlation_id)
        with self._session() as session, session.begin():
            user = self._user(session, tenant_id, user_id, correlation_id)
            user.first_name, user.last_name = first_name or None, last_name or None
            user.display_name, user.usage_location = display_name, usage_location.upper()
        self._answer_lost("update_user", correlation_id)

    def delete_user(self, tenant_id: str, user_id: str, *, correlation_id: str, request_id: str | None = None) -> None:
        self._call("delete_user", correlation_id)
        with self._session() as session, session.begin():
            session.delete(self._user(session, tenant_id, user_id, correlation_id))  # its licences are freed with it
        self._answer_lost("delete_user", correlation_id)

    def reset_user_password(
        self, tenant_id: str, user_id: str, *, password: str, correlation_id: str, request_id: str | None = None
    ) -> None:
        self._call("reset_user_password", correlation_id)
        with self._session() as session, session.begin():
            self._user(session, tenant_id, user_id, correlation_id).password_reset_on = clock.utcnow()
        self._answer_lost("reset_user_password", correlation_id)

    # -- price sheet (issue 13, catalogue) -------------------------------------------------------------------------
    def get_price_sheet(self, market: str, *, month: str | None = None, correlation_id: str) -> bytes:
        """Microsoft's licence-based price sheet for ``market`` and ``month`` (YYYYMM; default this month), generated
        from the shipped base sheet (app/csp/sandbox_pricesheet.py says how, and what changes month to month)."""
        from app.csp import sandbox_pricesheet

        self._call("get_price_sheet", correlation_id)
        try:
            return sandbox_pricesheet.sheet(market, month, clock.today())
        except ValueError as exc:
            raise ProviderError(str(exc), correlation_id=correlation_id, status=400) from exc

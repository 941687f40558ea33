"""The sandbox's renewals, changes scheduled for renewal and upgrades (issue 13), mixed into SandboxProvider.

Microsoft's rules, as the sandbox enforces them:

- Changes for the next term (SKU, term, billing frequency, quantity) are the subscription's
  ``scheduledNextTermInstructions``; they can be scheduled only while auto-renew is on, only to what
  ``transitionEligibilities?eligibilityType=scheduled`` lists, and any mid-term (immediate) change deletes them
  (https://learn.microsoft.com/partner-center/developer/create-scheduled-changes).
- Renewal starts at 00:00 UTC the day after the term's last day — the sandbox's ``term_end``, which (like the
  portal's ``renew_on``) is the first day of the next term — applying what was scheduled; with auto-renew off the
  subscription expires then, and its users lose its licences (same page; new-commerce subscription lifecycle).
- Upgrades (``eligibilityType=immediate``, then ``POST …/transitions``,
  https://learn.microsoft.com/partner-center/developer/transition-a-new-commerce-subscription): all seats convert the
  subscription to the target SKU (same subscription, same term and term end); some seats go to a new subscription of
  the target SKU, co-termed with the source, which keeps the rest. The sandbox offers upgrades on the same term only
  (Microsoft also lists longer ones). The eligible paths are ``UPGRADES`` (by SKU title, from the catalogue).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from app import clock
from app.csp.base import NextTermInstructions, ProviderError, ProviderSubscription, TransitionEligibility
from app.models.catalog import TERM_MONTHS, Availability, Product
from app.models.csp import SandboxSubscription, SandboxUser
from app.services.subscriptions import add_months, renewal_date

__all__ = ["TERM_MONTHS", "UPGRADES", "SandboxRenewals", "add_months", "scheduled_of"]

#: Where each SKU (by its title) may be upgraded to.
UPGRADES: dict[str, tuple[str, ...]] = {
    "Microsoft 365 Business Basic": ("Microsoft 365 Business Standard", "Microsoft 365 Business Premium"),
    "Microsoft 365 Business Standard": ("Microsoft 365 Business Premium",),
    "Office 365 E1": ("Office 365 E3", "Office 365 E5"),
    "Office 365 E3": ("Office 365 E5",),
    "Microsoft 365 E3": ("Microsoft 365 E5",),
    "Exchange Online (Plan 1)": ("Exchange Online (Plan 2)",),
}
RENEW_BATCH = 500


def scheduled_of(sub) -> NextTermInstructions | None:
    """A sandbox subscription's (or row's) scheduledNextTermInstructions, or None."""
    offer, quantity = getattr(sub, "next_offer_id", None), getattr(sub, "next_quantity", None)
    if offer is None and quantity is None:
        return None
    return NextTermInstructions(
        offer_id=offer or sub.offer_id,
        term=sub.next_term or sub.term or "P1Y",
        billing_cycle=sub.next_billing_cycle or sub.billing_cycle,
        quantity=quantity or sub.quantity,
    )


def _refuse(message: str, correlation_id: str, status: int = 400) -> ProviderError:
    return ProviderError(message, correlation_id=correlation_id, status=status)


class SandboxRenewals:
    """Mixed into SandboxProvider (its ``_session``, ``_call``, ``_subscription``, ``_add_batch``...)."""

    @staticmethod
    def _clear_next_term(sub: SandboxSubscription) -> None:
        sub.next_offer_id = sub.next_term = sub.next_billing_cycle = sub.next_quantity = None

    @staticmethod
    def _eligible(session: Session, sub: SandboxSubscription, eligibility_type: str) -> list[TransitionEligibility]:
        """immediate: the upgrade targets' availabilities on the same term; scheduled: those on any term, and the
        subscription's own SKU on any term and billing frequency."""
        title = session.scalar(select(Product.name).where(Product.sku == sub.offer_id))
        targets = UPGRADES.get(title or "", ())
        which = Product.name.in_(targets)
        if eligibility_type == "scheduled":
            which = or_(which, Product.sku == sub.offer_id)
        rows = session.execute(
            select(Product.sku, Product.name, Availability.term, Availability.billing_frequency)
            .join(Availability, Availability.product_id == Product.id)
            .where(which, Product.retired_on.is_(None), Availability.retired_on.is_(None))
            .order_by(Product.name, Availability.id)
        ).all()
        return [
            TransitionEligibility(offer_id=sku, title=name, term=term, billing_cycle=frequency)
            for sku, name, term, frequency in rows
            if eligibility_type == "scheduled" or term == (sub.term or "P1Y")
        ]

    def get_transition_eligibilities(
        self, tenant_id: str, subscription_id: str, eligibility_type: str, *, correlation_id: str
    ) -> list[TransitionEligibility]:
        self._call("get_transition_eligibilities", correlation_id)
        if eligibility_type not in ("immediate", "scheduled"):
            raise _refuse(f"eligibilityType {eligibility_type!r}: immediate or scheduled", correlation_id)
        with self._session() as session:
            sub = self._subscription(session, tenant_id, subscription_id, correlation_id)
            if sub.status != "active":
                return []
            return self._eligible(session, sub, eligibility_type)

    def schedule_next_term(
        self,
        tenant_id: str,
        subscription_id: str,
        instructions: NextTermInstructions | None,
        *,
        correlation_id: str,
        request_id: str | None = None,
    ) -> ProviderSubscription:
        self._call("schedule_next_term", correlation_id)
        with self._session() as session, session.begin():
            sub = self._subscription(session, tenant_id, subscription_id, correlation_id)
            if instructions is None:
                self._clear_next_term(sub)
            else:
                self._check_schedule(session, sub, instructions, correlation_id)
                sub.next_offer_id, sub.next_term = instructions.offer_id, instructions.term
                sub.next_billing_cycle, sub.next_quantity = instructions.billing_cycle, instructions.quantity
        self._answer_lost("schedule_next_term", correlation_id)
        return self._with_refundable(sub)

    def _check_schedule(self, session, sub, instructions: NextTermInstructions, correlation_id: str) -> None:
        if sub.status != "active":
            raise _refuse(f"Subscription {sub.subscription_id} is {sub.status}: nothing renews", correlation_id)
        if not sub.auto_renew:
            raise _refuse("Changes at renewal need autoRenewEnabled: turn auto-renew on first", correlation_id)
        end = sub.term_end or sub.purchased_on + dt.timedelta(days=365)
        if clock.utcnow().date() >= end:
            raise _refuse("The renewal has started: its instructions can no longer change", correlation_id)
        wanted = (instructions.offer_id, instructions.term, instructions.billing_cycle)
        eligible = {(e.offer_id, e.term, e.billing_cycle) for e in self._eligible(session, sub, "scheduled")}
        if wanted not in eligible:
            raise _refuse(f"{'/'.join(wanted)} is not an eligible change at renewal", correlation_id)
        if not isinstance(instructions.quantity, int) or not 1 <= instructions.quantity <= 10000:
            raise _refuse("The quantity at renewal must be between 1 and 10,000", correlation_id)

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
        self._call("transition", correlation_id)
        with self._session() as session, session.begin():
            sub = self._subscription(session, tenant_id, subscription_id, correlation_id)
            made = None
            if request_id:
                made = session.scalars(
                    select(SandboxSubscription).where(SandboxSubscription.request_id == request_id)
                ).first()
            if made is None and (sub.offer_id, sub.billing_cycle) == (to_offer_id, billing_cycle):
                made = sub  # the same request again after all seats moved: what it made
            if made is None:
                wanted = (term, billing_cycle)
                made = self._transition(session, sub, to_offer_id, quantity, wanted, request_id, correlation_id)
                made_here = True
            else:
                made_here = False
        if made_here:
            self._answer_lost("transition", correlation_id)
        return self._with_refundable(made)

    def _transition(self, session, sub, to_offer_id, quantity, availability, request_id, cid):
        term, billing_cycle = availability
        if sub.status != "active":
            raise _refuse(f"Subscription {sub.subscription_id} is {sub.status}: it cannot be upgraded", cid)
        eligible = {(e.offer_id, e.term, e.billing_cycle) for e in self._eligible(session, sub, "immediate")}
        if (to_offer_id, term, billing_cycle) not in eligible:
            raise _refuse(f"{to_offer_id} ({term}, {billing_cycle}) is not an eligible upgrade", cid)
        if not isinstance(quantity, int) or not 1 <= quantity <= sub.quantity:
            raise _refuse(f"Upgrade between 1 and {sub.quantity} licences", cid)
        self._clear_next_term(sub)  # an upgrade is a mid-term change
        if quantity == sub.quantity:  # all seats: the subscription converts
            sub.offer_id, sub.billing_cycle = to_offer_id, billing_cycle
            return sub
        from app.csp.sandbox import sandbox_id  # the sandbox's own ids (imported late: it imports this module)

        mine = select(SandboxSubscription.id).where(SandboxSubscription.tenant_id == sub.tenant_id)
        number = len(session.scalars(mine).all())
        today = clock.today()
        target = SandboxSubscription(
            subscription_id=sandbox_id("subscription", f"{sub.tenant_id}:{to_offer_id}:{number}"),
            tenant_id=sub.tenant_id,
            offer_id=to_offer_id,
            quantity=quantity,
            auto_renew=sub.auto_renew,
            billing_cycle=billing_cycle,
            status="active",
            purchased_on=today,
            request_id=request_id,
            term=term,
            term_started_on=today,
            term_end=sub.term_end or sub.purchased_on + dt.timedelta(days=365),  # co-termed with the source
        )
        session.add(target)
        moved = quantity
        for batch in self._open_batches(session, sub.subscription_id):  # moved seats are not given back here
            taken = min(moved, batch.quantity)
            batch.quantity -= taken
            moved -= taken
        sub.quantity -= quantity
        self._add_batch(session, target.subscription_id, quantity)
        session.flush()
        return target

    # -- renewal at the term's end -----------------------------------------------------------------------------------
    def renew_due(self, now: dt.datetime | None = None) -> int:
        """Renew (by its instructions) or expire every active subscription whose renewal has started: 00:00 UTC on
        its ``term_end``. Idempotent; in batches. How many it renewed or expired."""
        day = (now or clock.utcnow()).date()
        t = SandboxSubscription
        due = and_(
            t.status == "active",
            or_(t.term_end <= day, and_(t.term_end.is_(None), t.purchased_on <= day - dt.timedelta(days=365))),
        )
        done = 0
        while True:
            with self._session() as session, session.begin():
                subs = session.scalars(select(t).where(due).order_by(t.id).limit(RENEW_BATCH)).all()
                for sub in subs:
                    self._renew_one(session, sub)
            done += len(subs)
            if len(subs) < RENEW_BATCH:
                return done

    def _renew_one(self, session: Session, sub: SandboxSubscription) -> None:
        start = sub.term_end or sub.purchased_on + dt.timedelta(days=365)
        old_offer = sub.offer_id
        if not sub.auto_renew:
            sub.status = "expired"
            self._release_licences(session, sub.tenant_id, old_offer, None, sub.id)
            return
        sub.offer_id = sub.next_offer_id or sub.offer_id
        sub.term = sub.next_term or sub.term or "P1Y"
        sub.billing_cycle = sub.next_billing_cycle or sub.billing_cycle
        sub.quantity = sub.next_quantity or sub.quantity
        self._clear_next_term(sub)
        sub.term_started_on, sub.term_end = start, renewal_date(start, sub.term)
        self._add_batch(session, sub.subscription_id, sub.quantity, at=dt.datetime.combine(start, dt.time()))
        if sub.offer_id != old_offer:  # the licences follow the subscription to its new SKU
            self._release_licences(session, sub.tenant_id, old_offer, sub.offer_id, sub.id)

    @staticmethod
    def _release_licences(session: Session, tenant_id: str, offer_id: str, new_offer_id: str | None, sub_id: int):
        """Users of ``offer_id`` lose it (or hold ``new_offer_id`` instead) unless another active subscription of the
        tenant still sells that SKU."""
        still_held = session.scalar(
            select(SandboxSubscription.id).where(
                SandboxSubscription.tenant_id == tenant_id,
                SandboxSubscription.offer_id == offer_id,
                SandboxSubscription.status == "active",
                SandboxSubscription.id != sub_id,
            )
        )
        if still_held is not None:
            return
        for user in session.scalars(select(SandboxUser).where(SandboxUser.tenant_id == tenant_id)):
            skus = user.sku_ids.split()
            if offer_id in skus:
                skus = [s for s in skus if s != offer_id]
                if new_offer_id and new_offer_id not in skus:
                    skus.append(new_offer_id)
                user.sku_ids = " ".join(skus)

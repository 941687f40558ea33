"""Reconciliation with Microsoft (issue 12 item 5): ``flask portal reconcile [--account ID] [--repair]``, the daily
run (app/services/maintenance.py) and the Reconciliation page.

For every customer with an active Microsoft tenant it compares the portal's records with what Microsoft says
(Partner Center: the customer's subscriptions, its users and the licences each holds — the provider's
``list_subscriptions`` and ``list_users``):

- subscriptions, matched by Microsoft's subscription id: quantity, status, auto-renew, term end; one only here or
  only at Microsoft;
- Microsoft 365 users, matched by Microsoft's user id (else the user name): enabled or not; one only on one side;
- licences: the SKUs each user holds, against the portal's assignments (SKUs the catalogue does not sell are not the
  portal's business and are left out).

What differs is kept as a *drift* (app/models/reconciliation.py), open from the run that first found it ("since
when") until a run no longer finds it. A customer with a change of Microsoft's state in flight (a pending provider
operation, a licence lease, or any operation sent while it was being read) is skipped, never reported half-way.
With ``repair`` the portal is made to match Microsoft — Microsoft's state is what the customer is billed for — and
each repair is an event in the customer's log. The portal never changes Microsoft's state here.

Memory stays flat in the number of customers: they are read, compared and written in batches of ``BATCH``, each
committed and released before the next.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Callable, Iterator
from decimal import Decimal

from flask import current_app, has_request_context
from sqlalchemy import and_, delete, func, or_, select, update

from app import clock
from app.csp import get_provider
from app.csp.base import ProviderError, ProviderSubscription, ProviderUser, new_correlation_id
from app.extensions import db
from app.models.accounts import CUSTOMER, RESELLER, Account, MicrosoftTenant
from app.models.base import utcnow
from app.models.catalog import TERM_LABELS, TERM_MONTHS, Availability, Product
from app.models.operations import PENDING, ProviderOperation
from app.models.reconciliation import (
    DIFFERS,
    FAILED,
    FINISHED,
    MATCHED,
    RUNNING,
    SKIPPED,
    UNREADABLE,
    Drift,
    ReconciliationRun,
    ReconciliationStatus,
)
from app.models.subscriptions import LicenceAssignment, M365User, SeatBatch, Subscription, UsagePoint
from app.services import catalogue, pricing, subscriptions
from app.services.events import record_event

log = logging.getLogger(__name__)

BATCH = 200
REPORT_LIMIT = 1000
# A run that has not finished after this long was killed (a 100,000-customer run takes minutes).
STALE_RUN = dt.timedelta(hours=3)

# Microsoft's subscription states (https://learn.microsoft.com/partner-center/developer/subscription-resources:
# active, suspended, deleted, expired, pending, disabled) in the portal's words.
PORTAL_STATUS = {
    "active": "active",
    "pending": "active",
    "suspended": "suspended",
    "disabled": "suspended",
    "deleted": "cancelled",
    "cancelled": "cancelled",
    "expired": "expired",
}
LIVE = ("active", "suspended")
FIELD_NAMES = {"status": "status", "quantity": "quantity", "auto_renew": "auto-renew", "renew_on": "term end"}

KINDS = {
    "tenant_missing": "Microsoft has no such customer",
    "subscription_only_here": "Subscription only in the portal",
    "subscription_only_there": "Subscription only at Microsoft",
    "quantity": "Licence quantity differs",
    "status": "Subscription status differs",
    "auto_renew": "Auto-renew differs",
    "term_end": "Term end differs",
    "sku": "SKU differs",
    "term": "Term or billing frequency differs",
    "scheduled": "Change at renewal differs",
    "refundable": "Seats that can be given back differ",
    "user_only_here": "Microsoft 365 user only in the portal",
    "user_only_there": "Microsoft 365 user only at Microsoft",
    "user_status": "Microsoft 365 user status differs",
    "licence_only_here": "Licence only in the portal",
    "licence_only_there": "Licence only at Microsoft",
}


def kind_label(kind: str) -> str:
    return KINDS.get(kind, kind.replace("_", " ").capitalize())


@dataclasses.dataclass
class Difference:
    key: str
    kind: str
    subject: str
    portal: str
    microsoft: str
    repair: Callable[[], str | None] | None = None  # makes the portal match; what it did (None: it could not)


@dataclasses.dataclass(frozen=True)
class Found:
    """A difference as the report keeps it (without its repair: nothing of the batch's records stays alive)."""

    customer: str
    kind: str
    subject: str
    portal: str
    microsoft: str


@dataclasses.dataclass
class Report:
    """What a run found, for the command line: the first ``REPORT_LIMIT`` differences and problems (the counts are
    the run's; every difference is kept as a drift), so memory stays flat however many there are."""

    run: ReconciliationRun
    differences: list[Found] = dataclasses.field(default_factory=list)
    problems: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (customer, why unreadable/skipped)

    def add(self, customer: str, difference: Difference) -> None:
        if len(self.differences) < REPORT_LIMIT:
            self.differences.append(
                Found(customer, difference.kind, difference.subject, difference.portal, difference.microsoft)
            )

    def problem(self, customer: str, why: str) -> None:
        if len(self.problems) < REPORT_LIMIT:
            self.problems.append((customer, why))


class ReconcileError(ValueError):
    """A run asked for something that cannot be reconciled (words for the command line and the page)."""


# -- what there is on the portal's side --------------------------------------------------------------------------
@dataclasses.dataclass
class _Ours:
    """One customer's records, loaded for a whole batch at once."""

    account: Account
    tenant_guid: str
    subscriptions: list[Subscription] = dataclasses.field(default_factory=list)
    users: list[M365User] = dataclasses.field(default_factory=list)
    assignments: list[LicenceAssignment] = dataclasses.field(default_factory=list)
    drifts: dict[str, Drift] = dataclasses.field(default_factory=dict)  # open ones, by key
    refundable: dict[int, int] = dataclasses.field(default_factory=dict)  # subscription id -> seats in open windows
    status: ReconciliationStatus | None = None
    busy: str | None = None  # why it is skipped


def _customers(scope_account: Account | None) -> Iterator[list[tuple[int, str]]]:
    """(customer id, tenant id) of every customer with an active tenant, in batches, by id."""
    query = (
        select(Account.id, MicrosoftTenant.tenant_guid)
        .join(MicrosoftTenant, MicrosoftTenant.account_id == Account.id)
        .where(
            Account.kind == CUSTOMER,
            MicrosoftTenant.status == "active",
            MicrosoftTenant.tenant_guid.is_not(None),
        )
        .order_by(Account.id)
    )
    if scope_account is not None:
        if scope_account.kind == CUSTOMER:
            query = query.where(Account.id == scope_account.id)
        elif scope_account.kind == RESELLER:
            query = query.where(Account.parent_id == scope_account.id)
    after = 0
    while True:
        rows = db.session.execute(query.where(Account.id > after).limit(BATCH)).all()
        if not rows:
            return
        yield [(row[0], row[1]) for row in rows]
        after = rows[-1][0]


def _load(batch: list[tuple[int, str]]) -> dict[int, _Ours]:
    ids = [account_id for account_id, _ in batch]
    accounts = {a.id: a for a in db.session.scalars(select(Account).where(Account.id.in_(ids)))}
    ours = {account_id: _Ours(accounts[account_id], guid) for account_id, guid in batch}
    for sub in db.session.scalars(select(Subscription).where(Subscription.account_id.in_(ids))):
        ours[sub.account_id].subscriptions.append(sub)
    for person in db.session.scalars(select(M365User).where(M365User.account_id.in_(ids))):
        ours[person.account_id].users.append(person)
    for assignment in db.session.scalars(select(LicenceAssignment).where(LicenceAssignment.account_id.in_(ids))):
        ours[assignment.account_id].assignments.append(assignment)
    for drift in db.session.scalars(
        select(Drift).where(Drift.account_id.in_(ids), Drift.resolved_at.is_(None)).order_by(Drift.id)
    ):
        ours[drift.account_id].drifts.setdefault(drift.key, drift)
    for status in db.session.scalars(select(ReconciliationStatus).where(ReconciliationStatus.account_id.in_(ids))):
        ours[status.account_id].status = status
    now = utcnow()
    for account_id, sub_id, seats in db.session.execute(
        select(SeatBatch.account_id, SeatBatch.subscription_id, func.sum(SeatBatch.refundable))
        .where(SeatBatch.account_id.in_(ids), SeatBatch.refundable > 0, SeatBatch.refundable_until > now)
        .group_by(SeatBatch.account_id, SeatBatch.subscription_id)
    ):
        ours[account_id].refundable[sub_id] = int(seats)
    return ours


def _catalogue() -> dict[str, Product]:
    """Every SKU by its id, with every availability loaded too (a scheduled change names one: no query per row)."""
    db.session.scalars(select(Availability)).all()
    return {p.sku: p for p in db.session.scalars(select(Product))}


def _terms(term: str | None, cycle: str | None) -> str:
    return f"{TERM_LABELS.get(term or '', term or '?')}, billed {(cycle or '?').lower()}"


def _instructions(sub: Subscription) -> str:
    """The portal's change at renewal in the words the comparison uses ("none" when it renews as it is)."""
    if not sub.has_scheduled_change:
        return "none"
    offer = sub.next_availability
    sku = offer.product.sku if offer else sub.product.sku
    term = offer.term if offer else sub.term
    cycle = offer.billing_frequency if offer else sub.billing_cycle
    return f"{sku}, {_terms(term, cycle)}, {sub.next_quantity or sub.quantity} licences"


def _their_instructions(ms: ProviderSubscription) -> str:
    plan = ms.scheduled
    if plan is None:
        return "none"
    return f"{plan.offer_id}, {_terms(plan.term, plan.billing_cycle)}, {plan.quantity} licences"


def _busy_accounts(ids: list[int], since: dt.datetime | None = None) -> dict[int, str]:
    """Customers with a change of Microsoft's state under way: a pending operation, a licence lease held — or, with
    ``since``, any operation sent since then (it may have changed what was just read)."""
    busy: dict[int, str] = {}
    now = utcnow()
    sent = ProviderOperation.state == PENDING
    if since is not None:
        sent = or_(sent, ProviderOperation.attempted_on >= since, ProviderOperation.finished_on >= since)
    for account_id, kind in db.session.execute(
        select(ProviderOperation.account_id, ProviderOperation.kind).where(ProviderOperation.account_id.in_(ids), sent)
    ):
        busy.setdefault(account_id, f"a change ({kind.replace('_', ' ')}) is being confirmed with Microsoft")
    for (account_id,) in db.session.execute(
        select(Subscription.account_id).where(
            Subscription.account_id.in_(ids),
            Subscription.licence_lease_until.is_not(None),
            Subscription.licence_lease_until > now,
        )
    ):
        busy.setdefault(account_id, "a licence change is under way")
    for (account_id,) in db.session.execute(
        select(MicrosoftTenant.account_id).where(
            MicrosoftTenant.account_id.in_(ids), MicrosoftTenant.status != "active"
        )
    ):
        busy.setdefault(account_id, "its tenant is no longer active")
    return busy


# -- comparing ---------------------------------------------------------------------------------------------------
def _yes_no(value: bool) -> str:
    return "on" if value else "off"


def _date(value: dt.date | None) -> str:
    return f"{value:%d/%m/%Y}" if value else "none"


class _Compare:
    """The differences of one customer, each with the repair that makes the portal match Microsoft."""

    def __init__(self, ours: _Ours, products: dict[str, Product], subs: list[ProviderSubscription], users):
        self.ours, self.products = ours, products
        self.theirs_subs = subs
        self.theirs_users: list[ProviderUser] = users
        self.account_id = ours.account.id
        self.changed_subs: set[int] = set()
        self.found: list[Difference] = []
        self._held: dict[int, set[int]] = defaultdict(set)  # m365 user id -> subscription ids it holds here
        self._assignment: dict[tuple[int, int], LicenceAssignment] = {}
        for assignment in ours.assignments:
            self._held[assignment.m365_user_id].add(assignment.subscription_id)
            self._assignment[(assignment.subscription_id, assignment.m365_user_id)] = assignment
        self._subs_by_id = {sub.id: sub for sub in ours.subscriptions}

    def run(self) -> list[Difference]:
        self._subscriptions()
        self._users()
        return self.found

    def _add(self, *args, **kwargs) -> None:
        self.found.append(Difference(*args, **kwargs))

    # subscriptions
    def _subscriptions(self) -> None:
        theirs = {s.subscription_id: s for s in self.theirs_subs}
        seen: set[str] = set()
        for sub in self.ours.subscriptions:
            name = sub.product.name
            if not sub.provider_subscription_id:
                if sub.status in LIVE:
                    self._add(
                        f"subscription#{sub.id}:only_here",
                        "subscription_only_here",
                        name,
                        sub.status,
                        "not linked to a Microsoft subscription",
                        self._cancel(sub),
                    )
                continue
            seen.add(sub.provider_subscription_id)
            ms = theirs.get(sub.provider_subscription_id)
            if ms is None:
                if sub.status in LIVE:
                    self._add(
                        f"subscription:{sub.provider_subscription_id}:only_here",
                        "subscription_only_here",
                        name,
                        f"{sub.status}, {sub.quantity} licences",
                        "none",
                        self._cancel(sub),
                    )
                continue
            key = f"subscription:{ms.subscription_id}"
            status = PORTAL_STATUS.get(ms.status.lower(), ms.status.lower())
            if status != sub.status:
                self._add(f"{key}:status", "status", name, sub.status, ms.status, self._set(sub, "status", status))
            if ms.quantity != sub.quantity:
                self._add(
                    f"{key}:quantity",
                    "quantity",
                    name,
                    str(sub.quantity),
                    str(ms.quantity),
                    self._set(sub, "quantity", ms.quantity),
                )
            if ms.auto_renew != sub.auto_renew:
                self._add(
                    f"{key}:auto_renew",
                    "auto_renew",
                    name,
                    _yes_no(sub.auto_renew),
                    _yes_no(ms.auto_renew),
                    self._set(sub, "auto_renew", ms.auto_renew),
                )
            end = ms.commitment_end or ms.renew_on
            if end is not None and end != sub.renew_on:
                self._add(
                    f"{key}:term_end",
                    "term_end",
                    name,
                    _date(sub.renew_on),
                    _date(end),
                    self._set(sub, "renew_on", end),
                )
            self._commerce(sub, ms, key, name)
        for ms in self.theirs_subs:
            status = PORTAL_STATUS.get(ms.status.lower(), ms.status.lower())
            if ms.subscription_id in seen or status not in LIVE:
                continue
            product = self.products.get(ms.offer_id)
            name = product.name if product else ms.offer_id
            self._add(
                f"subscription:{ms.subscription_id}:only_there",
                "subscription_only_there",
                name,
                "none",
                f"{ms.status}, {ms.quantity} licences",
                self._adopt(ms, product),
            )

    def _commerce(self, sub: Subscription, ms: ProviderSubscription, key: str, name: str) -> None:
        """New commerce (issue 13): the SKU, the term and billing frequency, the change scheduled at renewal and the
        seats still inside their 168-hour windows. Report only: a repair of these would re-price the subscription
        or its refunds, which is the renewal's and the seat windows' own work (app/services/renewals.py,
        windows.py), not a guess of the reconciliation's."""
        if ms.offer_id and ms.offer_id != sub.product.sku:
            self._add(f"{key}:sku", "sku", name, sub.product.sku, ms.offer_id, None)
        if ms.term and (ms.term, ms.billing_cycle.lower()) != (sub.term, sub.billing_cycle):
            self._add(
                f"{key}:term",
                "term",
                name,
                _terms(sub.term, sub.billing_cycle),
                _terms(ms.term, ms.billing_cycle),
                None,
            )
        here, there = _instructions(sub), _their_instructions(ms)
        if here != there:
            self._add(f"{key}:scheduled", "scheduled", name, here, there, None)
        if sub.status in LIVE:
            seats, their_seats = self.ours.refundable.get(sub.id, 0), sum(r.quantity for r in ms.refundable)
            if seats != their_seats:
                self._add(f"{key}:refundable", "refundable", name, str(seats), str(their_seats), None)

    def _cancel(self, sub: Subscription):
        def repair() -> str | None:
            for (sub_id, _user_id), assignment in list(self._assignment.items()):
                if sub_id == sub.id:
                    self._drop_assignment(assignment)
            sub.status = "cancelled"
            self.changed_subs.add(sub.id)
            return f"{sub.product.name}: Microsoft has no such subscription; marked cancelled here"

        return repair

    def _set(self, sub: Subscription, field: str, value):
        def repair() -> str | None:
            before = getattr(sub, field)
            if field == "quantity" and value < self._assigned(sub):
                return None  # the licence repairs (run first) left more assigned than Microsoft's quantity
            setattr(sub, field, value)
            if field in ("quantity", "status"):
                self.changed_subs.add(sub.id)
            shown = {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value
            was = {True: "on", False: "off"}.get(before, before) if isinstance(before, bool) else before
            if isinstance(value, dt.date):
                shown, was = _date(value), _date(before)
            what = FIELD_NAMES[field]
            return f"{sub.product.name}: {what} {was} → {shown}, as at Microsoft"

        return repair

    def _adopt(self, ms: ProviderSubscription, product: Product | None):
        if product is None:
            return None  # a product the catalogue does not sell: reported, never invented

        def repair() -> str | None:
            # Microsoft's term and billing cycle; priced by today's price lists (the portal never saw the order).
            availability = catalogue.ensure_availability(product, ms.term, ms.billing_cycle)
            customer = db.session.get(Account, self.account_id)
            try:
                price = pricing.quote(customer, availability)
                prices = {"unit_price": price.sell, "unit_cost": price.buy, "ms_unit_cost": price.ms_cost}
            except pricing.NoPrice:
                prices = {"unit_price": Decimal(0), "unit_cost": Decimal(0), "ms_unit_cost": Decimal(0)}
            end = ms.commitment_end or ms.renew_on or subscriptions.renewal_date(clock.today(), ms.term)
            started = ms.term_started_on or subscriptions.add_months(end, -TERM_MONTHS[ms.term])
            sub = subscriptions.new_subscription(
                customer,
                availability,
                ms.quantity,
                **prices,
                provider_subscription_id=ms.subscription_id,
                term_started_on=started,
                renew_on=end,
                auto_renew=ms.auto_renew,
                added_at=dt.datetime.combine(started, dt.time()),
            )
            sub.status = PORTAL_STATUS.get(ms.status.lower(), "active")
            sub.product = product
            self.ours.subscriptions.append(sub)
            self._subs_by_id[sub.id] = sub
            self.changed_subs.add(sub.id)
            return f"{product.name}: added the subscription Microsoft has ({ms.quantity} licences)"

        return repair

    # users and licences
    def _users(self) -> None:
        theirs_by_id = {u.user_id: u for u in self.theirs_users}
        theirs_by_upn = {u.user_principal_name.lower(): u for u in self.theirs_users}
        matched: set[str] = set()
        for person in self.ours.users:
            ms = theirs_by_id.get(person.provider_user_id or "") or theirs_by_upn.get(
                person.user_principal_name.lower()
            )
            ref = person.provider_user_id or person.user_principal_name
            if ms is None:
                self._add(
                    f"user:{ref}:only_here",
                    "user_only_here",
                    person.user_principal_name,
                    person.status,
                    "none",
                    self._remove_user(person),
                )
                continue
            matched.add(ms.user_id)
            status = "active" if ms.enabled else "disabled"
            if status != person.status:
                self._add(
                    f"user:{ms.user_id}:status",
                    "user_status",
                    person.user_principal_name,
                    person.status,
                    status,
                    self._set_user(person, status),
                )
            self._licences(person, ms)
        for ms in self.theirs_users:
            if ms.user_id not in matched:
                self._add(
                    f"user:{ms.user_id}:only_there",
                    "user_only_there",
                    ms.user_principal_name,
                    "none",
                    "enabled" if ms.enabled else "disabled",
                    self._adopt_user(ms),
                )

    def _assigned(self, sub: Subscription) -> int:
        return sub.assigned

    def _licences(self, person: M365User | None, ms: ProviderUser, adopted: Callable[[], M365User] | None = None):
        held_here = {self._subs_by_id[s].product.sku: s for s in self._held.get(person.id, ())} if person else {}
        sold = ms.sku_ids & set(self.products)
        upn = ms.user_principal_name
        for sku in sorted(sold - set(held_here)):
            name = self.products[sku].name
            self._add(
                f"licence:{ms.user_id}:{sku}",
                "licence_only_there",
                f"{upn}: {name}",
                "not assigned",
                "assigned",
                self._give(person, sku, adopted),
            )
        for sku in sorted(set(held_here) - ms.sku_ids):
            assignment = self._assignment[(held_here[sku], person.id)]
            name = self.products[sku].name if sku in self.products else sku
            self._add(
                f"licence:{ms.user_id}:{sku}",
                "licence_only_here",
                f"{upn}: {name}",
                "assigned",
                "not assigned",
                self._take(assignment),
            )

    def _give(self, person: M365User | None, sku: str, adopted: Callable[[], M365User] | None):
        def repair() -> str | None:
            holder = person if person is not None else adopted()
            if holder is None or holder.id is None:
                return None
            room = [
                s
                for s in self.ours.subscriptions
                if s.product.sku == sku and s.status == "active" and s.assigned < s.quantity
            ]
            if not room:
                return None  # Microsoft holds more licences than the portal's subscriptions have: reported only
            sub = room[0]
            assignment = LicenceAssignment(account_id=self.account_id, subscription_id=sub.id, m365_user_id=holder.id)
            db.session.add(assignment)
            sub.assigned += 1
            self._held[holder.id].add(sub.id)
            self._assignment[(sub.id, holder.id)] = assignment
            self.changed_subs.add(sub.id)
            return f"{sub.product.name} assigned to {holder.user_principal_name}, as at Microsoft"

        return repair

    def _take(self, assignment: LicenceAssignment):
        def repair() -> str | None:
            sub = self._subs_by_id[assignment.subscription_id]
            person = next((u for u in self.ours.users if u.id == assignment.m365_user_id), None)
            self._drop_assignment(assignment)
            holder = person.user_principal_name if person else "?"
            return f"{sub.product.name} no longer assigned to {holder}, as at Microsoft"

        return repair

    def _drop_assignment(self, assignment: LicenceAssignment) -> None:
        sub = self._subs_by_id[assignment.subscription_id]
        if self._assignment.pop((assignment.subscription_id, assignment.m365_user_id), None) is None:
            return
        self._held[assignment.m365_user_id].discard(assignment.subscription_id)
        db.session.delete(assignment)
        sub.assigned -= 1
        self.changed_subs.add(sub.id)

    def _set_user(self, person: M365User, status: str):
        def repair() -> str | None:
            before, person.status = person.status, status
            return f"{person.user_principal_name}: {before} → {status}, as at Microsoft"

        return repair

    def _remove_user(self, person: M365User):
        def repair() -> str | None:
            for (_sub_id, user_id), assignment in list(self._assignment.items()):
                if user_id == person.id:
                    self._drop_assignment(assignment)
            db.session.flush()
            db.session.delete(person)
            return f"{person.user_principal_name}: not in Microsoft's tenant; removed here"

        return repair

    def _adopt_user(self, ms: ProviderUser):
        made: list[M365User] = []

        def adopted() -> M365User:
            if not made:
                person = M365User(
                    account_id=self.account_id,
                    display_name=ms.display_name or ms.user_principal_name,
                    user_principal_name=ms.user_principal_name.lower(),
                    status="active" if ms.enabled else "disabled",
                    provider_user_id=ms.user_id,
                )
                db.session.add(person)
                db.session.flush()
                self.ours.users.append(person)
                made.append(person)
            return made[0]

        # Its licences are differences of their own, repaired after it exists.
        self._licences(None, ms, adopted)

        def repair() -> str | None:
            person = adopted()
            return f"{person.user_principal_name}: added the Microsoft 365 user Microsoft has"

        return repair


# Repairs run in this order: users first (a licence needs its holder), licences taken back before quantities go
# down, quantities before licences are given.
_REPAIR_ORDER = {
    "user_only_there": 0,
    "licence_only_here": 1,
    "subscription_only_here": 2,
    "subscription_only_there": 3,
    "status": 4,
    "quantity": 5,
    "auto_renew": 6,
    "term_end": 7,
    "user_status": 8,
    "licence_only_there": 9,
    "user_only_here": 10,
    "tenant_missing": 11,
}


# -- one run -------------------------------------------------------------------------------------------------------
def start_run(*, trigger: str, scope_account: Account | None = None, repair: bool = False) -> ReconciliationRun:
    """The run's record, committed: the operator's for the whole portal, the account's own for one account's."""
    if scope_account is not None:
        owner_id = scope_account.id
    else:
        owner_id = db.session.scalar(select(Account.id).where(Account.kind == "operator").order_by(Account.id))
        if owner_id is None:
            raise ReconcileError("There is no operator account to keep the report under.")
    _fail_stale_runs()
    run = ReconciliationRun(
        account_id=owner_id,
        trigger=trigger[:80],
        scope_account_id=scope_account.id if scope_account else None,
        repair=repair,
        state=RUNNING,
        started_at=utcnow(),
    )
    db.session.add(run)
    db.session.commit()
    return run


def reconcile(
    *,
    scope_account: Account | None = None,
    repair: bool = False,
    trigger: str = "cli",
    echo: Callable[[str], None] | None = None,
    run: ReconciliationRun | None = None,
) -> Report:
    """Compare (and with ``repair`` match) every customer in scope; the run's report. Under a scope bypass for the
    whole portal; a caller's own scope otherwise (it sees and repairs only what it may)."""
    if scope_account is not None and scope_account.kind not in (CUSTOMER, RESELLER):
        scope_account = None  # the operator's account: every customer
    run = run or start_run(trigger=trigger, scope_account=scope_account, repair=repair)
    report = Report(run)
    run_id = run.id
    products = _catalogue()
    provider = get_provider()
    try:
        for batch in _customers(scope_account):
            _reconcile_batch(batch, run, report, products, provider, repair)
            db.session.commit()
            if echo:
                echo(f"Reconciled {run.customers_checked} customers…")
            # Each batch is released before the next: memory stays flat in the number of customers. (In a request —
            # one customer checked from the page — the signed-in user's objects stay.)
            if not has_request_context():
                db.session.expunge_all()
            run = report.run = db.session.get(ReconciliationRun, run_id)
            products = _catalogue()
    except Exception as exc:
        db.session.rollback()
        run = report.run = db.session.get(ReconciliationRun, run_id)
        run.state, run.finished_at, run.error = FAILED, utcnow(), f"{type(exc).__name__}: {exc}"[:1000]
        db.session.commit()
        raise
    run.state, run.finished_at = FINISHED, utcnow()
    record_event(
        "reconcile.finished",
        account_id=run.account_id,
        target=run,
        summary=(
            f"Reconciliation with Microsoft{' and repair' if repair else ''}: {run.customers_checked} customers "
            f"checked, {run.differences} differences in {run.customers_differing}, {run.repaired} repaired, "
            f"{run.customers_unreadable} unreadable, {run.customers_skipped} skipped"
        ),
    )
    db.session.commit()
    return report


def _reconcile_batch(batch, run: ReconciliationRun, report: Report, products, provider, repair: bool) -> None:
    ids = [account_id for account_id, _ in batch]
    began = utcnow()
    busy = _busy_accounts(ids)
    ours_by_id = _load(batch)
    read: dict[int, tuple[list[ProviderSubscription], list[ProviderUser]] | str] = {}
    for account_id in ids:
        ours = ours_by_id[account_id]
        if account_id in busy:
            continue
        correlation_id = new_correlation_id()
        try:
            subs = provider.list_subscriptions(ours.tenant_guid, correlation_id=correlation_id)
            users = provider.list_users(ours.tenant_guid, correlation_id=correlation_id)
        except ProviderError as exc:
            if exc.status == 404:
                read[account_id] = "missing"
            else:
                read[account_id] = f"Microsoft could not be read: {exc} (correlation id {exc.correlation_id})"
            continue
        read[account_id] = (subs, users)
    # Anything sent to Microsoft for these customers while they were being read may have changed one side only.
    busy.update({k: v for k, v in _busy_accounts(ids, since=began).items() if k not in busy})
    now = utcnow()
    for account_id in ids:
        ours = ours_by_id[account_id]
        name = ours.account.name
        run.customers_checked += 1
        if account_id in busy:
            run.customers_skipped += 1
            report.problem(name, f"skipped: {busy[account_id]}")
            _status(ours, run, SKIPPED, 0, busy[account_id], now)
            continue
        answer = read[account_id]
        if answer == "missing":
            found = [
                Difference(
                    f"tenant:{ours.tenant_guid}",
                    "tenant_missing",
                    ours.account.name,
                    f"tenant {ours.tenant_guid}",
                    "no such customer",
                )
            ]
            compare = None
        elif isinstance(answer, str):
            run.customers_unreadable += 1
            report.problem(name, answer)
            _status(ours, run, UNREADABLE, 0, answer, now)
            continue
        else:
            compare = _Compare(ours, products, *answer)
            found = compare.run()
        _record(ours, found, run, report, now, repair)
        if repair and compare is not None:
            for sub_id in compare.changed_subs:
                sub = compare._subs_by_id.get(sub_id)
                if sub is not None:
                    db.session.add(
                        UsagePoint(
                            account_id=sub.account_id,
                            subscription_id=sub.id,
                            quantity=sub.quantity,
                            assigned=sub.assigned,
                            unit_price=sub.unit_price,
                        )
                    )


def _record(ours: _Ours, found: list[Difference], run: ReconciliationRun, report: Report, now, repair: bool) -> None:
    """Keep the customer's drifts: new ones opened, known ones seen again, gone ones resolved; repairs made."""
    open_keys: set[str] = set()
    repaired = 0
    for difference in sorted(found, key=lambda d: _REPAIR_ORDER.get(d.kind, 99)):
        report.add(ours.account.name, difference)
        drift = ours.drifts.get(difference.key)
        if drift is None:
            drift = Drift(account_id=ours.account.id, key=difference.key[:200], first_seen_at=now)
            db.session.add(drift)
            ours.drifts[difference.key] = drift
        drift.kind, drift.subject = difference.kind, difference.subject[:320]
        drift.portal_value, drift.microsoft_value = difference.portal[:200], difference.microsoft[:200]
        drift.last_seen_at, drift.last_run_id = now, run.id
        summary = difference.repair() if repair and difference.repair is not None else None
        if summary:
            repaired += 1
            drift.resolved_at = drift.repaired_at = now
            drift.repair_summary = summary[:500]
            record_event(
                "reconcile.repaired",
                account_id=ours.account.id,
                target_type="Drift",
                target_id=difference.key[:64],
                summary=f"Matched to Microsoft: {summary}",
            )
        else:
            open_keys.add(difference.key)
    for key, drift in ours.drifts.items():
        if key not in open_keys and drift.resolved_at is None:
            drift.resolved_at = now  # no longer differs (changed on either side since)
    differing = len(open_keys)
    run.differences += len(found)
    run.repaired += repaired
    if found:
        run.customers_differing += 1
    _status(ours, run, DIFFERS if differing else MATCHED, differing, None, now)


def _status(ours: _Ours, run: ReconciliationRun, outcome: str, differences: int, detail: str | None, now) -> None:
    status = ours.status
    if status is None:
        status = ours.status = ReconciliationStatus(account_id=ours.account.id)
        db.session.add(status)
    status.run_id, status.checked_at, status.outcome = run.id, now, outcome
    status.differences, status.detail = differences, (detail or None) and detail[:500]


def _fail_stale_runs() -> None:
    db.session.execute(
        update(ReconciliationRun)
        .where(ReconciliationRun.state == RUNNING, ReconciliationRun.started_at < utcnow() - STALE_RUN)
        .values(state=FAILED, finished_at=utcnow(), error="Interrupted: the process running it stopped.")
        .execution_options(synchronize_session=False)
    )


def run_if_due() -> int:
    """The scheduled run (report only): when none has started for ``RECONCILE_EVERY_HOURS``; customers checked."""
    hours = current_app.config["RECONCILE_EVERY_HOURS"]
    if not hours:
        return 0
    since = utcnow() - dt.timedelta(hours=hours)
    _fail_stale_runs()
    db.session.commit()
    if db.session.scalar(
        select(func.count(ReconciliationRun.id)).where(
            ReconciliationRun.scope_account_id.is_(None),
            or_(ReconciliationRun.started_at >= since, ReconciliationRun.state == RUNNING),
        )
    ):
        return 0
    run = start_run(trigger="schedule")
    # Two processes may both have found none due: the later run gives way.
    earlier = db.session.scalar(
        select(func.count(ReconciliationRun.id)).where(
            ReconciliationRun.scope_account_id.is_(None),
            ReconciliationRun.id < run.id,
            or_(ReconciliationRun.started_at >= since, ReconciliationRun.state == RUNNING),
        )
    )
    if earlier:
        db.session.execute(delete(ReconciliationRun).where(ReconciliationRun.id == run.id))
        db.session.commit()
        return 0
    return reconcile(run=run).run.customers_checked


# -- what the page shows ---------------------------------------------------------------------------------------
def last_run() -> ReconciliationRun | None:
    """The latest whole-portal run (operator staff); one a killed process left running is failed first."""
    _fail_stale_runs()
    db.session.commit()
    return db.session.scalars(
        select(ReconciliationRun)
        .where(ReconciliationRun.scope_account_id.is_(None))
        .order_by(ReconciliationRun.id.desc())
        .limit(1)
    ).first()


@dataclasses.dataclass
class Summary:
    checked_at: dt.datetime | None
    customers: int
    matched: int
    differing: int
    unreadable: int
    skipped: int
    open_drifts: int


def summary(customer_ids=None) -> Summary:
    """Counts over the customers' last checks, in the caller's scope."""
    query = select(ReconciliationStatus.outcome, func.count(), func.max(ReconciliationStatus.checked_at)).group_by(
        ReconciliationStatus.outcome
    )
    drifts = select(func.count(Drift.id)).where(Drift.resolved_at.is_(None))
    if customer_ids is not None:
        query = query.where(ReconciliationStatus.account_id.in_(customer_ids))
        drifts = drifts.where(Drift.account_id.in_(customer_ids))
    counts, latest = {}, None
    for outcome, count, checked in db.session.execute(query):
        counts[outcome] = count
        latest = max(latest, checked) if latest and checked else (checked or latest)
    return Summary(
        checked_at=latest,
        customers=sum(counts.values()),
        matched=counts.get(MATCHED, 0),
        differing=counts.get(DIFFERS, 0),
        unreadable=counts.get(UNREADABLE, 0),
        skipped=counts.get(SKIPPED, 0),
        open_drifts=db.session.scalar(drifts) or 0,
    )


@dataclasses.dataclass
class DriftFilters:
    reseller_id: int | None = None
    customer_id: int | None = None
    kind: str = ""


def open_drifts(filters: DriftFilters, *, page: int = 0, per_page: int = 25):
    """One page of open differences, oldest first, with their customer and reseller names (one query for the page,
    one for the count): (rows, total)."""
    reseller = db.aliased(Account)
    base = select(Drift.id).join(Account, Account.id == Drift.account_id).where(Drift.resolved_at.is_(None))
    if filters.reseller_id:
        base = base.where(Account.parent_id == filters.reseller_id)
    if filters.customer_id:
        base = base.where(Drift.account_id == filters.customer_id)
    if filters.kind:
        base = base.where(Drift.kind == filters.kind)
    total = db.session.scalar(select(func.count()).select_from(base.subquery()))
    ids = base.order_by(Drift.first_seen_at, Drift.id).limit(per_page).offset(page * per_page).subquery()
    rows = db.session.execute(
        select(Drift, Account.name, Account.id, reseller.name, reseller.id)
        .join(ids, ids.c.id == Drift.id)
        .join(Account, Account.id == Drift.account_id)
        .outerjoin(reseller, and_(reseller.id == Account.parent_id, reseller.kind == RESELLER))
        .order_by(Drift.first_seen_at, Drift.id)
    ).all()
    return rows, total


def problem_customers(customer_ids=None, limit: int = 50):
    """Customers whose last check could not read Microsoft or was skipped, with why."""
    query = (
        select(ReconciliationStatus, Account.name)
        .join(Account, Account.id == ReconciliationStatus.account_id)
        .where(ReconciliationStatus.outcome.in_((UNREADABLE, SKIPPED)))
        .order_by(ReconciliationStatus.checked_at.desc())
        .limit(limit)
    )
    if customer_ids is not None:
        query = query.where(ReconciliationStatus.account_id.in_(customer_ids))
    return db.session.execute(query).all()

"""Microsoft CSP services of a customer: quantities, auto-renew, Microsoft 365 users and licences (orders:
app/services/ordering.py).

Every change of Microsoft's state is a durable operation (app/services/operations.py): written and committed
``pending`` before Microsoft is asked, sent with its request id as MS-RequestId, then recorded ``succeeded`` or
``failed`` with Microsoft's answer and correlation id. It records an event, and — when a subscription's numbers change
— a usage change point. A refusal of ours (``LicenceError`` before the call) changes nothing. After a failed or
unanswered call nothing is guessed: Microsoft is asked what is true, the portal made to match (a repair is an event)
and the user told it; when even that question goes unanswered, the operation stays pending, the user hears "not known
yet", and the recoverer (``RECOVERERS``, app/services/recovery.py) settles it once it is stale.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import secrets
import uuid

from flask import current_app
from sqlalchemy import or_, select, update

from app import faults
from app.csp import get_provider
from app.csp.base import ProviderError, new_correlation_id
from app.extensions import db
from app.models.accounts import Account
from app.models.base import utcnow
from app.models.operations import ProviderOperation
from app.models.subscriptions import LicenceAssignment, M365User, Subscription, UsagePoint
from app.services import operations
from app.services.events import record_event

log = logging.getLogger(__name__)


class LicenceError(ValueError):
    """A change refused, in words for the page."""


def _tenant_id(customer: Account) -> str:
    tenant = customer.tenant
    if tenant is None or tenant.status != "active" or not tenant.tenant_guid:
        raise LicenceError(f"{customer.name} has no active Microsoft tenant yet.")
    return tenant.tenant_guid


def record_usage(sub: Subscription) -> None:
    """A change point: the subscription's numbers now."""
    db.session.add(
        UsagePoint(
            account_id=sub.account_id,
            subscription_id=sub.id,
            recorded_at=utcnow(),
            quantity=sub.quantity,
            assigned=sub.assigned,
            unit_price=sub.unit_price,
        )
    )


# -- durable changes: the operation log, and the truth after a failed or unanswered call ---------------------------
QUANTITY, AUTO_RENEW = "quantity", "auto_renew"
LICENCE_ASSIGN, LICENCE_REMOVE = "licence_assign", "licence_remove"
USER_CREATE, USER_ENABLE, USER_DISABLE = "m365_user_create", "m365_user_enable", "m365_user_disable"
USER_DELETE, USER_RESET_PASSWORD = "m365_user_delete", "m365_user_reset_password"
USER_UPDATE = "m365_user_update"


def _begin(kind: str, account_id: int, target: str, params: dict) -> ProviderOperation:
    """The operation, written and committed before Microsoft is asked (no form key: these are not resent by forms),
    with the correlation id its call will carry."""
    return operations.begin(kind, account_id, params, None, target=target, correlation_id=new_correlation_id())


def _not_known(operation, exc: ProviderError, read_exc: ProviderError, cid: str, *, what, noun, account_id, target):
    """Microsoft did not answer and could not be asked what is true: the operation stays pending (the recoverer asks
    again), an event says so, and the user hears that it is not known yet — never that nothing changed."""
    db.session.rollback()
    correlation = exc.correlation_id or cid
    log.warning(
        "Not confirmed by Microsoft: %s (%s, correlation id %s); reading back: %s", what, exc, correlation, read_exc
    )
    operations.unconfirmed(operation, f"{exc}; reading it back failed: {read_exc}", correlation)
    record_event(
        f"{noun}.unconfirmed",
        account_id=account_id,
        target=target,
        summary=f"Microsoft did not confirm: {what} ({exc}, correlation id {correlation}); not known yet",
    )
    db.session.commit()
    return LicenceError(
        f"Microsoft did not confirm that it could {what} ({exc}, correlation id {correlation}), and could not be "
        "asked what is true now. Whether it changed is not known yet: look again in a minute."
    )


def _refused(operation: ProviderOperation, exc: ProviderError, cid: str, *, what: str, truth: str) -> LicenceError:
    """Microsoft did not do it, as its own record confirms (the portal already matches that record): the operation
    failed with what is true, committed; the user is told the same."""
    correlation = exc.correlation_id or cid
    operations.refused(operation, f"{exc}; {truth}", correlation)
    db.session.commit()
    return LicenceError(
        f"Microsoft did not {what}: {exc} (correlation id {correlation}). {truth}, as Microsoft confirms."
    )


def _send(operation: ProviderOperation, call, read, settle, *, what: str, noun: str, account_id: int, target):
    """Send ``call(correlation_id, request_id)`` (the operation's request id: MS-RequestId). After a ProviderError
    nothing is guessed: ``read()`` asks Microsoft, ``settle(truth, exc)`` makes the portal match it and says whether
    what was asked holds, and what is true in words. Returns (the answer, the correlation id, whether ``settle``
    already recorded it — the answer was lost though Microsoft did it); raises LicenceError with the truth otherwise."""
    cid = operation.correlation_id
    try:
        answer = call(cid, operation.request_id)
    except ProviderError as exc:
        db.session.rollback()
        try:
            truth = read()
        except ProviderError as read_exc:
            raise _not_known(
                operation, exc, read_exc, cid, what=what, noun=noun, account_id=account_id, target=target
            ) from exc
        done, words = settle(truth, exc)
        if not done:
            raise _refused(operation, exc, cid, what=what, truth=words) from exc
        return truth, cid, True
    faults.point(faults.AFTER_PROVIDER_CALL)  # Microsoft answered; nothing of it is recorded here yet
    return answer, cid, False


# -- quantities and auto-renew --------------------------------------------------------------------------------------
def change_quantity(sub: Subscription, quantity: int) -> None:
    if quantity == sub.quantity:
        return
    if quantity < 1 or quantity > 10000:
        raise LicenceError("Use a quantity between 1 and 10,000.")
    if sub.status != "active":
        raise LicenceError(f"{sub.product.name} is {sub.status}: its licences cannot change.")
    if quantity < sub.quantity:
        # Only seats still inside their batch's 168-hour window (app/services/windows.py), never below the assigned;
        # under the licence lease (no licence given meanwhile, no second reduction), checked again under it.
        from app.services import windows  # built on this module

        windows.reduce_to(sub, quantity)
        return
    _send_quantity(sub, quantity)


def _linked(sub: Subscription) -> str:
    tenant_id = _tenant_id(sub.account)
    if not sub.provider_subscription_id:
        raise LicenceError("This subscription is not linked to Partner Center.")
    return tenant_id


def _read_subscription(sub: Subscription):
    return lambda: get_provider().get_subscription(
        _tenant_id(sub.account), sub.provider_subscription_id, correlation_id=new_correlation_id()
    )


def _match_quantity(sub: Subscription, quantity: int, truth) -> tuple[bool, str]:
    """Make the portal's quantity Microsoft's (``truth``: its subscription), a repair an event; whether ``quantity``
    is what Microsoft has."""
    if truth.quantity != sub.quantity:
        if truth.quantity < sub.assigned:
            log.error("Subscription %s: Microsoft has %s licences, %s assigned", sub.id, truth.quantity, sub.assigned)
        else:
            before, sub.quantity = sub.quantity, truth.quantity
            record_usage(sub)
            record_event(
                "subscription.repaired",
                account_id=sub.account_id,
                target=sub,
                summary=f"Microsoft says {sub.product.name} has {truth.quantity} licences (the portal had {before}): "
                "the portal now matches",
            )
    return truth.quantity == quantity, f"{sub.product.name} has {truth.quantity} licences"


def _send_quantity(sub: Subscription, quantity: int) -> None:
    tenant_id, before = _linked(sub), sub.quantity
    operation = _begin(
        QUANTITY,
        sub.account_id,
        f"subscription:{sub.id}",
        {"subscription_id": sub.id, "provider_subscription_id": sub.provider_subscription_id, "quantity": quantity},
    )
    answer, cid, _settled = _send(
        operation,
        lambda cid, rid: get_provider().change_quantity(
            tenant_id, sub.provider_subscription_id, quantity, correlation_id=cid, request_id=rid
        ),
        _read_subscription(sub),
        lambda truth, _exc: _match_quantity(sub, quantity, truth),
        what=f"change {sub.product.name} to {quantity} licences",
        noun="subscription",
        account_id=sub.account_id,
        target=sub,
    )
    if sub.quantity != answer.quantity:
        sub.quantity = answer.quantity
        record_usage(sub)
    from app.services import windows  # an increase is a seat batch; a decrease gives seats of open batches back

    windows.quantity_changed(sub, before, answer)
    record_event(
        "subscription.quantity_changed",
        account_id=sub.account_id,
        target=sub,
        summary=f"{sub.product.name}: {before} → {sub.quantity} licences (request id {operation.request_id})",
    )
    _cleared_at_renewal(sub, f"Changing the quantity to {sub.quantity}")
    operations.succeeded(operation, {"quantity": answer.quantity}, cid)


def _match_auto_renew(sub: Subscription, enabled: bool, truth) -> tuple[bool, str]:
    if truth.auto_renew != sub.auto_renew:
        sub.auto_renew = truth.auto_renew
        record_event(
            "subscription.repaired",
            account_id=sub.account_id,
            target=sub,
            summary=f"Microsoft says auto-renew of {sub.product.name} is {'on' if truth.auto_renew else 'off'}: "
            "the portal now matches",
        )
    return truth.auto_renew == enabled, f"Auto-renew of {sub.product.name} is {'on' if truth.auto_renew else 'off'}"


def set_auto_renew(sub: Subscription, enabled: bool) -> None:
    if sub.auto_renew == enabled:
        return
    tenant_id = _linked(sub)
    operation = _begin(
        AUTO_RENEW,
        sub.account_id,
        f"subscription:{sub.id}",
        {"subscription_id": sub.id, "provider_subscription_id": sub.provider_subscription_id, "enabled": enabled},
    )
    answer, cid, _settled = _send(
        operation,
        lambda cid, rid: get_provider().set_auto_renew(
            tenant_id, sub.provider_subscription_id, enabled, correlation_id=cid, request_id=rid
        ),
        _read_subscription(sub),
        lambda truth, _exc: _match_auto_renew(sub, enabled, truth),
        what=f"turn auto-renew of {sub.product.name} {'on' if enabled else 'off'}",
        noun="subscription",
        account_id=sub.account_id,
        target=sub,
    )
    sub.auto_renew = answer.auto_renew
    record_event(
        "subscription.auto_renew",
        account_id=sub.account_id,
        target=sub,
        summary=f"{sub.product.name}: auto-renew {'on' if enabled else 'off'} (request id {operation.request_id})",
    )
    _cleared_at_renewal(sub, f"Turning auto-renew {'on' if enabled else 'off'}")
    operations.succeeded(operation, {"auto_renew": answer.auto_renew}, cid)


def _cleared_at_renewal(sub: Subscription, what: str) -> None:
    """A mid-term change deletes what was scheduled for renewal, at Microsoft and here (app/services/renewals.py)."""
    from app.services import renewals  # it builds on this module

    renewals.after_midterm_change(sub, what)


# -- licences: one change at a time per subscription ------------------------------------------------------------
class _Lease:
    """The subscription's licence lease: claimed by a conditional UPDATE and committed BEFORE Microsoft is asked, so
    two requests never change one subscription's licences at once — without a database transaction held open through
    the call (the sandbox writes the same SQLite file on its own connection and would wait out the busy timeout). It
    lapses by itself after ``LICENCE_LEASE_SECONDS``: a crashed holder does not hold it for ever."""

    def __init__(self, sub: Subscription):
        self.sub_id, self.name = sub.id, sub.product.name
        self.token = str(uuid.uuid4())

    def claim(self) -> None:
        now = utcnow()
        until = now + dt.timedelta(seconds=current_app.config["LICENCE_LEASE_SECONDS"])
        won = db.session.execute(
            update(Subscription)
            .where(
                Subscription.id == self.sub_id,
                or_(Subscription.licence_lease_until.is_(None), Subscription.licence_lease_until < now),
            )
            .values(licence_lease=self.token, licence_lease_until=until)
            .execution_options(synchronize_session=False)
        )
        if won.rowcount != 1:
            db.session.rollback()
            raise LicenceError(f"Another licence change of {self.name} is under way: try again in a moment.")
        db.session.commit()

    @contextlib.contextmanager
    def held(self):
        """Claimed (and committed) on entry; on exit released in the caller's transaction (committed with the
        change), or — after a refusal or an error — rolled back, released and committed at once."""
        self.claim()
        try:
            yield self
        except Exception:  # a refusal, or Microsoft unreachable while recovering: released at once either way
            db.session.rollback()
            self.release()
            db.session.commit()
            raise
        self.release()

    def release(self) -> None:
        """In the caller's transaction: released when the change it guarded is committed."""
        db.session.execute(
            update(Subscription)
            .where(Subscription.id == self.sub_id, Subscription.licence_lease == self.token)
            .values(licence_lease=None, licence_lease_until=None)
            .execution_options(synchronize_session=False)
        )


@contextlib.contextmanager
def _leases(subs: list[Subscription]):
    """The leases of several subscriptions (a user's licences), each claimed in turn, all released on exit."""
    with contextlib.ExitStack() as stack:
        for sub in sorted(subs, key=lambda s: s.id):  # one order for everyone: no two claimers wait on each other
            stack.enter_context(_Lease(sub).held())
        yield


def _assignment(sub: Subscription, person: M365User) -> LicenceAssignment | None:
    return db.session.scalars(
        select(LicenceAssignment).where(
            LicenceAssignment.subscription_id == sub.id, LicenceAssignment.m365_user_id == person.id
        )
    ).first()


def _record_assignment(sub: Subscription, person: M365User, held: bool) -> bool:
    """Make the portal's record of ``person`` holding a licence of ``sub`` say ``held``; whether it changed."""
    current = _assignment(sub, person)
    if held and current is None and sub.assigned >= sub.quantity:
        # Microsoft holds more licences than the subscription has: the portal cannot record it; say so loudly.
        log.error("Subscription %s: Microsoft holds more licences than its quantity %s", sub.id, sub.quantity)
        return False
    if held and current is None:
        db.session.add(LicenceAssignment(account_id=sub.account_id, subscription_id=sub.id, m365_user_id=person.id))
        sub.assigned += 1
    elif not held and current is not None:
        db.session.delete(current)
        sub.assigned -= 1
    else:
        return False
    db.session.flush()
    record_usage(sub)
    return True


def _licence_change(sub: Subscription, person: M365User, held: bool) -> None:
    """Give (``held``) or take back one licence: under the subscription's lease, written as an operation, Microsoft
    first, then the portal's record. After a failed or unanswered call nothing is guessed and nothing compensated
    blindly: Microsoft's own record of the user's licences is read and the portal made to match it; the user is told
    what is now true, and a repair is an event."""
    verb = "assign" if held else "remove"
    with _Lease(sub).held():
        db.session.refresh(sub)
        _check_change(sub, person, held)  # again, now that nobody else can change this subscription's licences
        tenant_id, sku, user_id = _tenant_id(sub.account), sub.product.sku, person.provider_user_id or ""
        operation = _begin(
            LICENCE_ASSIGN if held else LICENCE_REMOVE,
            sub.account_id,
            f"subscription:{sub.id}",
            {"subscription_id": sub.id, "m365_user_id": person.id, "provider_user_id": user_id, "sku": sku},
        )
        what = f"{verb} {sub.product.name} {'to' if held else 'from'} {person.user_principal_name}"
        _answer, cid, settled = _send(
            operation,
            lambda cid, rid: get_provider().assign_licences(
                tenant_id,
                user_id,
                add_sku_ids=[sku] if held else [],
                remove_sku_ids=[] if held else [sku],
                correlation_id=cid,
                request_id=rid,
            ),
            lambda: sku in get_provider().get_user_licences(tenant_id, user_id, correlation_id=new_correlation_id()),
            lambda holds, _exc: _match_licence(sub, person, held, holds),
            what=what,
            noun="licence",
            account_id=sub.account_id,
            target=person,
        )
        if not settled:
            _record_assignment(sub, person, held)
        done = "assigned to" if held else "removed from"
        record_event(
            "licence.assigned" if held else "licence.unassigned",
            account_id=sub.account_id,
            target=person,
            summary=f"{sub.product.name} {done} {person.user_principal_name} ({sub.assigned}/{sub.quantity})",
        )
        operations.succeeded(operation, {"held": held, "assigned": sub.assigned}, cid)


def _match_licence(sub: Subscription, person: M365User, held: bool, holds: bool) -> tuple[bool, str]:
    """Microsoft says ``person`` ``holds`` a licence of ``sub`` or not: the portal made to match, a repair an event;
    whether that is what was asked (``held``)."""
    if _record_assignment(sub, person, holds):
        record_event(
            "licence.repaired",
            account_id=sub.account_id,
            target=person,
            summary=(
                f"Microsoft says {person.user_principal_name} {'holds' if holds else 'does not hold'} "
                f"{sub.product.name} after an unanswered call: the portal now matches ({sub.assigned}/{sub.quantity})"
            ),
        )
    return holds == held, f"{person.user_principal_name} {'still holds' if holds else 'does not hold'} it"


def _check_change(sub: Subscription, person: M365User, held: bool) -> None:
    if held:
        if person.account_id != sub.account_id:
            raise LicenceError("That user belongs to another customer.")
        if person.status != "active":
            raise LicenceError(f"{person.user_principal_name} is disabled.")
        if _assignment(sub, person) is not None:
            raise LicenceError(f"{person.user_principal_name} already has {sub.product.name}.")
        if sub.assigned >= sub.quantity:
            raise LicenceError(
                f"All {sub.quantity} licences of {sub.product.name} are assigned: raise the quantity first."
            )
        if sub.next_quantity is not None and sub.assigned >= sub.next_quantity:  # issue 13: renewals
            raise LicenceError(
                f"{sub.product.name} renews on {sub.renew_on:%d/%m/%Y} with {sub.next_quantity} licences, all "
                "assigned: change the renewal's quantity first."
            )
    elif _assignment(sub, person) is None:
        raise LicenceError(f"{person.user_principal_name} does not have {sub.product.name}.")


def assign(sub: Subscription, person: M365User) -> None:
    """Give ``person`` a licence of ``sub`` (checked before the lease is taken, and again under it)."""
    _check_change(sub, person, True)
    _licence_change(sub, person, True)


def unassign(sub: Subscription, person: M365User) -> None:
    """Take a licence back: at Microsoft first, then here."""
    _check_change(sub, person, False)
    _licence_change(sub, person, False)


# -- Microsoft 365 users ----------------------------------------------------------------------------------------------
def temporary_password() -> str:
    """A temporary password Microsoft accepts (upper and lower case, a digit, a symbol; 16+ characters)."""
    return secrets.token_urlsafe(12) + secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") + secrets.choice("23456789") + "!a"


def _record_user(customer: Account, upn: str, display_name: str, user_id: str, **names) -> M365User:
    """The portal's record of the user Microsoft has (once: an earlier try may have recorded it), with its
    ``first_name``, ``last_name`` and ``usage_location`` when given."""
    person = db.session.scalars(
        select(M365User).where(M365User.account_id == customer.id, M365User.user_principal_name == upn)
    ).first()
    if person is None:
        person = M365User(account_id=customer.id, display_name=display_name, user_principal_name=upn)
        db.session.add(person)
    person.provider_user_id = user_id
    for name in ("first_name", "last_name", "usage_location"):
        if names.get(name) is not None:
            setattr(person, name, names[name] or None)
    db.session.flush()
    return person


def add_m365_user(
    customer: Account,
    first_name: str,
    last_name: str,
    username: str,
    password: str,
    *,
    display_name: str | None = None,
    usage_location: str | None = None,
) -> M365User:
    """Create the user at Microsoft, then here, as Microsoft's admin centre adds one: names, display name (default
    "First Last"), user name at the tenant's domain and usage location (default the customer's country: Microsoft
    needs it before licences can be assigned). The password goes to Microsoft only: never into the operation, an
    event or a log line. Before it is told that nothing was made, Microsoft is asked whether the user exists."""
    tenant = customer.tenant
    tenant_id = _tenant_id(customer)
    first, last = first_name.strip(), last_name.strip()
    display = (display_name or "").strip() or f"{first} {last}".strip()
    upn = f"{username.strip().lower()}@{tenant.primary_domain}"
    if db.session.scalar(
        select(M365User.id).where(M365User.account_id == customer.id, M365User.user_principal_name == upn)
    ):
        raise LicenceError(f"{upn} already exists.")
    location = (usage_location or customer.country or "NZ").strip().upper()
    params = {
        "user_principal_name": upn,
        "first_name": first,
        "last_name": last,
        "display_name": display,
        "usage_location": location,
    }
    operation = _begin(USER_CREATE, customer.id, f"account:{customer.id}", params)
    names = {"first_name": first, "last_name": last, "usage_location": location}

    def found(truth, exc: ProviderError):
        if truth is None:
            return False, f"{upn} does not exist at Microsoft"
        if exc.status == 409:  # it existed before this request: listed now, but its password is not the one typed
            person = _record_user(customer, upn, truth.display_name or display, truth.user_id, **_names_of(truth))
            record_event(
                "m365_user.repaired",
                account_id=customer.id,
                target=person,
                summary=f"Microsoft already had {upn}: the portal now lists it",
            )
            return False, f"{upn} already existed at Microsoft and is listed here now; reset its password to sign in"
        return True, ""

    answer, cid, settled = _send(
        operation,
        lambda cid, rid: get_provider().create_user(
            tenant_id,
            first_name=first,
            last_name=last,
            user_principal_name=upn,
            password=password,
            usage_location=location,
            correlation_id=cid,
            request_id=rid,
            display_name=display,
        ),
        lambda: get_provider().find_user(tenant_id, upn, correlation_id=new_correlation_id()),
        found,
        what=f"create the user {upn}",
        noun="m365_user",
        account_id=customer.id,
        target=customer,
    )
    user_id = answer.user_id if settled else answer
    person = _record_user(customer, upn, display, user_id, **names)
    record_event(
        "m365_user.created",
        account_id=customer.id,
        target=person,
        summary=f"Microsoft 365 user {upn} ({display}) added, usage location {location} "
        f"(request id {operation.request_id})",
    )
    operations.succeeded(operation, {"m365_user_id": person.id, "provider_user_id": user_id}, cid)
    return person


def _names_of(truth) -> dict:
    """What Microsoft's record of a user says of its names and usage location (what it does not say is left out)."""
    return {
        name: getattr(truth, name)
        for name in ("first_name", "last_name", "usage_location")
        if getattr(truth, name, None) is not None
    }


def _linked_user(person: M365User) -> str:
    tenant_id = _tenant_id(person.account)
    if not person.provider_user_id:
        raise LicenceError(f"{person.user_principal_name} is not linked to a Microsoft 365 user.")
    return tenant_id


def _read_user(person: M365User):
    return lambda: get_provider().get_user(
        _tenant_id(person.account), person.provider_user_id, correlation_id=new_correlation_id()
    )


def _match_status(person: M365User, enabled: bool, truth) -> tuple[bool, str]:
    """Microsoft's record of the user (None: it has none): the portal's status made to match, a repair an event."""
    if truth is None:
        return False, f"{person.user_principal_name} no longer exists at Microsoft"
    status = "active" if truth.enabled else "disabled"
    if person.status != status:
        person.status = status
        record_event(
            "m365_user.repaired",
            account_id=person.account_id,
            target=person,
            summary=f"Microsoft says {person.user_principal_name} is {'enabled' if truth.enabled else 'disabled'}: "
            "the portal now matches",
        )
    return truth.enabled == enabled, f"{person.user_principal_name} is {'enabled' if truth.enabled else 'disabled'}"


def set_m365_user_status(person: M365User, enabled: bool) -> None:
    """Let the user sign in to Microsoft 365, or stop them — at Microsoft first (the portal never says "disabled"
    while the user can still sign in), then here."""
    status = "active" if enabled else "disabled"
    if person.status == status:
        return
    tenant_id = _linked_user(person)
    verb = "enabled" if enabled else "disabled"
    operation = _begin(
        USER_ENABLE if enabled else USER_DISABLE,
        person.account_id,
        f"m365_user:{person.id}",
        {"m365_user_id": person.id, "provider_user_id": person.provider_user_id, "enabled": enabled},
    )
    _answer, cid, _settled = _send(
        operation,
        lambda cid, rid: get_provider().set_user_enabled(
            tenant_id, person.provider_user_id, enabled, correlation_id=cid, request_id=rid
        ),
        _read_user(person),
        lambda truth, _exc: _match_status(person, enabled, truth),
        what=f"{'enable' if enabled else 'disable'} {person.user_principal_name}",
        noun="m365_user",
        account_id=person.account_id,
        target=person,
    )
    person.status = status
    record_event(
        f"m365_user.{verb}",
        account_id=person.account_id,
        target=person,
        summary=f"Microsoft 365 user {person.user_principal_name} {verb} (request id {operation.request_id})",
    )
    operations.succeeded(operation, {"enabled": enabled}, cid)


#: What Edit changes, as the portal's M365User names it, and how the Event Log says it.
DETAILS = {
    "first_name": "first name",
    "last_name": "last name",
    "display_name": "display name",
    "usage_location": "usage location",
}


def _details(person_or_truth) -> dict:
    return {name: getattr(person_or_truth, name, None) for name in DETAILS}


def _changes(before: dict, after: dict) -> str:
    """What differs, in words: "display name Ana → Ana B, usage location NZ → AU"."""
    return ", ".join(
        f"{words} {before[name] or '(none)'} → {after[name] or '(none)'}"
        for name, words in DETAILS.items()
        if before[name] != after[name]
    )


def _match_details(person: M365User, wanted: dict, truth) -> tuple[bool, str]:
    """Microsoft's record of the user (None: it has none): the portal's names and usage location made to match, a
    repair an event; whether they are what was asked (``wanted``)."""
    upn = person.user_principal_name
    if truth is None:
        return False, f"{upn} no longer exists at Microsoft"
    before = _details(person)
    for name in DETAILS:
        value = getattr(truth, name, None)
        if value is not None and value != getattr(person, name):
            setattr(person, name, value)
    changed = _changes(before, _details(person))
    if changed:
        record_event(
            "m365_user.repaired",
            account_id=person.account_id,
            target=person,
            summary=f"Microsoft has other details for {upn} ({changed}): the portal now matches",
        )
    done = all((getattr(truth, name, None) or "") == (wanted[name] or "") for name in DETAILS)
    location = truth.usage_location or "not set"
    return done, f"{upn} is {truth.display_name} at Microsoft (usage location {location})"


def update_m365_user(
    person: M365User, *, first_name: str, last_name: str, display_name: str, usage_location: str
) -> bool:
    """Change the user's names and usage location — at Microsoft first, then here; whether anything changed. After an
    unanswered call Microsoft's record is read back and the portal made to match it."""
    wanted = {
        "first_name": first_name.strip(),
        "last_name": last_name.strip(),
        "display_name": display_name.strip() or f"{first_name.strip()} {last_name.strip()}".strip(),
        "usage_location": usage_location.strip().upper(),
    }
    if not wanted["display_name"]:
        raise LicenceError("A display name is needed.")
    before = _details(person)
    if before == wanted:
        return False
    tenant_id = _linked_user(person)
    upn = person.user_principal_name
    operation = _begin(
        USER_UPDATE,
        person.account_id,
        f"m365_user:{person.id}",
        {"m365_user_id": person.id, "provider_user_id": person.provider_user_id, **wanted},
    )
    _answer, cid, settled = _send(
        operation,
        lambda cid, rid: get_provider().update_user(
            tenant_id, person.provider_user_id, **wanted, correlation_id=cid, request_id=rid
        ),
        _read_user(person),
        lambda truth, _exc: _match_details(person, wanted, truth),
        what=f"change the details of {upn}",
        noun="m365_user",
        account_id=person.account_id,
        target=person,
    )
    if not settled:
        for name, value in wanted.items():
            setattr(person, name, value)
    record_event(
        "m365_user.updated",
        account_id=person.account_id,
        target=person,
        summary=f"Microsoft 365 user {upn}: {_changes(before, wanted)} (request id {operation.request_id})",
    )
    operations.succeeded(operation, {"updated": True}, cid)
    return True


def _held_subscriptions(person: M365User) -> list[Subscription]:
    return list(
        db.session.scalars(
            select(Subscription)
            .join(LicenceAssignment, LicenceAssignment.subscription_id == Subscription.id)
            .where(LicenceAssignment.m365_user_id == person.id)
        )
    )


def held_licence_names(person: M365User) -> list[str]:
    """The products whose licences ``person`` holds, by name (what deleting them releases)."""
    return sorted({sub.product.name for sub in _held_subscriptions(person)})


def _forget_user(person: M365User, why: str) -> None:
    """Microsoft has deleted the user: its licences are free again (each subscription's assigned count down, a usage
    point each), its record gone; an event (``why``)."""
    for sub in _held_subscriptions(person):
        _record_assignment(sub, person, False)
    record_event("m365_user.deleted", account_id=person.account_id, target=person, summary=why)
    db.session.delete(person)
    db.session.flush()


def delete_m365_user(person: M365User) -> None:
    """Delete the user at Microsoft (which frees its licences), then here: its licence assignments released under
    their subscriptions' leases, so no licence change of theirs runs meanwhile."""
    tenant_id = _linked_user(person)
    upn = person.user_principal_name
    with _leases(_held_subscriptions(person)):
        operation = _begin(
            USER_DELETE,
            person.account_id,
            f"m365_user:{person.id}",
            {"m365_user_id": person.id, "provider_user_id": person.provider_user_id, "user_principal_name": upn},
        )

        def gone(truth, _exc):
            if truth is None:
                _forget_user(
                    person, f"Microsoft says {upn} is deleted after an unanswered call: the portal now matches"
                )
                return True, ""
            return False, f"{upn} still exists"

        _answer, cid, settled = _send(
            operation,
            lambda cid, rid: get_provider().delete_user(
                tenant_id, person.provider_user_id, correlation_id=cid, request_id=rid
            ),
            _read_user(person),
            gone,
            what=f"delete {upn}",
            noun="m365_user",
            account_id=person.account_id,
            target=person,
        )
        if not settled:
            _forget_user(person, f"Microsoft 365 user {upn} deleted (request id {operation.request_id})")
        operations.succeeded(operation, {"deleted": True}, cid)


def reset_m365_user_password(person: M365User) -> str:
    """Give the user a new temporary password at Microsoft (changed at their next sign-in); it is returned to be
    shown once and kept nowhere. Microsoft has no read of a password: after an unanswered call the user hears that it
    is not known whether it changed, and that the new password was never shown — reset it again."""
    tenant_id = _linked_user(person)
    upn = person.user_principal_name
    operation = _begin(
        USER_RESET_PASSWORD,
        person.account_id,
        f"m365_user:{person.id}",
        {"m365_user_id": person.id, "provider_user_id": person.provider_user_id},
    )
    password = temporary_password()
    cid = operation.correlation_id
    try:
        get_provider().reset_user_password(
            tenant_id, person.provider_user_id, password=password, correlation_id=cid, request_id=operation.request_id
        )
    except ProviderError as exc:
        db.session.rollback()
        correlation = exc.correlation_id or cid
        if exc.status is not None and 400 <= exc.status < 500 and exc.status not in (408, 429):
            raise _refused(
                operation, exc, cid, what=f"reset the password of {upn}", truth="Its password is unchanged"
            ) from exc
        unknown = RESET_NOT_KNOWN.format(upn=upn)
        operations.refused(operation, f"{exc}; {unknown}", correlation)
        record_event(
            "m365_user.unconfirmed",
            account_id=person.account_id,
            target=person,
            summary=f"Microsoft did not confirm a new password for {upn} ({exc}, correlation id {correlation})",
        )
        db.session.commit()
        raise LicenceError(
            f"Microsoft did not confirm the new password of {upn} ({exc}, correlation id {correlation}). {unknown}"
        ) from exc
    faults.point(faults.AFTER_PROVIDER_CALL)
    record_event(
        "m365_user.password_reset",
        account_id=person.account_id,
        target=person,
        summary=f"Temporary password of {upn} reset; changed at the next sign-in (request id {operation.request_id})",
    )
    operations.succeeded(operation, {"reset": True}, cid)
    return password


RESET_NOT_KNOWN = (
    "Whether the password of {upn} changed is not known, and no new password was shown: reset it again to get one "
    "you can give them."
)


# -- recovery: a pending operation whose sender is gone is settled by asking Microsoft --------------------------------
def _interrupted(operation: ProviderOperation, done: bool, truth: str) -> None:
    """Record what Microsoft's own record says of an interrupted operation (its portal side already made to match)."""
    cid = operation.correlation_id or ""
    if done:
        operations.succeeded(operation, {"recovered": True, "truth": truth}, cid)
    else:
        operations.refused(operation, f"Interrupted (a crash or a restart); {truth}", cid)


def _recover_subscription(operation: ProviderOperation) -> None:
    params = operations.params_of(operation)
    sub = db.session.get(Subscription, params["subscription_id"])
    if sub is None:
        return _interrupted(operation, False, "the subscription is no longer in the portal")
    if operation.kind != QUANTITY:
        return _settle_subscription(operation, sub, params)
    with _Lease(sub).held():  # a quantity is repaired as a live change makes it: nobody else changing its licences
        db.session.refresh(sub)
        _settle_subscription(operation, sub, params)


def _settle_subscription(operation: ProviderOperation, sub: Subscription, params: dict) -> None:
    truth = _read_subscription(sub)()
    before = sub.quantity
    if operation.kind == QUANTITY:
        done, words = _match_quantity(sub, params["quantity"], truth)
    else:
        done, words = _match_auto_renew(sub, params["enabled"], truth)
    from app.services import renewals, windows  # built on this module

    if sub.quantity != before:  # the seat batches follow (an increase is a batch; a decrease gives seats back)
        windows.quantity_changed(sub, before, truth)
    renewals._match_scheduled(sub, truth.scheduled, truth)  # a mid-term change deleted what was scheduled
    _interrupted(operation, done, words)


def _recover_licence(operation: ProviderOperation) -> None:
    params = operations.params_of(operation)
    sub = db.session.get(Subscription, params["subscription_id"])
    person = db.session.get(M365User, params["m365_user_id"])
    if sub is None or person is None:
        return _interrupted(operation, False, "its subscription or user is no longer in the portal")
    with _Lease(sub).held():  # no live change of the subscription's licences meanwhile
        db.session.refresh(sub)
        tenant_id = _tenant_id(sub.account)
        holds = params["sku"] in get_provider().get_user_licences(
            tenant_id, params["provider_user_id"], correlation_id=new_correlation_id()
        )
        done, words = _match_licence(sub, person, operation.kind == LICENCE_ASSIGN, holds)
        _interrupted(operation, done, words)


def _recover_user_create(operation: ProviderOperation) -> None:
    params = operations.params_of(operation)
    customer = db.session.get(Account, operation.account_id)
    upn = params["user_principal_name"]
    found = get_provider().find_user(_tenant_id(customer), upn, correlation_id=new_correlation_id())
    if found is None:
        return _interrupted(operation, False, f"{upn} does not exist at Microsoft: add it again")
    known = db.session.scalar(
        select(M365User.id).where(M365User.account_id == customer.id, M365User.user_principal_name == upn)
    )
    display = params.get("display_name") or f"{params['first_name']} {params['last_name']}"
    names = {name: params.get(name) for name in ("first_name", "last_name", "usage_location")}
    person = _record_user(customer, upn, display, found.user_id, **names)
    if known is None:
        record_event(
            "m365_user.repaired",
            account_id=customer.id,
            target=person,
            summary=f"Microsoft has {upn}, added by an interrupted request: the portal now lists it. Its password "
            "was never shown: reset it to give them one",
        )
    _interrupted(operation, True, f"{upn} exists at Microsoft")


def _recover_user_status(operation: ProviderOperation) -> None:
    params = operations.params_of(operation)
    person = db.session.get(M365User, params["m365_user_id"])
    if person is None:
        return _interrupted(operation, False, "the user is no longer in the portal")
    done, words = _match_status(person, params["enabled"], _read_user(person)())
    _interrupted(operation, done, words)


def _recover_user_update(operation: ProviderOperation) -> None:
    params = operations.params_of(operation)
    person = db.session.get(M365User, params["m365_user_id"])
    if person is None:
        return _interrupted(operation, False, "the user is no longer in the portal")
    done, words = _match_details(person, {name: params[name] for name in DETAILS}, _read_user(person)())
    _interrupted(operation, done, words)


def _recover_user_delete(operation: ProviderOperation) -> None:
    params = operations.params_of(operation)
    person = db.session.get(M365User, params["m365_user_id"])
    upn = params["user_principal_name"]
    if person is None:
        return _interrupted(operation, True, f"{upn} is no longer in the portal")
    if _read_user(person)() is not None:
        return _interrupted(operation, False, f"{upn} still exists at Microsoft")
    with _leases(_held_subscriptions(person)):
        _forget_user(person, f"Microsoft says {upn} is deleted, by an interrupted request: the portal now matches")
    _interrupted(operation, True, f"{upn} is deleted at Microsoft")


def _recover_password_reset(operation: ProviderOperation) -> None:
    """No read of a password exists: the interrupted reset's outcome is unknowable, and its password was never shown."""
    person = db.session.get(M365User, operations.params_of(operation)["m365_user_id"])
    upn = person.user_principal_name if person else "the user"
    if person is not None:
        record_event(
            "m365_user.unconfirmed",
            account_id=person.account_id,
            target=person,
            summary=f"A password reset of {upn} was interrupted: {RESET_NOT_KNOWN.format(upn=upn)}",
        )
    _interrupted(operation, False, RESET_NOT_KNOWN.format(upn=upn))


def _recover_cancel(operation: ProviderOperation) -> None:
    from app.services import windows  # built on this module

    windows.recover_cancel(operation)


#: How each kind of interrupted operation is settled (orders are sent again: ``ordering.recover_orders``).
RECOVERERS = {
    "subscription_cancel": _recover_cancel,  # app/services/windows.py
    QUANTITY: _recover_subscription,
    AUTO_RENEW: _recover_subscription,
    LICENCE_ASSIGN: _recover_licence,
    LICENCE_REMOVE: _recover_licence,
    USER_CREATE: _recover_user_create,
    USER_ENABLE: _recover_user_status,
    USER_DISABLE: _recover_user_status,
    USER_UPDATE: _recover_user_update,
    USER_DELETE: _recover_user_delete,
    USER_RESET_PASSWORD: _recover_password_reset,
}

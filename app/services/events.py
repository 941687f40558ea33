"""Recording events (DESIGN.md rule 3): every change adds one in the same transaction, never commits itself."""

from __future__ import annotations

import re
from typing import Any

from flask import g, has_request_context, request

from app import request_id
from app.extensions import db
from app.models.events import Event
from security import scoping


def _current_actor() -> tuple[Any, Any]:
    """The signed-in user and, while impersonating, the partner user behind them."""
    if not has_request_context():
        return None, None
    user = getattr(g, "user", None)
    if user is None or not getattr(user, "is_authenticated", False):
        return None, None
    return user, getattr(g, "impersonator", None)


def record_event(
    action: str,
    *,
    account_id: int,
    summary: str = "",
    target: Any = None,
    target_type: str | None = None,
    target_id: Any | None = None,
    actor: Any = None,
    on_behalf_of: Any = None,
    actor_label: str | None = None,
) -> Event:
    """Add an Event to the current session. ``actor`` defaults to the signed-in user (or the bypass reason);
    ``actor_label`` names who acted when no login is known (an address typed at sign-in)."""
    if actor is None and on_behalf_of is None:
        actor, on_behalf_of = _current_actor()
    if target is not None:
        target_type = target_type or type(target).__name__
        target_id = target_id if target_id is not None else getattr(target, "id", None)
    label = actor.email if actor is not None else (actor_label or scoping.current_scope().reason or "system")
    event = Event(
        account_id=account_id,
        action=action,
        summary=summary[:1000],
        target_type=target_type,
        target_id=str(target_id) if target_id is not None else None,
        actor_id=getattr(actor, "id", None),
        on_behalf_of_id=getattr(on_behalf_of, "id", None),
        actor_label=label[:320],
        client_address=request.remote_addr if has_request_context() else None,
        request_id=(request_id.current() or "")[:64] or None,
    )
    db.session.add(event)
    return event


def record_login_event(action: str, user, *, summary: str, actor: Any = None) -> Event:
    """An event about a login itself — its password, its second factor — in the log of the account that owns it (a
    customer-portal login's: its reseller's). A customer-portal login works in one customer's scope, which may not
    write its reseller's log: this one event is written under a named bypass and flushed at once, alone (nothing
    else pending in the session escapes its scope check)."""
    with scoping.bypass("an event about a login itself, in its owner's log"):
        event = record_event(action, account_id=user.account_id, target=user, summary=summary, actor=actor)
        db.session.flush([event])
    return event


def customer_portal_events(account_id: int):
    """The events a customer portal shows. A customer's: all of its account's. A reseller's own portal (the reseller
    as a Microsoft customer): only what happened in that portal — done by its customer portal users (directly or
    launched) or to them — never the reseller's partner-side work on its customers, which is logged on the same
    account."""
    from sqlalchemy import String, and_, cast, or_, select

    from app.models.accounts import CUSTOMER, Account
    from security.models import Membership

    mine = Event.account_id == account_id
    if db.session.scalar(select(Account.kind).where(Account.id == account_id)) == CUSTOMER:
        return mine
    # Its customer portal's users: the logins with a membership in it (an ORM entity, so the scope reaches it).
    own = select(Membership.user_id).where(Membership.account_id == account_id)
    own_text = select(cast(Membership.user_id, String)).where(Membership.account_id == account_id)
    return and_(
        mine,
        or_(Event.actor_id.in_(own), and_(Event.target_type == "PortalUser", Event.target_id.in_(own_text))),
    )


# -- how the Event Log shows an event --------------------------------------------------------------------------------

#: Every action the portal records, as the Event Log names it (the filter's choices, in this order).
ACTION_NAMES: dict[str, str] = {
    "billing.run": "Drafted the month's invoices",
    "billing.month": "Ran the monthly billing",
    "billing.settings": "Changed the billing settings",
    "invoice.issued": "Issued an invoice",
    "invoice.credit_note": "Drafted a credit note",
    "invoice.exported": "Exported invoices for accounting",
    "billing.reconciliation.imported": "Imported Microsoft's billed data",
    "billing.reconciliation.run": "Reconciled costs with Microsoft's invoice",
    "auth.login": "Signed in",
    "auth.logout": "Signed out",
    "auth.account_chosen": "Chose the account to work in",
    "auth.login_failed": "Sign-in failed",
    "auth.login_limited": "Sign-in held back (too many attempts)",
    "mfa.enrolled": "Set up two-factor authentication",
    "mfa.verified": "Passed the two-factor check",
    "mfa.failed": "Two-factor code refused",
    "mfa.limited": "Two-factor check held back (too many attempts)",
    "mfa.recovery_code_used": "Used a recovery code",
    "mfa.recovery_codes_regenerated": "Made new recovery codes",
    "mfa.reset": "Reset two-factor authentication",
    "mfa.disabled": "Turned off two-factor authentication",
    "impersonation.started": "Launched the customer portal",
    "impersonation.ended": "Left the customer portal",
    "user.created": "Added a user",
    "user.membership_added": "Gave a user access to another account",
    "user.updated": "Edited a user",
    "user.enabled": "Enabled a user",
    "user.disabled": "Disabled a user",
    "user.deleted": "Deleted a user",
    "user.password_set": "Set a password",
    "user.activation_sent": "Sent an activation email",
    "user.activation_email_failed": "Activation email not sent",
    "user.activated": "Activated a sign-in",
    "user.cp3_enabled": "Activated (CP3)",
    "user.placeholder_added": "Added the default master admin",
    "user.placeholder_updated": "Edited the default master admin",
    "user.placeholder_deleted": "Removed the default master admin",
    "reseller.created": "Created a reseller",
    "reseller.enabled": "Enabled a reseller",
    "reseller.disabled": "Disabled a reseller",
    "customer.created": "Created a customer",
    "customer.enabled": "Enabled a customer",
    "customer.disabled": "Disabled a customer",
    "account.updated": "Edited account details",
    "tenant.requested": "Requested a Microsoft tenant",
    "tenant.created": "Created a Microsoft tenant",
    "tenant.failed": "Microsoft tenant not created",
    "tenant.retried": "Retried a Microsoft tenant",
    "tenant.discarded": "Discarded a Microsoft tenant",
    "tenant.recovered": "Settled an interrupted Microsoft tenant",
    "tenant.linked": "Linked a Microsoft tenant",
    "tenant.relationship_accepted": "Reseller relationship accepted",
    "tenant.credentials_shown": "Showed a new tenant's admin sign-in once",
    "tenant.credentials_sent": "Mailed a one-time link to a new tenant's admin sign-in",
    "tenant.credentials_opened": "Opened the one-time link to a tenant's admin sign-in",
    "tenant.credentials_missing": "Microsoft named no admin password for a new tenant",
    "subscription.ordered": "Ordered a subscription",
    "subscription.created": "Added a subscription",
    "subscription.quantity_changed": "Changed a licence quantity",
    "subscription.auto_renew": "Changed auto-renew",
    "subscription.renewal_scheduled": "Scheduled a change at renewal",
    "subscription.renewal_cleared": "Cleared the change scheduled for renewal",
    "subscription.renewed": "Renewed a subscription",
    "subscription.expired": "A subscription expired",
    "subscription.upgraded": "Upgraded a subscription",
    "licence.moved": "Moved a licence to the upgraded subscription",
    "subscription.cancelled": "Cancelled a subscription",
    "licence.assigned": "Assigned a licence",
    "licence.unassigned": "Removed a licence",
    "licence.repaired": "Matched a licence to Microsoft's record",
    "licence.unconfirmed": "Licence change not confirmed by Microsoft",
    "user.activation_queued": "Queued an activation email",
    "reconcile.repaired": "Matched a record to Microsoft's (reconciliation)",
    "reconcile.finished": "Reconciled the portal with Microsoft",
    "reconcile.checked": "Checked a customer against Microsoft",
    "m365_user.created": "Added a Microsoft 365 user",
    "m365_user.enabled": "Enabled a Microsoft 365 user",
    "m365_user.disabled": "Disabled a Microsoft 365 user",
    "m365_user.deleted": "Deleted a Microsoft 365 user",
    "m365_user.password_reset": "Reset a Microsoft 365 user's password",
    "m365_user.updated": "Edited a Microsoft 365 user",
    "m365_user.imported": "Imported Microsoft 365 users",
    "m365_user.repaired": "Matched a Microsoft 365 user to Microsoft's record",
    "m365_user.unconfirmed": "Microsoft 365 user change not confirmed by Microsoft",
    "subscription.repaired": "Matched a subscription to Microsoft's record",
    "subscription.unconfirmed": "Subscription change not confirmed by Microsoft",
    "dashboard.widget_added": "Added a widget",
    "dashboard.widget_removed": "Removed a widget",
    "dashboard.reordered": "Rearranged the dashboard",
    "report.exported": "Exported a report",
    "report.export_queued": "Started a report export",
    "report.export_retried": "Retried a report export",
    "report.downloaded": "Downloaded a report",
    "event_log.exported": "Exported the event log",
    "event_log.purged": "Purged old events",
    "product.created": "Added a product",
    "product.updated": "Edited a product",
    "product.retired": "Retired a product",
    "pricesheet.imported": "Imported Microsoft's price sheet",
    "usage.snapshot": "Recorded usage",
    "price_rule.created": "Added a price rule",
    "price_rule.changed": "Changed a price rule",
    "price_rule.deleted": "Removed a price rule",
    "price_rule.applied_now": "Applied prices to monthly-term subscriptions",
    "subscription.repriced": "Changed a subscription's price",
    "demo.scale_seeded": "Generated scale data",
}
#: Actions recorded only on the operator's or a reseller's account: never in a customer portal's action filter.
PARTNER_SIDE = (
    "reseller.",
    "product.",
    "pricesheet.",
    "usage.",
    "demo.",
    "event_log.purged",
    "price_rule.",
    "billing.",
    "invoice.",
)

#: What an event's target is, in words.
TARGET_NAMES: dict[str, str] = {
    "PortalUser": "User",
    "PlaceholderUser": "Default master admin",
    "Account": "Account",
    "MicrosoftTenant": "Microsoft tenant",
    "Subscription": "Subscription",
    "LicenceAssignment": "Licence",
    "M365User": "Microsoft 365 user",
    "DashboardWidget": "Widget",
    "BackgroundJob": "Export",
    "Product": "Product",
    "PriceRule": "Price rule",
    "Drift": "Difference with Microsoft",
    "ReconciliationRun": "Reconciliation",
    "Invoice": "Invoice",
    "Month": "Month",
    "CredentialHandover": "Admin sign-in link",
}

#: Words for an action's code, for one ACTION_NAMES lacks: a whole part (``tenant.`` is a Microsoft tenant) ...
CODE_PARTS: dict[str, str] = {"tenant": "Microsoft tenant", "auth": "sign-in", "reconcile": "reconciliation"}
#: ... and single words: ``m365_user.created`` → "Microsoft 365 user created".
CODE_WORDS: dict[str, str] = {
    "m365": "Microsoft 365",
    "mfa": "two-factor authentication",
    "cp3": "(CP3)",
    "csp": "CSP",
    "pricesheet": "price sheet",
}


def _words(name: str) -> str:
    """``MicrosoftTenant`` → ``Microsoft tenant``; ``m365_user.created`` → ``Microsoft 365 user created``."""
    words = []
    for part in re.split(r"[.\s]+", name.strip()):
        if part.lower() in CODE_PARTS:
            words.append(CODE_PARTS[part.lower()])
            continue
        spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", part).replace("_", " ").lower()
        words += [CODE_WORDS.get(word, word) for word in spaced.split()]
    text = " ".join(words)
    return text[:1].upper() + text[1:] if text else "Something"


def action_name(action: str) -> str:
    """What the Event Log calls an action (``m365_user.created``: "Added a Microsoft 365 user"); an action without
    words of its own (recorded by code newer than this list) in words made from its code, never its dotted name."""
    return ACTION_NAMES.get(action) or _words(action)


def target_name(target_type: str | None) -> str:
    return "" if not target_type else TARGET_NAMES.get(target_type) or _words(target_type)


def action_choices(*, customer_portal: bool = False) -> list[tuple[str, str]]:
    """(action, name) pairs for the Event Log's action filter."""
    return [
        (action, name)
        for action, name in ACTION_NAMES.items()
        if not (customer_portal and action.startswith(PARTNER_SIDE))
    ]

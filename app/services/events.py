"""Recording events (DESIGN.md rule 3): every change adds one in the same transaction, never commits itself."""

from __future__ import annotations

from typing import Any

from flask import g, has_request_context, request

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
    )
    db.session.add(event)
    return event


def customer_portal_events(account_id: int):
    """The events a customer portal shows. A customer's: all of its account's. A reseller's own portal (the reseller
    as a Microsoft customer): only what happened in that portal — done by its customer portal users (directly or
    launched) or to them — never the reseller's partner-side work on its customers, which is logged on the same
    account."""
    from sqlalchemy import String, and_, cast, or_, select

    from app.models.accounts import CUSTOMER, Account
    from security.models import CUSTOMER_PORTAL, PortalUser

    mine = Event.account_id == account_id
    if db.session.scalar(select(Account.kind).where(Account.id == account_id)) == CUSTOMER:
        return mine
    own = select(PortalUser.id).where(PortalUser.account_id == account_id, PortalUser.portal == CUSTOMER_PORTAL)
    own_text = select(cast(PortalUser.id, String)).where(
        PortalUser.account_id == account_id, PortalUser.portal == CUSTOMER_PORTAL
    )
    return and_(
        mine,
        or_(Event.actor_id.in_(own), and_(Event.target_type == "PortalUser", Event.target_id.in_(own_text))),
    )

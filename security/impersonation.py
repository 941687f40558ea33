"""Launch (CP3): a partner user (or operator staff) enters a customer's portal as one of its users.

One policy function decides (``can_impersonate``); start and stop are POSTs; nesting is refused; the session id is
renewed on start and stop; the real user is kept on the server-side session; it expires; both sides' event logs
show it; and while it lasts the permissions are the target's, less any capability the real user's role lacks.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from flask import Flask, current_app, flash, g, redirect, request, session, url_for
from flask_login import login_user

from app.models.accounts import CUSTOMER, OPERATOR, RESELLER
from app.models.base import utcnow
from security import scoping, signals
from security.models import CUSTOMER_PORTAL, OPERATOR_PORTAL, PARTNER_PORTAL, PortalUser
from security.sessions import IMPERSONATOR_KEY, end_ended_sessions, end_session, renew_session_id, why_session_ended

ACTOR_KEY = IMPERSONATOR_KEY
TARGET_KEY = "impersonated_id"
STARTED_KEY = "impersonation_started"


@dataclasses.dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.allowed


def can_impersonate(*, actor: PortalUser, target: PortalUser) -> Decision:
    """May ``actor`` enter the customer portal as ``target``? Pure: reads only the two users and their accounts."""
    if actor is None or not actor.is_active:
        return Decision(False, "Only signed-in, active staff can launch the customer portal.")
    if actor.id == target.id:
        return Decision(False, "You cannot launch the customer portal as yourself.")
    if target.portal != CUSTOMER_PORTAL or target.account is None or target.account.kind not in (CUSTOMER, RESELLER):
        return Decision(False, "Only customer portal users can be launched as.")
    if target.deleted_at is not None or not target.active:
        return Decision(False, f"{target.email} is disabled.")
    if not target.cp3_enabled:
        return Decision(False, f"{target.email} is not enabled for the customer portal: Activate (CP3) first.")
    if not target.account.is_active:
        return Decision(False, f"{target.account.name} is disabled.")
    if actor.portal == OPERATOR_PORTAL and actor.account.kind == OPERATOR:
        return Decision(True)
    if actor.portal == PARTNER_PORTAL and actor.account_id in (target.account.parent_id, target.account_id):
        return Decision(True)  # its customers' portals, and its own reseller account's
    if actor.portal == CUSTOMER_PORTAL:
        return Decision(False, "Customer portal users cannot launch the customer portal as someone else.")
    return Decision(False, f"{target.account.name} is not one of your customers.")


def impersonating() -> bool:
    return ACTOR_KEY in session


def _logs_of(actor: PortalUser, target: PortalUser) -> set[int]:
    """The event logs a visit shows in: the customer's, its reseller's and the actor's own account's (for a
    reseller's own customer portal, the reseller's alone — never the operator above it)."""
    logs = {target.account_id, actor.account_id}
    if target.account.kind == CUSTOMER and target.account.parent_id:
        logs.add(target.account.parent_id)
    return logs


def start(actor: PortalUser, target: PortalUser) -> None:
    """Become ``target`` (the decision was made by the caller); record it on both sides."""
    actor = getattr(actor, "_get_current_object", lambda: actor)()  # not the current_user proxy: it will change
    actor_id = actor.id
    from app.extensions import db

    signals.impersonation_started.send(
        current_app._get_current_object(), actor=actor, target=target, logs=_logs_of(actor, target)
    )
    db.session.commit()  # under the partner's own scope: from here on, the request is the customer's
    with scoping.bypass("impersonation start"):
        login_user(target, remember=False)
    session[ACTOR_KEY] = actor_id
    session[TARGET_KEY] = target.id
    session[STARTED_KEY] = utcnow().isoformat()
    renew_session_id()


def stop(reason: str = "returned to the partner portal") -> PortalUser | None:
    """Become the real user again; record it on both sides. Returns the real user (None if gone)."""
    from app.extensions import db

    actor_id, target_id = session.pop(ACTOR_KEY, None), session.pop(TARGET_KEY, None)
    session.pop(STARTED_KEY, None)
    with scoping.bypass("impersonation stop"):
        actor = db.session.get(PortalUser, actor_id) if actor_id else None
        target = db.session.get(PortalUser, target_id) if target_id else None
        if actor is not None and target is not None:
            signals.impersonation_ended.send(
                current_app._get_current_object(),
                actor=actor,
                target=target,
                logs=_logs_of(actor, target),
                reason=reason,
            )
            db.session.commit()
        if actor is not None and actor.is_active:
            login_user(actor, remember=False)
    renew_session_id()
    return actor


def expires_at() -> dt.datetime | None:
    started = session.get(STARTED_KEY)
    if not started:
        return None
    return dt.datetime.fromisoformat(started) + dt.timedelta(minutes=current_app.config["IMPERSONATION_MINUTES"])


def _load_impersonation():
    """Before every request: put the real user on ``g.impersonator``; end an expired or orphaned impersonation."""
    g.impersonator = None
    if not impersonating():
        return None
    from app.extensions import db

    with scoping.bypass("impersonation check"):
        actor = db.session.get(PortalUser, session[ACTOR_KEY])
        if actor is not None:
            actor.account  # noqa: B018 - loaded now, under the bypass: the request's scope is the customer's
    ending = expires_at()
    if actor is None or not actor.is_active or session.get(TARGET_KEY) is None:
        stop("the partner user can no longer sign in")
        return end_session("Your session has ended: sign in again.")
    why = why_session_ended(actor)  # the real user's password changed, their sessions revoked, or too old
    if why:
        stop("the partner user's session ended")
        return end_session(why)
    if ending is not None and utcnow() >= ending:
        target_id = session.get(TARGET_KEY)
        stop(f"expired after {current_app.config['IMPERSONATION_MINUTES']} minutes")
        flash("Your visit to the customer portal has expired; you are back in the partner portal.", "warning")
        if request.method == "GET" and not request.path.startswith("/static"):
            return redirect(_back_url(target_id))
        return redirect(url_for("HomeView.index"))
    g.impersonator = actor
    return None


def _back_url(target_id) -> str:
    from app.extensions import db

    with scoping.bypass("impersonation return"):
        target = db.session.get(PortalUser, target_id) if target_id else None
        customer_id = target.account_id if target else None
    if customer_id is None:
        return url_for("HomeView.index")
    return url_for("AccountUsersView.users", account_id=customer_id)


def back_url_for(target_id) -> str:
    return _back_url(target_id)


def init_app(app: Flask) -> None:
    app.before_request(end_ended_sessions)
    app.before_request(_load_impersonation)

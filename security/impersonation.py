"""Launch (CP3): a partner user (or operator staff) enters a customer's portal as one of its users.

One policy function decides (``can_impersonate``); start and stop are POSTs; nesting is refused; the session id is
renewed on start and stop; the real user is kept on the server-side session; it expires; both sides' event logs
show it; and while it lasts the permissions are the target's, less any capability the real user's role lacks.

The target is one membership (security/models.py): the login, in that one customer account, with that membership's
role. The visit cannot switch account, and it ends when the membership stops giving access.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from flask import Flask, current_app, flash, g, redirect, request, session, url_for
from flask_login import login_user

from app.models.accounts import CUSTOMER, OPERATOR, RESELLER
from app.models.base import utcnow
from security import scoping, signals
from security.models import CUSTOMER_PORTAL, OPERATOR_PORTAL, PARTNER_PORTAL, Membership, PortalUser
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


def can_impersonate(*, actor: PortalUser, target: Membership) -> Decision:
    """May ``actor`` enter the customer portal as the membership ``target``? Pure: reads only the two, their logins
    and accounts."""
    if actor is None or not actor.is_active:
        return Decision(False, "Only signed-in, active staff can launch the customer portal.")
    login, account = target.user, target.account
    if actor.id == login.id:
        return Decision(False, "You cannot launch the customer portal as yourself.")
    if login.portal != CUSTOMER_PORTAL or account is None or account.kind not in (CUSTOMER, RESELLER):
        return Decision(False, "Only customer portal users can be launched as.")
    if login.deleted_at is not None or not login.active or target.deleted_at is not None or not target.active:
        return Decision(False, f"{login.email} is disabled.")
    if not target.cp3_enabled:
        return Decision(False, f"{login.email} is not enabled for the customer portal: Activate (CP3) first.")
    if not account.is_active:
        return Decision(False, f"{account.name} is disabled.")
    if actor.portal == OPERATOR_PORTAL and actor.account.kind == OPERATOR:
        return Decision(True)
    if actor.portal == PARTNER_PORTAL and actor.account_id in (account.parent_id, account.id):
        return Decision(True)  # its customers' portals, and its own reseller account's
    if actor.portal == CUSTOMER_PORTAL:
        return Decision(False, "Customer portal users cannot launch the customer portal as someone else.")
    return Decision(False, f"{account.name} is not one of your customers.")


def impersonating() -> bool:
    return ACTOR_KEY in session


def _logs_of(actor: PortalUser, account) -> set[int]:
    """The event logs a visit shows in: the customer's, its reseller's and the actor's own account's (for a
    reseller's own customer portal, the reseller's alone — never the operator above it)."""
    logs = {account.id, actor.account_id}
    if account.kind == CUSTOMER and account.parent_id:
        logs.add(account.parent_id)
    return logs


def start(actor: PortalUser, target: Membership) -> None:
    """Become the membership ``target`` (the decision was made by the caller); record it on both sides."""
    from security import memberships

    actor = getattr(actor, "_get_current_object", lambda: actor)()  # not the current_user proxy: it will change
    actor_id = actor.id
    from app.extensions import db

    login = target.user
    signals.impersonation_started.send(
        current_app._get_current_object(),
        actor=actor,
        target=login,
        membership=target,
        logs=_logs_of(actor, target.account),
    )
    db.session.commit()  # under the partner's own scope: from here on, the request is the customer's
    with scoping.bypass("impersonation start"):
        login_user(login, remember=False)
    session[ACTOR_KEY] = actor_id
    session[TARGET_KEY] = login.id
    session[STARTED_KEY] = utcnow().isoformat()
    memberships.fix_for_launch(target)
    renew_session_id()


def stop(reason: str = "returned to the partner portal") -> PortalUser | None:
    """Become the real user again; record it on both sides. Returns the real user (None if gone)."""
    from app.extensions import db
    from security import memberships

    actor_id, target_id = session.pop(ACTOR_KEY, None), session.pop(TARGET_KEY, None)
    membership_id = session.get(memberships.CHOSEN_KEY)
    session.pop(STARTED_KEY, None)
    memberships.forget()
    with scoping.bypass("impersonation stop"):
        actor = db.session.get(PortalUser, actor_id) if actor_id else None
        target = db.session.get(PortalUser, target_id) if target_id else None
        membership = db.session.get(Membership, membership_id) if isinstance(membership_id, int) else None
        if actor is not None and target is not None:
            logs = {actor.account_id}
            if membership is not None:
                logs = _logs_of(actor, membership.account)
            signals.impersonation_ended.send(
                current_app._get_current_object(),
                actor=actor,
                target=target,
                membership=membership,
                logs=logs,
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
    from flask_login import current_user

    from security import memberships

    target = current_user._get_current_object() if current_user.is_authenticated else None
    if target is None or memberships.launched_membership(target) is None:
        back = _back_url(session.get(TARGET_KEY))
        stop("the customer user's access ended")
        flash("That customer portal user can no longer be launched as: you are back in the partner portal.", "warning")
        return redirect(back if request.method == "GET" else url_for("HomeView.index"))
    why = why_session_ended(actor)  # the real user's password changed, their sessions revoked, or too old
    if why:
        stop("the partner user's session ended")
        return end_session(why)
    if ending is not None and utcnow() >= ending:
        back = _back_url(session.get(TARGET_KEY))
        stop(f"expired after {current_app.config['IMPERSONATION_MINUTES']} minutes")
        flash("Your visit to the customer portal has expired; you are back in the partner portal.", "warning")
        if request.method == "GET" and not request.path.startswith("/static"):
            return redirect(back)
        return redirect(url_for("HomeView.index"))
    g.impersonator = actor
    return None


def _back_url(target_id) -> str:
    """The Users tab of the customer the visit was in."""
    from app.extensions import db
    from security import memberships

    membership_id = session.get(memberships.CHOSEN_KEY)
    with scoping.bypass("impersonation return"):
        membership = db.session.get(Membership, membership_id) if isinstance(membership_id, int) else None
        customer_id = membership.account_id if membership is not None else None
    if customer_id is None:
        return url_for("HomeView.index")
    return url_for("AccountUsersView.users", account_id=customer_id)


def back_url_for(target_id) -> str:
    return _back_url(target_id)


def init_app(app: Flask) -> None:
    app.before_request(end_ended_sessions)
    app.before_request(_load_impersonation)

"""The one customer account a customer-portal login works in, for this session.

A customer-portal login may belong to several customer accounts of one reseller (security/models.py ``Membership``).
After sign-in it works in exactly one of them: chosen from a short list when it has several (the last used first),
the only one otherwise; it switches from the name menu. The scope is that account and nothing else
(``scoping.scope_for_user``), and its permissions are the role of that membership (``PortalSecurityManager.
get_user_roles``). A Launch (CP3) fixes the membership to the launched one: no switching while launched.

Every request checks the chosen membership again: disabled, deleted, its account disabled or its sessions revoked,
the access ends at once — the session goes to the account chooser (or out, when nothing is left).
"""

from __future__ import annotations

import datetime as dt

from flask import Flask, current_app, flash, g, redirect, request, session, url_for
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from app.models.accounts import Account
from app.models.base import utcnow
from security import scoping, signals
from security.models import CUSTOMER_PORTAL, Membership, PortalUser
from security.sessions import IMPERSONATOR_KEY, SIGNED_IN_KEY, end_session, renew_session_id

CHOSEN_KEY = "membership_id"
CHOSEN_AT_KEY = "membership_chosen_at"
CHOOSER = "AccountChooserView.choose"
# Reachable before an account is chosen: the chooser itself, signing out and the second factor's steps.
_OPEN = frozenset(
    {
        CHOOSER,
        "AccountChooserView.chosen",
        "PortalAuthDBView.login",
        "PortalAuthDBView.logout",
        "PortalAuthDBView.confirm_logout",
        "PortalAuthDBView.second_factor",
        "PortalAuthDBView.check_second_factor",
    }
)
NO_ACCESS = "You no longer have access to any customer portal. Ask your administrator."


def _revoked_since(membership: Membership, moment: dt.datetime | None) -> bool:
    revoked = [membership.sessions_revoked_at, membership.account.sessions_revoked_at]
    return moment is not None and any(at is not None and at > moment for at in revoked)


def session_memberships(user: PortalUser) -> list[Membership]:
    """The memberships THIS session may work in: live ones not revoked since it signed in (disabling a membership or
    its account ends the sessions in it for good — enabling it again revives none: they sign in again)."""
    started = session.get(SIGNED_IN_KEY)
    moment = dt.datetime.fromisoformat(started) if isinstance(started, str) else None
    return [m for m in live_memberships(user) if not _revoked_since(m, moment)]


def live_memberships(user: PortalUser) -> list[Membership]:
    """The memberships ``user`` may work in now, the last used first (then by account name).

    Read on a session of their own and returned detached: the other accounts they name never enter the request's
    session, whose identity map would otherwise hand them to a later ``get`` of this request without the scope's
    criteria. To act on one, load it again (``choose`` does)."""
    from sqlalchemy.orm import Session

    from app.extensions import db

    with scoping.bypass("a login's own memberships"), Session(db.engine, expire_on_commit=False) as own:
        rows = own.scalars(
            select(Membership)
            .join(Account, Account.id == Membership.account_id)
            .options(joinedload(Membership.account))
            .where(Membership.user_id == user.id, Membership.active.is_(True), Membership.deleted_at.is_(None))
            .order_by(Membership.last_used_at.desc().nulls_last(), Account.name, Membership.id)
        ).all()
        return [m for m in rows if m.is_live]


def _load(membership_id) -> Membership | None:
    from app.extensions import db

    if not isinstance(membership_id, int):
        return None
    with scoping.bypass("the session's chosen membership"):
        membership = db.session.get(Membership, membership_id, options=[joinedload(Membership.account)])
        if membership is not None:
            membership.user  # noqa: B018 - loaded now, under the bypass
        return membership


def why_ended(membership: Membership | None, user: PortalUser) -> str | None:
    """Why the session may no longer work in ``membership`` (None: it may)."""
    if membership is None or membership.user_id != user.id:
        return "That access has ended."
    name = membership.account.name if membership.account is not None else "that account"
    if not membership.is_live:
        return f"Your access to {name} has ended."
    chosen = session.get(CHOSEN_AT_KEY)
    chosen_at = dt.datetime.fromisoformat(chosen) if isinstance(chosen, str) else None
    revoked = [membership.sessions_revoked_at, membership.account.sessions_revoked_at]
    if chosen_at is None or any(moment is not None and moment > chosen_at for moment in revoked):
        return f"Your access to {name} has ended."
    return None


def _use(membership: Membership) -> None:
    """This request works in ``membership``: what was resolved before it (scope, permissions) is resolved again."""
    g.membership = membership
    g.pop("_portal_scope", None)
    g.pop("_portal_permissions", None)


def choose(user: PortalUser, membership: Membership, *, renew: bool = True) -> None:
    """Work in ``membership`` from now on (the caller checked it is ``user``'s and live); an event in that account's
    log, and (``renew``) a new session id."""
    from app.extensions import db

    membership = _load(membership.id)  # on the request's session (a chooser's list is detached)
    session[CHOSEN_KEY] = membership.id
    session[CHOSEN_AT_KEY] = utcnow().isoformat()
    with scoping.bypass("choosing an account"):
        membership.last_used_at = utcnow()
        if not session.get(IMPERSONATOR_KEY):
            signals.account_chosen.send(current_app._get_current_object(), user=user, membership=membership)
        db.session.commit()
    if renew:
        renew_session_id()
    _use(membership)


def fix_for_launch(membership: Membership) -> None:
    """Launch (CP3): the visit works in the launched membership only."""
    session[CHOSEN_KEY] = membership.id
    session[CHOSEN_AT_KEY] = utcnow().isoformat()
    _use(membership)


def forget() -> None:
    session.pop(CHOSEN_KEY, None)
    session.pop(CHOSEN_AT_KEY, None)
    g.membership = None


def chosen() -> Membership | None:
    """The membership this request works in (None: staff, or none chosen yet)."""
    return g.get("membership")


def chosen_for(user) -> Membership | None:
    """The membership ``user`` works in on this request, if ``user`` is this request's login."""
    membership = g.get("membership")
    if membership is not None and user is not None and membership.user_id == getattr(user, "id", None):
        return membership
    return None


def launched_membership(user: PortalUser) -> Membership | None:
    """The membership of the session's Launch (CP3), checked (None: ended). Used by security/impersonation.py."""
    membership = _load(session.get(CHOSEN_KEY))
    if membership is None or membership.user_id != user.id or not membership.is_live or not membership.cp3_enabled:
        return None
    return membership


def can_edit_login(*, actor: PortalUser, login: PortalUser, theirs_alone: bool) -> bool:
    """May ``actor`` change ``login``'s own fields (name, email, mobile) from a customer's Users tab? The login is the
    person's and its reseller's: operator staff, the owning reseller's Partner CSP Admins, and the person. Whoever
    manages a customer's users may correct a login that works in that customer alone (``theirs_alone``); a login
    shared with other accounts stays as it is — changing its email would hand the other accounts' access over."""
    from app.models.accounts import OPERATOR, RESELLER
    from security.models import OPERATOR_PORTAL, PARTNER_PORTAL

    if actor is None or not actor.is_active:
        return False
    if actor.id == login.id:
        return True
    if actor.portal == OPERATOR_PORTAL and actor.account.kind == OPERATOR:
        return True
    if actor.portal == PARTNER_PORTAL and actor.is_csp_admin and actor.account.kind == RESELLER:
        return actor.account_id == login.account_id
    return theirs_alone


def require_chosen_account():
    """Before every request of a customer-portal login: work in the chosen membership if it still gives access; else
    say so, and choose again (the only one left is chosen for you; none left signs you out)."""
    g.membership = None
    if not current_user.is_authenticated or current_user.portal != CUSTOMER_PORTAL:
        return None
    endpoint = request.endpoint or ""
    if endpoint == "static" or endpoint.endswith(".static"):
        return None
    user = current_user._get_current_object()
    if session.get(IMPERSONATOR_KEY):
        membership = launched_membership(user)  # security/impersonation.py ended the visit if it is gone
        if membership is not None:
            _use(membership)
        return None
    if session.get(CHOSEN_KEY) is not None:
        membership = _load(session.get(CHOSEN_KEY))
        why = why_ended(membership, user)
        if why is None:
            _use(membership)
            return None
        forget()
        flash(why, "warning")
    live = session_memberships(user)
    if not live:
        return end_session(NO_ACCESS if not live_memberships(user) else "Your session has ended: sign in again.")
    if len(live) == 1:
        choose(user, live[0])
        return None
    if endpoint in _OPEN:
        return None
    from app.web import wants_json

    if wants_json():
        from flask import abort

        abort(409, description="Choose the account to work in first.")
    nxt = request.full_path if request.method == "GET" else None
    return redirect(url_for(CHOOSER, next=nxt) if nxt else url_for(CHOOSER))


def switchable_accounts() -> bool:
    """For the name menu: may this session switch to another account (a customer-portal login with several, not
    launched)? One query per page that asks, at most."""
    if not current_user.is_authenticated or current_user.portal != CUSTOMER_PORTAL or session.get(IMPERSONATOR_KEY):
        return False
    if "_portal_switchable" not in g:
        g._portal_switchable = len(session_memberships(current_user._get_current_object())) > 1
    return g._portal_switchable


def init_app(app: Flask) -> None:
    app.before_request(require_chosen_account)
    app.jinja_env.globals["switchable_accounts"] = switchable_accounts

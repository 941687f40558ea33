"""Single-use, expiring "set your password" links: customer activation and a new partner user's welcome.

The link carries a signed (user id, nonce) pair. The nonce lives on the user until the password is set, so a used
link, or one replaced by a newer link, no longer works; the signature's age makes it expire.
"""

from __future__ import annotations

import dataclasses
import secrets

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select, update

from app.extensions import db
from app.links import external_url
from app.models.base import utcnow
from app.models.outbox import OutboxMail
from app.services import outbox
from app.services.accounts import operator_account
from app.services.events import record_event
from security import scoping
from security.models import PortalUser

SALT = "portal-activation"
VALID, EXPIRED, USED, INVALID = "valid", "expired", "used", "invalid"


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=SALT)


def activation_url(user: PortalUser) -> str:
    """A new link for ``user``; any earlier link stops working."""
    user.activation_nonce = secrets.token_urlsafe(16)
    token = _serializer().dumps({"u": user.id, "n": user.activation_nonce})
    return external_url("ActivationView.activate", token=token)


@dataclasses.dataclass
class LinkCheck:
    state: str
    user: PortalUser | None = None


def check_link(token: str) -> LinkCheck:
    """What a link is: valid (with its user), expired or used (with its user, to offer a new one), or invalid.
    Run under a scope bypass: the visitor is not signed in."""
    serializer = _serializer()
    max_age = current_app.config["ACTIVATION_LINK_HOURS"] * 3600
    try:
        payload = serializer.loads(token, max_age=max_age)
        state = VALID
    except SignatureExpired:
        ok, payload = serializer.loads_unsafe(token)
        state = EXPIRED if ok else INVALID
    except BadSignature:
        return LinkCheck(INVALID)
    if not isinstance(payload, dict) or not isinstance(payload.get("u"), int):
        return LinkCheck(INVALID)
    user = db.session.get(PortalUser, payload["u"])
    if user is None or user.deleted_at is not None or not user.active:
        return LinkCheck(INVALID)  # deleted or disabled users cannot set a password from an old email
    if state == VALID and user.activation_nonce != payload.get("n"):
        return LinkCheck(USED, user)
    return LinkCheck(state, user)


def send_activation(user: PortalUser, *, reset: bool = False, account=None) -> OutboxMail:
    """Queue a mail to ``user`` with a new link (customers: "activate your account"; partner and operator staff: a
    welcome; ``reset``: set a new password) in the caller's transaction: the caller commits, the mail outbox sends it
    afterwards and retries; after its last try the Users tab shows the failure. Any earlier link stops working.
    ``account``: the account it is sent for (its name in the mail, its event log); a staff login's own by default.

    The link's columns are the login's own, which a customer admin's scope may not write (a login belongs to the
    person and its reseller): they are written under a named bypass, for a login the caller loaded through its
    scope."""
    if account is None:
        account = _home_of(user)
    # The caller's change first, under its own scope (as its commit would): a login made in this transaction gets its
    # id (the link carries it), and the flush of the login alone below carries the link's columns only.
    db.session.flush()
    with scoping.bypass("the activation link of a login the caller manages"):
        url = activation_url(user)
        user.activation_sent_at = utcnow()
        user.activation_error = None
        db.session.flush([user])  # the login alone, under the bypass
    hours = current_app.config["ACTIVATION_LINK_HOURS"]
    if reset:
        kind, subject = "password_reset", "Set a new password for the Mycloudstore portal"
    elif user.portal != "customer":
        kind, subject = "welcome", "Welcome to the Mycloudstore Partner Portal"
    else:
        kind, subject = "activation", "Activate your account"
    mail = outbox.queue(
        kind, to=user.email, subject=subject, account=account, user=user, template=kind, url=url, hours=hours
    )
    summary = f"{outbox.KIND_NAMES[kind]} email to {user.email} queued"
    record_event("user.activation_queued", account_id=account.id, target=user, summary=summary)
    return mail


def request_reset(address: str) -> None:
    """The "forgot your password" page's part: the typed address is queued, in the caller's transaction, as a request
    the mail outbox resolves (``reset_requested``). The page does the same work whether or not the address has a
    login — no look-up, one row written — so neither its words nor its timing tell who uses the portal."""
    operator = operator_account()
    if operator is not None:
        outbox.queue(outbox.RESET_REQUEST, to=address, subject="Password reset request", account=operator)


def reset_requested(address: str) -> None:
    """The outbox's part of a reset request (under its bypass): a login with ``address`` that may sign in gets a link
    to set a new password (queued with ``send_activation``); an unknown, disabled or deleted one gets nothing. The
    link is built on PORTAL_BASE_URL (app/links.py), never on a request's Host header."""
    user = db.session.scalar(select(PortalUser).where(PortalUser.email == address))
    if user is not None and user.is_active and (user.portal != "customer" or user.may_use_customer_portal):
        send_activation(user, reset=True)


def _home_of(user: PortalUser):
    """The account a mail to ``user`` names when the caller names none: a staff login's own; a customer-portal
    login's first account it still belongs to (its reseller's, when none is left)."""
    if user.portal == "customer":
        with scoping.bypass("the accounts of a login being mailed"):
            for membership in user.memberships:
                if membership.deleted_at is None:
                    return membership.account
    return user.account


def send_access_granted(membership) -> OutboxMail:
    """Queue, in the caller's transaction, the mail telling a person who already has a login that they now have access
    to one more account: no new password link (they keep one password and one second factor)."""
    user, account = membership.user, membership.account
    mail = outbox.queue(
        "access_granted",
        to=user.email,
        subject=f"You now have access to {account.name}",
        account=account,
        user=user,
        template="access_granted",
        url=external_url("PortalAuthDBView.login"),
    )
    summary = f"Email telling {user.email} they now have access to {account.name} queued"
    record_event("user.activation_queued", account_id=account.id, target=user, summary=summary)
    return mail


class LinkAlreadyUsed(Exception):
    """Another request used the same link first (it was sent twice at once)."""


def complete_activation(user: PortalUser, password_hash: str) -> None:
    """Set the password from a valid link; the link is used up — by exactly one request, however many arrive at
    once: the nonce is cleared by a conditional UPDATE that only one of them can win."""
    nonce = user.activation_nonce
    won = db.session.execute(
        update(PortalUser)
        .where(PortalUser.id == user.id, PortalUser.activation_nonce == nonce)
        .values(activation_nonce=None)
        .execution_options(synchronize_session=False)
    )
    if nonce is None or won.rowcount != 1:
        db.session.rollback()
        raise LinkAlreadyUsed
    user.password = password_hash
    user.password_set_at = utcnow()
    user.activation_nonce = None
    user.activation_error = None
    # Recorded where the login belongs and in each account it works in: each customer sees its user activated.
    logs = {user.account_id} | {m.account_id for m in user.memberships if m.deleted_at is None}
    for account_id in sorted(logs):
        record_event(
            "user.activated",
            account_id=account_id,
            actor=user,
            target=user,
            summary=f"{user.email} set a password from the emailed link",
        )
    db.session.commit()

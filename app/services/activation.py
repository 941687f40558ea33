"""Single-use, expiring "set your password" links: customer activation and a new partner user's welcome.

The link carries a signed (user id, nonce) pair. The nonce lives on the user until the password is set, so a used
link, or one replaced by a newer link, no longer works; the signature's age makes it expire.
"""

from __future__ import annotations

import dataclasses
import secrets

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import update

from app.extensions import db
from app.links import external_url
from app.models.base import utcnow
from app.services.events import record_event
from app.services.mail import MailError, send_mail
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


def send_activation(user: PortalUser, *, reset: bool = False, account=None) -> bool:
    """Email ``user`` a new link (customers: "activate your account"; partner and operator staff: a welcome) and
    commit. ``account``: the customer account it is sent for (its name in the mail, its event log); a staff login's
    own by default. If sending fails the user is kept, the failure is recorded on the user (the Users tab shows it)
    and in the event log, and False is returned.

    The link's columns are the login's own, which a customer admin's scope may not write (a login belongs to the
    person and its reseller): they are written under a named bypass, for a login the caller loaded through its
    scope."""
    if account is None:
        account = _home_of(user)
    with scoping.bypass("the activation link of a login the caller manages"):
        url = activation_url(user)
        user.activation_sent_at = utcnow()
        user.activation_error = None
        db.session.flush([user])  # the login alone, under the bypass
    db.session.commit()
    hours = current_app.config["ACTIVATION_LINK_HOURS"]
    welcome = user.portal != "customer"
    if reset:
        template, subject = "password_reset", "Set a new password for the Mycloudstore portal"
    elif welcome:
        template, subject = "welcome", "Welcome to the Mycloudstore Partner Portal"
    else:
        template, subject = "activation", "Activate your account"
    try:
        send_mail(user.email, subject, template, user=user, url=url, hours=hours, account=account)
    except MailError as exc:
        with scoping.bypass("the activation link of a login the caller manages"):
            user.activation_error = f"activation email not sent: {exc}"[:300]
            db.session.flush([user])
        return _recorded(user, account, exc, failed=f"Activation email to {user.email} not sent: {exc}")
    what = "Password reset" if reset else "Welcome" if welcome else "Activation"
    return _recorded(user, account, None, sent=f"{what} email sent to {user.email}")


def _recorded(user: PortalUser, account, error: Exception | None, *, sent: str = "", failed: str = "") -> bool:
    """The event of a mail to ``user`` about ``account`` — sent, or not (``error``) — committed; whether it went."""
    action = "user.activation_email_failed" if error is not None else "user.activation_sent"
    record_event(action, account_id=account.id, target=user, summary=failed if error is not None else sent)
    db.session.commit()
    return error is None


def _home_of(user: PortalUser):
    """The account a mail to ``user`` names when the caller names none: a staff login's own; a customer-portal
    login's first account it still belongs to (its reseller's, when none is left)."""
    if user.portal == "customer":
        with scoping.bypass("the accounts of a login being mailed"):
            for membership in user.memberships:
                if membership.deleted_at is None:
                    return membership.account
    return user.account


def send_access_granted(membership) -> bool:
    """Tell a person who already has a login that they now have access to one more account: no new password link
    (they keep one password and one second factor). False when the mail was not sent (the event log says so)."""
    user, account = membership.user, membership.account
    try:
        send_mail(
            user.email,
            f"You now have access to {account.name}",
            "access_granted",
            user=user,
            url=external_url("PortalAuthDBView.login"),
            account=account,
        )
    except MailError as exc:
        failed = f"The email telling {user.email} they now have access to {account.name} was not sent: {exc}"
        return _recorded(user, account, exc, failed=failed)
    return _recorded(user, account, None, sent=f"Told {user.email} they now have access to {account.name}")


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

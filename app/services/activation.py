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


def send_activation(user: PortalUser, *, reset: bool = False) -> bool:
    """Email ``user`` a new link (customers: "activate your account"; partner and operator staff: a welcome) and
    commit. If sending fails the user is kept, the failure is recorded on the
    user (the Users tab shows it) and in the event log, and False is returned."""
    url = activation_url(user)
    user.activation_sent_at = utcnow()
    user.activation_error = None
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
        send_mail(user.email, subject, template, user=user, url=url, hours=hours, account=user.account)
    except MailError as exc:
        user.activation_error = f"activation email not sent: {exc}"[:300]
        record_event(
            "user.activation_email_failed",
            account_id=user.account_id,
            target=user,
            summary=f"Activation email to {user.email} not sent: {exc}",
        )
        db.session.commit()
        return False
    record_event(
        "user.activation_sent",
        account_id=user.account_id,
        target=user,
        summary=f"{'Password reset' if reset else 'Welcome' if welcome else 'Activation'} email sent to {user.email}",
    )
    db.session.commit()
    return True


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
    record_event(
        "user.activated",
        account_id=user.account_id,
        actor=user,
        target=user,
        summary=f"{user.email} set a password from the emailed link",
    )
    db.session.commit()

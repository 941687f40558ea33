"""Handing a new tenant over: its first global admin's user name and temporary password (issue 15).

Microsoft returns them once, in the answer that creates the customer (Partner Center's create-a-customer response,
``userCredentials``: https://learn.microsoft.com/partner-center/developer/create-a-customer). Here they are:

- shown once to whoever created the tenant, on the answer page alone (``FreshCredentials`` lives on the tenant object
  of that request only: never flashed, never in the session, the page not cached);
- handed to the customer's master admin through a one-time link (``credential_handover``): the mail carries the link,
  never the password; the row keeps the password only as a Fernet token under a key derived from both ``SECRET_KEY``
  and the link's token (of which only the SHA-256 is stored) — so neither the database, nor the mail outbox, nor the
  two together can read it without the application's secret; opening the link shows it once and erases it, and so
  does expiry (``HANDOVER_LINK_HOURS``).

No operation, event, log line or mail holds the password.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import logging
import secrets

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app
from flask_login import current_user
from sqlalchemy import func, select, update

from app.extensions import db
from app.links import external_url
from app.models.accounts import Account, CredentialHandover, MicrosoftTenant, PlaceholderUser
from app.models.base import utcnow
from app.models.subscriptions import M365User
from app.services import outbox
from app.services.events import record_event
from security import scoping
from security.models import Membership, PortalUser

log = logging.getLogger(__name__)

VALID, OPENED, EXPIRED, INVALID = "valid", "opened", "expired", "invalid"
MAIL_KIND = "tenant_handover"
MAX_RECIPIENTS = 3


@dataclasses.dataclass(frozen=True)
class FreshCredentials:
    """The admin's credentials as Microsoft just returned them: in memory for the request that created the tenant."""

    user_name: str
    password: str = dataclasses.field(repr=False)
    mailed_to: tuple[str, ...] = ()
    expires_at: dt.datetime | None = None


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _fernet(token: str) -> Fernet:
    """The link's own key: the application's secret and the link's token together (HKDF, the token as salt)."""
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=token.encode(), info=b"partner-portal tenant admin handover"
    ).derive(current_app.config["SECRET_KEY"].encode())
    return Fernet(base64.urlsafe_b64encode(key))


def recipients(customer: Account) -> list[str]:
    """Who the link goes to: the customer's active master admins (their logins), else the master admin the customer
    was given when it was added (a placeholder, before anyone activated) unless that is still the operator's default
    address (``DEFAULT_MASTER_ADMIN_EMAIL``: nobody's mailbox at the customer); at most MAX_RECIPIENTS, each once."""
    emails = db.session.scalars(
        select(PortalUser.email)
        .join(Membership, Membership.user_id == PortalUser.id)
        .where(
            Membership.account_id == customer.id,
            Membership.is_master_admin.is_(True),
            Membership.active.is_(True),
            Membership.deleted_at.is_(None),
            PortalUser.active.is_(True),
            PortalUser.deleted_at.is_(None),
        )
        .order_by(Membership.id)
    ).all()
    if not emails:  # the address Add Sub Account took (the reseller's IT support, say), not the operator's default
        default = current_app.config["DEFAULT_MASTER_ADMIN_EMAIL"].lower()
        emails = db.session.scalars(
            select(PlaceholderUser.email)
            .where(
                PlaceholderUser.account_id == customer.id,
                PlaceholderUser.is_master_admin.is_(True),
                func.lower(PlaceholderUser.email) != default,
            )
            .order_by(PlaceholderUser.id)
        ).all()
    seen: list[str] = []
    for email in emails:
        if email and email.lower() not in seen:
            seen.append(email.lower())
    return seen[:MAX_RECIPIENTS]


def hand_over(tenant: MicrosoftTenant, user_name: str, password: str, admin_user_id: str | None) -> FreshCredentials:
    """Called in the transaction that records the new tenant (committed with it): the admin recorded as one of the
    tenant's Microsoft 365 users, a one-time link to each master admin (mail queued in the outbox), an event. The
    credentials come back to be shown once to the creator."""
    customer = db.session.get(Account, tenant.account_id)
    if db.session.scalar(
        select(M365User.id).where(M365User.account_id == customer.id, M365User.user_principal_name == user_name)
    ) is None:
        db.session.add(
            M365User(
                account_id=customer.id,
                display_name="Global administrator",
                user_principal_name=user_name,
                provider_user_id=admin_user_id,
                usage_location=(customer.country or "NZ")[:2].upper(),
            )
        )
    hours = current_app.config["HANDOVER_LINK_HOURS"]
    expires_at = utcnow() + dt.timedelta(hours=hours)
    mailed: list[str] = []
    creator = current_user.id if current_user and current_user.is_authenticated else None
    for email in recipients(customer):
        token = secrets.token_urlsafe(32)
        db.session.add(
            CredentialHandover(
                account_id=customer.id,
                tenant_id=tenant.id,
                user_name=user_name,
                token_hash=_token_hash(token),
                secret=_fernet(token).encrypt(password.encode()).decode(),
                recipient_email=email,
                created_by_id=creator,
                expires_at=expires_at,
            )
        )
        outbox.queue(
            MAIL_KIND,
            to=email,
            subject=f"Your Microsoft 365 tenant {tenant.primary_domain} is ready",
            account=customer,
            template="tenant_handover",
            url=external_url("HandoverView.show", token=token),
            tenant=tenant,
            user_name=user_name,
            hours=hours,
        )
        mailed.append(email)
    record_event(
        "tenant.credentials_sent" if mailed else "tenant.credentials_shown",
        account_id=customer.id,
        target=tenant,
        summary=(
            f"First global admin {user_name} of {tenant.primary_domain}: a one-time link to its temporary password "
            f"mailed to {', '.join(mailed)} (works once, for {hours} hours)"
            if mailed
            else f"First global admin {user_name} of {tenant.primary_domain}: no master admin to mail it to; its "
            "temporary password was shown once to whoever created the tenant"
        ),
    )
    return FreshCredentials(user_name, password, tuple(mailed), expires_at if mailed else None)


@dataclasses.dataclass(frozen=True)
class LinkState:
    state: str
    handover: CredentialHandover | None = None


def check(token: str) -> LinkState:
    """What a link is: valid (not opened, not expired), opened, expired, or nothing. Under the caller's scope bypass
    (the visitor need not be signed in: the link is the credential)."""
    if not token or len(token) > 128:
        return LinkState(INVALID)
    row = db.session.scalars(select(CredentialHandover).where(CredentialHandover.token_hash == _token_hash(token)))
    handover = row.first()
    if handover is None:
        return LinkState(INVALID)
    if handover.opened_at is not None:
        return LinkState(OPENED, handover)
    if handover.expires_at <= utcnow() or handover.secret is None:
        return LinkState(EXPIRED, handover)
    return LinkState(VALID, handover)


def open_once(token: str) -> tuple[LinkState, str | None]:
    """Show the password once: claimed by one conditional UPDATE (two clicks at once: one sees it), erased in the same
    commit, an event. The password, or None with the link's state."""
    link = check(token)
    if link.state != VALID:
        return link, None
    handover = link.handover
    try:
        password = _fernet(token).decrypt(handover.secret.encode()).decode()
    except InvalidToken:  # SECRET_KEY changed since: nothing can read it any more
        log.warning("Hand-over %s cannot be read (SECRET_KEY changed?)", handover.id)
        password = None
    claimed = db.session.execute(
        update(CredentialHandover)
        .where(CredentialHandover.id == handover.id, CredentialHandover.opened_at.is_(None))
        .values(opened_at=utcnow(), secret=None)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:
        db.session.rollback()
        return LinkState(OPENED, handover), None
    record_event(
        "tenant.credentials_opened",
        account_id=handover.account_id,
        target=handover,
        summary=f"The one-time link to the temporary password of {handover.user_name} (mailed to "
        f"{handover.recipient_email}) was opened; the password is erased",
    )
    db.session.commit()
    return LinkState(OPENED if password else EXPIRED, handover), password


def purge_expired() -> int:
    """Erase the passwords of links past their expiry (the maintenance loop, hourly): how many."""
    with scoping.bypass("erasing expired tenant hand-over links"):
        done = db.session.execute(
            update(CredentialHandover)
            .where(CredentialHandover.secret.is_not(None), CredentialHandover.expires_at <= utcnow())
            .values(secret=None)
            .execution_options(synchronize_session=False)
        ).rowcount
        db.session.commit()
    return done or 0


def pending(customer: Account) -> list[CredentialHandover]:
    """The customer's hand-over links, newest first (the tenant screen shows who was sent one and whether it was
    opened)."""
    return list(
        db.session.scalars(
            select(CredentialHandover)
            .where(CredentialHandover.account_id == customer.id)
            .order_by(CredentialHandover.id.desc())
            .limit(10)
        )
    )

"""Two-factor authentication: who must have it, checking a code, and the guard that keeps a session without its
second factor out of every page.

- A code is a TOTP (pyotp, 30-second steps, one step either side) or a one-time recovery code. Each TOTP step is
  accepted once per login (the last accepted step is stored; that step and earlier ones are refused), each recovery
  code once (compare-and-set updates, so two requests racing with one code cannot both pass).
- Codes are limited per login by the sign-in throttle (security/throttle.py, the ``SIGN_IN_*`` rules under a key of
  their own): each code is charged before it is read, in one atomic step, so codes sent at once all count; after a
  few wrong ones each next try waits, the wait doubling. Shared by every process (Redis, else the database).
- The TOTP secret is stored as a Fernet token under a key derived from ``SECRET_KEY`` (HKDF); recovery codes as an
  HMAC under another derived key. A new ``SECRET_KEY`` therefore means enrolling again.
- ``can_reset_mfa`` is the one policy of who may reset whose second factor.

Nothing here records events: checks announce themselves through security/signals.py.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass

import pyotp
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import Flask, abort, current_app, redirect, request, session, url_for
from flask_login import current_user
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm.attributes import set_committed_value

from app import clock
from app.extensions import db
from app.models.accounts import OPERATOR, RESELLER
from app.models.mfa import MfaCredential, MfaRecoveryCode
from security import scoping, signals, throttle
from security.impersonation import Decision
from security.models import CUSTOMER_PORTAL, OPERATOR_PORTAL, PARTNER_PORTAL, PortalUser
from security.sessions import IMPERSONATOR_KEY

RECOVERY_CODE_COUNT = 10
_RECOVERY_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # 32 letters and digits, none mistaken for another
_RECOVERY_LENGTH = 10  # 50 random bits, shown as XXXXX-XXXXX
VALID_WINDOW = 1  # one 30-second step either side: a phone's clock may be a little off
PENDING_MINUTES = 5  # how long a password stays good for its second factor

# Server-side session keys
PENDING_USER_KEY = "mfa_pending_user"  # a correct password, waiting for its second factor (not signed in yet)
PENDING_UNTIL_KEY = "mfa_pending_until"
PENDING_NEXT_KEY = "mfa_pending_next"
PASSED_KEY = "mfa_passed_at"  # this session passed a second factor (sign-in, step-up or enrolment)

# What a session lacks (``missing_second_factor``)
ENROL, VERIFY = "enrol", "verify"
# Outcomes of a code check
ACCEPTED, WRONG, REPLAYED, LIMITED = "accepted", "wrong", "replayed", "limited"


# -- who -----------------------------------------------------------------------------------------------------
def is_required_for(user: PortalUser) -> bool:
    """Operator and partner staff must have a second factor when ``MFA_REQUIRED`` is on; customer users never do."""
    return bool(current_app.config["MFA_REQUIRED"]) and user.portal in (OPERATOR_PORTAL, PARTNER_PORTAL)


def is_enrolled(user: PortalUser) -> bool:
    return user.mfa is not None


def can_reset_mfa(*, actor: PortalUser, target: PortalUser) -> Decision:
    """May ``actor`` reset ``target``'s two-factor authentication (for a lost phone)? Pure: reads only the two users
    and their accounts. Operator staff: anyone's. A reseller's Partner CSP Admin: its reseller's partner users and
    the customer portal logins it owns (those of its customers and of its own customer portal). A customer's admins
    never: the second factor is the person's, and may serve other customers too."""
    if actor is None or not actor.is_active:
        return Decision(False, "Only signed-in, active staff can reset two-factor authentication.")
    if actor.id == target.id:
        return Decision(False, "Your own two-factor authentication is managed from your name's menu.")
    if actor.portal == OPERATOR_PORTAL and actor.account.kind == OPERATOR:
        return Decision(True)
    if actor.portal == PARTNER_PORTAL and actor.is_csp_admin and actor.account.kind == RESELLER:
        if target.portal == PARTNER_PORTAL and target.account_id == actor.account_id:
            return Decision(True)
        if target.portal == CUSTOMER_PORTAL and actor.account_id == target.account_id:
            return Decision(True)  # a customer-portal login belongs to its reseller, whatever customers it works for
    return Decision(
        False,
        "Only an operator admin, or a Partner CSP Admin of the user's reseller, can reset two-factor authentication.",
    )


# -- secrets -----------------------------------------------------------------------------------------------
def _derived_key(purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(
        current_app.config["SECRET_KEY"].encode()
    )


def _fernet() -> Fernet:
    return Fernet(base64.urlsafe_b64encode(_derived_key(b"partner-portal mfa totp secret")))


def encrypt_secret(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode()


def decrypt_secret(token: str) -> str | None:
    """The secret, or None when it cannot be read (``SECRET_KEY`` changed since enrolment)."""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        return None


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(user: PortalUser, secret: str) -> str:
    """The ``otpauth://`` address an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=current_app.config["APP_NAME"])


def _digits(code: str) -> str | None:
    text = "".join((code or "").split())
    return text if len(text) == 6 and text.isascii() and text.isdigit() else None


def matching_step(secret: str, code: str) -> int | None:
    """The TOTP time step ``code`` belongs to (now, or one step either side), or None."""
    digits = _digits(code)
    if digits is None:
        return None
    try:
        return pyotp.TOTP(secret).verify_and_get_timecode(digits, for_time=clock.now(), valid_window=VALID_WINDOW)
    except pyotp.exceptions.OTPVerificationError:
        return None


def new_recovery_codes() -> list[str]:
    """Fresh recovery codes to show once, as XXXXX-XXXXX."""
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_LENGTH))
        codes.append(f"{raw[:5]}-{raw[5:]}")
    return codes


def _normal_recovery_code(code: str) -> str | None:
    text = "".join((code or "").upper().replace("-", "").split())
    return text if len(text) == _RECOVERY_LENGTH and all(c in _RECOVERY_ALPHABET for c in text) else None


def hash_recovery_code(code: str) -> str:
    """What is stored of a recovery code: an HMAC (the codes are random, so a slow hash would add nothing)."""
    text = _normal_recovery_code(code) or ""
    return hmac.new(_derived_key(b"partner-portal mfa recovery codes"), text.encode(), hashlib.sha256).hexdigest()


def recovery_codes_left(credential: MfaCredential) -> int:
    return db.session.scalar(
        select(func.count(MfaRecoveryCode.id)).where(
            MfaRecoveryCode.credential_id == credential.id, MfaRecoveryCode.used_at.is_(None)
        )
    )


# -- checking a code ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Check:
    """The answer to one code: accepted (with the method), or why not."""

    outcome: str
    method: str = ""  # "totp" or "recovery"
    retry_after: int = 0

    def __bool__(self) -> bool:
        return self.outcome == ACCEPTED

    @property
    def message(self) -> str:
        if self.outcome == LIMITED:
            minutes = max(1, math.ceil(self.retry_after / 60))
            return f"Too many wrong codes. Try again in {minutes} minute{'s' if minutes > 1 else ''}."
        if self.outcome == REPLAYED:
            return "That code has been used already. Wait for the next one in your app."
        return "That code is not right. Enter the 6-digit code your app shows now, or a recovery code."


def _code_key(user: PortalUser) -> str:
    return f"mfa:{user.id}"


def reset_code_limit(user: PortalUser) -> None:
    throttle.clear(_code_key(user))


def _claim_step(credential: MfaCredential, step: int) -> bool:
    """Accept ``step`` only if it is later than the last accepted one — one compare-and-set, so of two requests
    with the same code only one passes."""
    now = clock.utcnow()
    with scoping.bypass("second factor: each code once"):
        claimed = db.session.execute(
            update(MfaCredential)
            .where(
                MfaCredential.id == credential.id,
                or_(MfaCredential.last_step.is_(None), MfaCredential.last_step < step),
            )
            .values(last_step=step, last_used_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
    if claimed == 1:
        set_committed_value(credential, "last_step", step)
        set_committed_value(credential, "last_used_at", now)
    return claimed == 1


def _claim_recovery_code(credential: MfaCredential, code: str) -> bool:
    if _normal_recovery_code(code) is None:
        return False
    with scoping.bypass("second factor: each recovery code once"):
        found = db.session.scalar(
            select(MfaRecoveryCode.id).where(
                MfaRecoveryCode.credential_id == credential.id,
                MfaRecoveryCode.code_hash == hash_recovery_code(code),
                MfaRecoveryCode.used_at.is_(None),
            )
        )
        if found is None:
            return False
        claimed = db.session.execute(
            update(MfaRecoveryCode)
            .where(MfaRecoveryCode.id == found, MfaRecoveryCode.used_at.is_(None))
            .values(used_at=clock.utcnow())
            .execution_options(synchronize_session=False)
        ).rowcount
    return claimed == 1


def verify(user: PortalUser, code: str) -> Check:
    """Check ``user``'s second factor: refused unread while too many wrong codes are recent, else a TOTP (each step
    once) or a recovery code (each once). Announces the outcome; the caller commits (refusals included)."""
    app = current_app._get_current_object()
    key = _code_key(user)
    retry_after = throttle.attempt(key)
    if retry_after:
        signals.mfa_limited.send(app, user=user, retry_after=retry_after)
        return Check(LIMITED, retry_after=retry_after)
    credential = user.mfa
    secret = decrypt_secret(credential.secret) if credential is not None else None
    outcome, method = WRONG, ""
    if credential is not None and _digits(code) is not None:
        step = matching_step(secret, code) if secret else None
        if step is not None:
            outcome, method = (ACCEPTED, "totp") if _claim_step(credential, step) else (REPLAYED, "totp")
    elif credential is not None and _claim_recovery_code(credential, code):
        outcome, method = ACCEPTED, "recovery"
    if outcome == ACCEPTED:
        # The claimed step or code is kept at once (it can never pass again), and only then is the count cleared:
        # the throttle's store is another connection, which SQLite would make wait for this transaction's write.
        db.session.commit()
        throttle.clear(key)
        remaining = recovery_codes_left(credential) if method == "recovery" else None
        signals.mfa_verified.send(app, user=user, method=method, remaining=remaining)
        return Check(ACCEPTED, method=method)
    reason = "a code already used" if outcome == REPLAYED else "a wrong code"
    signals.mfa_failed.send(app, user=user, reason=reason)
    return Check(outcome)


# -- the session ---------------------------------------------------------------------------------------------
def start_pending(user: PortalUser, next_url: str) -> None:
    """A correct password for a login with a second factor: remember whose, briefly, without signing in."""
    session[PENDING_USER_KEY] = user.id
    session[PENDING_UNTIL_KEY] = (clock.utcnow() + dt.timedelta(minutes=PENDING_MINUTES)).isoformat()
    session[PENDING_NEXT_KEY] = next_url


def pending_user() -> PortalUser | None:
    """The login whose password was right and whose second factor is awaited, if that was recent enough."""
    user_id, until = session.get(PENDING_USER_KEY), session.get(PENDING_UNTIL_KEY)
    if user_id is None or until is None or clock.utcnow() >= dt.datetime.fromisoformat(until):
        return None
    with scoping.bypass("authentication: second factor"):
        user = db.session.get(PortalUser, user_id)
        if user is None or not user.is_active or user.mfa is None:
            return None
    return user


def pending_next() -> str | None:
    return session.get(PENDING_NEXT_KEY)


def mark_passed() -> None:
    """This session has passed a second factor."""
    for name in (PENDING_USER_KEY, PENDING_UNTIL_KEY, PENDING_NEXT_KEY):
        session.pop(name, None)
    session[PASSED_KEY] = clock.utcnow().isoformat()


def session_passed() -> bool:
    return bool(session.get(PASSED_KEY))


def missing_second_factor(user: PortalUser) -> str | None:
    """What this session lacks: ENROL (required, none enrolled), VERIFY (enrolled, not passed here) or None. While
    launched into a customer's portal nothing is asked: the partner's own session passed before Launch."""
    if session.get(IMPERSONATOR_KEY):
        return None
    if user.mfa is None:
        return ENROL if is_required_for(user) else None
    return None if session_passed() else VERIFY


# -- the guard -----------------------------------------------------------------------------------------------
_SIGN_IN = "PortalAuthDBView"
_ALWAYS_OPEN = frozenset({f"{_SIGN_IN}.login", f"{_SIGN_IN}.logout", f"{_SIGN_IN}.confirm_logout"})
OPEN_WHILE = {
    ENROL: frozenset({"MfaView.index", "MfaView.enrol", "MfaView.recovery_codes"}),
    VERIFY: frozenset({f"{_SIGN_IN}.second_factor", f"{_SIGN_IN}.check_second_factor"}),
}


def require_second_factor():
    """Before every request: a signed-in session without the second factor it needs reaches only the pages that
    give it one (enrolment, or the code prompt), sign-out and static files. JSON endpoints answer 403."""
    endpoint = request.endpoint
    if endpoint is None or endpoint == "static" or endpoint.endswith(".static") or endpoint in _ALWAYS_OPEN:
        return None
    if not current_user.is_authenticated:
        return None
    missing = missing_second_factor(current_user)
    if missing is None or endpoint in OPEN_WHILE[missing]:
        return None
    from app.web import wants_json

    if wants_json():
        abort(403, description="Two-factor authentication is needed first.")
    if missing == ENROL:
        return redirect(url_for("MfaView.index"))
    return redirect(url_for(f"{_SIGN_IN}.second_factor"))


def init_app(app: Flask) -> None:
    app.before_request(require_second_factor)

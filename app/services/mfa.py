"""Two-factor authentication's changes: enrol, new recovery codes, turn off, and an admin's reset. Each decides,
records its event and commits; a refusal raises UserError (with the form field it belongs beside). Checking codes is
security/mfa.py's."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from app import clock
from app.clock import utcnow
from app.extensions import db
from app.models.mfa import MfaCredential, MfaRecoveryCode
from app.services.events import record_event, record_login_event
from app.services.users import UserError
from security import mfa
from security.models import PortalUser

ALREADY_ON = "Two-factor authentication is already on for this sign-in."


def _new_recovery_codes(credential: MfaCredential) -> list[str]:
    """Replace the credential's recovery codes; the new ones, in clear, to show once."""
    codes = mfa.new_recovery_codes()
    credential.recovery_codes = [
        MfaRecoveryCode(account_id=credential.account_id, code_hash=mfa.hash_recovery_code(code)) for code in codes
    ]
    return codes


def enrol(user: PortalUser, secret: str, code: str) -> list[str]:
    """Turn on two-factor authentication with ``secret`` once ``code`` shows the app has it; the recovery codes."""
    if user.mfa is not None:
        raise UserError(ALREADY_ON)
    step = mfa.matching_step(secret, code)
    if step is None:
        raise UserError(
            "That code does not match. Check that your phone's clock is right and enter the code shown now.", "code"
        )
    now = clock.utcnow()
    credential = MfaCredential(
        user=user,
        account_id=user.account_id,
        secret=mfa.encrypt_secret(secret),
        enrolled_at=now,
        last_step=step,  # the code just shown cannot sign in again
        last_used_at=now,
    )
    db.session.add(credential)
    codes = _new_recovery_codes(credential)
    record_login_event(
        "mfa.enrolled",
        user,
        summary=f"{user.email} turned on two-factor authentication",
    )
    try:
        db.session.commit()
    except IntegrityError:  # a second enrolment of the same login racing this one
        db.session.rollback()
        raise UserError(ALREADY_ON) from None
    mfa.reset_code_limit(user)
    return codes


def _confirm(user: PortalUser, code: str) -> None:
    """The user's own current code (or a recovery code) before a change to their second factor."""
    if user.mfa is None:
        raise UserError("Two-factor authentication is not on for this sign-in.")
    check = mfa.verify(user, code)
    if not check:
        db.session.commit()  # the refusal's event stands
        raise UserError(check.message, "code")


def regenerate_recovery_codes(user: PortalUser, code: str) -> list[str]:
    """New recovery codes for ``user`` (the old ones stop working), after their current code."""
    _confirm(user, code)
    codes = _new_recovery_codes(user.mfa)
    record_login_event(
        "mfa.recovery_codes_regenerated",
        user,
        summary=f"{user.email} made new recovery codes; the old ones no longer work",
    )
    db.session.commit()
    return codes


def turn_off(user: PortalUser, code: str) -> None:
    """Turn off one's own second factor — only where it is not required — after a current code."""
    if mfa.is_required_for(user):
        raise UserError("Two-factor authentication is required for your sign-in: it cannot be turned off.")
    _confirm(user, code)
    db.session.delete(user.mfa)
    record_login_event(
        "mfa.disabled",
        user,
        summary=f"{user.email} turned off two-factor authentication",
    )
    db.session.commit()


def reset(actor: PortalUser, target: PortalUser) -> None:
    """An admin's reset of ``target``'s second factor (a lost phone): they enrol again at their next sign-in."""
    decision = mfa.can_reset_mfa(actor=actor, target=target)
    if not decision:
        raise UserError(decision.reason)
    _remove(target, f"{actor.email} reset the two-factor authentication of {target.email}")


def reset_from_cli(target: PortalUser) -> None:
    """``flask portal reset-mfa``: for a login no admin can reset in the portal (operator staff, the last admin)."""
    _remove(target, f"Two-factor authentication of {target.email} reset from the command line")


def _remove(target: PortalUser, summary: str) -> None:
    if target.mfa is None:
        raise UserError(f"{target.email} has no two-factor authentication to reset.")
    db.session.delete(target.mfa)
    # A reset second factor is a suspect one (a lost phone): the sessions that passed it end too.
    target.sessions_revoked_at = utcnow()
    record_event("mfa.reset", account_id=target.account_id, target=target, summary=summary)
    db.session.commit()
    mfa.reset_code_limit(target)

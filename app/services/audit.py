"""The audit trail's side of security/signals.py: each signal becomes an Event in the sender's transaction (the
sender commits). Connected once, in create_app()."""

from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.models.accounts import OPERATOR, Account
from app.services.events import record_event, record_login_event
from security import signals


def _signed_in(_app, *, user) -> None:
    """On the login's owning account (a customer-portal login's: its reseller's); the customer account it then works
    in records that too (``_account_chosen``)."""
    record_event("auth.login", account_id=user.account_id, actor=user, target=user, summary=f"{user.email} signed in")


def _account_chosen(_app, *, user, membership) -> None:
    record_event(
        "auth.account_chosen",
        account_id=membership.account_id,
        actor=user,
        target=user,
        summary=f"{user.email} is working in {membership.account.name}",
    )


def _operator_account_id() -> int | None:
    return db.session.scalar(select(Account.id).where(Account.kind == OPERATOR).order_by(Account.id).limit(1))


def _attempt(action: str, user, username: str, summary: str) -> None:
    """A sign-in attempt: on the login's account, or the operator's when the address has no login."""
    if user is not None:
        record_event(action, account_id=user.account_id, actor=user, target=user, summary=summary)
        return
    account_id = _operator_account_id()
    if account_id is not None:  # an empty portal (before seeding) has nobody to show it to
        record_event(action, account_id=account_id, actor_label=username or "(empty)", summary=summary)


def _sign_in_failed(_app, *, user, username: str, reason: str) -> None:
    _attempt("auth.login_failed", user, username, f"Failed sign-in for {username or '(empty)'} ({reason})")


def _sign_in_limited(_app, *, user, username: str, retry_after: int) -> None:
    summary = f"Sign-in refused for {username or '(empty)'}: too many attempts (next in {retry_after} s)"
    _attempt("auth.login_limited", user, username, summary)


def _signed_out(_app, *, user) -> None:
    """On the login's account, and on the customer account it was working in."""
    from security.memberships import chosen_for

    accounts = {user.account_id}
    membership = chosen_for(user)
    if membership is not None:
        accounts.add(membership.account_id)
    for account_id in sorted(accounts):
        record_event("auth.logout", account_id=account_id, actor=user, target=user, summary=f"{user.email} signed out")


def _impersonation_started(_app, *, actor, target, membership, logs) -> None:
    summary = f"{actor.email} launched the customer portal of {membership.account.name} as {target.email}"
    for account_id in sorted(logs):
        record_event("impersonation.started", account_id=account_id, actor=actor, target=target, summary=summary)


def _impersonation_ended(_app, *, actor, target, membership, logs, reason: str) -> None:
    where = membership.account.name if membership is not None else "a customer"
    summary = f"{actor.email} left the customer portal of {where} ({reason})"
    for account_id in sorted(logs):
        record_event("impersonation.ended", account_id=account_id, actor=actor, target=target, summary=summary)


def _operator_staff_created(_app, *, user) -> None:
    record_event(
        "user.created", account_id=user.account_id, target=user, summary=f"Created operator staff {user.email}"
    )


def _about_own_sign_in(action: str, user, summary: str) -> None:
    record_login_event(action, user, summary=summary, actor=user)


def _mfa_verified(_app, *, user, method: str, remaining: int | None) -> None:
    if method == "recovery":
        _about_own_sign_in(
            "mfa.recovery_code_used",
            user,
            f"{user.email} used a recovery code for two-factor authentication ({remaining} left)",
        )
    else:
        _about_own_sign_in("mfa.verified", user, f"{user.email} passed two-factor authentication")


def _mfa_failed(_app, *, user, reason: str) -> None:
    _about_own_sign_in("mfa.failed", user, f"Two-factor authentication failed for {user.email} ({reason})")


def _mfa_limited(_app, *, user, retry_after: int) -> None:
    _about_own_sign_in(
        "mfa.limited",
        user,
        f"Two-factor code for {user.email} refused unread: too many wrong codes (retry in {retry_after} s)",
    )


_RECEIVERS = (
    (signals.signed_in, _signed_in),
    (signals.sign_in_failed, _sign_in_failed),
    (signals.sign_in_limited, _sign_in_limited),
    (signals.signed_out, _signed_out),
    (signals.account_chosen, _account_chosen),
    (signals.impersonation_started, _impersonation_started),
    (signals.impersonation_ended, _impersonation_ended),
    (signals.operator_staff_created, _operator_staff_created),
    (signals.mfa_verified, _mfa_verified),
    (signals.mfa_failed, _mfa_failed),
    (signals.mfa_limited, _mfa_limited),
)


def connect() -> None:
    """Subscribe the recorders (idempotent: blinker keeps one connection per receiver)."""
    for signal, receiver in _RECEIVERS:
        signal.connect(receiver)

"""What ``security/`` announces, for the audit trail to record (app/services/audit.py subscribes).

``security/`` never imports ``app/services/``: it sends these blinker signals and the event service records them in
the same transaction, before the sender commits. Each is sent with the app as sender and keyword arguments only.
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

#: user — a successful sign-in (password, and the second factor where one is needed).
signed_in = _signals.signal("portal.signed-in")
#: user (None for an unknown address), username, reason — a refused sign-in.
sign_in_failed = _signals.signal("portal.sign-in-failed")
#: username, user (or None), retry_after — a sign-in attempt refused by the throttle, before any password check.
sign_in_limited = _signals.signal("portal.sign-in-limited")
#: user
signed_out = _signals.signal("portal.signed-out")
#: user, membership — a customer-portal login starts working in one of its customer accounts (sign-in, or a switch)
account_chosen = _signals.signal("portal.account-chosen")
#: actor, target (the login), membership (the one launched), logs (account ids whose event logs show it)
impersonation_started = _signals.signal("portal.impersonation-started")
#: actor, target, membership, logs, reason
impersonation_ended = _signals.signal("portal.impersonation-ended")
#: user — operator staff made by ``flask fab create-admin``
operator_staff_created = _signals.signal("portal.operator-staff-created")
#: user, method ("totp" or "recovery"), remaining (recovery codes left) — a second factor accepted
mfa_verified = _signals.signal("portal.mfa-verified")
#: user, reason — a second factor refused (a wrong code, or one already used)
mfa_failed = _signals.signal("portal.mfa-failed")
#: user, retry_after (seconds) — a code refused unread: too many wrong ones lately
mfa_limited = _signals.signal("portal.mfa-limited")

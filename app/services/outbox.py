"""The mail outbox: a mail is a row (``outbox_mail``) added in the transaction of the change that causes it, so a change
rolled back sends nothing and a change committed loses no mail. Sending happens afterwards, never in a web request:

- ``queue()`` adds the row (bodies rendered now, so sending needs no request) and asks for a kick on commit;
- ``kick()``, after the commit, asks for sending soon: an RQ job with REDIS_URL, else a thread of this process;
- ``send_due()`` (the kick, the worker's start, the periodic maintenance run) claims the due rows under a lease, so
  two processes never send one row, and sends them with short SMTP timeouts (``MAIL_TIMEOUT`` per step). A failed
  try is retried after ``MAIL_RETRY_SECONDS``, doubling each time; after ``MAIL_MAX_ATTEMPTS`` tries (or a refusal
  the server calls permanent) the mail is ``failed``: an event, and an activation mail's login shows it on the Users
  tab ("activation email failed — Resend").
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import smtplib
import threading
import uuid

from flask import Flask, current_app, has_app_context
from sqlalchemy import delete, event, func, or_, select, update

from app.extensions import db, mail
from app.models.base import utcnow
from app.models.outbox import FAILED, QUEUED, SENT, OutboxMail
from app.services import mail as messages
from app.services.events import record_event
from security import scoping
from security.models import PortalUser

log = logging.getLogger(__name__)

# What each kind of mail is called in the event log.
KIND_NAMES = {
    "activation": "Activation",
    "welcome": "Welcome",
    "password_reset": "Password reset",
    "access_granted": "Access granted",
    "password_reset_request": "Password reset",
    "tenant_handover": "Tenant hand-over",
}
# Mails whose final failure shows on their login's row of the Users tab, with Resend.
LINK_KINDS = ("activation", "welcome")
# An address typed on the "forgot your password" page: the sender looks it up (app/services/activation.py).
RESET_REQUEST = "password_reset_request"
# Rows claimed (and sent over one SMTP connection) at a time.
CHUNK = 10
# A sender that finds the due rows claimed by another this many times in a row leaves the rest to it.
LOST_RACES = 5
# The longest wait between two tries of one mail.
MAX_BACKOFF_SECONDS = 6 * 3600
_KICK = "portal_outbox_kick"


def queue(
    kind: str, *, to: str, subject: str, account, user=None, template: str | None = None, **context
) -> OutboxMail:
    """Add a mail to ``to`` about ``account`` (for login ``user``) to the caller's session: it is committed with the
    caller's change and sent after the commit. ``template``: ``mail/<template>.txt`` and ``.html``, rendered now with
    ``user``, ``account`` and ``context``; None for a request the sender resolves itself (RESET_REQUEST)."""
    text, html = messages.render(template, user=user, account=account, **context) if template else (None, None)
    row = OutboxMail(
        kind=kind,
        recipient=to,
        subject=subject,
        text_body=text,
        html_body=html,
        account_id=account.id,
        user_id=getattr(user, "id", None),
        state=QUEUED,
        attempts=0,
        next_attempt_at=utcnow(),
    )
    db.session.add(row)
    db.session.info[_KICK] = True  # _after_commit kicks the sender
    return row


@event.listens_for(db.session, "after_commit")
def _after_commit(session) -> None:
    if session.info.pop(_KICK, False):
        kick()


@event.listens_for(db.session, "after_rollback")
def _after_rollback(session) -> None:
    session.info.pop(_KICK, None)  # the rows went with the transaction


def kick() -> None:
    """Ask for the due mail to be sent soon, outside this request: an RQ job with REDIS_URL, else this process's sender
    thread. Never raises: what a kick misses, the next kick or the periodic run sends."""
    try:
        if current_app.config.get("REDIS_URL"):
            from app.services.jobs import enqueue

            enqueue("app.services.outbox.send_due_in_worker", name="mail-outbox", timeout=600)
        else:
            _wake_sender(current_app._get_current_object())
    except Exception as exc:  # a down Redis must not turn a saved change into an error page
        log.warning("The mail outbox was not kicked (%s): the periodic run sends the mail", exc)


@dataclasses.dataclass
class _Sender:
    """A process's sender thread for one app: at most one runs; a kick while it runs makes it look again."""

    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    pending: bool = False
    thread: threading.Thread | None = None


_senders_lock = threading.Lock()


def _wake_sender(app: Flask) -> None:
    with _senders_lock:
        sender = app.extensions.setdefault("portal_outbox_sender", _Sender())
    with sender.lock:
        sender.pending = True
        if sender.thread is None or not sender.thread.is_alive():  # (not alive: inherited through a fork)
            sender.thread = threading.Thread(target=_run_sender, args=(app, sender), name="mail-outbox", daemon=True)
            sender.thread.start()


def _run_sender(app: Flask, sender: _Sender) -> None:
    while True:
        with sender.lock:
            if not sender.pending:
                sender.thread = None
                return
            sender.pending = False
        try:
            with app.app_context():
                send_due()
        except Exception:
            log.exception("The mail outbox could not send now; the periodic run tries again")


def send_due_in_worker() -> int:
    """What RQ runs: inside the app of ``worker.py``, or — under a plain ``rq worker`` — an app built once."""
    if has_app_context():
        return send_due()
    global _worker_app
    if _worker_app is None:
        from app import create_app

        _worker_app = create_app()
    with _worker_app.app_context():
        return send_due()


_worker_app: Flask | None = None


@dataclasses.dataclass(frozen=True)
class _Claimed:
    id: int
    kind: str
    recipient: str
    subject: str
    text: str
    html: str
    user_id: int | None
    account_id: int
    attempts: int


def send_due(limit: int = 100) -> int:
    """Send up to ``limit`` due mails (queued, due, not claimed by a live sender); returns how many were sent. Each SMTP
    step waits ``MAIL_TIMEOUT`` seconds at most; a server that cannot be reached ends the run (its mails are tried
    again later), so a silent server costs one timeout, not one per mail."""
    sent = tried = lost = 0
    with scoping.bypass("mail outbox: sending the due mail"):
        _resolve_requests(limit)
        while tried < limit and lost < LOST_RACES:
            token = uuid.uuid4().hex
            batch = _claim(token, min(CHUNK, limit - tried))
            if batch is None:
                break
            if not batch:  # another sender claimed these first: look again
                lost += 1
                continue
            tried += len(batch)
            done, reachable = _send_batch(batch, token)
            sent += done
            if not reachable:
                break
    return sent


def _due(now: dt.datetime):
    unclaimed = or_(OutboxMail.claimed_until.is_(None), OutboxMail.claimed_until < now)
    return (OutboxMail.state == QUEUED, OutboxMail.next_attempt_at <= now, unclaimed)


def _claim(token: str, n: int, *, requests: bool = False) -> list[OutboxMail] | None:
    """Lease up to ``n`` due rows to ``token`` (one conditional UPDATE: a row another sender won is not ours) and
    return them; None when nothing is due. The lease outlasts the worst case of sending them all, so a live sender
    never loses one; a crashed sender's rows are due again when it ends."""
    now = utcnow()
    kind = OutboxMail.kind == RESET_REQUEST if requests else OutboxMail.kind != RESET_REQUEST
    ids = db.session.scalars(
        select(OutboxMail.id)
        .where(*_due(now), kind)
        .order_by(OutboxMail.next_attempt_at, OutboxMail.id)
        .limit(n)
        .with_for_update(skip_locked=True)
    ).all()
    if not ids:
        db.session.rollback()
        return None
    lease = now + dt.timedelta(seconds=60 + n * 4 * current_app.config["MAIL_TIMEOUT"])
    db.session.execute(
        update(OutboxMail)
        .where(OutboxMail.id.in_(ids), *_due(now))
        .values(claim_token=token, claimed_until=lease)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return list(db.session.scalars(select(OutboxMail).where(OutboxMail.claim_token == token).order_by(OutboxMail.id)))


def _resolve_requests(limit: int) -> None:
    """Addresses typed on the "forgot your password" page: a reset mail for one with a login (queued here, sent by this
    run), nothing for one without; the request row goes either way."""
    from app.services.activation import reset_requested

    resolved = 0
    while resolved < limit:
        token = uuid.uuid4().hex
        rows = _claim(token, min(CHUNK, limit - resolved), requests=True)
        if not rows:
            return
        resolved += len(rows)
        for row in rows:
            item = _claimed(row)
            try:
                reset_requested(item.recipient)
                db.session.delete(row)
                db.session.info.pop(_KICK, None)  # this run sends it
                db.session.commit()
            except Exception as exc:
                db.session.rollback()
                log.exception("The password reset asked for %s could not be prepared", item.recipient)
                _tried(item, token, exc)


def _claimed(row: OutboxMail) -> _Claimed:
    return _Claimed(
        row.id,
        row.kind,
        row.recipient,
        row.subject,
        row.text_body,
        row.html_body,
        row.user_id,
        row.account_id,
        row.attempts,
    )


def _send_batch(rows: list[OutboxMail], token: str) -> tuple[int, bool]:
    """Send claimed rows over one connection: (how many were sent, whether the server could be reached)."""
    batch = [_claimed(row) for row in rows]
    db.session.rollback()  # nothing held open while the server is talked to
    connection = mail.get_connection(timeout=current_app.config["MAIL_TIMEOUT"])
    try:
        connection.open()
    except Exception as exc:  # refused, silent (a timeout), TLS or login refused: every row of the batch waits
        _drop(connection)
        for item in batch:
            _tried(item, token, exc)
        return 0, False
    sent = 0
    try:
        for i, item in enumerate(batch):
            try:
                messages.send(connection, item.recipient, item.subject, item.text, item.html)
            except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
                _tried(item, token, exc, permanent=_permanent(exc))  # this message refused; the connection lives
            except Exception as exc:  # the connection is gone (a timeout, a hang-up): the rest wait with this one
                _drop(connection)
                for rest in batch[i:]:
                    _tried(rest, token, exc)
                return sent, False
            else:
                _sent(item, token)
                sent += 1
    finally:
        _close(connection)
    return sent, True


def _permanent(exc: Exception) -> bool:
    """A 5xx answer about this message (an address or a content the server will never take) is not tried again."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in exc.recipients.values())
    return getattr(exc, "smtp_code", 0) >= 500 and not isinstance(exc, smtplib.SMTPSenderRefused)


def _close(connection) -> None:
    try:
        connection.close()
    except Exception:
        _drop(connection)


def _drop(connection) -> None:
    """Close the socket without a QUIT (the server did not answer the last step: it would not answer that either)."""
    sock = getattr(connection, "connection", None)
    if sock is not None:
        with contextlib.suppress(Exception):  # already gone
            sock.close()
        connection.connection = None


def _error_text(exc: Exception) -> str:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "; ".join(f"{code} {reply.decode(errors='replace')}" for code, reply in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPResponseException):
        reply = exc.smtp_error
        return f"{exc.smtp_code} {reply.decode(errors='replace') if isinstance(reply, bytes) else reply}"
    if isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError):  # smtplib wraps a read's
        return f"the mail server did not answer within {current_app.config['MAIL_TIMEOUT']} s"
    return str(exc) or type(exc).__name__


def _mine(item: _Claimed, token: str):
    return update(OutboxMail).where(OutboxMail.id == item.id, OutboxMail.claim_token == token)


def _sent(item: _Claimed, token: str) -> None:
    """Sent: the bodies (a single-use link) are cleared, the login's event log says so."""
    done = db.session.execute(
        _mine(item, token)
        .values(
            state=SENT,
            sent_at=utcnow(),
            attempts=item.attempts + 1,
            text_body=None,
            html_body=None,
            claim_token=None,
            claimed_until=None,
            last_error=None,
        )
        .execution_options(synchronize_session=False)
    )
    if done.rowcount == 1:
        summary = f"{KIND_NAMES.get(item.kind, 'An')} email sent to {item.recipient}"
        _event("user.activation_sent", item, summary)
    db.session.commit()
    log.info("Mail %s to %s sent: %s", item.id, item.recipient, item.subject)


def _tried(item: _Claimed, token: str, exc: Exception, *, permanent: bool = False) -> None:
    """A failed try: due again after a backoff that doubles, or — after the last try — failed for good."""
    error = _error_text(exc)[:500]
    attempts = item.attempts + 1
    final = permanent or attempts >= current_app.config["MAIL_MAX_ATTEMPTS"]
    values: dict = {"attempts": attempts, "last_error": error, "claim_token": None, "claimed_until": None}
    if final:
        values.update(state=FAILED, text_body=None, html_body=None)
    else:
        wait = min(current_app.config["MAIL_RETRY_SECONDS"] * 2 ** (attempts - 1), MAX_BACKOFF_SECONDS)
        values["next_attempt_at"] = utcnow() + dt.timedelta(seconds=wait)
    done = db.session.execute(_mine(item, token).values(**values).execution_options(synchronize_session=False))
    if done.rowcount == 1 and final:
        _failed_for_good(item, error, attempts)
    db.session.commit()
    log.warning(
        "Mail %s to %s not sent (try %s of %s%s): %s",
        item.id,
        item.recipient,
        attempts,
        current_app.config["MAIL_MAX_ATTEMPTS"],
        ", given up" if final else "",
        error,
    )


def _failed_for_good(item: _Claimed, error: str, attempts: int) -> None:
    name = KIND_NAMES.get(item.kind, "An")
    tries = "1 try" if attempts == 1 else f"{attempts} tries"
    _event("user.activation_email_failed", item, f"{name} email to {item.recipient} not sent after {tries}: {error}")
    if item.kind not in LINK_KINDS or item.user_id is None:
        return
    # The login's row shows it — unless a newer link has been queued for it since (a Resend): that one counts.
    newest = db.session.scalar(
        select(func.max(OutboxMail.id)).where(OutboxMail.user_id == item.user_id, OutboxMail.kind.in_(LINK_KINDS))
    )
    user = db.session.get(PortalUser, item.user_id)
    if newest == item.id and user is not None:
        user.activation_error = f"{name.lower()} email failed: {error}"[:300]


def _event(action: str, item: _Claimed, summary: str) -> None:
    target = {"target_type": "PortalUser", "target_id": item.user_id} if item.user_id is not None else {}
    record_event(action, account_id=item.account_id, summary=summary, actor_label="mail outbox", **target)


def purge_done(days: int = 30) -> int:
    """Rows sent or given up more than ``days`` ago (their bodies are already gone): deleted; how many. The event
    log keeps what was sent to whom."""
    limit = utcnow() - dt.timedelta(days=days)
    with scoping.bypass("mail outbox: old rows"):
        gone = db.session.execute(
            delete(OutboxMail)
            .where(OutboxMail.state.in_((SENT, FAILED)), OutboxMail.created_on < limit)
            .execution_options(synchronize_session=False)
        ).rowcount
        db.session.commit()
    return gone

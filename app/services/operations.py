"""The provider operation log (issue 12): a change of Microsoft's state is written and committed as an operation
before it is sent, and its outcome recorded after; the form's once-only key is tied to it, so a resend tells the truth
(placed, not placed, or still being confirmed) and a retry sends the SAME request again (one MS-RequestId per
operation: Microsoft answers a repeated request with what the first one made, never buying twice).

Recovery asks Microsoft, never guesses: an operation left ``pending`` past ``OPERATION_TIMEOUT_SECONDS`` (a crash, a
kill, a deploy) is sent again with its request id by whoever finds it first — a resend of its form, or
``flask portal recover-operations`` / the worker's start — and Microsoft's answer is recorded."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid

from flask import current_app, g
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from app.csp.base import ProviderError
from app.extensions import db
from app.models.base import utcnow
from app.models.jobs import FormSubmission
from app.models.operations import FAILED, PENDING, SUCCEEDED, ProviderOperation

_KEY = re.compile(r"^[0-9a-f]{32}$")


class AlreadySent(Exception):
    """This form was sent before: ``operation`` is what it started (None: a key issued elsewhere, out of date)."""

    def __init__(self, operation: ProviderOperation | None):
        super().__init__("already sent")
        self.operation = operation


def begin(
    kind: str,
    account_id: int,
    params: dict,
    key: str | None,
    target: str | None = None,
    correlation_id: str | None = None,
) -> ProviderOperation:
    """Claim the form's ``key`` and write the operation ``pending`` — one commit, before anything is sent. The same
    key again raises ``AlreadySent`` with the operation it started. ``params`` must hold no secret. ``target``: what
    it changes ("subscription:12"; "account:5" for what does not exist yet); ``correlation_id``: the one its call will
    carry, known before it is sent (a crash then leaves it to look the call up by)."""
    key = (key or "").strip().lower()
    key = key if _KEY.match(key) else None
    user_id = getattr(g, "user", None) and g.user.id
    now = utcnow()
    operation = ProviderOperation(
        created_on=now,
        attempted_on=now,
        account_id=account_id,
        kind=kind,
        target=target,
        state=PENDING,
        submission_key=key,
        request_id=str(uuid.uuid4()),
        correlation_id=correlation_id,
        params=json.dumps(params, sort_keys=True),
        requested_by_id=user_id,
    )
    if key:
        db.session.add(FormSubmission(key=key, account_id=account_id, kind=kind, user_id=user_id))
    db.session.add(operation)
    session = db.session()
    try:
        # Committed now, before anything is sent; what the caller just read stays loaded (nothing it holds changed
        # here), so the call is not delayed by reading it all again.
        session.expire_on_commit = False
        session.commit()
    except IntegrityError:
        db.session.rollback()
        first = db.session.scalars(
            select(ProviderOperation).where(
                ProviderOperation.submission_key == key,
                ProviderOperation.kind == kind,
                ProviderOperation.account_id == account_id,
            )
        ).first()  # through the scope: another tenant's key is no operation of ours
        raise AlreadySent(first) from None
    finally:
        session.expire_on_commit = True
    return operation


def is_first_try(operation: ProviderOperation) -> bool:
    """Sent once only so far: nothing an earlier try made can exist yet."""
    return operation.attempted_on == operation.created_on


def params_of(operation: ProviderOperation) -> dict:
    return json.loads(operation.params)


def result_of(operation: ProviderOperation) -> dict:
    return json.loads(operation.result or "{}")


def is_stale(operation: ProviderOperation) -> bool:
    """Pending for longer than any live request takes: whoever sent it is gone."""
    limit = dt.timedelta(seconds=current_app.config["OPERATION_TIMEOUT_SECONDS"])
    return operation.state == PENDING and utcnow() - operation.attempted_on > limit


def claim_retry(operation: ProviderOperation) -> bool:
    """Take a failed, or stale pending, operation to send it again — once, however many ask together (one
    conditional UPDATE, committed)."""
    if not (operation.state == FAILED or is_stale(operation)):
        return False
    won = db.session.execute(
        update(ProviderOperation)
        .where(
            ProviderOperation.id == operation.id,
            ProviderOperation.state == operation.state,
            ProviderOperation.attempted_on == operation.attempted_on,
        )
        .values(state=PENDING, attempted_on=utcnow(), error=None)
        .execution_options(synchronize_session=False)
    )
    if won.rowcount != 1:
        db.session.rollback()
        return False
    db.session.commit()
    db.session.refresh(operation)
    return True


def succeeded(operation: ProviderOperation, result: dict, correlation_id: str) -> None:
    """Microsoft did it: recorded in the caller's transaction, with what was made."""
    operation.state = SUCCEEDED
    operation.result = json.dumps(result, sort_keys=True)
    operation.correlation_id = correlation_id
    operation.error = None
    operation.finished_on = utcnow()


def failed(operation: ProviderOperation, exc: ProviderError, correlation_id: str) -> None:
    """Microsoft refused, or did not answer: recorded and committed at once (the caller's changes rolled back). The
    key stays tied to it: sending the same form again retries the same request."""
    db.session.rollback()
    correlation = exc.correlation_id or correlation_id
    refused(operation, f"{exc} (correlation id {correlation})", correlation)
    db.session.commit()


def refused(operation: ProviderOperation, error: str, correlation_id: str) -> None:
    """Not done at Microsoft, as its own record confirms (or never knowable): ``failed`` with what is true, in the
    caller's transaction (the repairs that made the portal match are committed with it)."""
    operation.state = FAILED
    operation.error = error[:1000]
    operation.correlation_id = correlation_id or operation.correlation_id
    operation.finished_on = utcnow()


def unconfirmed(operation: ProviderOperation, error: str, correlation_id: str) -> None:
    """Microsoft did not answer and could not be asked what is true: the operation stays ``pending`` — the recoverer
    asks again once it is stale — with what went wrong, in the caller's transaction."""
    operation.error = f"Not confirmed yet: {error}"[:1000]
    operation.correlation_id = correlation_id or operation.correlation_id


def stale_pending(kind: str | None = None) -> list[ProviderOperation]:
    """Pending operations (of ``kind``, or of every kind) whose sender is gone, oldest first."""
    limit = utcnow() - dt.timedelta(seconds=current_app.config["OPERATION_TIMEOUT_SECONDS"])
    query = select(ProviderOperation).where(ProviderOperation.state == PENDING, ProviderOperation.attempted_on < limit)
    if kind is not None:
        query = query.where(ProviderOperation.kind == kind)
    return list(db.session.scalars(query.order_by(ProviderOperation.id)))


#: Licence changes are recorded on their subscription; the user whose licences they change is in flight too.
_ALSO_ON_USER = frozenset({"licence_assign", "licence_remove"})


def in_flight_targets(account_ids=None) -> set[str]:
    """What has an operation still pending on it (of the accounts ``account_ids``, or all in scope): the targets
    ("subscription:12", "m365_user:7", "tenant:3", "account:5"), and for a licence change also its user's — what
    reconciliation must leave alone, since Microsoft's answer about it is not recorded yet."""
    query = select(ProviderOperation.kind, ProviderOperation.target, ProviderOperation.params).where(
        ProviderOperation.state == PENDING, ProviderOperation.target.is_not(None)
    )
    if account_ids is not None:
        query = query.where(ProviderOperation.account_id.in_(list(account_ids)))
    targets: set[str] = set()
    for kind, target, params in db.session.execute(query):
        targets.add(target)
        if kind in _ALSO_ON_USER:
            person = json.loads(params).get("m365_user_id")
            if person is not None:
                targets.add(f"m365_user:{person}")
    return targets

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


def begin(kind: str, account_id: int, params: dict, key: str | None) -> ProviderOperation:
    """Claim the form's ``key`` and write the operation ``pending`` — one commit, before anything is sent. The same
    key again raises ``AlreadySent`` with the operation it started. ``params`` must hold no secret."""
    key = (key or "").strip().lower()
    key = key if _KEY.match(key) else None
    user_id = getattr(g, "user", None) and g.user.id
    now = utcnow()
    operation = ProviderOperation(
        created_on=now,
        attempted_on=now,
        account_id=account_id,
        kind=kind,
        state=PENDING,
        submission_key=key,
        request_id=str(uuid.uuid4()),
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
    operation.state = FAILED
    operation.error = f"{exc} (correlation id {exc.correlation_id or correlation_id})"[:1000]
    operation.correlation_id = exc.correlation_id or correlation_id
    operation.finished_on = utcnow()
    db.session.commit()


def stale_pending(kind: str) -> list[ProviderOperation]:
    limit = utcnow() - dt.timedelta(seconds=current_app.config["OPERATION_TIMEOUT_SECONDS"])
    return list(
        db.session.scalars(
            select(ProviderOperation)
            .where(ProviderOperation.kind == kind, ProviderOperation.state == PENDING)
            .where(ProviderOperation.attempted_on < limit)
            .order_by(ProviderOperation.id)
        )
    )

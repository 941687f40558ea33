"""Once-only forms: a form that orders or creates carries a fresh key; the first request to claim it wins.

The claim is committed before the change starts (before any call to Microsoft), so a second request with the same
key — a double click, a resend after a timeout, another tab — is told at once, even while the first is still
talking to the provider. If the change then fails, the claim is released and the same form can be sent again."""

from __future__ import annotations

import re
import uuid

from flask import g
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models.jobs import FormSubmission
from security import scoping

_KEY = re.compile(r"^[0-9a-f]{32}$")


class AlreadySubmitted(Exception):
    """This form was sent before; the first request is doing (or has done) the work. With a message: the key was
    someone else's, and that message is what to say."""


def new_key() -> str:
    return uuid.uuid4().hex


def claim(key: str | None, account_id: int, kind: str) -> str | None:
    """Claim ``key`` for a change on ``account_id`` (committed). No key (a client that sends none): nothing to
    claim. A malformed key is treated as absent: it cannot collide with a real one."""
    key = (key or "").strip().lower()
    if not _KEY.match(key):
        return None
    user_id = getattr(g, "user", None) and g.user.id
    db.session.add(FormSubmission(key=key, account_id=account_id, kind=kind, user_id=user_id))
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise _already(key, account_id, kind, user_id) from None
    return key


def _already(key: str, account_id: int, kind: str, user_id) -> AlreadySubmitted:
    """What to say about a claimed key: a resend of this very form, or a key issued with another one."""
    with scoping.bypass("form key owner"):  # columns only: no other tenant's row enters the session
        first = db.session.execute(
            select(FormSubmission.account_id, FormSubmission.kind, FormSubmission.user_id).where(
                FormSubmission.key == key
            )
        ).first()
    if first is not None and tuple(first) == (account_id, kind, user_id):
        return AlreadySubmitted("")
    # Issued with another form, user or account (copied, or guessed): this is not a resend of that one.
    return AlreadySubmitted("This form is out of date: open it again.")


def hold(key: str | None, account_id: int, kind: str) -> str | None:
    """Claim ``key`` in the caller's transaction (not committed): the claim and the change it guards commit together,
    so a crash between them leaves neither — never a claimed key with nothing made. Raises ``AlreadySubmitted`` when
    the key is already claimed (a resend of a form whose change was made). The caller treats an IntegrityError at its
    commit with ``was_claimed``."""
    key = (key or "").strip().lower()
    if not _KEY.match(key):
        return None
    user_id = getattr(g, "user", None) and g.user.id
    if was_claimed(key):
        raise _already(key, account_id, kind, user_id)
    db.session.add(FormSubmission(key=key, account_id=account_id, kind=kind, user_id=user_id))
    return key


def was_claimed(key: str | None) -> bool:
    """Is ``key`` claimed (committed)? Only the key is read, whoever claimed it."""
    if not key:
        return False
    with scoping.bypass("form key claimed?"):
        return db.session.scalar(select(FormSubmission.key).where(FormSubmission.key == key)) is not None


def release(key: str | None) -> None:
    """The change failed: the same form may be sent again."""
    if key:
        db.session.rollback()
        db.session.execute(delete(FormSubmission).where(FormSubmission.key == key))
        db.session.commit()

"""Once-only forms: a form that orders or creates carries a fresh key; the first request to claim it wins.

The claim is committed before the change starts (before any call to Microsoft), so a second request with the same
key — a double click, a resend after a timeout, another tab — is told at once, even while the first is still
talking to the provider. If the change then fails, the claim is released and the same form can be sent again."""

from __future__ import annotations

import re
import uuid

from flask import g
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models.jobs import FormSubmission

_KEY = re.compile(r"^[0-9a-f]{32}$")


class AlreadySubmitted(Exception):
    """This form was sent before; the first request is doing (or has done) the work."""


def new_key() -> str:
    return uuid.uuid4().hex


def claim(key: str | None, account_id: int, kind: str) -> str | None:
    """Claim ``key`` for a change on ``account_id`` (committed). No key (a client that sends none): nothing to
    claim. A malformed key is treated as absent: it cannot collide with a real one."""
    if not key or not _KEY.match(key):
        return None
    db.session.add(
        FormSubmission(key=key, account_id=account_id, kind=kind, user_id=getattr(g, "user", None) and g.user.id)
    )
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise AlreadySubmitted from None
    return key


def release(key: str | None) -> None:
    """The change failed: the same form may be sent again."""
    if key:
        db.session.rollback()
        db.session.execute(delete(FormSubmission).where(FormSubmission.key == key))
        db.session.commit()

"""Server-side sessions with Flask-Session: Redis when REDIS_URL is set, else the ``server_session`` table.

The table comes from our migrations (Flask-Session's own SQLAlchemy store would create it at start-up and
commit the request's database session); this store uses its own short transactions on the same engine.
"""

from __future__ import annotations

import datetime as dt

import msgspec
from flask import Flask, current_app, flash, redirect, session
from flask_babel.speaklater import LazyString
from flask_session.base import ServerSideSessionInterface
from flask_session.defaults import Defaults
from flask_session.redis import RedisSessionInterface
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.models.base import utcnow
from app.models.sessions import ServerSession


class _OutageTolerant:
    """A store that cannot be read (PostgreSQL or Redis unreachable) does not raise out of Flask's request set-up,
    where it would be a traceback and a bare 500: the request gets a null session and is answered 503 before any view
    (``app/failure.py``). Saving is guarded by ``app.failure.PortalFlask``: the response stands."""

    def open_session(self, app: Flask, request):
        from app import failure

        try:
            return super().open_session(app, request)
        except Exception as exc:
            if failure.outage_of(exc) is None:
                raise
            failure.session_unavailable(request, exc)
            return None  # Flask then makes a null session, which is never saved


class DatabaseSessionInterface(_OutageTolerant, ServerSideSessionInterface):
    """Flask-Session's server-side session, stored in ``server_session`` through its own connection."""

    ttl = False

    def __init__(self, app: Flask, engine_getter, **kwargs) -> None:
        self._engine = engine_getter
        super().__init__(app, cleanup_n_requests=app.config["SESSION_CLEANUP_N_REQUESTS"] or None, **kwargs)

    def _store(self) -> Session:
        return Session(self._engine(), expire_on_commit=False)

    def _retrieve_session_data(self, store_id: str) -> dict | None:
        with self._store() as store:
            record = store.scalars(select(ServerSession).where(ServerSession.session_id == store_id)).first()
            if record is None or record.expiry is None or record.expiry <= utcnow():
                return None
            return self.serializer.decode(record.data)

    def _delete_session(self, store_id: str) -> None:
        with self._store() as store, store.begin():
            store.execute(delete(ServerSession).where(ServerSession.session_id == store_id))

    def _upsert_session(self, session_lifetime: dt.timedelta, session, store_id: str) -> None:
        data = self.serializer.encode(session)
        expiry = utcnow() + session_lifetime
        with self._store() as store, store.begin():
            record = store.scalars(select(ServerSession).where(ServerSession.session_id == store_id)).first()
            if record is None:
                store.add(ServerSession(session_id=store_id, data=data, expiry=expiry))
            else:
                record.data, record.expiry = data, expiry

    def _delete_expired_sessions(self) -> None:
        with self._store() as store, store.begin():
            store.execute(delete(ServerSession).where(ServerSession.expiry <= utcnow()))


class PortalRedisSessionInterface(_OutageTolerant, RedisSessionInterface):
    """Flask-Session's Redis store, on a client with short timeouts (``REDIS_SOCKET_TIMEOUT``)."""


SIGNED_IN_KEY = "signed_in_at"
IMPERSONATOR_KEY = "impersonator_id"  # security/impersonation.py keeps the real user under this key


def renew_session_id() -> None:
    """Give the browser a new session id, keeping the data (sign-in, impersonation start and stop)."""
    interface = current_app.session_interface
    if hasattr(interface, "regenerate"):
        interface.regenerate(session)


def mark_signed_in() -> None:
    """This session's credentials are as of now (sign-in, or its own password change)."""
    session[SIGNED_IN_KEY] = utcnow().isoformat()


def why_session_ended(user) -> str | None:
    """Why this session may no longer act for ``user`` (the signed-in user, or the real user behind a Launch): its
    absolute lifetime is over, or it was signed in before the user's password was set or their sessions were revoked
    (disabled, deleted, their account disabled) — so re-enabling a login revives none of its old cookies."""
    started = session.get(SIGNED_IN_KEY)
    if not started:
        return "Your session has ended: sign in again."
    started = dt.datetime.fromisoformat(started)
    if utcnow() - started > dt.timedelta(hours=current_app.config["SESSION_ABSOLUTE_HOURS"]):
        return "Your session has reached its time limit: sign in again."
    if user.password_set_at is not None and user.password_set_at > started:
        return "Your password was changed: sign in with the new one."
    revoked = [user.sessions_revoked_at]
    if user.portal != "customer" and user.account is not None:
        # Staff work in their own account. A customer-portal login works in its memberships' accounts, which
        # security/memberships.py checks per request: its owning reseller being disabled is not its own.
        revoked.append(user.account.sessions_revoked_at)
    if any(moment is not None and moment > started for moment in revoked):
        return "Your session has ended: sign in again."
    return None


def end_session(message: str):
    """Sign out for good (the emptied session is deleted from the store) and go to the sign-in page."""
    from flask_login import logout_user

    logout_user()
    session.clear()
    flash(message, "info")
    return redirect(current_app.appbuilder.get_url_for_login)


def end_ended_sessions():
    """Before every request: a session that may no longer act for its user ends (a Launch's real user is checked in
    security/impersonation.py, which knows who that is)."""
    from flask_login import current_user

    if not current_user.is_authenticated or session.get(IMPERSONATOR_KEY):
        return None
    why = why_session_ended(current_user)
    return end_session(why) if why else None


def _encode_lazy_text(value):
    """FAB flashes lazily translated messages; the session keeps them as the text they read as."""
    if isinstance(value, LazyString):
        return str(value)
    raise NotImplementedError(f"cannot keep a {type(value).__name__} in the session")


def init_sessions(app: Flask, engine_getter) -> None:
    """Install the server-side session interface the configuration asks for."""
    common = {
        "key_prefix": Defaults.SESSION_KEY_PREFIX,
        "use_signer": False,
        "permanent": True,
        "sid_length": Defaults.SESSION_ID_LENGTH,
        "serialization_format": Defaults.SESSION_SERIALIZATION_FORMAT,
    }
    if app.config["SESSION_STORE"] == "redis":
        from app.failure import redis_client

        app.session_interface = PortalRedisSessionInterface(
            app, client=redis_client(app.config["REDIS_URL"], app.config), **common
        )
    else:
        app.session_interface = DatabaseSessionInterface(app, engine_getter, **common)
    app.session_interface.serializer.encoder = msgspec.msgpack.Encoder(enc_hook=_encode_lazy_text)

"""The per-login sign-in throttle: growing delays after a few wrong passwords — one budget per login, whether its
username or its email is typed, and one per typed address that has no login (so the answer says nothing about who
has one), shared by every process: in Redis when ``REDIS_URL`` is set, else in the database.

Each attempt is charged *before* its password is checked, in one atomic step, so twenty attempts sent at once are
twenty attempts: the first ``SIGN_IN_FREE_ATTEMPTS`` - 1 go through freely; from the next one on each attempt shuts the
door for ``SIGN_IN_DELAY_SECONDS``, doubling up to ``SIGN_IN_MAX_DELAY_SECONDS``. A successful sign-in clears the
login; a quiet day (no attempt) forgets it. Per client address, Flask-Limiter's ``AUTH_RATE_LIMIT`` still applies.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import math

from flask import current_app
from sqlalchemy import case, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.models.sessions import SignInThrottle

FORGET_AFTER_SECONDS = 24 * 3600


@dataclasses.dataclass(frozen=True)
class Rules:
    free_attempts: int
    delay: int
    max_delay: int

    @classmethod
    def from_config(cls) -> Rules:
        config = current_app.config
        return cls(
            config["SIGN_IN_FREE_ATTEMPTS"], config["SIGN_IN_DELAY_SECONDS"], config["SIGN_IN_MAX_DELAY_SECONDS"]
        )


def _key(name: str) -> str:
    """The throttle's key for a login (``login:<id>``) or a typed address without one: a digest, so the store holds no
    list of addresses people typed."""
    return hashlib.sha256((name or "").strip().lower().encode()).hexdigest()


def _now() -> int:
    """Whole seconds since the epoch, from the portal's clock (naive UTC)."""
    return math.floor(utcnow().replace(tzinfo=dt.UTC).timestamp())


class DatabaseThrottle:
    """The throttle in the ``sign_in_throttle`` table, one conditional UPDATE per attempt (its own transaction)."""

    def __init__(self, engine_getter) -> None:
        self._engine = engine_getter

    def attempt(self, name: str, rules: Rules) -> int:
        """Charge one attempt; 0 when it may go ahead, else the seconds to wait (and nothing is charged).

        One atomic upsert (INSERT … ON CONFLICT DO UPDATE … WHERE not locked, on PostgreSQL and SQLite alike): a new
        address's row is made, a known one's charged — never lost to a race with another attempt's insert or with a
        successful sign-in's ``clear()`` deleting the row (the database resolves those itself). Only a lock in force
        is a wait."""
        key, now = _key(name), _now()
        table = SignInThrottle.__table__
        forgotten = table.c.last_attempt < now - FORGET_AFTER_SECONDS
        delay = case(
            (forgotten, 0),
            (table.c.attempts + 1 < rules.free_attempts, 0),
            (table.c.delay == 0, rules.delay),
            (table.c.delay * 2 > rules.max_delay, rules.max_delay),
            else_=table.c.delay * 2,
        )
        first = rules.delay if rules.free_attempts <= 1 else 0
        with Session(self._engine()) as store:
            upsert = (postgresql.insert if store.bind.dialect.name == "postgresql" else sqlite.insert)(table)
            statement = (
                upsert.values(
                    key=key, attempts=1, delay=first, locked_until=now + first if first else 0, last_attempt=now
                )
                .on_conflict_do_update(
                    index_elements=[table.c.key],
                    set_={
                        "attempts": case((forgotten, 1), else_=table.c.attempts + 1),
                        "delay": delay,
                        # No lock is 0, not "now": another server whose clock is a second behind must not wait.
                        "locked_until": case((delay == 0, 0), else_=now + delay),
                        "last_attempt": now,
                    },
                    where=table.c.locked_until <= now,
                )
                .returning(table.c.attempts)
            )
            for _ in range(3):
                with store.begin():
                    charged = store.execute(statement).first()
                    if charged is not None:
                        if charged.attempts == 1:  # a new (or forgotten) address: forget those quiet for a day
                            store.execute(delete(table).where(table.c.last_attempt < now - FORGET_AFTER_SECONDS))
                        return 0
                    locked = store.execute(select(table.c.locked_until).where(table.c.key == key)).scalar()
                    if locked is not None and int(locked) > now:
                        return int(locked) - now
                # Unlocked since (a sign-in cleared it): charge it again.
        return rules.delay

    def clear(self, name: str) -> None:
        with Session(self._engine()) as store, store.begin():
            store.execute(delete(SignInThrottle.__table__).where(SignInThrottle.__table__.c.key == _key(name)))


# attempts, delay and locked_until in one Redis hash; the same rules as the UPDATE above, atomic in Lua.
_REDIS_ATTEMPT = """
local now = tonumber(ARGV[1])
local free, base, cap, forget = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local locked = tonumber(redis.call('HGET', KEYS[1], 'locked_until') or '0')
if locked > now then return locked - now end
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0') + 1
local delay = tonumber(redis.call('HGET', KEYS[1], 'delay') or '0')
if attempts < free then delay = 0 elseif delay == 0 then delay = base elseif delay * 2 > cap then delay = cap
else delay = delay * 2 end
local lock = 0
if delay > 0 then lock = now + delay end
redis.call('HSET', KEYS[1], 'attempts', attempts, 'delay', delay, 'locked_until', lock)
redis.call('EXPIRE', KEYS[1], forget + delay)
return 0
"""


class RedisThrottle:
    """The throttle in Redis (one hash per login or address, forgotten a day after its last attempt)."""

    def __init__(self, client) -> None:
        self._client = client
        self._attempt = client.register_script(_REDIS_ATTEMPT)

    def attempt(self, name: str, rules: Rules) -> int:
        args = [_now(), rules.free_attempts, rules.delay, rules.max_delay, FORGET_AFTER_SECONDS]
        return int(self._attempt(keys=[f"portal:sign-in:{_key(name)}"], args=args))

    def clear(self, name: str) -> None:
        self._client.delete(f"portal:sign-in:{_key(name)}")


def init_app(app, engine_getter) -> None:
    if app.config.get("REDIS_URL"):
        from app.failure import redis_client  # short timeouts: a frozen Redis must not hold a sign-in

        app.extensions["sign_in_throttle"] = RedisThrottle(redis_client(app.config["REDIS_URL"], app.config))
    else:
        app.extensions["sign_in_throttle"] = DatabaseThrottle(engine_getter)


def attempt(name: str) -> int:
    """Charge one sign-in attempt for ``name`` (a login, or an address without one): 0 to go ahead, else the seconds
    until the next is allowed."""
    return current_app.extensions["sign_in_throttle"].attempt(name, Rules.from_config())


def clear(name: str) -> None:
    """A successful sign-in: the login starts afresh."""
    current_app.extensions["sign_in_throttle"].clear(name)

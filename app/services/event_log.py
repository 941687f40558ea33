"""The Event Log's reading side: filters, a page of events, and the .xlsx export — for the partner portal's Event
Log, an account's Event Log tab and the customer portal's Event Log. Each caller says which events its log shows
(``shown``, a WHERE clause); security/scoping.py narrows every statement to the signed-in user's accounts on top.

Everything reads newest first, on ``ix_event_account_time`` (one account) or ``ix_event_time`` (every account in
scope); a person is found through ``ix_event_actor_id``, ``ix_event_on_behalf_of_id`` and ``ix_event_actor_label``,
never by scanning labels; counting stops at ``COUNT_CAP`` so a page never counts a whole large log.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator

from flask import current_app
from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.orm import aliased, joinedload

from app import clock
from app.extensions import db
from app.formatting import local_time
from app.models.accounts import Account
from app.models.events import Event
from app.services import exports
from app.services.events import action_name, record_event, target_name
from security.models import PortalUser, address_of

PER_PAGE = 25
COUNT_CAP = 10_000  # "10,000+ entries" beyond it; the pager goes as far
PERSON_MATCHES = 500  # the portal users a person filter may stand for
EXPORT_MAX_ROWS = 100_000  # the newest this many: a download stays within seconds (xlsxwriter: ~25k rows/s)


@dataclasses.dataclass(frozen=True)
class EventFilters:
    """What the Event Log's filter form asked for; dates are the portal's calendar days, both ends included."""

    since: dt.date | None = None
    until: dt.date | None = None
    person: str = ""
    action: str = ""
    target_type: str = ""
    target_ref: str = ""

    def criteria(self) -> list[ColumnElement]:
        """WHERE clauses, each one an index can answer on a large log (module docstring); a person filter looks its
        users up first (one statement)."""
        found: list[ColumnElement] = []
        if self.since:
            found.append(Event.occurred_at >= clock.start_of_day_utc(self.since))
        if self.until:
            found.append(Event.occurred_at < clock.start_of_day_utc(self.until + dt.timedelta(days=1)))
        if self.person:
            person = self.person.strip().lower()
            # Part of a portal user's address finds what they did and what was done on their behalf; the exact label
            # finds the rest (an unknown address's failed sign-in, a CLI command). The users are looked up first: an
            # OR of id lists and a label is three index scans, where an OR of subqueries would read the whole log.
            people = db.session.scalars(
                select(PortalUser.id)
                .where(func.lower(PortalUser.email).contains(person, autoescape=True))
                .order_by(PortalUser.id)
                .limit(PERSON_MATCHES)
            ).all()
            found.append(
                or_(Event.actor_id.in_(people), Event.on_behalf_of_id.in_(people), Event.actor_label == person)
                if people
                else Event.actor_label == person
            )
        if self.action:
            found.append(Event.action == self.action)
        if self.target_type:
            found.append(Event.target_type == self.target_type)
        if self.target_ref:
            found.append(Event.target_id == self.target_ref)
        return found

    def describe(self) -> str:
        """The filters in words, for the export's title and event."""
        parts = []
        if self.since:
            parts.append(f"from {self.since:%d/%m/%Y}")
        if self.until:
            parts.append(f"to {self.until:%d/%m/%Y}")
        if self.person:
            parts.append(f"person “{self.person}”")
        if self.action:
            parts.append(action_name(self.action))
        if self.target_type or self.target_ref:
            parts.append(f"target {target_name(self.target_type) or 'any'} {self.target_ref}".rstrip())
        return ", ".join(parts) or "all events"


def _hidden() -> list[ColumnElement]:
    """Events the caller may not read even in its own log: price-list changes name markups ("buy + 15 %"), which give
    the buy price away to whoever may not see costs (app/services/price_lists.py)."""
    from app.services import price_lists

    criterion = price_lists.event_log_criterion()
    return [] if criterion is None else [criterion]


def _filtered(statement: Select, shown: ColumnElement | None, criteria: list[ColumnElement]) -> Select:
    if shown is not None:
        statement = statement.where(shown)
    return statement.where(*criteria, *_hidden())


@dataclasses.dataclass
class EventPage:
    events: list[Event]
    page: int
    per_page: int
    total: int  # capped at COUNT_CAP + 1
    first: int

    @property
    def more_than_counted(self) -> bool:
        return self.total > COUNT_CAP

    @property
    def total_label(self) -> str:
        return f"{COUNT_CAP:,}+" if self.more_than_counted else f"{self.total:,}"

    @property
    def pager_total(self) -> int:
        return min(self.total, COUNT_CAP)

    @property
    def last(self) -> int:
        return self.first + len(self.events) - 1 if self.events else 0


def page_of_events(
    shown: ColumnElement | None, filters: EventFilters, page: int, *, with_account: bool = False
) -> EventPage:
    """One page, newest first: a capped count and the page with its people and accounts (and a person's users)."""
    criteria = filters.criteria()
    counted = _filtered(select(Event.id), shown, criteria).limit(COUNT_CAP + 1).subquery()
    total = db.session.scalar(select(func.count()).select_from(counted))
    pages = max((min(total, COUNT_CAP) + PER_PAGE - 1) // PER_PAGE, 1)
    page = min(max(page, 1), pages)
    loads = [joinedload(Event.on_behalf_of)] + ([joinedload(Event.account)] if with_account else [])
    events = (
        db.session.scalars(
            _filtered(select(Event), shown, criteria)
            .options(*loads)
            .order_by(Event.occurred_at.desc(), Event.id.desc())
            .offset((page - 1) * PER_PAGE)
            .limit(PER_PAGE)
        )
        .unique()
        .all()
    )
    return EventPage(events, page, PER_PAGE, total, (page - 1) * PER_PAGE + 1 if events else 0)


EVENT_COLUMNS = [
    exports.Column("When", exports.DATETIME, 18),
    exports.Column("Account", width=28),
    exports.Column("By", width=34),
    exports.Column("On behalf of", width=34),
    exports.Column("Action", width=32),
    exports.Column("Target", width=22),
    exports.Column("Summary", width=80),
    exports.Column("Client address", width=16),
    exports.Column("Request id", width=34),
]


def export_rows(shown: ColumnElement | None, filters: EventFilters, limit: int) -> Iterator[tuple]:
    """The newest ``limit`` events the filters select, as rows of EVENT_COLUMNS, streamed."""
    behind = aliased(PortalUser)
    statement = (
        select(
            Event.occurred_at,
            Account.name,
            Event.actor_label,
            behind.email,
            Event.action,
            Event.target_type,
            Event.target_id,
            Event.summary,
            Event.client_address,
            Event.request_id,
        )
        .join(Account, Account.id == Event.account_id)
        .outerjoin(behind, behind.id == Event.on_behalf_of_id)
    )
    if shown is not None:
        statement = statement.where(shown)
    statement = (
        statement.where(*filters.criteria(), *_hidden())
        .order_by(Event.occurred_at.desc(), Event.id.desc())
        .limit(limit)
        .execution_options(yield_per=exports.FETCH)
    )
    for row in db.session.execute(statement):
        when, account, by, on_behalf_of, action, target_type, target_id, summary, address, request = row
        target = f"{target_name(target_type)} {target_id or ''}".strip() if target_type else None
        yield (
            when,
            account,
            by,
            address_of(on_behalf_of) if on_behalf_of else None,
            action_name(action),
            target,
            summary,
            address,
            request,
        )


def export_events(target, *, shown: ColumnElement | None, filters: EventFilters, log_of: Account, record_on: int):
    """Write the filtered log of ``log_of`` to ``target`` (a path or binary file) and record the export on account
    ``record_on`` (committed before the file goes out); returns (rows written, download name)."""
    now = clock.utcnow()
    limit = EXPORT_MAX_ROWS
    zone = current_app.config["PORTAL_TIMEZONE"]
    title = f"Event log — {log_of.name} — {filters.describe()} — exported {local_time(now):%d/%m/%Y %I:%M %p} ({zone})"
    written = exports.write_workbook(
        target, title, [exports.Sheet("Event log", EVENT_COLUMNS, export_rows(shown, filters, limit))]
    )
    capped = " (the newest: more matched)" if written >= limit else ""
    record_event(
        "event_log.exported",
        account_id=record_on,
        target=log_of,
        summary=f"Event log of {log_of.name} exported: {written} event(s){capped}, {filters.describe()}",
    )
    db.session.commit()
    return written, exports.file_name("event-log", log_of, now)


class PurgeRefused(Exception):
    """The database's triggers keep events longer than the setting asks: re-create them (as the owner)."""


# The database measures the retention by its own clock, which may be a little behind ours.
PURGE_MARGIN = dt.timedelta(minutes=10)


def purge_old_events(retention_days: int) -> int:
    """Delete the events older than ``retention_days`` and record the purge on the operator's account, in one
    transaction; returns how many went. The triggers refuse any younger one (app/db_guard.py)."""
    from sqlalchemy import delete
    from sqlalchemy.exc import IntegrityError

    from app.models.accounts import OPERATOR
    from security import scoping

    cutoff = clock.utcnow() - dt.timedelta(days=retention_days) - PURGE_MARGIN
    with scoping.bypass("cli:purge-events"):
        try:
            removed = db.session.execute(
                delete(Event).where(Event.occurred_at < cutoff), execution_options={"synchronize_session": False}
            ).rowcount
        except IntegrityError as refused:
            db.session.rollback()
            raise PurgeRefused(
                f"The database keeps events longer than EVENT_RETENTION_DAYS={retention_days}: run "
                "`flask portal event-triggers` as the tables' owner after changing it."
            ) from refused
        operator = db.session.scalar(select(Account.id).where(Account.kind == OPERATOR).order_by(Account.id).limit(1))
        if operator is not None:
            record_event(
                "event_log.purged",
                account_id=operator,
                summary=f"{removed} event(s) older than {retention_days} days purged "
                f"(before {local_time(cutoff):%d/%m/%Y %I:%M %p})",
            )
        db.session.commit()
    return removed

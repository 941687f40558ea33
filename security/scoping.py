"""THE tenant scope (DESIGN.md rule 1). Nothing else in the code decides who sees which rows.

Every ORM statement on the request session gets the current scope's criteria attached here, and every flush is
checked against it, so list, show, edit, delete, actions, related dropdowns, search, exports and lazy loads are
scoped without any view having to remember. It fails closed: with no scope resolved a query sees nothing and a
write raises. Work that must cross tenants (CLI, jobs, sign-in) opens a named ``bypass``.

Closed by construction: under any scope but ALL, a statement the criteria cannot reach raises ``UnscopedStatement``
(a ``ScopeViolation``: 404 to a user) instead of running across tenants:

- Core statements (``select(Account.__table__)``, ``Subscription.__table__.update()``, ``insert(Event.__table__)``)
  that touch ``account`` or a tenant-owned table, and ORM statements that did not come through the scoped session
  (another ``Session(db.engine)``, ``session.connection().execute(select(Model))``). The check is a
  ``before_execute`` listener on every ``Engine``, so ``db.session``, ``session.connection()``, ``db.engine.connect()``
  and other sessions all pass through it; the tables come from walking the statement, classified by ``classify``
  (cached per name; a table nobody classified counts as tenant data). Global tables (catalogue, sessions, roles)
  run under any scope.
- ``text()`` and ``exec_driver_sql()`` (nobody can tell what they touch) and DDL, unless the caller marked the
  statement as reviewed: ``.execution_options(portal_unscoped_reason="why")`` — a named, greppable escape hatch
  like ``bypass``, for a statement that is safe under every scope.
- ORM INSERT statements (``session.execute(insert(Model), rows)``): their rows skip the flush check. Add the
  objects to the session instead, or run under a bypass (CLI, the scale generator).
- ORM UPDATE/DELETE, where the loader criteria do NOT make them safe (tests/integration/test_scoping_closed.py
  shows each): bulk UPDATE by primary key (``session.execute(update(Model), [{"id": ...}, ...])`` gets no criteria
  at all), a SET of ``account_id`` (moves rows into another tenant), any UPDATE/DELETE of ``account`` (accounts
  change through flushes, which refuse moves), a Core sub-select on tenant data inside one (it gets no criteria),
  and any of them with no scope resolved (writes with no scope raise, as flushes do). An ORM UPDATE/DELETE with a
  WHERE clause does get the criteria (SQLAlchemy 2.0 applies ``with_loader_criteria`` to ORM-enabled UPDATE and
  DELETE), so under a reseller's or a customer's scope it changes only rows in scope and runs: the conditional
  UPDATEs that make a licence count or a retry safe against double clicks rely on it.

What the criteria reach is an ORM statement's entities (its columns, joins and ``select_from``), never a Core
sub-select nested in it: such a statement raises too (checked once per compiled statement, before the cursor runs).
Not caught yet: a raw ``Table`` joined straight into an ORM select, or an entity that appears only in its WHERE
clause (``exists().where(...)``) — neither is filtered. Write those as entities in the columns or joins.

Flushes of the scoped session run their own INSERT/UPDATE/DELETE statements: those are what ``before_flush`` has
just checked, so they pass while the session flushes (legacy ``bulk_save_objects`` and friends do not flush, and
are refused like Core).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator
from contextvars import ContextVar

from flask import g, has_request_context
from flask_login import current_user
from sqlalchemy import event, false, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import ORMExecuteState, Session, with_loader_criteria
from sqlalchemy.orm.attributes import get_history
from sqlalchemy.sql import visitors
from sqlalchemy.sql.ddl import ExecutableDDLElement as _DDL
from sqlalchemy.sql.elements import ClauseElement, TextClause
from sqlalchemy.sql.expression import Join, Select, TableClause

from app.models.accounts import CUSTOMER, OPERATOR, RESELLER, Account
from app.models.base import IssuedBetween, OperatorOnly, TenantOwned
from security.models import Membership, PortalUser

ALL, RESELLER_SCOPE, CUSTOMER_SCOPE, NONE = "all", "reseller", "customer", "none"

# Models that are nobody's tenant data: the catalogue, provider state, sessions and FAB's own tables.
GLOBAL_TABLES = frozenset(
    {
        "product",
        "availability",
        "catalogue_price",
        "sandbox_domain",
        "sandbox_cart",
        "sandbox_seat_batch",
        "sandbox_customer",
        "sandbox_subscription",
        "sandbox_user",
        "sandbox_charge_event",
        "server_session",
        "sign_in_throttle",
        # A login's second factor: the person's, reached only through their login (which is scoped).
        "mfa_credential",
        "mfa_recovery_code",
        "ab_permission",
        "ab_view_menu",
        "ab_permission_view",
        "ab_permission_view_role",
        "ab_role",
        "ab_user_role",
        "ab_group",
        "ab_group_role",
        "ab_user_group",
        "ab_register_user",
        "ab_api_key",
        "alembic_version",
    }
)

# The execution option that marks a Core or text() statement as reviewed: safe under every scope. Its value says why.
UNSCOPED_REASON = "portal_unscoped_reason"

log = logging.getLogger(__name__)

_account = Account.__table__
_membership = Membership.__table__


class ScopeViolation(Exception):
    """A write outside the current scope. Answered as 404: to the writer, the row does not exist."""


class UnscopedStatement(ScopeViolation):
    """A statement the scope cannot reach (Core or text() on tenant data, an unsafe ORM bulk write) under a scope
    other than ALL. A bug in the code that sent it: answered as 404, and logged."""


@dataclasses.dataclass(frozen=True)
class Scope:
    """Which accounts may be seen: all of them, a reseller and its customers, one customer, or none. ``login_id``: the
    signed-in login, which always sees (and may change) its own ``ab_user`` row, wherever it works."""

    kind: str
    account_id: int | None = None
    reason: str = ""
    login_id: int | None = None

    @property
    def is_all(self) -> bool:
        return self.kind == ALL

    def account_ids(self):
        """A SELECT of the ids of the accounts in scope (for ``IN``); None when every account is."""
        if self.kind == ALL:
            return None
        if self.kind == RESELLER_SCOPE:
            return select(_account.c.id).where(
                or_(_account.c.id == self.account_id, _account.c.parent_id == self.account_id)
            )
        if self.kind == CUSTOMER_SCOPE:
            return select(_account.c.id).where(_account.c.id == self.account_id)
        return select(_account.c.id).where(false())


NOTHING = Scope(NONE)
_override: ContextVar[Scope | None] = ContextVar("portal_scope_override", default=None)


def scope_for_user(user, membership=None) -> Scope:
    """The scope a signed-in user gives: operator staff all, partners their reseller tree, and a customer-portal login
    the ONE account of the membership it works in (``membership``, else the one this session chose) — never a union
    of its memberships. A customer's users, and a reseller's own customer-portal users (the reseller as a Microsoft
    customer itself, its own tenant and licences): that account, never the reseller's customers."""
    if user is None or not getattr(user, "is_authenticated", False) or getattr(user, "account_id", None) is None:
        return NOTHING
    if user.portal == OPERATOR and user.account.kind == OPERATOR:
        return Scope(ALL, reason="operator")
    if user.portal == "partner" and user.account.kind == RESELLER:
        return Scope(RESELLER_SCOPE, user.account_id)
    if user.portal == "customer":
        if membership is None and has_request_context():
            membership = g.get("membership")
        if (
            membership is None
            or membership.user_id != user.id
            or not membership.is_live
            or membership.account.kind not in (CUSTOMER, RESELLER)
        ):
            return Scope(NONE, login_id=user.id)  # no account yet: its own login row, and nothing else
        return Scope(CUSTOMER_SCOPE, membership.account_id, login_id=user.id)
    return NOTHING


def current_scope() -> Scope:
    """The scope in force: an explicit one (bypass, job), else the signed-in user's, resolved once per request."""
    override = _override.get()
    if override is not None:
        return override
    if not has_request_context():
        return NOTHING
    with use_scope(Scope(ALL, reason="resolving scope")):
        user = current_user._get_current_object() if current_user else None
        user_id = getattr(user, "id", None) if user is not None and user.is_authenticated else None
        membership = g.get("membership")
        key = (user_id, getattr(membership, "id", None))
        cached = g.get("_portal_scope")
        if cached is not None and cached[0] == key:
            return cached[1]
        scope = scope_for_user(user) if user_id is not None else NOTHING
    g._portal_scope = (key, scope)
    return scope


@contextlib.contextmanager
def use_scope(scope: Scope) -> Iterator[Scope]:
    """Run a block under an explicit scope (a job acting for its requester, a test)."""
    token = _override.set(scope)
    try:
        yield scope
    finally:
        _override.reset(token)


def bypass(reason: str):
    """The named, explicit way to cross tenants: CLI commands, jobs, sign-in. ``reason`` says who and why."""
    if not reason:
        raise ValueError("a scope bypass needs a reason")
    return use_scope(Scope(ALL, reason=reason))


def _criteria(scope: Scope) -> tuple:
    """Loader criteria for one scope; each kind has its own lambda so SQLAlchemy caches one shape per kind.

    Logins (``ab_user``) have their own: under a reseller, those its tree owns (its staff and the customer-portal
    logins it owns); under a customer, the logins with a live membership there, and one's own."""
    if scope.kind == RESELLER_SCOPE:
        rid = scope.account_id
        return (
            with_loader_criteria(Account, lambda cls: or_(cls.id == rid, cls.parent_id == rid), include_aliases=True),
            with_loader_criteria(
                TenantOwned,
                lambda cls: cls.account_id.in_(
                    select(_account.c.id).where(or_(_account.c.id == rid, _account.c.parent_id == rid))
                ),
                include_aliases=True,
            ),
            with_loader_criteria(
                PortalUser,
                lambda cls: cls.account_id.in_(
                    select(_account.c.id).where(or_(_account.c.id == rid, _account.c.parent_id == rid))
                ),
                include_aliases=True,
            ),
            with_loader_criteria(
                IssuedBetween,
                lambda cls: or_(
                    cls.issuer_id == rid,
                    cls.buyer_id.in_(
                        select(_account.c.id).where(or_(_account.c.id == rid, _account.c.parent_id == rid))
                    ),
                ),
                include_aliases=True,
            ),
            with_loader_criteria(OperatorOnly, lambda cls: false(), include_aliases=True),
        )
    if scope.kind == CUSTOMER_SCOPE:
        cid, me = scope.account_id, scope.login_id or 0
        return (
            with_loader_criteria(Account, lambda cls: cls.id == cid, include_aliases=True),
            with_loader_criteria(TenantOwned, lambda cls: cls.account_id == cid, include_aliases=True),
            with_loader_criteria(
                PortalUser,
                lambda cls: or_(
                    cls.id == me,
                    cls.id.in_(
                        select(_membership.c.user_id).where(
                            _membership.c.account_id == cid, _membership.c.deleted_at.is_(None)
                        )
                    ),
                ),
                include_aliases=True,
            ),
            with_loader_criteria(IssuedBetween, lambda cls: cls.buyer_id == cid, include_aliases=True),
            with_loader_criteria(OperatorOnly, lambda cls: false(), include_aliases=True),
        )
    if scope.login_id is not None:  # a customer-portal login that has not chosen its account: itself only
        me = scope.login_id
        return (
            with_loader_criteria(Account, lambda cls: false(), include_aliases=True),
            with_loader_criteria(TenantOwned, lambda cls: false(), include_aliases=True),
            with_loader_criteria(PortalUser, lambda cls: cls.id == me, include_aliases=True),
            with_loader_criteria(IssuedBetween, lambda cls: false(), include_aliases=True),
            with_loader_criteria(OperatorOnly, lambda cls: false(), include_aliases=True),
        )
    return (
        with_loader_criteria(Account, lambda cls: false(), include_aliases=True),
        with_loader_criteria(TenantOwned, lambda cls: false(), include_aliases=True),
        with_loader_criteria(PortalUser, lambda cls: false(), include_aliases=True),
        with_loader_criteria(IssuedBetween, lambda cls: false(), include_aliases=True),
        with_loader_criteria(OperatorOnly, lambda cls: false(), include_aliases=True),
    )


# Marks an ORM statement that came through the scoped session (criteria attached, or a refresh): the engine-level
# check lets it run. An object, not a flag, so no statement can claim it by accident.
_SCOPED = object()
_SCOPED_OPTION = "_portal_scoped"


def _scope_statement(state: ORMExecuteState) -> None:
    if not state.is_orm_statement:
        return  # Core and text() statements: the engine-level check decides
    scope = current_scope()
    if not scope.is_all and (state.is_insert or state.is_update or state.is_delete):
        _check_orm_write(state, scope)
    state.update_execution_options(**{_SCOPED_OPTION: _SCOPED})
    # Refreshing a row already held leaks nothing new; every other load, update and delete is scoped.
    if scope.is_all or state.is_column_load or not (state.is_select or state.is_update or state.is_delete):
        return
    state.statement = state.statement.options(*_criteria(scope))


def _refuse(scope: Scope, what: str) -> UnscopedStatement:
    log.error("Refused under scope %s %s: %s", scope.kind, scope.account_id or "", what)
    return UnscopedStatement(f"{what} (scope {scope.kind})")


def _check_orm_write(state: ORMExecuteState, scope: Scope) -> None:
    """ORM INSERT/UPDATE/DELETE statements under a scope other than ALL: what the criteria cannot make safe raises."""
    statement = state.statement
    table = statement.table
    kind = table_kind(table.name)
    if kind == "global":
        return
    verb = "INSERT into" if state.is_insert else "UPDATE of" if state.is_update else "DELETE from"
    if state.is_insert:
        # Its rows never meet before_flush: add the objects to the session instead.
        raise _refuse(scope, f"ORM {verb} {table.name}")
    if scope.kind == NONE or kind != "tenant":
        raise _refuse(scope, f"ORM {verb} {table.name}")
    if isinstance(state.parameters, list | tuple):
        raise _refuse(scope, f"ORM bulk {verb} {table.name} by primary key (no criteria apply to it)")
    if "account_id" in _set_columns(statement):
        raise _refuse(scope, f"ORM {verb} {table.name} setting account_id (a move between tenants)")
    if _core_tables(statement, core_selects_only=True):
        raise _refuse(scope, f"ORM {verb} {table.name} with a Core sub-select of tenant data")


def _set_columns(statement) -> set[str]:
    pairs = list((getattr(statement, "_values", None) or {}).items()) + list(
        getattr(statement, "_ordered_values", None) or ()
    )
    return {key if isinstance(key, str) else getattr(key, "key", str(key)) for key, _ in pairs}


def _account_parent(session: Session, account_id: int) -> int | None:
    cache = session.info.setdefault("_scope_parents", {})
    if account_id not in cache:
        # Core, run inside the flush it checks (so the engine-level check lets it pass): no criteria on this look-up.
        row = session.connection().execute(select(_account.c.parent_id).where(_account.c.id == account_id)).first()
        cache[account_id] = row[0] if row else None
    return cache[account_id]


def _covers(session: Session, scope: Scope, account_id: int | None) -> bool:
    if scope.is_all:
        return True
    if account_id is None:
        return False
    if scope.kind == CUSTOMER_SCOPE:
        return account_id == scope.account_id
    if scope.kind == RESELLER_SCOPE:
        return account_id == scope.account_id or _account_parent(session, account_id) == scope.account_id
    return False


def _owner(obj, attr: str, rel: str) -> int | None:
    value = getattr(obj, attr)
    if value is None and getattr(obj, rel, None) is not None:
        value = getattr(obj, rel).id
    return value


def _may_write_account(session: Session, scope: Scope, account: Account) -> bool:
    """A reseller writes itself and its customers (new ones included); a customer only itself; nobody moves one."""
    moved = bool(get_history(account, "parent_id").deleted) and account.id is not None
    if scope.kind == CUSTOMER_SCOPE:
        return account.id == scope.account_id and not moved
    if scope.kind == RESELLER_SCOPE:
        if account.id is not None and account.id == scope.account_id:
            return not moved
        parents = {_owner(account, "parent_id", "parent"), *get_history(account, "parent_id").deleted}
        return parents == {scope.account_id}
    return False


def _may_write_row(session: Session, scope: Scope, row: TenantOwned) -> bool:
    """Every account the row belongs to now, or belonged to before this flush, must be in scope."""
    owners = {_owner(row, "account_id", "account"), *get_history(row, "account_id").deleted}
    return all(_covers(session, scope, owner) for owner in owners)


def _may_write_login(session: Session, scope: Scope, login: PortalUser) -> bool:
    """A reseller writes the logins its tree owns (nobody moves one between owners); a customer's scope writes only
    its own login (the person's password, two-factor, statistics): its members' logins belong to them and to their
    reseller, and a customer admin who adds a person goes through the users service's named step."""
    if scope.login_id is not None:  # a customer-portal login's scope, with or without its account chosen
        return login.id is not None and login.id == scope.login_id and not get_history(login, "account_id").deleted
    if scope.kind == RESELLER_SCOPE:
        owners = {_owner(login, "account_id", "account"), *get_history(login, "account_id").deleted}
        return all(_covers(session, scope, owner) for owner in owners)
    return False


def _check_writes(session: Session, flush_context, instances) -> None:
    scope = current_scope()
    if scope.is_all:
        return
    for obj in (*session.new, *session.dirty, *session.deleted):
        if isinstance(obj, Account):
            allowed = _may_write_account(session, scope, obj)
        elif isinstance(obj, PortalUser):
            allowed = _may_write_login(session, scope, obj)
        elif isinstance(obj, TenantOwned):
            allowed = _may_write_row(session, scope, obj)
        elif isinstance(obj, IssuedBetween):  # only the issuer's side changes an invoice
            allowed = _covers(session, scope, obj.issuer_id)
        elif isinstance(obj, OperatorOnly):
            allowed = False
        else:
            continue
        if not allowed:
            raise ScopeViolation(f"{type(obj).__name__} {getattr(obj, 'id', None)} is outside scope {scope.kind}")


_flushing: ContextVar[bool] = ContextVar("portal_scoped_flush", default=False)


class _FlushChecked:
    """Mixed into the scoped session's class: while it flushes, the statements sent are the rows ``before_flush``
    has just checked (and the parent look-ups of that check)."""

    def flush(self, objects=None) -> None:
        token = _flushing.set(True)
        try:
            super().flush(objects)
        finally:
            _flushing.reset(token)


_UNKNOWN = None  # what a text(), a driver string or DDL touches: nobody can tell
_kinds: dict[str, str] = {}


def table_kind(name: str) -> str:
    """``classify``, cached per table name; a table nobody classified is 'unknown' (treated as tenant data)."""
    kind = _kinds.get(name)
    if kind is None:
        try:
            kind = classify(name)
        except LookupError:
            kind = "unknown"
        _kinds[name] = kind
    return kind


def _from_tables(from_clause) -> Iterator[TableClause]:
    if isinstance(from_clause, Join):
        yield from _from_tables(from_clause.left)
        yield from _from_tables(from_clause.right)
    elif isinstance(from_clause, TableClause):
        yield from_clause


def _core_tables(statement, *, core_selects_only: bool = False) -> frozenset[str] | None:
    """The non-global tables a statement touches (None: cannot tell, it holds text). With ``core_selects_only``,
    only those read by Core sub-selects (no ORM entity, so no criteria) inside an ORM statement."""
    found: set[str] = set()
    for node in visitors.iterate(statement):
        if isinstance(node, TextClause) and not core_selects_only:
            return _UNKNOWN
        if core_selects_only:
            if isinstance(node, Select) and node._propagate_attrs.get("compile_state_plugin") != "orm":
                found.update(t.name for f in node.get_final_froms() for t in _from_tables(f))
        elif isinstance(node, TableClause):
            found.add(node.name)
    return frozenset(name for name in found if table_kind(name) != "global")


def _check_statement(conn, clauseelement, multiparams, params, execution_options) -> None:
    """Engine-level, before every statement: Core and foreign ORM statements on tenant data need the ALL scope."""
    if execution_options.get(_SCOPED_OPTION) is _SCOPED or _flushing.get():
        return
    if execution_options.get(UNSCOPED_REASON):
        return
    override = _override.get()
    if override is not None and override.is_all:
        return
    readable = isinstance(clauseelement, ClauseElement) and not isinstance(clauseelement, _DDL)
    tables = _core_tables(clauseelement) if readable else _UNKNOWN
    if tables is not _UNKNOWN and not tables:
        return
    scope = current_scope()  # only now: resolving it loads the user, which must not happen for the session store
    if scope.is_all:
        return
    what = ", ".join(sorted(tables)) if tables else f"a {type(clauseelement).__name__} nobody can read"
    raise _refuse(scope, f"Core statement on {what}: mark it reviewed ({UNSCOPED_REASON}) or use the ORM")


_CORE_READS = "_portal_core_reads"


def _check_cursor(conn, cursor, statement, parameters, context, executemany) -> None:
    """Before the cursor runs: ``exec_driver_sql`` (which skips ``before_execute``) is like text(); an ORM statement
    of the scoped session must not read tenant data through a Core sub-select, which no criteria reach. That walk
    is done once per compiled statement (SQLAlchemy caches those), so it costs a dictionary look-up per execution."""
    if context is None:
        return
    compiled = context.compiled
    if compiled is None:
        _check_statement(conn, statement, None, None, context.execution_options)
        return
    if context.execution_options.get(_SCOPED_OPTION) is not _SCOPED:
        return
    reads = compiled.__dict__.get(_CORE_READS)
    if reads is None:
        reads = compiled.__dict__[_CORE_READS] = _core_tables(compiled.statement, core_selects_only=True) or ()
    if reads and not _flushing.get():
        scope = current_scope()
        if not scope.is_all:
            raise _refuse(scope, f"ORM statement with a Core sub-select of {', '.join(sorted(reads))}")


def install(session) -> None:
    """Attach the scope to a (scoped) session factory and the statement check to every engine; idempotent."""
    if not event.contains(session, "do_orm_execute", _scope_statement):
        event.listen(session, "do_orm_execute", _scope_statement)
        event.listen(session, "before_flush", _check_writes)
    factory = session.session_factory
    if not issubclass(factory.class_, _FlushChecked):
        factory.class_ = type(factory.class_.__name__, (_FlushChecked, factory.class_), {})
    if not event.contains(Engine, "before_execute", _check_statement):
        event.listen(Engine, "before_execute", _check_statement)
        event.listen(Engine, "before_cursor_execute", _check_cursor)


def classify(table_name: str) -> str:
    """'tenant', 'account' or 'global' for a table; raises for one nobody has classified (fail closed)."""
    from flask_appbuilder import Model

    if table_name == Account.__tablename__:
        return "account"
    if table_name in GLOBAL_TABLES:
        return "global"
    if table_name == PortalUser.__tablename__:
        return "tenant"  # scoped by its own criteria (_criteria) and write rule (_may_write_login)
    for mapper in Model.registry.mappers:
        table = mapper.local_table
        if (
            table is not None
            and table.name == table_name
            and issubclass(mapper.class_, (TenantOwned, IssuedBetween, OperatorOnly))
        ):
            return "tenant"
    raise LookupError(f"table {table_name} is neither tenant-owned nor declared global in security/scoping.py")

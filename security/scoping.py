"""THE tenant scope (DESIGN.md rule 1). Nothing else in the code decides who sees which rows.

Every ORM statement on the request session gets the current scope's criteria attached here, and every flush is
checked against it, so list, show, edit, delete, actions, related dropdowns, search, exports and lazy loads are
scoped without any view having to remember. It fails closed: with no scope resolved a query sees nothing and a
write raises. Work that must cross tenants (CLI, jobs, sign-in) opens a named ``bypass``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from contextvars import ContextVar

from flask import g, has_request_context
from flask_login import current_user
from sqlalchemy import event, false, or_, select
from sqlalchemy.orm import ORMExecuteState, Session, with_loader_criteria
from sqlalchemy.orm.attributes import get_history

from app.models.accounts import CUSTOMER, OPERATOR, RESELLER, Account
from app.models.base import TenantOwned

ALL, RESELLER_SCOPE, CUSTOMER_SCOPE, NONE = "all", "reseller", "customer", "none"

# Models that are nobody's tenant data: the catalogue, provider state, sessions and FAB's own tables.
GLOBAL_TABLES = frozenset(
    {
        "product",
        "sandbox_domain",
        "sandbox_customer",
        "sandbox_subscription",
        "sandbox_user",
        "server_session",
        "sign_in_throttle",
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
    }
)

_account = Account.__table__


class ScopeViolation(Exception):
    """A write outside the current scope. Answered as 404: to the writer, the row does not exist."""


@dataclasses.dataclass(frozen=True)
class Scope:
    """Which accounts may be seen: all of them, a reseller and its customers, one customer, or none."""

    kind: str
    account_id: int | None = None
    reason: str = ""

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


def scope_for_user(user) -> Scope:
    """The scope a signed-in user's own account gives: operator staff all, partners their reseller tree."""
    if user is None or not getattr(user, "is_authenticated", False) or getattr(user, "account_id", None) is None:
        return NOTHING
    if user.portal == OPERATOR and user.account.kind == OPERATOR:
        return Scope(ALL, reason="operator")
    if user.portal == "partner" and user.account.kind == RESELLER:
        return Scope(RESELLER_SCOPE, user.account_id)
    if user.portal == "customer" and user.account.kind in (CUSTOMER, RESELLER):
        # A customer's users — and a reseller's own customer-portal users (the reseller as a Microsoft customer
        # itself, its own tenant and licences): their one account, never the reseller's customers.
        return Scope(CUSTOMER_SCOPE, user.account_id)
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
        cached = g.get("_portal_scope")
        if cached is not None and cached[0] == user_id:
            return cached[1]
        scope = scope_for_user(user) if user_id is not None else NOTHING
    g._portal_scope = (user_id, scope)
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
    """Loader criteria for one scope; each kind has its own lambda so SQLAlchemy caches one shape per kind."""
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
        )
    if scope.kind == CUSTOMER_SCOPE:
        cid = scope.account_id
        return (
            with_loader_criteria(Account, lambda cls: cls.id == cid, include_aliases=True),
            with_loader_criteria(TenantOwned, lambda cls: cls.account_id == cid, include_aliases=True),
        )
    return (
        with_loader_criteria(Account, lambda cls: false(), include_aliases=True),
        with_loader_criteria(TenantOwned, lambda cls: false(), include_aliases=True),
    )


def _scope_statement(state: ORMExecuteState) -> None:
    # Refreshing a row already held leaks nothing new; every other load, update and delete is scoped.
    if state.is_column_load or not (state.is_select or state.is_update or state.is_delete):
        return
    scope = current_scope()
    if scope.is_all:
        return
    state.statement = state.statement.options(*_criteria(scope))


def _account_parent(session: Session, account_id: int) -> int | None:
    cache = session.info.setdefault("_scope_parents", {})
    if account_id not in cache:
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


def _check_writes(session: Session, flush_context, instances) -> None:
    scope = current_scope()
    if scope.is_all:
        return
    for obj in (*session.new, *session.dirty, *session.deleted):
        if isinstance(obj, Account):
            allowed = _may_write_account(session, scope, obj)
        elif isinstance(obj, TenantOwned):
            allowed = _may_write_row(session, scope, obj)
        else:
            continue
        if not allowed:
            raise ScopeViolation(f"{type(obj).__name__} {getattr(obj, 'id', None)} is outside scope {scope.kind}")


def install(session) -> None:
    """Attach the scope to a (scoped) session factory; idempotent."""
    if not event.contains(session, "do_orm_execute", _scope_statement):
        event.listen(session, "do_orm_execute", _scope_statement)
        event.listen(session, "before_flush", _check_writes)


def classify(table_name: str) -> str:
    """'tenant', 'account' or 'global' for a table; raises for one nobody has classified (fail closed)."""
    from flask_appbuilder import Model

    if table_name == Account.__tablename__:
        return "account"
    if table_name in GLOBAL_TABLES:
        return "global"
    for mapper in Model.registry.mappers:
        table = mapper.local_table
        if table is not None and table.name == table_name and issubclass(mapper.class_, TenantOwned):
            return "tenant"
    raise LookupError(f"table {table_name} is neither tenant-owned nor declared global in security/scoping.py")

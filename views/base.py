"""ScopedModelView: the base of every model view, covering the FAB pitfalls once.

- Rows: every query and write goes through security/scoping.py (attached to the session), so list, show, edit,
  delete, related dropdowns and search are scoped; another tenant's id answers 404.
- Actions: POST only, a permission, and rows re-fetched through the scope (FAB hands handlers unfiltered rows).
- Pages: ``psize_<view>`` is capped and bad paging arguments answer 400 (app/web.py).
- Lists: named many-to-one relationships load in the list's own query (no query per row).
- Search: ``search_columns`` must be set explicitly (FAB's default searches, and loads, whole related tables).
- Events: adding, editing and deleting records an event in the same transaction.
"""

from __future__ import annotations

import functools
import logging
import re

from flask import abort, current_app, redirect, render_template, request, url_for
from flask_appbuilder import BaseView, ModelView
from flask_appbuilder.baseviews import expose
from flask_appbuilder.const import PERMISSION_PREFIX
from flask_appbuilder.exceptions import DatabaseException
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_appbuilder.security.decorators import has_access
from flask_login import current_user
from sqlalchemy import inspect, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import joinedload

from app import failure
from app.extensions import appbuilder, db
from app.formatting import format_date, format_datetime, format_money
from app.models.accounts import OPERATOR, Account
from app.services.events import record_event
from security.permissions import MODEL_VIEW_METHODS, ORDERS, WRITE

log = logging.getLogger(__name__)


class EagerInterface(SQLAInterface):
    """FAB's SQLAlchemy interface that joins the named many-to-one relationships into list and show queries."""

    def __init__(self, obj, session=None, eager=()):
        super().__init__(obj, session)
        self.eager = tuple(eager)

    def apply_all(self, query, *args, **kwargs):
        query = super().apply_all(query, *args, **kwargs)
        return query.options(*(joinedload(getattr(self.obj, name)) for name in self.eager))

    # FAB flashes ``str(error)`` of a failed save: the SQL statement and its parameters. Say it plainly instead
    # (the form's validators catch the ordinary cases first; this is for a clash the database alone can see). An
    # outage is refused in words too, logged in one line (FAB would log a traceback first: not called for it).
    def add(self, item, commit=True):
        with failure.refused_during_outage(SaveError):
            self._save(lambda: self.session.add(item), commit, "Add")

    def edit(self, item, commit=True):
        with failure.refused_during_outage(SaveError):
            self._save(lambda: self.session.merge(item), commit, "Edit")

    def delete(self, item, commit=True):
        with failure.refused_during_outage(DatabaseException):
            try:
                self.session.delete(item)
                if commit:
                    self.session.commit()
            except SQLAlchemyError as error:
                if failure.outage_of(error):
                    raise
                log.exception("Delete item database error")
                self.session.rollback()
                raise DatabaseException from error

    def _save(self, change, commit: bool, what: str) -> None:
        """FAB's add and edit: the change, committed; a refusal rolled back and said plainly."""
        try:
            change()
            if commit:
                self.session.commit()
        except SQLAlchemyError as error:
            if failure.outage_of(error):
                raise
            log.exception("%s item database error", what)
            self.session.rollback()
            raise SaveError(_SAVE_FAILED) from error


_FILTER_ARG = re.compile(r"^_flt_(?P<index>\d+)_(?P<column>.*)$")


def _blank_if_none(value):
    if isinstance(value, bool):  # a property (not a column) that is a boolean: words too
        return yes_no(value)
    return "" if value is None else value


def _word(value):
    return "" if value is None else str(value).replace("_", " ").capitalize()


def yes_no(value) -> str:
    """A boolean in words (a list never shows True/False); a view may name its own (auto-renew: On/Off)."""
    return "" if value is None else "Yes" if value else "No"


_SAVE_FAILED = "Nothing was saved: it clashes with data already in the portal (for example a name or code in use)."


class SaveError(Exception):
    """A save the database refused, in words for the user."""


MASTER_ADMIN_NEEDS_ORDERS = (
    "Only someone who may order (a Partner CSP Admin, or the customer's Master Admin) can make a Master Admin: "
    "a Master Admin can order."
)


def may_grant_master_admin() -> bool:
    """A Master Admin can order, so only those who may order make one — checked on the request's permissions,
    which while launched are the customer user's *and* the partner user's (a Partner User cannot mint an orderer
    by inviting an address of its own)."""
    return appbuilder.sm.has_access(f"{PERMISSION_PREFIX}{WRITE}", ORDERS)


def form_error(form, exc) -> None:
    """Show a service's refusal (an exception with an optional ``field``) beside its field, or above the form."""
    field = getattr(form, exc.field, None) if getattr(exc, "field", None) else None
    if field is not None:
        field.errors = [*field.errors, str(exc)]
    else:
        form.form_errors.append(str(exc))


def own_account():
    """The account the signed-in user works in: a customer-portal login's chosen one, staff their own."""
    from flask import g

    membership = g.get("membership")
    if membership is not None:
        return membership.account
    return g.user.account


def signed_in_first(view):
    """Send anonymous visitors quietly to sign-in (``has_access`` would flash "Access is Denied" first)."""

    @functools.wraps(view)
    def wrapper(self, *args, **kwargs):
        if not current_user.is_authenticated:
            return redirect(self.appbuilder.get_url_for_login_with(request.full_path))
        return view(self, *args, **kwargs)

    return wrapper


def page_arg() -> int:
    """The ``page`` of a portal's own paged table, 1 and up (app/web.py has already refused anything but digits)."""
    return max(request.args.get("page", 1, type=int) or 1, 1)


def bounded_page_size(requested: int | None, default: int) -> int:
    limit = current_app.config["LIST_PAGE_SIZE_MAX"]
    if not requested or requested < 1:
        return default
    return min(requested, limit)


def changes_summary(item) -> str:
    """'field: old → new' for each changed column of ``item`` (never a password)."""
    parts = []
    for attr in inspect(item).mapper.column_attrs:
        if attr.key == "password":
            continue
        history = inspect(item).attrs[attr.key].history
        if history.has_changes() and history.deleted:
            parts.append(f"{attr.key}: {history.deleted[0]!r} → {getattr(item, attr.key)!r}")
    return "; ".join(parts)


class ScopedModelView(ModelView):
    """Base of every model view. Subclasses set ``datamodel``, ``class_permission_name`` and ``search_columns``."""

    method_permission_name = MODEL_VIEW_METHODS
    exclude_route_methods = {"download"}
    search_columns: list[str] = None  # type: ignore[assignment]
    event_name: str = ""

    def __init__(self, **kwargs):
        if self.search_columns is None:
            raise TypeError(f"{type(self).__name__} must set search_columns explicitly")
        if not self.class_permission_name:
            raise TypeError(f"{type(self).__name__} must name its resource in class_permission_name")
        relations = [c for c in self.search_columns if self.datamodel.is_relation(c)]
        if relations:
            # FAB renders a relationship search column as a dropdown of the whole related table.
            raise TypeError(
                f"{type(self).__name__}: search on relationship columns {relations} would load whole "
                "tables into a dropdown; search a column instead"
            )
        super().__init__(**kwargs)
        self.formatters_columns = {**self._default_formatters(), **self.formatters_columns}

    _WORD_COLUMNS = frozenset({"kind", "status", "billing_cycle", "link_type"})

    def _default_formatters(self) -> dict:
        """Values as the guide shows them (DESIGN.md rule 8): local times, money, words; nothing prints "None"."""
        found = {}
        model = self.datamodel
        for name in {*(self.list_columns or []), *(self.show_columns or [])}:
            if model.is_datetime(name):
                found[name] = functools.partial(format_datetime, empty="")
            elif model.is_date(name):
                found[name] = format_date
            elif model.is_numeric(name) and not model.is_float(name):
                found[name] = format_money
            elif model.is_boolean(name):
                found[name] = yes_no
            elif name in self._WORD_COLUMNS:
                found[name] = _word
            else:
                found[name] = _blank_if_none
        return found

    # -- pages -----------------------------------------------------------------------------------------
    def get_redirect(self):
        """Back to where the user came from — and to this list, not the landing page, when FAB's history is short
        (an action posted from the list, or an add page opened straight from the menu)."""
        url = super().get_redirect()
        if url == self.appbuilder.get_url_for_index and "list" in (self.include_route_methods or {"list"}):
            return url_for(f"{self.endpoint}.list")
        return url

    # FAB indexes ``_flt_<n>_<column>`` into the column's filter list unchecked: an unknown one is a 500 there.
    def _check_filter_args(self) -> None:
        search = self._filters.get_search_filters()
        for name in request.args:
            found = _FILTER_ARG.match(name)
            if found and (found["column"] not in search or int(found["index"]) >= len(search[found["column"]])):
                abort(400, description=f"{name} is not a filter of this list")

    def _list(self, **kwargs):
        self._check_filter_args()
        return super()._list(**kwargs)

    def _show(self, pk):
        self._check_filter_args()
        return super()._show(pk)

    def _add(self):
        self._check_filter_args()
        return super()._add()

    def _edit(self, pk):
        self._check_filter_args()
        return super()._edit(pk)

    def _get_list_widget(
        self,
        filters,
        actions=None,
        order_column="",
        order_direction="",
        page=None,
        page_size=None,
        widgets=None,
        **kwargs,
    ):
        page_size = bounded_page_size(page_size, self.page_size)
        page = page if page and page > 0 else None
        if order_column and order_column not in self.order_columns:
            order_column, order_direction = "", ""
        return super()._get_list_widget(
            filters, actions, order_column, order_direction, page, page_size, widgets, **kwargs
        )

    # -- changes: POST only ------------------------------------------------------------------------------
    @expose("/delete/<pk>", methods=["POST"])
    @has_access
    def delete(self, pk):
        self._delete(self._deserialize_pk_if_composite(pk))
        return self.post_delete_redirect()

    @expose("/action/<string:name>/<pk>", methods=["POST"])
    @has_access
    def action(self, name, pk):
        action = self._permitted_action(name)
        return action.func(self._fetch_in_scope([pk])[0])

    @expose("/action_post", methods=["POST"])
    @has_access
    def action_post(self):
        action = self._permitted_action(request.form.get("action", ""))
        return action.func(self._fetch_in_scope(request.form.getlist("rowid")))

    def get_action_permission_name(self, name: str) -> str:
        """An action needs ``write`` on the view's resource unless ``method_permission_name`` says otherwise."""
        return PERMISSION_PREFIX + self.method_permission_name.get(self.actions[name].func.__name__, WRITE)

    def _permitted_action(self, name: str):
        action = self.actions.get(name)
        if action is None:
            abort(404)
        if not self.appbuilder.sm.has_access(self.get_action_permission_name(name), self.class_permission_name):
            abort(403)
        return action

    def _fetch_in_scope(self, pks: list[str]) -> list:
        """Re-fetch an action's rows through the scope and base filters; any row not visible is a 404."""
        if not pks:
            abort(404)
        items = [self.datamodel.get(self._deserialize_pk_if_composite(pk), self._base_filters) for pk in pks]
        if any(item is None for item in items):
            abort(404)
        return items

    # -- events ----------------------------------------------------------------------------------------
    def event_account_id(self, item) -> int:
        """The account whose event log shows a change to ``item``; global rows go to the operator's."""
        if isinstance(item, Account):
            return item.id
        account_id = getattr(item, "account_id", None)
        if account_id is not None:
            return account_id
        return self.datamodel.session.query(Account.id).filter(Account.kind == OPERATOR).scalar()

    def _event(self, verb: str, item, summary: str) -> None:
        name = self.event_name or type(item).__name__.lower()
        record_event(f"{name}.{verb}", account_id=self.event_account_id(item), target=item, summary=summary)

    # FAB shows ``str(error)`` of anything these raise: an outage is refused in words (app/failure.py).
    def pre_add(self, item):
        with failure.refused_during_outage(SaveError):
            self.datamodel.session.add(item)
            self.datamodel.session.flush()
            self._event("created", item, f"Created {item!r}")

    def pre_update(self, item):
        with failure.refused_during_outage(SaveError):
            self._event("updated", item, changes_summary(item) or "No changes")

    def pre_delete(self, item):
        with failure.refused_during_outage(SaveError):
            self._event("deleted", item, f"Deleted {item!r}")


def get_or_404(model, pk):
    """One row through the scope — a SELECT, never an identity-map hit — or 404 as if it did not exist."""
    try:
        pk = int(pk)
    except (TypeError, ValueError):
        abort(404)
    row = db.session.scalars(select(model).where(model.id == pk)).first()
    if row is None:
        abort(404)
    return row


class PortalView(BaseView):
    """Base of our own (non-CRUD) pages: every exposed method maps onto an action of ``class_permission_name``."""

    default_view = None

    def __init__(self):
        if not self.class_permission_name:
            raise TypeError(f"{type(self).__name__} must name its resource in class_permission_name")
        super().__init__()


CONFIRMED = "confirmed"


def confirmation(
    question: str,
    consequence: str,
    button: str,
    *,
    cancel_url: str | None = None,
    danger: bool = True,
    layout: str = "portal/base.html",
    **context,
):
    """Ask before what cannot be taken back, without needing JavaScript: None when this POST already carries the
    answer (``confirmed=yes``, sent by the confirmation page or by portal.js after its dialog), else the confirmation
    page — a form that posts the same fields again to the same address with ``confirmed=yes``. Nothing is changed
    before that second POST, so a click before the page's script loaded is asked too.

    ``question`` ("Delete jane@contoso.onmicrosoft.com?"), ``consequence`` (what will happen), ``button`` (the verb);
    ``layout``: the page frame (the customer portal's needs ``customer`` in ``context``)."""
    if request.form.get(CONFIRMED) == "yes":
        return None
    fields = [(k, v) for k, values in request.form.lists() for v in values if k not in ("csrf_token", CONFIRMED)]
    page = render_template(
        "portal/confirm.html",
        appbuilder=appbuilder,
        current_app=current_app,
        base_template=appbuilder.base_template,
        question=question,
        consequence=consequence,
        button=button,
        danger=danger,
        action=request.path,
        fields=fields,
        cancel_url=_safe_back(cancel_url),
        layout=layout,
        **context,
    )
    return page, 200


def _safe_back(cancel_url: str | None) -> str:
    """Where Cancel goes: the given page, else the page the button was on when it is ours, else home."""
    if cancel_url:
        return cancel_url
    referrer = request.referrer or ""
    if referrer.startswith(request.host_url):
        return referrer
    return url_for("HomeView.index")

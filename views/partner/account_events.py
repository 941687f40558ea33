"""The Event Log tab of an account: its events, newest first, a page at a time."""

from __future__ import annotations

from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access
from sqlalchemy import func, select

from app.extensions import db
from app.models.events import Event
from security import permissions as P
from views.base import PortalView, page_arg, signed_in_first
from views.partner.accounts_screen import account_in_scope

EVENTS_PER_PAGE = 25


class AccountEventsView(PortalView):
    route_base = "/accounts"
    class_permission_name = P.EVENTS
    method_permission_name = {"events": P.READ}

    @expose("/<int:account_id>/events")
    @signed_in_first
    @has_access
    def events(self, account_id):
        account = account_in_scope(account_id)
        page = page_arg()
        total = db.session.scalar(select(func.count(Event.id)).where(Event.account_id == account.id))
        events = db.session.scalars(
            select(Event)
            .where(Event.account_id == account.id)
            .order_by(Event.occurred_at.desc(), Event.id.desc())
            .offset((page - 1) * EVENTS_PER_PAGE)
            .limit(EVENTS_PER_PAGE)
        ).all()
        return self.render_template(
            "portal/account/events.html",
            account=account,
            tab="events",
            events=events,
            total=total,
            page=page,
            per_page=EVENTS_PER_PAGE,
        )

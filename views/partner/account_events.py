"""The Event Log tab of an account: its events, newest first, filtered, a page at a time, and Export."""

from __future__ import annotations

from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access

from app.models.events import Event
from security import permissions as P
from views.base import PortalView, signed_in_first
from views.event_log import export_response, page_context
from views.partner.accounts_screen import account_in_scope


class AccountEventsView(PortalView):
    route_base = "/accounts"
    class_permission_name = P.EVENTS
    method_permission_name = {"events": P.READ, "export_events": P.EXPORT}

    @expose("/<int:account_id>/events")
    @signed_in_first
    @has_access
    def events(self, account_id):
        account = account_in_scope(account_id)
        context, status = page_context(
            Event.account_id == account.id,
            endpoints=(f"{self.endpoint}.events", f"{self.endpoint}.export_events"),
            endpoint_args={"account_id": account.id},
            resource=P.EVENTS,
        )
        return self.render_template("portal/account/events.html", account=account, tab="events", **context), status

    @expose("/<int:account_id>/events.xlsx", methods=["POST"])
    @signed_in_first
    @has_access
    def export_events(self, account_id):
        """Export: this account's events the filters select (a POST with CSRF; the export is itself an event)."""
        account = account_in_scope(account_id)
        return export_response(Event.account_id == account.id, log_of=account, record_on=account.id)

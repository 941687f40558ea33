"""Event Log (the menu): the audit trail of every account in scope, newest first, filtered, paged, exported."""

from __future__ import annotations

from flask import g
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access

from security import permissions as P
from views.base import PortalView, signed_in_first
from views.event_log import export_response, page_context


class EventView(PortalView):
    route_base = "/eventview"
    default_view = "list"
    class_permission_name = P.EVENTS
    method_permission_name = {"list": P.READ, "export": P.EXPORT}

    @expose("/list/")
    @signed_in_first
    @has_access
    def list(self):
        context, status = page_context(
            None,
            endpoints=(f"{self.endpoint}.list", f"{self.endpoint}.export"),
            endpoint_args={},
            resource=P.EVENTS,
            with_account=True,
        )
        return self.render_template("portal/events.html", **context), status

    @expose("/export", methods=["POST"])
    @signed_in_first
    @has_access
    def export(self):
        """Export: the events the filters select, as .xlsx (a POST with CSRF; the export is itself an event)."""
        return export_response(None, log_of=g.user.account, record_on=g.user.account_id)

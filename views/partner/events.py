"""Event Log: the audit trail of the accounts in scope, newest first."""

from __future__ import annotations

from app.models.events import Event
from security import permissions as P
from views.base import EagerInterface, ScopedModelView


class EventView(ScopedModelView):
    datamodel = EagerInterface(Event, eager=("account", "on_behalf_of"))
    class_permission_name = P.EVENTS
    include_route_methods = {"list", "show"}
    list_title = "Event Log"
    list_columns = ["occurred_at", "account", "by", "action", "summary"]
    order_columns = ["occurred_at", "action"]
    search_columns = ["action", "actor_label", "summary"]
    show_columns = [*list_columns, "target_type", "target_id", "client_address"]
    base_order = ("occurred_at", "desc")
    label_columns = {"occurred_at": "When", "account": "Account", "by": "By", "actor_label": "By"}

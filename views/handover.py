"""The one-time link to a new tenant's first admin password, mailed to the customer's master admin (issue 15).

Public, like the activation link: the link is the credential. GET only says what the link is for (a mail scanner
that follows links must not use it up); the password is shown by a POST (CSRF), once, on a page that is not cached."""

from __future__ import annotations

from flask import render_template
from flask_appbuilder import BaseView
from flask_appbuilder.baseviews import expose
from flask_appbuilder.utils.limit import Limit
from flask_limiter.util import get_remote_address

from app.extensions import appbuilder
from app.services import handover
from security import scoping

NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _page(link: handover.LinkState, token: str, password: str | None = None, status: int = 200):
    page = render_template(
        "portal/handover.html",
        state=link.state,
        handover=link.handover,
        token=token,
        password=password,
        appbuilder=appbuilder,
        base_template=appbuilder.base_template,
    )
    return page, status, NO_STORE


class HandoverView(BaseView):
    route_base = "/handover"
    default_view = "show"
    limits = [Limit("30 per hour", key_func=get_remote_address, methods=["POST"])]

    @expose("/<token>", methods=["GET"])
    def show(self, token):
        with scoping.bypass("tenant hand-over link"):
            link = handover.check(token)
            return _page(link, token, status=200 if link.state == handover.VALID else 410)

    @expose("/<token>", methods=["POST"])
    def reveal(self, token):
        with scoping.bypass("tenant hand-over link"):
            link, password = handover.open_once(token)
            if password is None:
                return _page(link, token, status=410 if link.state != handover.INVALID else 404)
            return _page(link, token, password)

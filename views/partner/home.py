"""The first screen after sign-in: who you are and which account you act for."""

from __future__ import annotations

from flask import g
from flask_appbuilder import IndexView
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access

from security import permissions as P
from views.base import signed_in_first


class HomeView(IndexView):
    """The index. Anonymous visitors are sent to the sign-in page by ``has_access``."""

    class_permission_name = P.HOME
    method_permission_name = {"index": P.READ}
    index_template = "portal/home.html"

    @expose("/")
    @signed_in_first
    @has_access
    def index(self):
        user = g.user
        roles = ", ".join(role.name for role in user.roles) or "no role"
        return self.render_template(self.index_template, user=user, account=user.account, roles=roles)

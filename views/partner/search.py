"""The search box at the top of every partner-portal page: suggestions as you type, Enter to go."""

from __future__ import annotations

from flask import jsonify, redirect, request, url_for
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access, has_access_api

from app.services.search import search_accounts
from security import permissions as P
from views.base import PortalView, signed_in_first


class AccountSearchView(PortalView):
    route_base = "/search"
    class_permission_name = P.ACCOUNTS
    method_permission_name = {"suggest": P.READ, "results": P.READ}

    @expose("/suggest")
    @has_access_api
    def suggest(self):
        """JSON suggestions for what has been typed so far (accounts in scope only)."""
        query = request.args.get("q", "")
        accounts = [
            {**m.as_json(), "url": url_for("AccountScreenView.details", account_id=m.id)}
            for m in search_accounts(query)
        ]
        return jsonify({"query": query, "accounts": accounts})

    @expose("/")
    @signed_in_first
    @has_access
    def results(self):
        """Enter in the search box: one match opens its screen; otherwise the matches, or "No accounts match"."""
        query = request.args.get("q", "").strip()
        matches = search_accounts(query, limit=50) if query else []
        if len(matches) == 1:
            return redirect(url_for("AccountScreenView.details", account_id=matches[0].id))
        return self.render_template("portal/search_results.html", query=query, matches=matches)

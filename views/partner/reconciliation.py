"""Reconciliation (the menu): where the portal's records and Microsoft's differ, since when — operator staff every
reseller's, a reseller its own customers'. Check one customer now; operator staff may repair it from here too. The
whole-portal run is ``flask portal reconcile`` and the daily schedule (app/services/reconcile.py)."""

from __future__ import annotations

from flask import abort, current_app, flash, g, redirect, request, url_for
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access

from app.extensions import appbuilder
from app.models.accounts import CUSTOMER, OPERATOR, RESELLER
from app.services import reconcile
from app.services.reconcile import KINDS, DriftFilters
from security import permissions as P
from views.base import PortalView, confirmation, page_arg, signed_in_first
from views.partner.accounts_screen import account_in_scope

PER_PAGE = 25


def _may(action: str, resource: str) -> bool:
    return appbuilder.sm.has_access(f"can_{action}", resource)


def _id_arg(name: str) -> int | None:
    raw = request.args.get(name, "")
    return int(raw) if raw.isdigit() and len(raw) < 12 else None


class ReconciliationView(PortalView):
    route_base = "/reconciliation"
    default_view = "report"
    class_permission_name = P.RECONCILIATION
    method_permission_name = {"report": P.READ, "check": P.WRITE}

    @expose("/")
    @signed_in_first
    @has_access
    def report(self):
        operator = g.user.account.kind == OPERATOR
        filters = DriftFilters(kind=request.args.get("kind", "") if request.args.get("kind") in KINDS else "")
        reseller = customer = None
        if (reseller_id := _id_arg("reseller")) is not None:
            reseller = account_in_scope(reseller_id)
            if reseller.kind != RESELLER:
                abort(404)
            filters.reseller_id = reseller.id
        if (customer_id := _id_arg("customer")) is not None:
            customer = account_in_scope(customer_id)
            if customer.kind != CUSTOMER:
                abort(404)
            filters.customer_id = customer.id
        page = page_arg()
        last_run = reconcile.last_run() if operator else None  # (it may fail a killed run, and commit)
        rows, total = reconcile.open_drifts(filters, page=page - 1, per_page=PER_PAGE)
        return self.render_template(
            "portal/reconciliation.html",
            operator=operator,
            last_run=last_run,
            summary=reconcile.summary(),
            problems=reconcile.problem_customers(),
            rows=rows,
            total=total,
            page=page,
            per_page=PER_PAGE,
            filters=filters,
            reseller=reseller,
            customer=customer,
            kinds=KINDS,
            kind_label=reconcile.kind_label,
            may_check=_may(P.WRITE, P.RECONCILIATION),
            may_repair=_may(P.WRITE, P.RECONCILIATION_REPAIR),
            every_hours=current_app.config["RECONCILE_EVERY_HOURS"],
        )

    @expose("/check/<int:account_id>", methods=["POST"])
    @signed_in_first
    @has_access
    def check(self, account_id):
        """Check one customer against Microsoft now (in the caller's own scope: another reseller's customer is 404);
        ``repair=1`` also makes it match Microsoft, for those who may repair."""
        customer = account_in_scope(account_id)
        if customer.kind != CUSTOMER:
            abort(404)
        repair = request.form.get("repair") == "1"
        if repair and not _may(P.WRITE, P.RECONCILIATION_REPAIR):
            abort(403)
        if customer.tenant is None or customer.tenant.status != "active" or not customer.tenant.tenant_guid:
            flash(f"{customer.name} has no active Microsoft tenant: there is nothing at Microsoft to compare.", "info")
            return redirect(url_for(".report", customer=customer.id))
        if repair:
            asked = confirmation(
                f"Repair {customer.name}: make its records in the portal match Microsoft's?",
                "Each difference found is changed in the portal to what Microsoft has (quantities, licences, users, "
                f"subscriptions), replacing the portal's own values; each change is recorded in {customer.name}'s "
                "Event Log.",
                "Repair: match Microsoft",
                cancel_url=url_for(".report", customer=customer.id),
            )
            if asked:
                return asked
        report = reconcile.reconcile(scope_account=customer, repair=repair, trigger=f"user:{g.user.id}")
        run = report.run
        if run.customers_unreadable:
            flash(f"Microsoft could not be read for {customer.name}: {report.problems[0][1]}", "danger")
        elif run.customers_skipped:
            flash(f"{customer.name} was not checked: {report.problems[0][1]}. Try again in a minute.", "warning")
        elif repair and run.repaired:
            left = run.differences - run.repaired
            flash(
                f"{customer.name}: {run.repaired} difference(s) repaired to match Microsoft"
                + (f"; {left} could not be repaired here." if left else "."),
                "success",
            )
        elif run.differences:
            flash(f"{customer.name} differs from Microsoft in {run.differences} way(s): see below.", "warning")
        else:
            flash(f"{customer.name} matches Microsoft.", "success")
        return redirect(url_for(".report", customer=customer.id))

"""Billing ▸ Microsoft reconciliation (operator staff only; anyone else: 404): a month's Microsoft billed
reconciliation data against the portal's own Microsoft costs — counts and totals per class, every difference with
both sides, "Fetch from Microsoft and reconcile" (POST), and the differences as .xlsx. The matching itself is
app/services/billing_reconcile.py; ``flask portal billing reconcile`` does the same from the command line."""

from __future__ import annotations

import datetime as dt
import functools
import tempfile

from flask import abort, flash, g, redirect, request, send_file, url_for
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access

from app import clock
from app.csp.base import ProviderError
from app.models.accounts import OPERATOR
from app.services import billing_reconcile
from app.services.billing import parse_month
from security import permissions as P
from security.capabilities import may
from views.base import PortalView, signed_in_first

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MONTHS_SHOWN = 13


def operator_staff_only(action: str):
    """Operator staff with the capability; anyone else 404 (the page does not exist for them)."""

    def decorate(view):
        @functools.wraps(view)
        def wrapper(self, *args, **kwargs):
            account = getattr(g.user, "account", None)
            if account is None or account.kind != OPERATOR or not may(P.BILLING_RECONCILIATION, action):
                abort(404)
            return view(self, *args, **kwargs)

        return wrapper

    return decorate


def _last_month() -> dt.date:
    return (clock.today().replace(day=1) - dt.timedelta(days=1)).replace(day=1)


def _months() -> list[dt.date]:
    month, out = clock.today().replace(day=1), []
    for _ in range(MONTHS_SHOWN):
        out.append(month)
        month = (month - dt.timedelta(days=1)).replace(day=1)
    return out


def _month_arg(raw: str | None) -> dt.date:
    """The ``month`` asked for (YYYY-MM), last month when none; anything else is a 404."""
    if not raw:
        return _last_month()
    if len(raw) != 7:
        abort(404)
    try:
        month = parse_month(raw)
    except ValueError:
        abort(404)
    if not dt.date(2000, 1, 1) <= month <= dt.date(2100, 12, 1):
        abort(404)
    return month


class BillingReconciliationView(PortalView):
    route_base = "/billing/reconciliation"
    default_view = "index"
    class_permission_name = P.BILLING_RECONCILIATION
    method_permission_name = {"index": P.READ, "fetch": P.WRITE, "export": P.EXPORT}

    @expose("/")
    @signed_in_first
    @operator_staff_only(P.READ)
    @has_access
    def index(self):
        month = _month_arg(request.args.get("month"))
        report = billing_reconcile.compare(month) if billing_reconcile.imported_lines(month) else None
        return self.render_template(
            "portal/billing/reconciliation.html",
            month=month,
            months=_months(),
            report=report,
            imported=billing_reconcile.imported_at(month),
            class_words=billing_reconcile.CLASS_WORDS,
            keep=billing_reconcile.KEEP_DIFFERENCES,
            may_fetch=may(P.BILLING_RECONCILIATION, P.WRITE),
            may_export=may(P.BILLING_RECONCILIATION, P.EXPORT),
        )

    @expose("/fetch", methods=["POST"])
    @signed_in_first
    @operator_staff_only(P.WRITE)
    @has_access
    def fetch(self):
        month = _month_arg(request.form.get("month"))
        try:
            count = billing_reconcile.fetch_from_provider(month)
            report = billing_reconcile.reconcile(month)
        except (billing_reconcile.ReconcileError, ProviderError) as exc:
            flash(f"Microsoft's billed data for {month:%B %Y} could not be fetched: {exc}", "danger")
            return redirect(url_for(".index", month=f"{month:%Y-%m}"))
        differences = report.difference_count
        flash(
            f"{month:%B %Y}: {count} line(s) fetched from Microsoft; "
            + (f"{differences} difference(s), listed below." if differences else "everything matches."),
            "warning" if differences else "success",
        )
        return redirect(url_for(".index", month=f"{month:%Y-%m}"))

    @expose("/export")
    @signed_in_first
    @operator_staff_only(P.EXPORT)
    @has_access
    def export(self):
        month = _month_arg(request.args.get("month"))
        target = tempfile.TemporaryFile()  # noqa: SIM115 - handed to send_file, which closes it
        billing_reconcile.write_workbook(month, target)
        target.seek(0)
        return send_file(
            target,
            as_attachment=True,
            download_name=f"microsoft-reconciliation-{month:%Y-%m}-differences.xlsx",
            mimetype=XLSX,
        )

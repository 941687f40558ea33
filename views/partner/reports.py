"""Products & Services ▸ CSP Report: the subscriptions table, Export Subscription, Export Users (background jobs
when large), and the Usage Chart — for one customer, or for a reseller's whole customer base."""

from __future__ import annotations

from pathlib import Path

from flask import abort, flash, g, jsonify, redirect, send_file, url_for
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access, has_access_api
from sqlalchemy import select

from app.models.accounts import CUSTOMER, RESELLER, Account
from app.models.base import utcnow
from app.models.jobs import BackgroundJob
from app.services import csp_report, exports, jobs, widgets
from security import permissions as P
from views.base import PortalView, page_arg, signed_in_first
from views.partner.accounts_screen import account_in_scope

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _usage_ids(account: Account):
    if account.kind == CUSTOMER:
        return [account.id]
    return select(Account.id).where(Account.parent_id == account.id, Account.kind == CUSTOMER)


class ReportsView(PortalView):
    route_base = "/accounts"
    class_permission_name = P.REPORTS
    method_permission_name = {
        "csp_report": P.READ,
        "usage_chart": P.READ,
        "usage_chart_xlsx": P.EXPORT,
        "export": P.EXPORT,
    }

    def _render(self, template: str, account: Account, **context):
        return self.render_template(f"portal/account/{template}", account=account, tab="products", **context)

    @expose("/<int:account_id>/products/csp-report")
    @signed_in_first
    @has_access
    def csp_report(self, account_id):
        account = account_in_scope(account_id)
        page = page_arg()
        seen = csp_report.visibility()
        report = csp_report.report_page(account, page, seen)
        recent = jobs.recent(account.id, None if g.user.portal == "operator" else g.user.id)
        return self._render(
            "csp_report.html",
            account,
            report=report,
            customers=report.customers,
            with_costs=seen.costs,
            page=page,
            per_page=csp_report.CUSTOMERS_PER_PAGE,
            total_customers=report.total_customers,
            jobs=recent,
        )

    @expose("/<int:account_id>/reports/<any(subscriptions, users):kind>.xlsx", methods=["POST"])
    @signed_in_first
    @has_access
    def export(self, account_id, kind):
        """Export Subscription / Export Users: the workbook at once, or a background job when it is large.

        A POST with CSRF: an export is audited (an event) and a large one starts a job, so a link on another site
        must not be able to set one off."""
        from flask import current_app

        account = account_in_scope(account_id)
        if account.kind not in (CUSTOMER, RESELLER):
            abort(404)
        seen = csp_report.visibility() if kind == "subscriptions" else csp_report.Visibility()
        rows = exports.count_rows(kind, account)
        if rows > current_app.config["EXPORT_JOB_THRESHOLD"]:
            job = jobs.start_export(kind, account, g.user, seen.costs, with_ms_costs=seen.microsoft_costs)
            flash(
                f"The {kind} report has {rows:,} rows: it is being prepared in the background. Its download link "
                "appears below when it is ready.",
                "info",
            )
            return redirect(url_for(".csp_report", account_id=account.id, job=job.id))
        made = exports.export_report_now(kind, account, seen.costs, rows, with_ms_costs=seen.microsoft_costs)
        return send_file(made.data, as_attachment=True, download_name=made.name, mimetype=XLSX)

    @expose("/<int:account_id>/products/usage-chart")
    @signed_in_first
    @has_access
    def usage_chart(self, account_id):
        account = account_in_scope(account_id)
        series = widgets.usage_series(_usage_ids(account))
        return self._render("usage_chart.html", account, series=series)

    @expose("/<int:account_id>/products/usage-chart.xlsx", methods=["POST"])
    @signed_in_first
    @has_access
    def usage_chart_xlsx(self, account_id):
        """Download data (.xlsx): a POST with CSRF, as every export is (it is audited)."""
        account = account_in_scope(account_id)
        made = exports.export_usage_chart(account, widgets.usage_series(_usage_ids(account)))
        return send_file(made.data, as_attachment=True, download_name=made.name, mimetype=XLSX)


def _own_job(job_id: str) -> BackgroundJob:
    """A job of an account in scope, and (operator staff aside) one the signed-in user asked for — as it is: failed
    first if its worker is gone."""
    job = jobs.current(str(job_id))
    if job is None or (g.user.portal != "operator" and job.requested_by_id != g.user.id):
        abort(404)
    return job


class ReportJobsView(PortalView):
    route_base = "/reports/jobs"
    class_permission_name = P.REPORTS
    method_permission_name = {"status": P.EXPORT, "download": P.EXPORT, "retry": P.EXPORT}

    @expose("/<job_id>")
    @has_access_api
    def status(self, job_id):
        job = _own_job(job_id)
        return jsonify(
            {
                "id": job.id,
                "status": job.status,
                "rows_done": job.rows_done,
                "rows_total": job.rows_total,
                "error": job.error,
                "file_name": job.file_name,
                "download_url": url_for(".download", job_id=job.id) if job.status == "done" else None,
            }
        )

    @expose("/<job_id>/download", methods=["POST"])
    @signed_in_first
    @has_access
    def download(self, job_id):
        """A prepared export's file: a POST with CSRF, so that each download is audited."""
        job = _own_job(job_id)
        if job.status != "done" or not job.file_path or not Path(job.file_path).exists():
            abort(404)
        if job.expires_on is not None and job.expires_on <= utcnow():
            abort(410, description="This export has expired: export it again.")
        jobs.record_download(job)
        return send_file(
            job.file_path,
            as_attachment=True,
            download_name=job.file_name,
            mimetype=XLSX,
        )

    @expose("/<job_id>/retry", methods=["POST"])
    @has_access
    def retry(self, job_id):
        job = _own_job(job_id)
        if job.status != "failed":
            flash("Only a failed export can be retried.", "warning")
        else:
            jobs.retry(job)
            flash("Retrying the export.", "info")
        return redirect(url_for("ReportsView.csp_report", account_id=job.account_id))

"""Products & Services ▸ CSP Report: the subscriptions table, Export Subscription, Export Users (background jobs
when large), and the Usage Chart — for one customer, or for a reseller's whole customer base."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from flask import abort, flash, g, jsonify, redirect, send_file, url_for
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access, has_access_api
from sqlalchemy import func, select

from app.extensions import db
from app.models.accounts import CUSTOMER, RESELLER, Account
from app.models.base import utcnow
from app.models.catalog import Product
from app.models.jobs import BackgroundJob
from app.models.subscriptions import Subscription
from app.services import exports, jobs, widgets
from app.services.landing import cents_total
from security import capabilities
from security import permissions as P
from views.base import PortalView, page_arg, signed_in_first
from views.partner.accounts_screen import account_in_scope

CUSTOMERS_PER_PAGE = 25
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def sees_costs() -> bool:
    """Partner CSP Admins (and operator staff) see cost and margin."""
    return capabilities.may(P.COSTS)


def _customers(account: Account):
    return Account.id == account.id if account.kind == CUSTOMER else Account.parent_id == account.id


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
        customers = db.session.scalars(
            select(Account)
            .where(_customers(account), Account.kind == CUSTOMER)
            .order_by(func.lower(Account.name), Account.id)
            .offset((page - 1) * CUSTOMERS_PER_PAGE)
            .limit(CUSTOMERS_PER_PAGE)
        ).all()
        ids = [c.id for c in customers]
        subs = (
            db.session.scalars(
                select(Subscription)
                .join(Subscription.product)
                .where(Subscription.account_id.in_(ids))
                .order_by(Product.name, Subscription.id)
            ).all()
            if ids
            else []
        )
        by_customer: dict[int, list] = {}
        for sub in subs:
            by_customer.setdefault(sub.account_id, []).append(sub)
        total_customers = db.session.scalar(
            select(func.count(Account.id)).where(_customers(account), Account.kind == CUSTOMER)
        )
        used, bought, price_cents, cost_cents = db.session.execute(
            select(
                func.coalesce(func.sum(Subscription.assigned), 0),
                func.coalesce(func.sum(Subscription.quantity), 0),
                cents_total(Subscription.unit_price, Subscription.quantity),
                cents_total(Subscription.unit_cost, Subscription.quantity),
            )
            .join(Account, Account.id == Subscription.account_id)
            .where(_customers(account))
        ).one()
        totals = {
            "used": int(used),
            "bought": int(bought),
            "monthly": Decimal(int(price_cents)) / 100,
            "cost": Decimal(int(cost_cents)) / 100,
        }
        totals["margin"] = totals["monthly"] - totals["cost"]
        jobs.fail_abandoned()  # nothing listed as running whose worker is gone
        recent = db.session.scalars(
            select(BackgroundJob)
            .where(
                BackgroundJob.account_id == account.id,
                *([] if g.user.portal == "operator" else [BackgroundJob.requested_by_id == g.user.id]),
            )
            .order_by(BackgroundJob.created_on.desc())
            .limit(5)
        ).all()
        return self._render(
            "csp_report.html",
            account,
            customers=customers,
            by_customer=by_customer,
            totals=totals,
            with_costs=sees_costs(),
            page=page,
            per_page=CUSTOMERS_PER_PAGE,
            total_customers=total_customers,
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
        with_costs = kind == "subscriptions" and sees_costs()
        rows = exports.count_rows(kind, account)
        if rows > current_app.config["EXPORT_JOB_THRESHOLD"]:
            job = jobs.start_export(kind, account, g.user, with_costs)
            flash(
                f"The {kind} report has {rows:,} rows: it is being prepared in the background. Its download link "
                "appears below when it is ready.",
                "info",
            )
            return redirect(url_for(".csp_report", account_id=account.id, job=job.id))
        made = exports.export_report_now(kind, account, with_costs, rows)
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
    jobs.fail_abandoned(str(job_id))
    job = db.session.scalars(select(BackgroundJob).where(BackgroundJob.id == str(job_id))).first()
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

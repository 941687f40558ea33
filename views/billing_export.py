"""The accounting export's download: an issuer's issued invoices of a month as Xero's import CSV
(app/services/xero.py) — one .csv, or a .zip of numbered files when the month has more than Xero's 500 invoices a
file.

Only the issuer's side exports: operator staff (the operator's invoices and any reseller's), a reseller's CSP Admin
its own; anyone else — a reseller asking for the operator's or another reseller's, a customer — gets 404, as if
there were nothing there. A POST with CSRF, as every export of the portal is: it is audited (an event), and GET never
changes anything (DESIGN.md rule 2)."""

from __future__ import annotations

import io
import zipfile

from flask import abort, flash, redirect, send_file
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access

from app.services import billing, xero
from security import capabilities
from security import permissions as P
from views.base import PortalView, signed_in_first


class BillingExportView(PortalView):
    route_base = "/billing/export"
    class_permission_name = P.INVOICES
    method_permission_name = {"xero": P.READ}

    @expose("/<int:issuer_id>/<month>", methods=["POST"])
    @signed_in_first
    @has_access
    def xero(self, issuer_id, month):
        # Exporting is the issuer's side's work, as issuing is: the capability to issue (Invoices: write).
        if not capabilities.may(P.INVOICES, P.WRITE) or not xero.may_export(issuer_id):
            abort(404)
        try:
            first = billing.parse_month(month)
        except ValueError:
            abort(404)
        try:
            files = xero.export_files(first, issuer_id)
        except xero.NotExportable:
            abort(404)
        except xero.ExportError as exc:
            flash(str(exc), "warning")
            return redirect(self.appbuilder.get_url_for_index)
        xero.record_export(first, issuer_id, files)
        if len(files) == 1:
            return send_file(
                io.BytesIO(files[0].data), as_attachment=True, download_name=files[0].name, mimetype="text/csv"
            )
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for made in files:
                archive.writestr(made.name, made.data)
        buffer.seek(0)
        name = files[0].name.rsplit("-", 1)[0] + ".zip"
        return send_file(buffer, as_attachment=True, download_name=name, mimetype="application/zip")

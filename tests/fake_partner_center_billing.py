"""The fake's invoices and Graph's billed reconciliation export (issue 14), mixed into FakePartnerCenter.

- ``GET /v1/invoices``: the invoices set with ``add_invoice`` (``id``, ``invoiceDate``, ``billingPeriodStartDate``,
  ``billingPeriodEndDate``, …) as a Partner Center collection;
- ``POST /v1.0/reports/partners/billing/reconciliation/billed/export`` (``invoiceId``, ``attributeSet``; App+User
  token, as the portal asks Graph): ``202`` with ``Location`` (the operation) and ``Retry-After``;
- ``GET /v1.0/reports/partners/billing/operations/{id}``: ``running`` ``export_running_polls`` times, then
  ``succeeded`` with ``resourceLocation@odata.navigationLink`` (or, with ``embed_manifest``, the manifest itself as
  ``resourceLocation``); an unknown invoice: ``failed`` with Graph's "No data available" error;
- ``GET /v1.0/reports/partners/billing/manifests/{id}``: ``rootDirectory``, ``sasToken``, ``dataFormat``
  (compressedJSONLines), ``blobCount``, ``blobs`` (``name``, ``partitionValue``) — the lines split into blobs of
  ``lines_per_blob``;
- ``GET /blobs/{operation}/{name}?{sasToken}``: the gzipped JSON lines, as Azure Blob Storage serves them: the SAS
  token is the only credential (a request that also carries a bearer token is refused and logged in
  ``blob_requests``).

Shapes as https://learn.microsoft.com/partner-center/developer/billed-invoice-reconciliation and the Graph pages it
links describe them.
"""

from __future__ import annotations

import gzip
import json
import re
import uuid
from decimal import Decimal
from typing import Any

from werkzeug.wrappers import Request, Response

GRAPH_PREFIX = "/v1.0/reports/partners/billing/"
SAS_TOKEN = "sv=2021-08-06&sr=c&sig=fake-signature"


def json_line(item: dict[str, Any]) -> str:
    """One JSON line as Microsoft writes it: Decimals as plain JSON numbers."""
    return json.dumps(item, default=lambda v: float(v) if isinstance(v, Decimal) else str(v))


class FakeBilling:
    def _reset_billing(self) -> None:
        self.invoices: list[dict[str, Any]] = []
        self.billed_lines: dict[str, list[dict[str, Any]]] = {}  # invoice id → its lines
        self.exports: dict[str, dict[str, Any]] = {}  # operation id → {invoice, polls}
        self.export_running_polls = 1  # "running" answers before "succeeded"
        self.export_retry_after = "0"  # seconds, on the 202 and on each "running" answer
        self.embed_manifest = False
        self.lines_per_blob = 2
        self.blob_requests: list[dict[str, Any]] = []

    def add_invoice(self, invoice_id: str, period_start: str, period_end: str, lines: list[dict[str, Any]]) -> None:
        """An invoice (billing period ``period_start`` … ``period_end``, YYYY-MM-DD) and its reconciliation lines."""
        self.invoices.append(
            {
                "id": invoice_id,
                "invoiceDate": f"{period_end}T00:00:00Z",
                "billingPeriodStartDate": f"{period_start}T00:00:00Z",
                "billingPeriodEndDate": f"{period_end}T00:00:00Z",
                "totalCharges": 0,
                "paidAmount": 0,
                "currencyCode": "NZD",
                "invoiceType": "Recurring",
                "documentType": "Invoice",
                "attributes": {"objectType": "Invoice"},
            }
        )
        self.billed_lines[invoice_id] = [dict(line) for line in lines]

    def _billing_route(self, method: str, path: str, request: Request, token_kind: str) -> Response | None:
        """The answer to an invoice or export request, or None when it is not one."""
        if path.rstrip("/") == "/v1/invoices" and method == "GET":
            return self._json(
                200,
                {"totalCount": len(self.invoices), "items": self.invoices, "attributes": {"objectType": "Collection"}},
            )
        if not path.startswith(GRAPH_PREFIX):
            return None
        if token_kind != "user":
            return self._graph_error(403, "Forbidden", "PartnerBilling.Read.All is needed (App+User here)")
        rest = path[len(GRAPH_PREFIX) :].strip("/")
        if rest == "reconciliation/billed/export" and method == "POST":
            body = request.get_json(silent=True) or {}
            if not isinstance(body.get("invoiceId"), str) or body.get("attributeSet") not in (None, "full", "basic"):
                return self._graph_error(400, "BadRequest", "invoiceId is required; attributeSet is full or basic")
            operation = str(uuid.uuid4())
            self.exports[operation] = {"invoice": body["invoiceId"], "polls": 0}
            return Response(
                status=202,
                headers={
                    "Location": f"{self.base_url}{GRAPH_PREFIX}operations/{operation}",
                    "Retry-After": self.export_retry_after,
                },
            )
        if (found := re.fullmatch(r"operations/([0-9a-f-]{36})", rest)) and method == "GET":
            return self._operation(found.group(1))
        if (found := re.fullmatch(r"manifests/([0-9a-f-]{36})", rest)) and method == "GET":
            if found.group(1) not in self.exports:
                return self._graph_error(404, "NotFound", "no such manifest")
            return self._json(200, self._manifest_of(found.group(1)), bom=False)
        return self._graph_error(404, "NotFound", f"no such resource {method} {path}")

    def _graph_error(self, status: int, code: str, message: str) -> Response:
        return self._json(status, {"error": {"code": code, "message": message}}, bom=False)

    def _operation(self, operation: str) -> Response:
        export = self.exports.get(operation)
        if export is None:
            return self._graph_error(404, "NotFound", "no such operation")
        export["polls"] += 1
        base = {
            "id": operation,
            "createdDateTime": "2026-12-02T01:00:00Z",
            "lastActionDateTime": "2026-12-02T01:00:05Z",
        }
        if export["polls"] <= self.export_running_polls:
            body = {"@odata.type": "#microsoft.graph.partners.billing.runningOperation", "status": "running", **base}
            return self._json(200, body, {"Retry-After": self.export_retry_after}, bom=False)
        if export["invoice"] not in self.billed_lines:
            body = {
                "@odata.type": "#microsoft.graph.partners.billing.failedOperation",
                "status": "failed",
                "error": {"message": "No data available", "code": "5000"},
                **base,
            }
            return self._json(200, body, bom=False)
        body = {
            "@odata.type": "#microsoft.graph.partners.billing.exportSuccessOperation",
            "status": "succeeded",
            **base,
        }
        if self.embed_manifest:
            body["resourceLocation"] = self._manifest_of(operation)
        else:
            body["resourceLocation@odata.navigationLink"] = f"{self.base_url}{GRAPH_PREFIX}manifests/{operation}"
        return self._json(200, body, bom=False)

    def _blob_names(self, operation: str) -> list[str]:
        lines = self.billed_lines[self.exports[operation]["invoice"]]
        count = max(1, -(-len(lines) // self.lines_per_blob))
        return [f"part-{n:05d}-{operation[:8]}.json.gz" for n in range(count)]

    def _manifest_of(self, operation: str) -> dict[str, Any]:
        names = self._blob_names(operation)
        return {
            "@odata.type": "#microsoft.graph.partners.billing.manifest",
            "id": operation,
            "schemaVersion": "2",
            "dataFormat": "compressedJSONLines",
            "createdDateTime": "2026-12-02T01:00:05Z",
            "eTag": "fake-etag",
            "partnerTenantId": self.tenant_id,
            "rootDirectory": f"{self.base_url}/blobs/{operation}",
            "sasToken": SAS_TOKEN,
            "partitionType": "default",
            "blobCount": len(names),
            "blobs": [{"name": name, "partitionValue": "default"} for name in names],
        }

    def _blob(self, request: Request, path: str) -> Response:
        """GET /blobs/{operation}/{name}: the blob's gzipped JSON lines (SAS token only)."""
        entry = {
            "path": path,
            "query": request.query_string.decode(),
            "authorization": request.headers.get("Authorization"),
        }
        with self._lock:
            self.blob_requests.append(entry)
            parts = path.strip("/").split("/")
            if len(parts) != 3 or parts[1] not in self.exports or request.method != "GET":
                return Response("BlobNotFound", status=404)
            if entry["authorization"] or request.args.get("sig") != "fake-signature":
                return Response("AuthenticationFailed", status=403)
            names = self._blob_names(parts[1])
            if parts[2] not in names:
                return Response("BlobNotFound", status=404)
            index = names.index(parts[2])
            lines = self.billed_lines[self.exports[parts[1]]["invoice"]]
            chunk = lines[index * self.lines_per_blob : (index + 1) * self.lines_per_blob]
        payload = gzip.compress("".join(json_line(item) + "\n" for item in chunk).encode())
        return Response(payload, status=200, content_type="application/octet-stream")

"""Microsoft's invoices and billed reconciliation data (issue 14), mixed into PartnerCenterProvider (uses its
``_request``, ``_json``, ``_fail``, ``session``, ``timeout_s``, ``max_tries`` and ``_verify``).

- Invoices: Partner Center ``GET /v1/invoices`` — a collection whose ``items`` each have ``id``, ``invoiceDate``,
  ``billingPeriodStartDate`` and ``billingPeriodEndDate`` (https://learn.microsoft.com/partner-center/developer/
  get-a-collection-of-invoices); a month's invoices are those whose billing period starts in it.
- New-commerce billed reconciliation comes only from Graph's asynchronous export
  (https://learn.microsoft.com/partner-center/developer/billed-invoice-reconciliation,
  https://learn.microsoft.com/graph/api/partners-billing-billedreconciliation-export):
  1. ``POST {GRAPH}/v1.0/reports/partners/billing/reconciliation/billed/export`` with ``{"invoiceId": …,
     "attributeSet": "full"}`` → ``202 Accepted`` with a ``Location`` header (the operation) and ``Retry-After``;
  2. ``GET`` that operation (``…/reports/partners/billing/operations/{id}``) until its ``status`` is ``succeeded``
     (``notStarted`` / ``running``: again after ``Retry-After``, or ``PARTNER_CENTER_EXPORT_POLL_S``; ``failed``:
     its ``error``); at most ``PARTNER_CENTER_EXPORT_MAX_POLLS`` polls
     (https://learn.microsoft.com/graph/api/partners-billing-operation-get);
  3. its ``resourceLocation`` is the manifest — embedded, or linked by ``resourceLocation@odata.navigationLink``
     (``GET …/reports/partners/billing/manifests/{id}``) — with ``rootDirectory``, ``sasToken``, ``dataFormat``
     (``compressedJSONLines``), ``blobCount`` and ``blobs`` (each ``name``, ``partitionValue``)
     (https://learn.microsoft.com/graph/api/resources/partners-billing-manifest,
     https://learn.microsoft.com/graph/api/resources/partners-billing-blob);
  4. each blob is ``{rootDirectory}/{name}?{sasToken}`` in Azure Blob Storage: a gzipped file of JSON lines, read
     with the SAS token alone (no bearer token goes to the storage host), streamed line by line: memory stays flat.

Graph takes tokens for its own audience: the App+User token of the partner's refresh token for Graph's
``PartnerBilling.Read.All`` scope, as the price sheet's host takes its own (app/csp/partner_center.py). The operation
and manifest URLs Microsoft hands back are followed only on the configured Graph host (``GRAPH_BASE_URL``): our token
never goes elsewhere.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import urllib.parse
import zlib
from collections.abc import Iterator
from decimal import Decimal
from itertools import chain
from typing import Any

import requests

from app.csp.base import ProviderError, new_correlation_id

log = logging.getLogger("app.csp.partner_center")

GRAPH_URL = "https://graph.microsoft.com"
GRAPH_USER_SCOPES = ["https://graph.microsoft.com/PartnerBilling.Read.All"]
EXPORT_PATH = "/v1.0/reports/partners/billing/reconciliation/billed/export"
INVOICES_PATH = "/v1/invoices"
RUNNING = ("notstarted", "running", "")
POLL_CAP_S = 120.0  # the longest wait between polls, whatever Retry-After says
MAX_INVOICE_PAGES = 100


def _date(value: Any) -> dt.date | None:
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return dt.date.fromisoformat(value[:10])
    except ValueError:
        return None


class PartnerCenterBilling:
    graph_url: str = GRAPH_URL
    export_poll_s: float = 10.0
    export_max_polls: int = 60

    # --- invoices -----------------------------------------------------------------------------------------------

    def billed_invoices(self, month: dt.date, *, correlation_id: str | None = None) -> list[str]:
        """The ids of the invoices whose billing period starts in ``month`` (GET /v1/invoices, following ``links.
        next`` with its continuation token when Microsoft pages the collection)."""
        correlation_id = correlation_id or new_correlation_id()
        found: list[str] = []
        path, headers = INVOICES_PATH, None
        for _page in range(MAX_INVOICE_PAGES):
            response = self._request("GET", path, correlation_id=correlation_id, extra_headers=headers)
            body = self._json(response, "GET", path, correlation_id)
            items = body.get("items")
            if not isinstance(items, list):
                raise self._fail("GET", path, correlation_id, response.status_code, "Partner Center sent no invoices")
            for item in items:
                start = _date(item.get("billingPeriodStartDate")) if isinstance(item, dict) else None
                if start is not None and (start.year, start.month) == (month.year, month.month) and item.get("id"):
                    found.append(str(item["id"]))
            following = ((body.get("links") or {}).get("next") or {}) if isinstance(body.get("links"), dict) else {}
            uri = following.get("uri") if isinstance(following, dict) else None
            if not uri:
                break
            path = uri if uri.startswith("/v1/") else "/v1/" + uri.lstrip("/")
            headers = {h["key"]: h["value"] for h in following.get("headers") or () if "key" in h and "value" in h}
        return sorted(set(found))

    # --- the export ---------------------------------------------------------------------------------------------

    def billed_reconciliation_lines(
        self, invoice_id: str, *, correlation_id: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Export the invoice's billed reconciliation data (full attribute set) and stream its lines (dicts with
        Microsoft's camelCase names; numbers as Decimal). The export and its polling happen now; the blobs are
        read as the lines are consumed."""
        correlation_id = correlation_id or new_correlation_id()
        response = self._request(
            "POST",
            EXPORT_PATH,
            correlation_id=correlation_id,
            body={"invoiceId": invoice_id, "attributeSet": "full"},
            user=True,
            expect=(202,),
            base_url=self.graph_url,
            scopes=GRAPH_USER_SCOPES,
        )
        location = response.headers.get("Location", "")
        if not location:
            raise self._fail("POST", EXPORT_PATH, correlation_id, 202, "Microsoft Graph sent no operation to poll")
        manifest = self._await_export(location, self._wait_s(response), correlation_id)
        return self._manifest_lines(manifest, correlation_id)

    def _wait_s(self, response: requests.Response) -> float:
        from app.csp.partner_center import _retry_after_seconds

        retry_after = _retry_after_seconds(response)
        return min(POLL_CAP_S, self.export_poll_s if retry_after is None else retry_after)

    def _graph_path(self, url: str, correlation_id: str) -> str:
        """A URL Microsoft handed back, as a path on our Graph host (anything else is refused: our token stays)."""
        if url.startswith("/"):
            return url
        base = self.graph_url.rstrip("/")
        if not (url == base or url.startswith(base + "/")):
            host = urllib.parse.urlsplit(url).netloc or url[:60]
            raise ProviderError(
                f"Microsoft Graph pointed the export at another host ({host}); not followed",
                correlation_id=correlation_id,
            )
        return url[len(base) :]

    def _graph_get(self, path: str, correlation_id: str) -> tuple[requests.Response, dict[str, Any]]:
        response = self._request(
            "GET",
            path,
            correlation_id=correlation_id,
            user=True,
            expect=(200, 202),
            base_url=self.graph_url,
            scopes=GRAPH_USER_SCOPES,
        )
        return response, self._json(response, "GET", path, correlation_id)

    def _await_export(self, location: str, wait_s: float, correlation_id: str) -> dict[str, Any]:
        """Poll the operation until it succeeds; its manifest."""
        path = self._graph_path(location, correlation_id)
        for _poll in range(max(1, int(self.export_max_polls))):
            if wait_s > 0:
                time.sleep(wait_s)
            response, body = self._graph_get(path, correlation_id)
            status = str(body.get("status") or "").lower()
            if status == "succeeded":
                return self._manifest(body, correlation_id)
            if status == "failed":
                error = body.get("error") if isinstance(body.get("error"), dict) else {}
                reason = f"{error.get('code', '')} {error.get('message', '')}".strip() or "no reason given"
                raise self._fail("GET", path, correlation_id, 200, f"Microsoft's export failed: {reason}")
            if status not in RUNNING and status != "unknownfuturevalue":
                raise self._fail("GET", path, correlation_id, 200, f"Microsoft's export is in state {status!r}")
            wait_s = self._wait_s(response)
        raise self._fail(
            "GET",
            path,
            correlation_id,
            None,
            f"Microsoft's export did not finish after {self.export_max_polls} polls; try again later",
        )

    def _manifest(self, operation: dict[str, Any], correlation_id: str) -> dict[str, Any]:
        found = operation.get("resourceLocation")
        if isinstance(found, dict) and "blobs" in found:
            return found
        link = operation.get("resourceLocation@odata.navigationLink") or (found if isinstance(found, str) else "")
        if not link:
            raise ProviderError("Microsoft's export succeeded without a manifest", correlation_id=correlation_id)
        _response, manifest = self._graph_get(self._graph_path(link, correlation_id), correlation_id)
        return manifest

    # --- the blobs ----------------------------------------------------------------------------------------------

    def _manifest_lines(self, manifest: dict[str, Any], correlation_id: str) -> Iterator[dict[str, Any]]:
        root = str(manifest.get("rootDirectory") or "").rstrip("/")
        token = str(manifest.get("sasToken") or "").lstrip("?")
        blobs = manifest.get("blobs")
        if not root or not isinstance(blobs, list):
            raise ProviderError("Microsoft's manifest has no rootDirectory or blobs", correlation_id=correlation_id)
        for blob in blobs:
            name = str((blob or {}).get("name") or "")
            if not name:
                raise ProviderError("Microsoft's manifest lists a blob without a name", correlation_id=correlation_id)
            url = f"{root}/{urllib.parse.quote(name.lstrip('/'))}" + (f"?{token}" if token else "")
            yield from self._blob_lines(url, name, correlation_id)

    def _open_blob(self, url: str, name: str, correlation_id: str) -> requests.Response:
        """GET the blob (SAS token only), retried on a connection failure, 429 or 5xx."""
        tries = 0
        while True:
            tries += 1
            try:
                response = self.session.get(
                    url,
                    stream=True,
                    timeout=self.timeout_s,
                    verify=self._verify,
                    headers={"x-ms-version": "2021-08-06", "x-ms-client-request-id": correlation_id},
                )
            except requests.RequestException as exc:
                if tries >= self.max_tries:
                    raise ProviderError(
                        f"Microsoft's billing file {name} could not be downloaded ({type(exc).__name__})",
                        correlation_id=correlation_id,
                    ) from exc
                time.sleep(self._delay(tries))
                continue
            if response.status_code == 200:
                return response
            response.close()
            if (response.status_code == 429 or response.status_code >= 500) and tries < self.max_tries:
                time.sleep(self._delay(tries, response))
                continue
            log.error(
                "Microsoft billing blob %s: status %s, correlation id %s", name, response.status_code, correlation_id
            )
            raise ProviderError(
                f"Microsoft's billing file {name} could not be downloaded (HTTP {response.status_code})",
                correlation_id=correlation_id,
                status=response.status_code,
            )

    def _blob_lines(self, url: str, name: str, correlation_id: str) -> Iterator[dict[str, Any]]:
        """The blob's JSON lines, decompressed as they arrive (gzip, several members too; plain JSON lines too)."""
        response = self._open_blob(url, name, correlation_id)
        number = 0
        try:
            for number, line in enumerate(_split_lines(_gunzip(response.iter_content(64 * 1024))), 1):
                if not line.strip():
                    continue
                item = json.loads(line.decode("utf-8-sig" if number == 1 else "utf-8"), parse_float=Decimal)
                if not isinstance(item, dict):
                    raise ValueError("not a JSON object")
                yield item
        except (ValueError, zlib.error, requests.RequestException) as exc:
            raise ProviderError(
                f"Microsoft's billing file {name} is unreadable at line {max(number, 1)}: {exc}",
                correlation_id=correlation_id,
            ) from exc
        finally:
            response.close()


def _gunzip(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Decompressed bytes of a gzip stream (its members one after another), or the bytes as they are when they are
    not gzip. A stream cut short is a ValueError, never a silently shorter file."""
    chunks = iter(chunks)
    first = next((chunk for chunk in chunks if chunk), b"")
    if first[:2] != b"\x1f\x8b":
        if first:
            yield first
            yield from chunks
        return
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    started = False  # the current member has had input
    for chunk in chain([first], chunks):
        while chunk:
            started = True
            out = decompressor.decompress(chunk)
            if out:
                yield out
            if decompressor.eof:  # the next member, if any, starts in what is left
                chunk = decompressor.unused_data
                decompressor, started = zlib.decompressobj(16 + zlib.MAX_WBITS), False
            else:
                chunk = b""
    if started and not decompressor.eof:
        raise ValueError("the file ends early (its gzip stream is cut short)")


def _split_lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Whole lines (without the newline) of a byte stream, however it is cut."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        yield from lines
    if pending:
        yield pending

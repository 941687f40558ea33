"""PartnerCenterProvider's invoices and Graph's billed reconciliation export against the local HTTPS fake
(tests/fake_partner_center_billing.py): GET /v1/invoices filtered by billing period, POST export → 202 + Location →
poll (one "running" answer, then "succeeded") → manifest → gzipped JSON-line blobs read with the SAS token alone
(https://learn.microsoft.com/partner-center/developer/billed-invoice-reconciliation)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from app.csp.base import ProviderError, new_correlation_id
from app.csp.partner_center import PartnerCenterProvider

EXPORT = "/v1.0/reports/partners/billing/reconciliation/billed/export"
NOVEMBER = dt.date(2026, 11, 1)


def _line(n: int, **changes) -> dict:
    line = {
        "partnerId": "p-1",
        "customerId": "c0ffee00-0000-4000-8000-000000000001",
        "customerName": "Enet Ltd",
        "invoiceNumber": "G2026110001",
        "productId": "CFQ7TTC0LH16",
        "skuId": "0001",
        "availabilityId": "CFQ7TTC0LDJL",
        "skuName": "Exchange Online (Plan 1)",
        "productName": "Exchange Online (Plan 1)",
        "chargeType": "cycleCharge",
        "unitPrice": Decimal("4.68"),
        "effectiveUnitPrice": Decimal("4.680000"),
        "quantity": 19,
        "billableQuantity": 19,
        "subtotal": Decimal("88.92"),
        "currency": "NZD",
        "pcToBCExchangeRate": 1,
        "subscriptionId": f"5ub5c000-0000-4000-8000-{n:012d}",
        "chargeStartDate": "2026-11-11T00:00:00Z",
        "chargeEndDate": "2026-12-10T00:00:00Z",
        "termAndBillingCycle": "1 Year Subscription",
        "billingFrequency": "Monthly",
    }
    line.update(changes)
    return line


def _provider(fake) -> PartnerCenterProvider:
    return PartnerCenterProvider.from_config(fake.config())


def test_the_months_invoices_are_those_whose_billing_period_starts_in_it(fake_partner_center):
    fake = fake_partner_center
    fake.add_invoice("G2026100001", "2026-10-01", "2026-10-31", [])
    fake.add_invoice("G2026110001", "2026-11-01", "2026-11-30", [])
    fake.add_invoice("G2026110002", "2026-11-01", "2026-11-30", [])

    assert _provider(fake).billed_invoices(NOVEMBER) == ["G2026110001", "G2026110002"]
    (call,) = fake.calls("GET", "/v1/invoices")
    assert call.status == 200 and call.header("MS-CorrelationId")


def test_the_export_is_polled_until_it_succeeds_and_its_gzipped_blobs_stream_line_by_line(fake_partner_center):
    fake = fake_partner_center
    lines = [_line(n) for n in range(5)]
    lines[4] = _line(4, chargeType="addQuantity", quantity=2, subtotal=Decimal("5.04"))
    fake.add_invoice("G2026110001", "2026-11-01", "2026-11-30", lines)
    correlation = new_correlation_id()

    got = list(_provider(fake).billed_reconciliation_lines("G2026110001", correlation_id=correlation))

    assert [g["subscriptionId"] for g in got] == [line["subscriptionId"] for line in lines]
    assert got[4]["chargeType"] == "addQuantity" and got[4]["subtotal"] == Decimal("5.04")
    assert got[0]["unitPrice"] == Decimal("4.68") and isinstance(got[0]["unitPrice"], Decimal)  # never a float
    (post,) = fake.calls("POST", EXPORT)
    assert post.json == {"invoiceId": "G2026110001", "attributeSet": "full"} and post.status == 202
    assert post.token == "user" and post.header("MS-CorrelationId") == correlation
    polls = fake.calls("GET", "/v1.0/reports/partners/billing/operations/*")
    assert len(polls) == 2  # one "running", then "succeeded"
    assert len(fake.calls("GET", "/v1.0/reports/partners/billing/manifests/*")) == 1
    # Graph's own audience: a token for graph.microsoft.com from the partner's refresh token.
    assert any(t.grant == "refresh_token" and "graph.microsoft.com" in t.scope for t in fake.token_requests)
    # Three blobs (two lines each), fetched with the SAS token alone: no bearer token leaves for the storage host.
    assert len(fake.blob_requests) == 3
    assert all(r["authorization"] is None and "sig=fake-signature" in r["query"] for r in fake.blob_requests)


def test_an_embedded_manifest_is_read_without_another_call(fake_partner_center):
    fake = fake_partner_center
    fake.embed_manifest = True
    fake.export_running_polls = 0
    fake.add_invoice("G2026110001", "2026-11-01", "2026-11-30", [_line(1)])

    got = list(_provider(fake).billed_reconciliation_lines("G2026110001"))

    assert len(got) == 1 and not fake.calls("GET", "/v1.0/reports/partners/billing/manifests/*")


def test_a_failed_export_is_a_provider_error_with_microsofts_reason(fake_partner_center):
    fake = fake_partner_center
    with pytest.raises(ProviderError, match="No data available"):
        list(_provider(fake).billed_reconciliation_lines("G2099010001"))


def test_an_export_that_never_finishes_stops_after_the_configured_polls(fake_partner_center):
    fake = fake_partner_center
    fake.export_running_polls = 100
    fake.add_invoice("G2026110001", "2026-11-01", "2026-11-30", [_line(1)])
    provider = PartnerCenterProvider.from_config(fake.config(PARTNER_CENTER_EXPORT_MAX_POLLS=3))

    with pytest.raises(ProviderError, match="did not finish after 3 polls"):
        provider.billed_reconciliation_lines("G2026110001")
    assert len(fake.calls("GET", "/v1.0/reports/partners/billing/operations/*")) == 3


def test_retry_after_of_the_export_is_honoured(fake_partner_center, monkeypatch):
    fake = fake_partner_center
    fake.export_retry_after = "7"
    fake.add_invoice("G2026110001", "2026-11-01", "2026-11-30", [_line(1)])
    slept: list[float] = []
    monkeypatch.setattr("app.csp.partner_center_billing.time.sleep", slept.append)

    assert len(list(_provider(fake).billed_reconciliation_lines("G2026110001"))) == 1
    assert slept == [7.0, 7.0]  # before the first poll (the 202's) and after the "running" answer


def test_an_operation_on_another_host_is_not_followed(fake_partner_center):
    """Graph reached as localhost hands back an operation on 127.0.0.1: another host, so our token is not sent."""
    fake = fake_partner_center
    fake.add_invoice("G2026110001", "2026-11-01", "2026-11-30", [_line(1)])
    graph = fake.base_url.replace("127.0.0.1", "localhost")
    provider = PartnerCenterProvider.from_config(fake.config(GRAPH_BASE_URL=graph))

    with pytest.raises(ProviderError, match="another host"):
        provider.billed_reconciliation_lines("G2026110001")
    assert len(fake.calls("POST", EXPORT)) == 1
    assert not fake.calls("GET", "/v1.0/reports/partners/billing/operations/*")


def test_blobs_are_gunzipped_member_by_member_and_a_cut_one_is_an_error():
    import gzip

    from app.csp.partner_center_billing import _gunzip, _split_lines

    data = gzip.compress(b'{"a": 1}\n{"a": 2}\n') + gzip.compress(b'{"a": 3}\n')
    pieces = [data[i : i + 7] for i in range(0, len(data), 7)]  # cut anywhere, as the network does
    assert list(_split_lines(_gunzip(pieces))) == [b'{"a": 1}', b'{"a": 2}', b'{"a": 3}']
    assert list(_split_lines(_gunzip([b'{"a": 1}\n', b'{"a"', b": 2}"]))) == [b'{"a": 1}', b'{"a": 2}']
    with pytest.raises(ValueError, match="cut short"):
        list(_gunzip([data[:-12]]))

"""PartnerCenterProvider.get_price_sheet against the local HTTPS fake: Microsoft's partner API path, App+User token for
that host's audience, the month filter (https://learn.microsoft.com/partner-center/developer/get-a-price-sheet), the
zip it answers to ``Accept-Encoding: deflate``, and failures as ProviderError."""

from __future__ import annotations

import datetime as dt

import pytest

from app import clock
from app.csp import sandbox_pricesheet
from app.csp.base import ProviderError, new_correlation_id
from app.csp.partner_center import PartnerCenterProvider
from app.services import pricesheet

PATH = "/v1.0/sales/pricesheets(Market='NZ',PricesheetView='updatedlicensebased')/$value"


def _provider(fake) -> PartnerCenterProvider:
    return PartnerCenterProvider.from_config(fake.config())


def _month(offset: int) -> dt.date:
    first = clock.today().replace(day=1)
    for _ in range(abs(offset)):
        first = pricesheet.next_month_start(first) if offset > 0 else (first - dt.timedelta(days=1)).replace(day=1)
    return first


def test_the_current_sheet_is_an_app_user_get_on_the_partner_api(fake_partner_center):
    fake = fake_partner_center
    fake.price_sheets[("NZ", "current")] = sandbox_pricesheet.sheet("NZ", None, clock.today())
    correlation = new_correlation_id()

    data = _provider(fake).get_price_sheet("nz", correlation_id=correlation)

    (call,) = fake.calls("GET", "/v1.0/sales/pricesheets*")
    assert call.path == PATH and call.status == 200
    assert call.token == "user"  # App+User: the page says application-only is not supported
    assert call.header("MS-CorrelationId") == correlation and call.header("MS-RequestId")
    assert "deflate" in call.header("Accept-Encoding")
    # A token for the partner API's own audience, from the partner's refresh token.
    assert any(t.grant == "refresh_token" and "api.partner.microsoft.com" in t.scope for t in fake.token_requests), (
        fake.token_requests
    )
    assert data[:4] == b"PK\x03\x04"  # the zip asked for with Accept-Encoding: deflate
    rows, result = pricesheet.read_sheet(data, "NZ")
    assert result.rows == 30 and result.months == [clock.today().replace(day=1)]


@pytest.mark.parametrize(
    "offset, key", [(-2, "history"), (1, "future")], ids=["a past month: history", "next month: future"]
)
def test_another_month_uses_the_documented_timeline(fake_partner_center, offset, key):
    fake = fake_partner_center
    month = _month(offset)
    fake.price_sheets[("NZ", f"{month:%Y%m}" if key == "history" else key)] = sandbox_pricesheet.sheet(
        "NZ", month, clock.today()
    )
    data = _provider(fake).get_price_sheet("NZ", month=f"{month:%Y%m}", correlation_id=new_correlation_id())
    _, result = pricesheet.read_sheet(data, "NZ")
    assert result.months == [month]


def test_no_sheet_or_a_bad_request_is_a_provider_error(fake_partner_center):
    client = _provider(fake_partner_center)
    with pytest.raises(ProviderError) as missing:
        client.get_price_sheet("NZ", correlation_id=new_correlation_id())
    assert missing.value.status == 404
    calls = len(fake_partner_center.requests)
    for market, month in (("NZL", None), ("NZ", "2026-1")):
        with pytest.raises(ProviderError) as refused:
            client.get_price_sheet(market, month=month, correlation_id=new_correlation_id())
        assert refused.value.status == 400
    assert len(fake_partner_center.requests) == calls  # refused before anything was sent


def test_busy_partner_api_is_retried(fake_partner_center):
    fake = fake_partner_center
    fake.price_sheets[("NZ", "current")] = sandbox_pricesheet.sheet("NZ", None, clock.today())
    fake.fail("GET", "/v1.0/sales/pricesheets*", 503, times=1)
    data = _provider(fake).get_price_sheet("NZ", correlation_id=new_correlation_id())
    first, second = fake.calls("GET", "/v1.0/sales/pricesheets*")
    assert (first.status, second.status) == (503, 200)
    assert first.header("MS-RequestId") == second.header("MS-RequestId")
    assert pricesheet.read_sheet(data, "NZ")[1].rows == 30

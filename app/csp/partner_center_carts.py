"""Partner Center's carts and checkout (issue 13), mixed into PartnerCenterProvider (uses its ``_request``, ``_json``,
``_fail``, ``_unexpected`` and ``get_subscription``).

- ``POST /v1/customers/{id}/carts`` with ``lineItems``: each ``id``, ``catalogItemId`` (``ProductId:SkuId:
  AvailabilityId``; the SKU alone when the availability id is not known), ``quantity``, ``billingCycle``,
  ``termDuration`` and, co-terming, ``customTermEndDate``; the answer is the cart with its ``id`` and
  ``expirationTimeStamp`` (carts expire 7 days after they are made)
  (https://learn.microsoft.com/partner-center/developer/create-a-cart,
  https://learn.microsoft.com/partner-center/developer/cart-resources).
- ``POST /v1/customers/{id}/carts/{cartId}/checkout``: a CartCheckoutResult — ``orders`` (each with ``lineItems``
  naming the ``subscriptionId`` each made) and ``orderErrors``; idempotent per cart: a cart checked out before answers
  with what its first checkout made (https://learn.microsoft.com/partner-center/developer/checkout-a-cart). Each new
  subscription is then read for its term, dates and refundable quantities.

Both carry the caller's MS-RequestId (the same on every try of one order step,
https://learn.microsoft.com/partner-center/developer/headers).
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from typing import Any

from app.csp.base import Cart, CartLineItem, ProviderSubscription


def _timestamp(value: Any) -> dt.datetime:
    """An ISO 8601 timestamp (``2026-12-08T10:00:00Z``) as naive UTC."""
    parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed.astimezone(dt.UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


def cart_line_body(number: int, item: CartLineItem) -> dict[str, Any]:
    """One CartLineItem as Microsoft's documented request body names it."""
    catalog_item = f"{item.offer_id}:{item.availability_id}" if item.availability_id else item.offer_id
    body: dict[str, Any] = {
        "id": number,
        "catalogItemId": catalog_item,
        "quantity": item.quantity,
        "billingCycle": item.billing_cycle,
        "termDuration": item.term,
    }
    if item.custom_term_end is not None:
        body["customTermEndDate"] = f"{item.custom_term_end.isoformat()}T00:00:00Z"
    return body


class PartnerCenterCarts:
    def create_cart(
        self, tenant_id: str, line_items: list[CartLineItem], *, correlation_id: str, request_id: str | None = None
    ) -> Cart:
        path = f"/v1/customers/{tenant_id}/carts"
        body = {"lineItems": [cart_line_body(number, item) for number, item in enumerate(line_items)]}
        response = self._request(
            "POST", path, correlation_id=correlation_id, body=body, creates=True, request_id=request_id
        )
        data = self._json(response, "POST", path, correlation_id)
        try:
            return Cart(
                cart_id=str(data["id"]),
                expires_at=_timestamp(data["expirationTimeStamp"]),
                line_items=tuple(line_items),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise self._unexpected("POST", path, correlation_id, response.status_code, exc) from exc

    def checkout_cart(
        self, tenant_id: str, cart_id: str, *, correlation_id: str, request_id: str | None = None
    ) -> list[ProviderSubscription]:
        path = f"/v1/customers/{tenant_id}/carts/{cart_id}/checkout"
        response = self._request(
            "POST", path, correlation_id=correlation_id, body={}, creates=True, request_id=request_id
        )
        data = self._json(response, "POST", path, correlation_id)
        try:
            made = [
                str(line["subscriptionId"])
                for order in data.get("orders") or []
                for line in order["lineItems"]
                if line.get("subscriptionId")
            ]
            errors = [f"{e.get('code', '')} {e.get('description', '')}".strip() for e in data.get("orderErrors") or []]
        except (KeyError, TypeError, AttributeError) as exc:
            raise self._unexpected("POST", path, correlation_id, response.status_code, exc) from exc
        if errors and not made:
            raise self._fail("POST", path, correlation_id, 400, "Partner Center refused the order", "; ".join(errors))
        if not made:
            raise self._fail(
                "POST", path, correlation_id, response.status_code, "Partner Center named no subscription", ""
            )
        return [self.get_subscription(tenant_id, sid, correlation_id=correlation_id) for sid in made]

    def custom_term_end_dates(
        self, tenant_id: str, term: str, billing_cycle: str, *, correlation_id: str
    ) -> list[dt.date]:
        """GET …/subscriptions/customTermEndDates?term_duration=…&billing_cycle=…: its ``items``' each
        ``allowedCustomTermEndDate`` (calendar month ends and existing subscriptions' term ends)."""
        query = urllib.parse.urlencode({"term_duration": term, "billing_cycle": billing_cycle})
        path = f"/v1/customers/{tenant_id}/subscriptions/customTermEndDates"
        response = self._request("GET", f"{path}?{query}", correlation_id=correlation_id)
        data = self._json(response, "GET", path, correlation_id)
        try:
            return sorted({dt.date.fromisoformat(str(i["allowedCustomTermEndDate"])[:10]) for i in data["items"]})
        except (KeyError, TypeError, ValueError) as exc:
            raise self._unexpected("GET", path, correlation_id, response.status_code, exc) from exc

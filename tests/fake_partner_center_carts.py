"""The fake Partner Center's carts and checkout (issue 13, ordering), mixed into FakePartnerCenter.

``POST /v1/customers/{id}/carts`` (the same MS-RequestId again: the cart it made) and
``POST …/carts/{cartId}/checkout`` (a cart checked out before: what its first checkout made; an expired one: 400),
as https://learn.microsoft.com/partner-center/developer/create-a-cart and …/checkout-a-cart describe them. What the
client sent is in ``requests`` (for the body-shape tests); ``carts`` holds the carts by id.
"""

from __future__ import annotations

import calendar
import datetime as dt
import uuid
from typing import Any

from werkzeug.wrappers import Response

TERM_MONTHS = {"P1M": 1, "P1Y": 12, "P3Y": 36}
CYCLES = {"monthly", "annual", "triennial"}
LINE_FIELDS = {"id", "catalogItemId", "quantity", "billingCycle", "termDuration", "customTermEndDate"}


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _add_months(day: dt.date, months: int) -> dt.date:
    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    return day.replace(year=year, month=month, day=min(day.day, calendar.monthrange(year, month)[1]))


class FakeCarts:
    def _cart_route(self, method: str, tenant_id: str, rest: list[str], body: Any) -> Response | None:
        """The answer to a cart request, or None when it is not one."""
        if rest == ["carts"] and method == "POST":
            request_id = self._request_id
            if request_id and request_id in self.carts_by_request:  # the same request again: the cart it made
                return self._json(201, self.carts[self.carts_by_request[request_id]])
            return self._create_cart(tenant_id, body or {}, request_id)
        if len(rest) == 3 and rest[0] == "carts" and rest[2] == "checkout" and method == "POST":
            return self._checkout(tenant_id, rest[1])
        if rest == ["subscriptions", "customTermEndDates"] and method == "GET":
            return self._custom_term_end_dates(tenant_id)
        return None

    def _create_cart(self, tenant_id: str, body: dict[str, Any], request_id: str | None) -> Response:
        items = body.get("lineItems")
        if not isinstance(items, list) or not items:
            return self._error(400, 400, "lineItems: a cart needs at least one line item")
        for item in items:
            unknown = set(item) - LINE_FIELDS
            if unknown:
                return self._error(400, 400, f"unknown line item fields {sorted(unknown)}")
            if not (
                str(item.get("catalogItemId", "")).count(":") in (1, 2)
                and isinstance(item.get("quantity"), int)
                and item["quantity"] >= 1
                and item.get("termDuration") in TERM_MONTHS
                and item.get("billingCycle") in CYCLES
            ):
                return self._error(400, 400, f"invalid line item {item}")
        now = dt.datetime.now(dt.UTC)
        cart_id = str(uuid.uuid4())
        cart = {
            "id": cart_id,
            "creationTimeStamp": _iso(now),
            "lastModifiedTimeStamp": _iso(now),
            "expirationTimeStamp": _iso(now + dt.timedelta(days=7)),
            "lastModifiedUser": "fake@partner.example",
            "lineItems": [dict(item) for item in items],
            "status": "Active",
            "attributes": {"objectType": "Cart"},
            "_tenant": tenant_id,
        }
        self.carts[cart_id] = cart
        if request_id:
            self.carts_by_request[request_id] = cart_id
        return self._json(201, {k: v for k, v in cart.items() if not k.startswith("_")})

    def _checkout(self, tenant_id: str, cart_id: str) -> Response:
        cart = self.carts.get(cart_id)
        if cart is None or cart["_tenant"] != tenant_id:
            return self._error(404, 404, f"cart {cart_id} not found")
        if cart["status"] == "Ordered":  # checkout is idempotent per cart: its first answer
            return self._json(201, cart["_result"])
        now = dt.datetime.now(dt.UTC)
        if now >= dt.datetime.fromisoformat(cart["expirationTimeStamp"].replace("Z", "+00:00")):
            return self._error(400, 400, f"cart {cart_id} has expired")
        order_id, lines = uuid.uuid4().hex, []
        for number, item in enumerate(cart["lineItems"]):
            subscription_id = str(uuid.uuid4())
            offer_id = ":".join(str(item["catalogItemId"]).split(":")[:2])
            start = now.date()
            end = item.get("customTermEndDate")
            end = end[:10] if end else _add_months(start, TERM_MONTHS[item["termDuration"]]).isoformat()
            until = _iso(now + dt.timedelta(hours=168))
            self.subscriptions[tenant_id][subscription_id] = {
                "id": subscription_id,
                "offerId": offer_id,
                "offerName": offer_id,
                "friendlyName": offer_id,
                "quantity": item["quantity"],
                "unitType": "Licenses",
                "creationDate": _iso(now),
                "effectiveStartDate": f"{start.isoformat()}T00:00:00Z",
                "commitmentEndDate": f"{end}T00:00:00Z",
                "cancellationAllowedUntilDate": until,
                "refundableQuantity": {
                    "totalQuantity": item["quantity"],
                    "details": [{"quantity": item["quantity"], "allowedUntilDateTime": until}],
                },
                "status": "active",
                "autoRenewEnabled": True,
                "billingType": "license",
                "billingCycle": item["billingCycle"],
                "termDuration": item["termDuration"],
                "orderId": order_id,
                "attributes": {"objectType": "Subscription"},
            }
            lines.append(
                {
                    "lineItemNumber": number,
                    "offerId": item["catalogItemId"],
                    "subscriptionId": subscription_id,
                    "termDuration": item["termDuration"],
                    "transactionType": "New",
                    "friendlyName": offer_id,
                    "quantity": item["quantity"],
                }
            )
        result = {
            "orders": [
                {
                    "id": order_id,
                    "alternateId": order_id[:12],
                    "referenceCustomerId": tenant_id,
                    "billingCycle": cart["lineItems"][0]["billingCycle"],
                    "lineItems": lines,
                    "creationDate": _iso(now),
                    "status": "completed",
                    "attributes": {"objectType": "Order"},
                }
            ],
            "orderErrors": [],
            "attributes": {"objectType": "CartCheckoutResult"},
        }
        cart["status"], cart["_result"] = "Ordered", result
        return self._json(201, result)

    def _custom_term_end_dates(self, tenant_id: str) -> Response:
        """Calendar month ends within the term and the term ends of active subscriptions within it, in Microsoft's
        documented shape (https://learn.microsoft.com/partner-center/developer/custom-term-end-dates)."""
        term = self._query.get("term_duration")
        if term not in TERM_MONTHS:
            return self._error(400, 400, "term_duration must be P1M, P1Y or P3Y")
        today = dt.datetime.now(dt.UTC).date()
        limit = _add_months(today, TERM_MONTHS[term])
        items, day = [], today
        while True:
            end = day.replace(day=calendar.monthrange(day.year, day.month)[1])
            if end > limit:
                break
            if end > today:
                items.append(
                    {
                        "allowedCustomTermEndDateType": "calendarMonthAligned",
                        "allowedCustomTermEndDate": f"{end}T00:00:00",
                    }
                )
            day = end + dt.timedelta(days=1)
        aligned: dict[str, list[str]] = {}
        for sub in self.subscriptions[tenant_id].values():
            end = sub["commitmentEndDate"][:10]
            if sub["status"] == "active" and today.isoformat() < end <= limit.isoformat():
                aligned.setdefault(end, []).append(sub["id"])
        for end, ids in sorted(aligned.items()):
            items.append(
                {
                    "allowedCustomTermEndDateType": "subscriptionAligned",
                    "cotermSubscriptionIds": ids,
                    "allowedCustomTermEndDate": f"{end}T00:00:00",
                }
            )
        return self._json(200, {"totalCount": len(items), "items": items, "attributes": {"objectType": "Collection"}})

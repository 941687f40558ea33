"""A fake Microsoft Partner Center for tests: a real local HTTPS server (pytest-httpserver, certificate from a trustme
test CA) that answers both the Partner Center REST v1 calls the portal makes and the token authority msal talks to.

Use it as a plugin (``pytest_plugins = ["tests.fake_partner_center"]``) or import both fixtures into a test module::

    from tests.fake_partner_center import fake_partner_center, fake_partner_center_server  # noqa: F401

    def test_something(fake_partner_center):
        provider = PartnerCenterProvider.from_config(fake_partner_center.config())
        fake_partner_center.fail("HEAD", "/v1/domains/*", 429, times=1, retry_after=1)
        ...
        assert fake_partner_center.requests[-1].token == "app"

The server lives for the test session; ``fake_partner_center`` resets its state for every test. What it keeps:

- ``taken``: onmicrosoft prefixes that exist (HEAD answers 200, creating a customer with one answers 409);
- ``customers``, ``subscriptions``, ``users``, ``agreements``: what the client created;
- ``requests``: every API call (method, path, headers, JSON body, which token: "app", "user" or None, time, status);
- ``token_requests``: every call to the token endpoint, with its ``grant`` (client_credentials or refresh_token).

Failure injection: ``fail(method, path_glob, status, times=1, retry_after=None)``, ``slow(method, path_glob,
times=1, seconds=None)`` (default: well past the client timeout of ``config()``), ``fail_token(status, times=1)``.
Like Partner Center, creating users and assigning licences answer 403 to an app-only token.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import fnmatch
import json
import re
import ssl
import threading
import time
import uuid
from typing import Any
from urllib.parse import unquote

import pytest
import trustme
from pytest_httpserver import HTTPServer
from werkzeug.wrappers import Request, Response

from tests.fake_partner_center_billing import FakeBilling
from tests.fake_partner_center_carts import FakeCarts

TENANT_ID = "6b7e3f0a-0c1d-4e55-9a10-5e2d0c0ffee1"  # the partner's own tenant (dummy)
CLIENT_ID = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
CLIENT_SECRET = "fake-client-secret"
REFRESH_TOKEN = "fake-refresh-token-0"
DEFAULT_TAKEN = ("enet123", "contosonz", "rivalcorp", "contoso", "microsoft")
DEFAULT_TIMEOUT_S = 0.5
APP_ONLY_FORBIDDEN = (  # Partner Center allows these only with App+User credentials
    re.compile(r"^/v1/customers/[^/]+/users$"),
    re.compile(r"^/v1/customers/[^/]+/users/[^/]+/licenseupdates$"),
    re.compile(r"^/v1/customers/[^/]+/users/[^/]+/licenses$"),
    re.compile(r"^/v1/customers/[^/]+/users/[^/]+$"),  # one user: read, update (state, password), delete
)
BOM = b"\xef\xbb\xbf"


@dataclasses.dataclass
class LoggedRequest:
    method: str
    path: str
    headers: dict[str, str]
    json: Any
    token: str | None  # "app", "user", or None (no token, or one the fake did not issue)
    at: float  # time.monotonic() when the request arrived
    status: int | None = None  # what the fake answered

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


@dataclasses.dataclass
class TokenRequest:
    grant: str  # client_credentials or refresh_token
    scope: str
    client_id: str
    at: float
    status: int | None = None


@dataclasses.dataclass
class _Rule:
    method: str
    path: str  # fnmatch glob
    times: int
    status: int = 0
    retry_after: str | None = None
    seconds: float = 0.0  # > 0: slow, not failing
    body: Any = None

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and self.method in ("*", method) and fnmatch.fnmatchcase(path, self.path)


WINDOW = dt.timedelta(hours=168)  # each purchase's and increase's refundable window


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class FakePartnerCenter(FakeCarts, FakeBilling):  # carts, billing: tests/fake_partner_center_*.py
    """State and handlers of the fake. One per server; ``reset()`` between tests."""

    def __init__(self, server: HTTPServer, ca_bundle: str):
        self.server = server
        self.ca_bundle = ca_bundle
        origin = f"https://127.0.0.1:{server.port}"
        self.base_url = origin
        self.authority = origin  # msal takes the tenant as the first path segment, so the authority is a bare host
        self.tenant_id = TENANT_ID
        self.client_id = CLIENT_ID
        self.client_secret = CLIENT_SECRET
        self.refresh_token = REFRESH_TOKEN
        self.timeout_s = DEFAULT_TIMEOUT_S
        self._lock = threading.Lock()
        self.reset()

    # --- set-up for tests ---------------------------------------------------------------------------------------

    def reset(self) -> None:
        release = getattr(self, "_release", None)
        if release is not None:
            release.set()  # let slow handlers of the previous test finish now
        self.server.clear_log()  # pytest-httpserver's own log; ours is self.requests
        self.server.clear_handler_errors()
        with self._lock:
            self._release = threading.Event()
            self.taken: set[str] = set(DEFAULT_TAKEN)
            self.customers: dict[str, dict[str, Any]] = {}
            self.orders_by_request: dict[str, Any] = {}  # MS-RequestId → the order it made (idempotency)
            self.carts: dict[str, dict[str, Any]] = {}  # issue 13, ordering: cart id → cart
            self.carts_by_request: dict[str, str] = {}  # MS-RequestId → the cart it made
            self.agreements: dict[str, list[dict[str, Any]]] = {}
            self.subscriptions: dict[str, dict[str, dict[str, Any]]] = {}  # tenant -> id -> subscription
            self.users: dict[str, dict[str, dict[str, Any]]] = {}  # tenant -> id -> user
            self.admin_passwords: dict[str, str] = {}  # tenant -> its first admin's temporary password (issue 15)
            self.offers: dict[str, tuple[str, str]] = {}  # offer id -> (sku id, sku part number)
            # issue 13, upgrades: offerId (product:sku) -> catalogItemIds it may move to (both eligibility types)
            self.transition_targets: dict[str, list[str]] = {}
            self.transitions: list[dict[str, Any]] = []  # the transitions posted
            self.requests: list[LoggedRequest] = []
            self.token_requests: list[TokenRequest] = []
            self._rules: list[_Rule] = []
            self._token_rules: list[_Rule] = []
            self._tokens: dict[str, str] = {}  # access token -> "app" | "user"
            self._refresh_tokens: set[str] = {REFRESH_TOKEN}
            self.bom = True  # answer JSON with a UTF-8 byte order mark, as some Microsoft APIs do
            self.users_page_size = 100  # users per page of GET …/users (the next page: MS-ContinuationToken)
            self.price_sheets: dict[tuple[str, str], bytes] = {}  # (market, "current" | "future" | YYYYMM) → CSV
            self._reset_billing()  # issue 14: invoices, Graph's billed reconciliation exports

    def release(self) -> None:
        """End every slow answer now (called after each test)."""
        self._release.set()

    def config(self, **overrides: Any) -> dict[str, Any]:
        """Settings pointing the portal's PartnerCenterProvider at this fake (app.config keys)."""
        settings = {
            "CSP_PROVIDER": "partner_center",
            "PARTNER_CENTER_BASE_URL": self.base_url,
            "PARTNER_API_BASE_URL": self.base_url,  # the partner API host (price sheets): this fake too
            "PARTNER_CENTER_AUTHORITY": self.authority,
            "PARTNER_CENTER_TENANT_ID": self.tenant_id,
            "PARTNER_CENTER_CLIENT_ID": self.client_id,
            "PARTNER_CENTER_CLIENT_SECRET": self.client_secret,
            "PARTNER_CENTER_REFRESH_TOKEN": self.refresh_token,
            "PARTNER_CENTER_CA_BUNDLE": self.ca_bundle,
            "PARTNER_CENTER_TIMEOUT_S": self.timeout_s,
            "PARTNER_CENTER_MAX_TRIES": 3,
            # Read by PartnerCenterProvider.from_config though not by config.py: keep retries fast in tests.
            "PARTNER_CENTER_BACKOFF_S": 0.01,
            "PARTNER_CENTER_RETRY_AFTER_CAP_S": 2.0,
            "GRAPH_BASE_URL": self.base_url,  # issue 14: Graph's billing exports are this fake's too
            "PARTNER_CENTER_EXPORT_POLL_S": 0,  # poll again at once unless the fake says Retry-After
        }
        settings.update(overrides)
        return settings

    def environ(self) -> dict[str, str]:
        """The same settings as environment variables, for ``config.load`` / ``create_app(environ=...)``."""
        return {key: str(value) for key, value in self.config().items() if not key.endswith(("BACKOFF_S", "CAP_S"))}

    def fail(
        self,
        method: str,
        path: str,
        status: int,
        *,
        times: int = 1,
        retry_after: float | str | None = None,
        body: Any = None,
    ) -> None:
        """The next ``times`` requests matching ``method`` ("*" for any) and ``path`` (a glob) answer ``status``."""
        retry = None if retry_after is None else str(retry_after)
        with self._lock:
            self._rules.append(_Rule(method.upper(), path, times, status=status, retry_after=retry, body=body))

    def slow(self, method: str, path: str, *, times: int = 1, seconds: float | None = None) -> None:
        """The next ``times`` matching requests answer only after ``seconds`` (default: twice the timeout)."""
        with self._lock:
            self._rules.append(_Rule(method.upper(), path, times, seconds=seconds or self.timeout_s * 2 + 0.2))

    def fail_token(self, status: int = 400, *, times: int = 1, error: str = "invalid_client") -> None:
        """The next ``times`` token requests answer ``status`` with an OAuth error (5xx: an empty body)."""
        with self._lock:
            self._token_rules.append(_Rule("POST", "*", times, status=status, body=error))

    def add_offer(self, offer_id: str, sku_id: str, sku_part_number: str) -> None:
        """What SKU an order for ``offer_id`` adds (otherwise one derived from the offer id)."""
        self.offers[offer_id] = (sku_id, sku_part_number)

    def add_customer(self, prefix: str, tenant_id: str | None = None) -> str:
        """A customer that already exists (its domain taken); its tenant id."""
        tenant_id = tenant_id or str(uuid.uuid4())
        with self._lock:
            self.taken.add(prefix)
            self.customers[tenant_id] = {
                "id": tenant_id,
                "companyProfile": {"tenantId": tenant_id, "domain": f"{prefix}.onmicrosoft.com"},
            }
            self.subscriptions.setdefault(tenant_id, {})
            self.users.setdefault(tenant_id, {})
        return tenant_id

    def calls(self, method: str, path_glob: str = "*") -> list[LoggedRequest]:
        return [r for r in self.requests if r.method == method.upper() and fnmatch.fnmatchcase(r.path, path_glob)]

    # --- HTTP ---------------------------------------------------------------------------------------------------

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None, *, bom: bool = True) -> Response:
        payload = json.dumps(body).encode()
        if self.bom and bom:
            payload = BOM + payload
        return Response(payload, status=status, headers=headers or {}, content_type="application/json; charset=utf-8")

    def _error(self, status: int, code: int | str, description: str, headers: dict[str, str] | None = None):
        return self._json(
            status, {"code": code, "description": description, "data": [], "source": "FakePartnerCenter"}, headers
        )

    def handle(self, request: Request) -> Response:
        path = unquote(request.path)
        if path.startswith("/v1/"):
            return self._api(request, path)
        if path.startswith("/v1.0/sales/pricesheets(") or path.startswith("/v1.0/reports/partners/billing/"):
            return self._api(request, path)
        if path.startswith("/blobs/"):  # issue 14: the export's blobs (Azure Blob Storage, SAS token)
            return self._blob(request, path)
        if path.endswith("/v2.0/.well-known/openid-configuration"):
            tenant = path.split("/")[1]
            base = f"{self.authority}/{tenant}"
            return self._json(
                200,
                {
                    "issuer": f"{base}/v2.0",
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                    "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                    "subject_types_supported": ["pairwise"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                },
                bom=False,
            )  # the authority answers plain JSON (msal would choke on a BOM)
        if path.endswith("/oauth2/v2.0/token") and request.method == "POST":
            return self._token(request)
        return self._error(404, 404, f"no such resource {path}")

    def _auth_json(self, status: int, body: Any) -> Response:
        return self._json(status, body, bom=False)

    def _token(self, request: Request) -> Response:
        form = request.form
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        basic = request.headers.get("Authorization", "")
        if basic.startswith("Basic "):
            client_id, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
        entry = TokenRequest(
            grant=form.get("grant_type", ""), scope=form.get("scope", ""), client_id=client_id, at=time.monotonic()
        )
        with self._lock:
            self.token_requests.append(entry)
            rule = next((r for r in self._token_rules if r.times > 0), None)
            if rule:
                rule.times -= 1
        if rule:
            entry.status = rule.status
            if rule.status >= 500:
                return Response("", status=rule.status)
            return self._auth_json(
                rule.status,
                {"error": rule.body, "error_description": "AADSTS7000215: injected", "error_codes": [7000215]},
            )
        if client_id != self.client_id or secret != self.client_secret:
            entry.status = 401
            return self._auth_json(401, {"error": "invalid_client", "error_description": "AADSTS7000215: bad secret"})
        now = int(time.time())
        if entry.grant == "client_credentials":
            token = f"app-{uuid.uuid4()}"
            with self._lock:
                self._tokens[token] = "app"
            entry.status = 200
            return self._auth_json(
                200, {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}
            )
        if entry.grant == "refresh_token":
            with self._lock:
                if form.get("refresh_token") not in self._refresh_tokens:
                    entry.status = 400
                    return self._auth_json(400, {"error": "invalid_grant", "error_description": "AADSTS70000: bad RT"})
                token, new_refresh = f"user-{uuid.uuid4()}", f"fake-refresh-token-{uuid.uuid4()}"
                self._tokens[token] = "user"
                self._refresh_tokens.add(new_refresh)
            uid = "a1b2c3d4-0000-4000-8000-000000000001"
            claims = {
                "aud": self.client_id,
                "iss": f"{self.authority}/{self.tenant_id}/v2.0",
                "iat": now,
                "nbf": now,
                "exp": now + 3600,
                "oid": uid,
                "sub": uid,
                "tid": self.tenant_id,
                "preferred_username": "admin.agent@partner.example",
                "name": "Admin Agent",
                "ver": "2.0",
            }
            id_token = ".".join((_b64url(b'{"alg":"none","typ":"JWT"}'), _b64url(json.dumps(claims).encode()), ""))
            entry.status = 200
            return self._auth_json(
                200,
                {
                    "token_type": "Bearer",
                    "expires_in": 3599,
                    "ext_expires_in": 3599,
                    "scope": "https://api.partnercenter.microsoft.com/user_impersonation",
                    "access_token": token,
                    "refresh_token": new_refresh,
                    "id_token": id_token,
                    "client_info": _b64url(json.dumps({"uid": uid, "utid": self.tenant_id}).encode()),
                },
            )
        entry.status = 400
        return self._auth_json(400, {"error": "unsupported_grant_type", "error_description": entry.grant})

    def _api(self, request: Request, path: str) -> Response:
        method = request.method.upper()
        auth = request.headers.get("Authorization", "")
        token_kind = self._tokens.get(auth[7:]) if auth.startswith("Bearer ") else None
        body = request.get_json(silent=True) if request.data else None  # None too when it is not JSON
        entry = LoggedRequest(method, path, dict(request.headers.items()), body, token_kind, time.monotonic())
        with self._lock:
            self.requests.append(entry)
            rule = next((r for r in self._rules if r.matches(method, path)), None)
            if rule:
                rule.times -= 1
            release = self._release
        response = None
        if rule and rule.seconds:
            release.wait(rule.seconds)
        elif rule:
            headers = {"Retry-After": rule.retry_after} if rule.retry_after is not None else {}
            if rule.body is not None:
                response = self._json(rule.status, rule.body, headers)
            else:
                response = self._error(rule.status, rule.status, f"injected {rule.status}", headers)
        if response is None:
            if token_kind is None:
                response = self._error(401, 401, "Unauthorized: no valid access token")
            elif token_kind == "app" and any(p.match(path) for p in APP_ONLY_FORBIDDEN):
                response = self._error(403, 403, "This operation is only supported with App+User credentials")
            else:
                with self._lock:
                    self._request_id = entry.header("MS-RequestId")
                    self._query = dict(request.args)  # issue 13: customTermEndDates reads its query
                    self._continuation = entry.header("MS-ContinuationToken")
                    self._args = request.args.to_dict()  # issue 13: eligibilityType
                    if method == "GET" and path.rstrip("/") == "/v1/customers":
                        response = self._find_customers(request.args.get("filter", ""))
                    elif path.startswith("/v1.0/sales/pricesheets("):
                        response = self._price_sheet(method, path, request, token_kind)
                    elif (billing := self._billing_route(method, path, request, token_kind)) is not None:
                        response = billing  # issue 14: invoices, Graph's billed reconciliation export
                    else:
                        response = self._route(method, path, body)
        entry.status = response.status_code
        return response

    # --- Partner Center, the part the portal uses ---------------------------------------------------------------

    def _route(self, method: str, path: str, body: Any) -> Response:
        parts = path.strip("/").split("/")[1:]  # without "v1"
        if parts[:1] == ["domains"] and len(parts) == 2 and method == "HEAD":
            prefix = parts[1].lower().removesuffix(".onmicrosoft.com")
            return Response(status=200 if prefix in self.taken else 404)
        if parts == ["customers"] and method == "POST":
            return self._create_customer(body or {})
        if parts[:1] != ["customers"] or len(parts) < 3:
            return self._error(404, 404, f"no such resource {path}")
        tenant_id, rest = parts[1], parts[2:]
        if tenant_id not in self.customers:
            return self._error(404, 600, f"customer {tenant_id} not found")
        if rest == ["agreements"] and method == "POST":
            self.agreements.setdefault(tenant_id, []).append(body)
            return self._json(201, dict(body or {}, attributes={"objectType": "Agreement"}))
        if rest == ["subscribedskus"] and method == "GET":
            return self._json(200, self._subscribed_skus(tenant_id))
        if rest[:1] in (["carts"], ["subscriptions"]) and (cart := self._cart_route(method, tenant_id, rest, body)):
            return cart  # issue 13, ordering
        if rest == ["orders"] and method == "POST":
            request_id = self._request_id
            if request_id and request_id in self.orders_by_request:  # the same request again: its first answer
                return self._json(201, self.orders_by_request[request_id])
            response = self._create_order(tenant_id, body or {})
            if request_id and response.status_code == 201:
                self.orders_by_request[request_id] = json.loads(response.get_data().lstrip(BOM))
            return response
        if rest[:1] == ["subscriptions"] and len(rest) == 3 and rest[2] in ("transitionEligibilities", "transitions"):
            return self._transition_route(method, tenant_id, rest[1], rest[2], body or {})  # issue 13: upgrades
        if rest[:1] == ["subscriptions"] and len(rest) == 2 and method in ("GET", "PATCH"):
            subscription = self.subscriptions[tenant_id].get(rest[1])
            if subscription is None:
                return self._error(404, 800, f"subscription {rest[1]} not found")
            if method == "PATCH":
                refused = self._scheduled_rules(subscription, body or {})  # issue 13: scheduled changes
                if refused is not None:
                    return refused
                refused = self._window_rules(subscription, body or {})
                if refused is not None:
                    return refused
                for key in ("quantity", "autoRenewEnabled"):
                    if key in (body or {}):
                        subscription[key] = body[key]
                if not isinstance(subscription["quantity"], int) or subscription["quantity"] < 1:
                    return self._error(400, 800, "quantity must be a whole number of at least 1")
            return self._json(200, subscription)
        if rest == ["subscriptions"] and method == "GET":
            items = list(self.subscriptions[tenant_id].values())
            return self._json(
                200, {"totalCount": len(items), "items": items, "attributes": {"objectType": "Collection"}}
            )
        if rest == ["users"] and method == "GET":
            return self._json(200, self._user_page(tenant_id))
        if rest == ["users"] and method == "POST":
            return self._create_user(tenant_id, body or {})
        if rest[:1] == ["users"] and len(rest) == 3 and rest[2] == "licenses" and method == "GET":
            user = self.users[tenant_id].get(rest[1])
            if user is None:
                return self._error(404, 404, f"user {rest[1]} not found")
            items = [
                {
                    "servicePlans": [],
                    "productSku": {"id": sku_id, "name": sku_id, "skuPartNumber": sku_id, "targetType": "User"},
                    "attributes": {"objectType": "License"},
                }
                for sku_id in user["licenses"]
            ]
            return self._json(
                200, {"totalCount": len(items), "items": items, "attributes": {"objectType": "Collection"}}
            )
        if rest[:1] == ["users"] and len(rest) == 3 and rest[2] == "licenseupdates" and method == "POST":
            user = self.users[tenant_id].get(rest[1])
            if user is None:
                return self._error(404, 404, f"user {rest[1]} not found")
            assign = [item["skuId"] for item in (body or {}).get("licensesToAssign", [])]
            remove = list((body or {}).get("licensesToRemove", []))
            user["licenses"] = sorted((set(user["licenses"]) | set(assign)) - set(remove))
            return self._json(
                201,
                {
                    "licensesToAssign": [{"skuId": s, "excludedPlans": None} for s in assign],
                    "licensesToRemove": remove,
                    "licenseWarnings": [],
                    "attributes": {"objectType": "LicenseUpdate"},
                },
            )
        if rest[:1] == ["users"] and len(rest) == 2 and method in ("GET", "PATCH", "DELETE"):
            return self._one_user(method, tenant_id, rest[1], body)
        return self._error(404, 404, f"no such resource {method} {path}")

    # -- issue 13, renewals and upgrades ---------------------------------------------------------------------------
    def _scheduled_rules(self, subscription: dict[str, Any], body: dict[str, Any]) -> Response | None:
        """PATCH scheduledNextTermInstructions ({product: {productId, skuId, availabilityId, billingCycle,
        termDuration}, quantity}, or null) only while auto-renew is on; any mid-term change (quantity, auto-renew)
        deletes what was scheduled (https://learn.microsoft.com/partner-center/developer/create-scheduled-changes)."""
        if "quantity" in body or "autoRenewEnabled" in body:
            subscription["scheduledNextTermInstructions"] = None
        if "scheduledNextTermInstructions" not in body:
            return None
        instructions = body["scheduledNextTermInstructions"]
        if instructions is None:
            subscription["scheduledNextTermInstructions"] = None
            return None
        product = instructions.get("product") if isinstance(instructions, dict) else None
        if not isinstance(product, dict) or not all(product.get(k) for k in ("productId", "skuId", "availabilityId")):
            return self._error(400, 800, "scheduledNextTermInstructions.product needs productId, skuId, availabilityId")
        quantity = instructions.get("quantity")
        if not isinstance(quantity, int) or quantity < 1:
            return self._error(400, 800, "scheduledNextTermInstructions.quantity must be at least 1")
        if not subscription.get("autoRenewEnabled"):
            return self._error(400, 800, "Scheduled changes need autoRenewEnabled")
        subscription["scheduledNextTermInstructions"] = instructions
        return None

    def _transition_route(self, method: str, tenant_id: str, sub_id: str, what: str, body: dict[str, Any]):
        """GET transitionEligibilities (``transition_targets`` of the subscription's offer) and POST transitions:
        all seats convert the subscription; some go to a new subscription (its id: toSubscriptionId)
        (https://learn.microsoft.com/partner-center/developer/transition-a-new-commerce-subscription)."""
        subscription = self.subscriptions[tenant_id].get(sub_id)
        if subscription is None:
            return self._error(404, 800, f"subscription {sub_id} not found")
        offer = ":".join(str(subscription["offerId"]).split(":")[:2])
        targets = self.transition_targets.get(offer, [])
        if what == "transitionEligibilities" and method == "GET":
            if self._args.get("eligibilityType") not in ("immediate", "scheduled"):
                return self._error(400, 400, "eligibilityType: immediate or scheduled")
            items = [
                {
                    "catalogItemId": item,
                    "title": item,
                    "quantity": subscription["quantity"],
                    "eligibilities": [{"isEligible": True, "transitionType": "transition_only", "errors": []}],
                    "attributes": {"objectType": "TransitionEligibility"},
                }
                for item in targets
            ]
            collection = {"totalCount": len(items), "items": items, "attributes": {"objectType": "Collection"}}
            return self._json(200, collection)
        if what != "transitions" or method != "POST":
            return self._error(404, 404, f"no such resource {method} {what}")
        to_item, quantity = body.get("toCatalogItemId"), body.get("quantity")
        if to_item not in targets:
            return self._error(400, 800, f"{to_item} is not an eligible transition")
        if not isinstance(quantity, int) or not 1 <= quantity <= subscription["quantity"]:
            return self._error(400, 800, "quantity must be between 1 and the subscription's quantity")
        self.transitions.append(body)
        subscription["scheduledNextTermInstructions"] = None
        answer = dict(body, fromCatalogItemId=subscription["offerId"], attributes={"objectType": "Transition"})
        if quantity == subscription["quantity"]:
            subscription["offerId"] = to_item
            answer["toSubscriptionId"] = sub_id
        else:
            new_id = str(uuid.uuid4())
            self.subscriptions[tenant_id][new_id] = dict(
                subscription, id=new_id, offerId=to_item, quantity=quantity, refundableQuantity=None
            )
            subscription["quantity"] -= quantity
            answer["toSubscriptionId"] = new_id
        return self._json(200, answer)

    def _price_sheet(self, method: str, path: str, request: Request, token_kind: str) -> Response:
        """GET /v1.0/sales/pricesheets(Market='NZ',PricesheetView='updatedlicensebased')/$value: App+User only; the
        sheet set in ``price_sheets`` for its timeline (current, future or history's month), a zip of it when asked
        with ``Accept-Encoding: deflate``."""
        found = re.fullmatch(r"/v1\.0/sales/pricesheets\(Market='([A-Za-z]{2})',PricesheetView='(\w+)'\)/\$value", path)
        if method != "GET" or found is None:
            return self._error(404, 404, f"no such resource {method} {path}")
        if token_kind != "user":
            return self._error(400, 400, "This API supports App+User authentication only")
        market, view = found.group(1).upper(), found.group(2)
        timeline = request.args.get("timeline", "current")
        key = request.args.get("month", "") if timeline == "history" else timeline
        sheet = self.price_sheets.get((market, key)) if view == "updatedlicensebased" else None
        if sheet is None:
            return self._error(404, 404, f"no {view} price sheet for {market} ({key or 'no month'})")
        headers = {"Content-Disposition": "attachment; filename=sheets.csv"}
        if "deflate" in request.headers.get("Accept-Encoding", ""):
            import io
            import zipfile

            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
                archive.writestr("sheets.csv", sheet)
            sheet, headers = buffer.getvalue(), {"Content-Disposition": "attachment; filename=sheets.zip"}
        return Response(sheet, status=200, headers=headers, content_type="application/octet-stream")

    def _one_user(self, method: str, tenant_id: str, user_id: str, body: Any) -> Response:
        """GET, PATCH (``state``, names and ``usageLocation``; ``passwordProfile``: the password is checked, never
        kept) and DELETE of one user."""
        user = self.users[tenant_id].get(user_id)
        if user is None:
            return self._error(404, 404, f"user {user_id} not found")
        if method == "DELETE":
            del self.users[tenant_id][user_id]
            return Response(status=204)
        if method == "PATCH":
            body = body or {}
            if "state" in body and body["state"] not in ("active", "inactive"):
                return self._error(400, 400, "state must be active or inactive")
            if "passwordProfile" in body and not (body["passwordProfile"] or {}).get("password"):
                return self._error(400, 400, "passwordProfile.password is required")
            location = body.get("usageLocation", "NZ")
            if not (isinstance(location, str) and len(location) == 2 and location.isalpha()):
                return self._error(400, 400, "usageLocation must be a two-letter country code")
            names = ("state", "displayName", "usageLocation", "firstName", "lastName")  # issue 15: names too
            user.update({key: body[key] for key in names if key in body})
        public = {k: v for k, v in user.items() if k != "licenses"}
        return self._json(200, dict(public, userDomainType="none", attributes={"objectType": "CustomerUser"}))

    def _find_customers(self, filter_text: str) -> Response:
        """GET /v1/customers?filter={"Field": "Domain", "Value": …, "Operator": "starts_with"}: this partner's customers
        whose domain starts with the value (the one operator Partner Center's customers endpoint has)."""
        try:
            query = json.loads(filter_text)
            field, value, operator = query["Field"], str(query["Value"]).lower(), query["Operator"]
        except (ValueError, KeyError, TypeError):
            return self._error(400, 400, "filter must be a JSON field filter")
        if field != "Domain" or operator != "starts_with":
            return self._error(400, 400, "only a Domain starts_with filter is supported here")
        items = [c for c in self.customers.values() if str(c["companyProfile"]["domain"]).lower().startswith(value)]
        return self._json(200, {"totalCount": len(items), "items": items, "attributes": {"objectType": "Collection"}})

    def _create_customer(self, body: dict[str, Any]) -> Response:
        domain = str((body.get("companyProfile") or {}).get("domain", "")).lower()
        prefix = domain.removesuffix(".onmicrosoft.com")
        if not prefix or prefix == domain:
            return self._error(400, 2000, "companyProfile.domain must be a <prefix>.onmicrosoft.com domain")
        if prefix in self.taken:
            return self._error(409, 2002, f"The domain {domain} already exists")
        tenant_id = str(uuid.uuid4())
        self.taken.add(prefix)
        customer = {
            "id": tenant_id,
            "commerceId": str(uuid.uuid4()),
            "companyProfile": {
                "tenantId": tenant_id,
                "domain": domain,
                "companyName": (body.get("billingProfile") or {}).get("companyName"),
            },
            "billingProfile": body.get("billingProfile"),
            "relationshipToPartner": "reseller",
            "attributes": {"objectType": "Customer"},
        }
        self.customers[tenant_id] = customer
        self.subscriptions[tenant_id] = {}
        admin_id = str(uuid.uuid4())
        self.users[tenant_id] = {
            admin_id: {
                "id": admin_id,
                "userPrincipalName": f"admin@{domain}",
                "displayName": "admin",
                "state": "active",
                "licenses": [],
            }
        }
        # Microsoft's answer alone carries the first admin's temporary password (create-a-customer's response sample:
        # "userCredentials": {"userName": "admin", "password": ...}); it is in no later answer.
        self.admin_passwords[tenant_id] = "Fk" + uuid.uuid4().hex[:14] + "!7"
        answer = dict(customer, userCredentials={"userName": "admin", "password": self.admin_passwords[tenant_id]})
        return self._json(201, answer)

    def _sku_of(self, offer_id: str) -> tuple[str, str]:
        return self.offers.get(offer_id) or (str(uuid.uuid5(uuid.NAMESPACE_URL, offer_id)), offer_id.upper())

    def _create_order(self, tenant_id: str, body: dict[str, Any]) -> Response:
        now = dt.datetime.now(dt.UTC)
        line_items = []
        for item in body.get("lineItems", []):
            subscription_id = str(uuid.uuid4())
            start = now.date()
            self.subscriptions[tenant_id][subscription_id] = {
                "id": subscription_id,
                "offerId": item["offerId"],
                "offerName": item["offerId"],
                "friendlyName": item["offerId"],
                "quantity": int(item["quantity"]),
                "unitType": "Licenses",
                "creationDate": _iso(now),
                "effectiveStartDate": f"{start.isoformat()}T00:00:00Z",
                "commitmentEndDate": f"{start.replace(year=start.year + 1).isoformat()}T00:00:00Z",
                "cancellationAllowedUntilDate": _iso(now + dt.timedelta(days=7)),
                "refundableQuantity": {
                    "totalQuantity": int(item["quantity"]),
                    "details": [{"quantity": int(item["quantity"]), "allowedUntilDateTime": _iso(now + WINDOW)}],
                },
                "status": "active",
                "autoRenewEnabled": True,
                "billingType": "license",
                "billingCycle": body.get("billingCycle", "monthly"),
                "termDuration": "P1Y",
                "orderId": None,
                "attributes": {"objectType": "Subscription"},
            }
            line_items.append(
                {
                    "lineItemNumber": item.get("lineItemNumber", 0),
                    "offerId": item["offerId"],
                    "subscriptionId": subscription_id,
                    "quantity": int(item["quantity"]),
                }
            )
        order_id = uuid.uuid4().hex
        for item in line_items:
            self.subscriptions[tenant_id][item["subscriptionId"]]["orderId"] = order_id
        return self._json(
            201,
            {
                "id": order_id,
                "referenceCustomerId": tenant_id,
                "lineItems": line_items,
                "billingCycle": body.get("billingCycle", "monthly"),
                "status": "completed",
                "creationDate": _iso(now),
                "attributes": {"objectType": "Order"},
            },
        )

    def _window_rules(self, subscription: dict[str, Any], body: dict[str, Any]) -> Response | None:
        """Microsoft's 168-hour windows on a PATCH: ``status`` ``deleted`` only until cancellationAllowedUntilDate; a
        lower ``quantity`` only up to the refundable seats (newest first); a higher one adds a refundable detail."""
        now = dt.datetime.now(dt.UTC)
        refundable = subscription.setdefault("refundableQuantity", {"totalQuantity": 0, "details": []})
        details = [d for d in refundable["details"] if dt.datetime.fromisoformat(d["allowedUntilDateTime"]) > now]
        if body.get("status") == "deleted":
            if dt.datetime.fromisoformat(subscription["cancellationAllowedUntilDate"]) <= now:
                return self._error(400, 800, "Subscription can no longer be cancelled: past the cancellation window")
            subscription["status"], details = "deleted", []
        quantity = body.get("quantity")
        if isinstance(quantity, int) and quantity > subscription["quantity"]:
            added = quantity - subscription["quantity"]
            details.append({"quantity": added, "allowedUntilDateTime": _iso(now + WINDOW)})
        elif isinstance(quantity, int) and quantity < subscription["quantity"]:
            fewer = subscription["quantity"] - quantity
            if fewer > sum(d["quantity"] for d in details):
                return self._error(400, 800, "Quantity cannot be decreased beyond the refundable quantity")
            for detail in reversed(details):
                taken = min(fewer, detail["quantity"])
                detail["quantity"], fewer = detail["quantity"] - taken, fewer - taken
            details = [d for d in details if d["quantity"] > 0]
        refundable["details"] = details
        refundable["totalQuantity"] = sum(d["quantity"] for d in details)
        return None

    def _subscribed_skus(self, tenant_id: str) -> dict[str, Any]:
        totals: dict[str, list] = {}
        for subscription in self.subscriptions[tenant_id].values():
            if subscription["status"] != "active":
                continue
            sku_id, part = self._sku_of(subscription["offerId"])
            totals.setdefault(sku_id, [part, 0])[1] += subscription["quantity"]
        items = []
        for sku_id, (part, total) in totals.items():
            consumed = sum(sku_id in user["licenses"] for user in self.users[tenant_id].values())
            items.append(
                {
                    "availableUnits": total - consumed,
                    "activeUnits": total,
                    "consumedUnits": consumed,
                    "suspendedUnits": 0,
                    "totalUnits": total,
                    "warningUnits": 0,
                    "capabilityStatus": "Enabled",
                    "productSku": {"id": sku_id, "name": part, "skuPartNumber": part, "targetType": "User"},
                    "servicePlans": [],
                    "attributes": {"objectType": "SubscribedSku"},
                }
            )
        return {"totalCount": len(items), "items": items, "attributes": {"objectType": "Collection"}}

    def _user_page(self, tenant_id: str) -> dict[str, Any]:
        """One page of a tenant's users; a ``links.next`` with the continuation token while more remain."""
        users = list(self.users[tenant_id].values())
        start = int(self._continuation or 0)
        page = users[start : start + self.users_page_size]
        items = [
            dict({k: v for k, v in user.items() if k != "licenses"}, attributes={"objectType": "CustomerUser"})
            for user in page
        ]
        body: dict[str, Any] = {"totalCount": len(items), "items": items, "attributes": {"objectType": "Collection"}}
        if start + self.users_page_size < len(users):
            body["links"] = {
                "next": {
                    "uri": f"/customers/{tenant_id}/users?size={self.users_page_size}",
                    "method": "GET",
                    "headers": [{"key": "MS-ContinuationToken", "value": str(start + self.users_page_size)}],
                }
            }
        return body

    def _create_user(self, tenant_id: str, body: dict[str, Any]) -> Response:
        upn = str(body.get("userPrincipalName", "")).lower()
        if not upn or not (body.get("passwordProfile") or {}).get("password"):
            return self._error(400, 400, "userPrincipalName and passwordProfile.password are required")
        if any(u["userPrincipalName"].lower() == upn for u in self.users[tenant_id].values()):
            return self._error(409, 409, f"A user with userPrincipalName {upn} already exists")
        user_id = str(uuid.uuid4())
        self.users[tenant_id][user_id] = {
            "id": user_id,
            "userPrincipalName": body["userPrincipalName"],
            "firstName": body.get("firstName"),
            "lastName": body.get("lastName"),
            "displayName": body.get("displayName"),
            "usageLocation": body.get("usageLocation"),
            "state": "active",
            "licenses": [],
        }
        public = {k: v for k, v in self.users[tenant_id][user_id].items() if k != "licenses"}
        return self._json(201, dict(public, userDomainType="none", attributes={"objectType": "CustomerUser"}))


@pytest.fixture(scope="session")
def fake_partner_center_server(tmp_path_factory):
    """The HTTPS server (one per test session) and its FakePartnerCenter."""
    ca = trustme.CA()
    certificate = ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    certificate.configure_cert(context)
    ca_bundle = tmp_path_factory.mktemp("fake_partner_center") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_bundle))
    server = HTTPServer(host="127.0.0.1", port=0, ssl_context=context, threaded=True)
    server.start()
    fake = FakePartnerCenter(server, str(ca_bundle))
    server.expect_request(re.compile(r".*")).respond_with_handler(fake.handle)
    yield fake
    fake.release()
    server.clear()
    server.stop()


@pytest.fixture
def fake_partner_center(fake_partner_center_server):
    """The fake Partner Center, reset for this test."""
    fake = fake_partner_center_server
    fake.reset()
    yield fake
    fake.release()
    fake.server.check_handler_errors()  # a bug in the fake fails the test that met it

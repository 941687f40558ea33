"""The real CSP provider: Microsoft Partner Center's REST API (v1), used when ``CSP_PROVIDER=partner_center``.

Tokens come from Microsoft Entra through ``msal``: app-only tokens (client credentials) for everything except the
calls Partner Center allows only with App+User credentials (creating users, assigning licences), which use the
partner's stored refresh token (Microsoft's secure application model). msal keeps both in its in-memory token
cache, so a token is fetched once and reused until it is about to expire, not per request.

One ``requests.Session`` per provider object carries every request, msal's included (one connection pool, one TLS
trust setting). A session is safe enough to share between the threads of one worker for our use: we never change
its state after construction (headers, timeout and certificate verification are passed with each request), and
urllib3's connection pool is thread-safe. msal's ``ConfidentialClientApplication`` and its token cache are
thread-safe too. So one provider object per process (or per app) is the intended use.

Every request carries ``MS-RequestId`` (new for every HTTP request, retries included) and ``MS-CorrelationId`` (the
caller's ``correlation_id``: one per user operation, the same on every retry), so Partner Center's logs and ours
line up. 429 and 5xx are retried with exponential backoff, honouring ``Retry-After`` up to a cap; a POST that
creates something is never retried after a 5xx or a timeout (Partner Center may have done it), only after a 429.
Every failure is logged on ``app.csp.partner_center`` with the method, path, status and correlation id, and ends
as a ``ProviderError`` carrying ``correlation_id`` and ``status``.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import logging
import threading
import time
import urllib.parse
import uuid
from collections.abc import Mapping
from typing import Any

import msal
import requests

from app import clock
from app.csp.base import (
    AgreementAcceptance,
    CompanyProfile,
    CspProvider,
    DomainTaken,
    NextTermInstructions,
    ProviderError,
    ProviderSubscription,
    ProviderUser,
    ProvisionedTenant,
    RefundableQuantity,
    SkuUsage,
    TransitionEligibility,
)
from app.csp.partner_center_billing import GRAPH_URL, PartnerCenterBilling  # issue 14, billed reconciliation
from app.csp.partner_center_carts import PartnerCenterCarts  # issue 13, ordering

log = logging.getLogger(__name__)

APP_SCOPES = ["https://api.partnercenter.microsoft.com/.default"]
USER_SCOPES = ["https://api.partnercenter.microsoft.com/user_impersonation"]
# The partner API host (price sheets) takes tokens for its own audience (Partner API authentication,
# https://learn.microsoft.com/partner-center/developer/partner-center-authentication).
PARTNER_API_USER_SCOPES = ["https://api.partner.microsoft.com/user_impersonation"]
PARTNER_API_URL = "https://api.partner.microsoft.com"
MCA_TEMPLATE_ID = "117a77b0-9360-443b-8795-c6dedc750cf9"
MCA_LINK = "https://aka.ms/customeragreement"
LOCALE = "en-NZ"

REFUSED = "Partner Center refused our credentials"
BUSY = "Partner Center is busy"
MAYBE_DONE = "it may have been done: check in Partner Center before trying again"


class _SessionHttpClient:
    """msal's HttpClient interface over our session, with our timeout and trust settings on every call (msal
    applies neither to an http_client it is given)."""

    def __init__(self, session: requests.Session, timeout: float, verify: bool | str):
        self._session = session
        self._timeout = timeout
        self._verify = verify

    def post(self, url, params=None, data=None, headers=None, **kwargs):
        kwargs.setdefault("timeout", self._timeout)
        kwargs.setdefault("verify", self._verify)
        return self._session.post(url, params=params, data=data, headers=headers, **kwargs)

    def get(self, url, params=None, headers=None, **kwargs):
        kwargs.setdefault("timeout", self._timeout)
        kwargs.setdefault("verify", self._verify)
        return self._session.get(url, params=params, headers=headers, **kwargs)

    def close(self):
        self._session.close()


def _retry_after_seconds(response: requests.Response) -> float | None:
    """``Retry-After`` as seconds (a number, or an HTTP date), or None when absent or unreadable."""
    raw = response.headers.get("Retry-After", "").strip()
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - clock.utcnow().replace(tzinfo=dt.UTC)).total_seconds())


def _error_text(response: requests.Response) -> tuple[str, str]:
    """Partner Center's error ``code`` and ``description`` (its error body), or what there is of them."""
    try:
        body = json.loads(response.content.decode("utf-8-sig")) if response.content else {}
    except ValueError:
        return "", response.text[:200]
    if not isinstance(body, dict):
        return "", ""
    return str(body.get("code") or body.get("errorName") or ""), str(body.get("description") or "")


def _parse_datetime(value: Any) -> dt.datetime | None:
    """An ISO 8601 timestamp from Partner Center (``2025-01-31T00:00:00Z``) as an aware UTC datetime."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ValueError(f"not a timestamp: {value!r}")
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _parse_date(value: Any) -> dt.date | None:
    """A date from a Partner Center date field (sent as a timestamp at midnight, or a plain date)."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ValueError(f"not a date: {value!r}")
    return dt.date.fromisoformat(value[:10])


def _refundable(value: Any) -> tuple[RefundableQuantity, ...]:
    """The subscription's ``refundableQuantity`` (``totalQuantity``, ``details``: each ``quantity`` and
    ``allowedUntilDateTime``, Microsoft's UTC time, kept as naive UTC), or nothing when Microsoft sent none
    (https://learn.microsoft.com/dotnet/api/microsoft.store.partnercenter.models.subscriptions.subscription.refundablequantity,
    https://learn.microsoft.com/dotnet/api/microsoft.store.partnercenter.models.subscriptions.refundablequantitydetail)."""
    if value in (None, ""):
        return ()
    if not isinstance(value, dict):
        raise ValueError(f"not a refundableQuantity: {value!r}")
    found = []
    for detail in value.get("details") or ():
        until = _parse_datetime(detail["allowedUntilDateTime"])
        if until is None:
            raise ValueError("a refundable quantity without allowedUntilDateTime")
        utc = until.astimezone(dt.UTC).replace(tzinfo=None)
        found.append(RefundableQuantity(quantity=int(detail["quantity"]), allowed_until=utc))
    return tuple(sorted(found, key=lambda r: r.allowed_until))


def _scheduled(value: Any) -> NextTermInstructions | None:
    """The subscription's ``scheduledNextTermInstructions`` ({product: {productId, skuId, availabilityId, billingCycle,
    termDuration}, quantity}), or None (https://learn.microsoft.com/partner-center/developer/create-scheduled-changes)."""
    if value in (None, ""):
        return None
    if not isinstance(value, dict) or not isinstance(value.get("product"), dict):
        raise ValueError(f"not scheduledNextTermInstructions: {value!r}")
    product = value["product"]
    return NextTermInstructions(
        offer_id=f"{product['productId']}:{product['skuId']}",
        term=str(product.get("termDuration") or value.get("termDuration") or ""),
        billing_cycle=str(product.get("billingCycle") or value.get("billingCycle") or "").lower(),
        quantity=int(value["quantity"]),
        availability_id=product.get("availabilityId"),
    )


class PartnerCenterProvider(PartnerCenterCarts, PartnerCenterBilling, CspProvider):  # + partner_center_*.py
    """Partner Center over REST. See the module docstring for tokens, retries, errors and threads."""

    name = "partner_center"

    def __init__(
        self,
        *,
        base_url: str,
        authority: str,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        refresh_token: str = "",
        timeout_s: float = 5.0,
        max_tries: int = 3,
        ca_bundle: str = "",
        backoff_s: float = 0.2,
        backoff_cap_s: float = 5.0,
        retry_after_cap_s: float = 10.0,
        partner_api_url: str = PARTNER_API_URL,
        graph_url: str = GRAPH_URL,  # issue 14: Microsoft Graph (billed reconciliation exports)
        export_poll_s: float = 10.0,
        export_max_polls: int = 60,
    ):
        if not (tenant_id and client_id and client_secret):
            raise ValueError("Partner Center needs a tenant id, a client id and a client secret")
        self.base_url = base_url.rstrip("/")
        self.partner_api_url = partner_api_url.rstrip("/")  # Microsoft's partner API host (price sheets)
        self.graph_url = graph_url.rstrip("/")
        self.export_poll_s, self.export_max_polls = float(export_poll_s), int(export_max_polls)
        self.authority = f"{authority.rstrip('/')}/{tenant_id}"
        self.client_id = client_id
        self._client_secret = client_secret
        self._refresh_token = refresh_token
        self.timeout_s = float(timeout_s)
        self.max_tries = max(1, int(max_tries))
        self.backoff_s = float(backoff_s)
        self.backoff_cap_s = float(backoff_cap_s)
        self.retry_after_cap_s = float(retry_after_cap_s)
        # Passed with every request: requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE override a session's verify.
        self._verify: bool | str = ca_bundle or True
        self.session = requests.Session()
        self.session.verify = self._verify
        self._msal_http = _SessionHttpClient(self.session, self.timeout_s, self._verify)
        self._msal_app: msal.ConfidentialClientApplication | None = None
        self._msal_lock = threading.Lock()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> PartnerCenterProvider:
        """From a Flask config (or any mapping) holding the PARTNER_CENTER_* settings of config.py."""
        return cls(
            base_url=config.get("PARTNER_CENTER_BASE_URL") or "https://api.partnercenter.microsoft.com",
            authority=config.get("PARTNER_CENTER_AUTHORITY") or "https://login.microsoftonline.com",
            tenant_id=config.get("PARTNER_CENTER_TENANT_ID", ""),
            client_id=config.get("PARTNER_CENTER_CLIENT_ID", ""),
            client_secret=config.get("PARTNER_CENTER_CLIENT_SECRET", ""),
            refresh_token=config.get("PARTNER_CENTER_REFRESH_TOKEN", ""),
            timeout_s=float(config.get("PARTNER_CENTER_TIMEOUT_S") or 5.0),
            max_tries=int(config.get("PARTNER_CENTER_MAX_TRIES") or 3),
            ca_bundle=config.get("PARTNER_CENTER_CA_BUNDLE", "") or "",
            # Not settings of config.py: tests shrink them through the app's config overrides.
            backoff_s=float(config.get("PARTNER_CENTER_BACKOFF_S", 0.2)),
            retry_after_cap_s=float(config.get("PARTNER_CENTER_RETRY_AFTER_CAP_S", 10.0)),
            partner_api_url=config.get("PARTNER_API_BASE_URL") or PARTNER_API_URL,
            graph_url=config.get("GRAPH_BASE_URL") or GRAPH_URL,
            export_poll_s=float(config.get("PARTNER_CENTER_EXPORT_POLL_S", 10.0)),
            export_max_polls=int(config.get("PARTNER_CENTER_EXPORT_MAX_POLLS", 60)),
        )

    # --- tokens -------------------------------------------------------------------------------------------------

    def _msal(self, correlation_id: str) -> msal.ConfidentialClientApplication:
        """The msal application, made on first use: making it fetches the authority's OpenID configuration, which
        must not happen at start-up (a Partner Center outage must not stop the portal) and is retried next time."""
        with self._msal_lock:
            if self._msal_app is None:
                try:
                    self._msal_app = msal.ConfidentialClientApplication(
                        self.client_id,
                        client_credential=self._client_secret,
                        authority=self.authority,
                        http_client=self._msal_http,
                        # Our authority host is configured, not discovered: no call to Microsoft's discovery
                        # endpoint (which would also reject the test authority).
                        instance_discovery=False,
                    )
                except (requests.RequestException, ValueError, RuntimeError, KeyError) as exc:
                    raise self._token_error(correlation_id, f"its OpenID configuration failed ({exc})") from exc
            return self._msal_app

    def _token(self, correlation_id: str, *, user: bool, scopes: list[str] | None = None) -> str:
        app = self._msal(correlation_id)
        try:
            if not user:
                result = app.acquire_token_for_client(scopes=APP_SCOPES)
            else:
                if not self._refresh_token:
                    raise self._token_error(correlation_id, "PARTNER_CENTER_REFRESH_TOKEN is not set (App+User call)")
                result = None
                # After the first exchange msal holds the user's account, access token and newest refresh token.
                accounts = app.get_accounts()
                if accounts:
                    result = app.acquire_token_silent(scopes or USER_SCOPES, account=accounts[0])
                if not result or "access_token" not in result:
                    result = app.acquire_token_by_refresh_token(self._refresh_token, scopes=scopes or USER_SCOPES)
        except ProviderError:
            raise
        except Exception as exc:  # msal raises requests' errors, MsalServiceError, ValueError...: all "no token"
            raise self._token_error(correlation_id, f"{type(exc).__name__}: {exc}") from exc
        if not result or "access_token" not in result:
            result = result or {}
            reason = f"{result.get('error', 'no token')}: {(result.get('error_description') or '')[:300]}"
            raise self._token_error(correlation_id, reason)
        return result["access_token"]

    def _token_error(self, correlation_id: str, reason: str) -> ProviderError:
        log.error("Partner Center token from %s failed (correlation id %s): %s", self.authority, correlation_id, reason)
        return ProviderError(f"Partner Center sign-in failed: {reason}", correlation_id=correlation_id)

    # --- HTTP ---------------------------------------------------------------------------------------------------

    def _delay(self, tries: int, response: requests.Response | None = None) -> float:
        retry_after = _retry_after_seconds(response) if response is not None else None
        if retry_after is not None:
            return min(retry_after, self.retry_after_cap_s)
        return min(self.backoff_cap_s, self.backoff_s * 2 ** (tries - 1))

    def _fail(
        self, method: str, path: str, correlation_id: str, status: int | None, message: str, detail: str = ""
    ) -> ProviderError:
        log.error(
            "Partner Center %s %s failed: status %s, correlation id %s: %s%s",
            method,
            path,
            status,
            correlation_id,
            message,
            f" ({detail})" if detail else "",
        )
        return ProviderError(message, correlation_id=correlation_id, status=status)

    def _request(
        self,
        method: str,
        path: str,
        *,
        correlation_id: str,
        body: Any = None,
        user: bool = False,
        creates: bool = False,
        expect: tuple[int, ...] = (200, 201),
        request_id: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
        base_url: str | None = None,
        scopes: list[str] | None = None,
    ) -> requests.Response:
        """Send one API call with retries; the response when its status is in ``expect``, else ProviderError.

        ``creates``: a POST that makes something (a customer, an order...), retried only after a 429.
        ``user``: an App+User call (token from the refresh token). ``base_url`` and ``scopes``: another Microsoft host
        than Partner Center's REST API, and its token's scopes."""
        token = self._token(correlation_id, user=user, scopes=scopes)
        url = (base_url or self.base_url) + path
        # MS-RequestId is the same on every try of this call (Microsoft's idempotency key); MS-CorrelationId ties the
        # call to the portal's operation (https://learn.microsoft.com/partner-center/developer/headers).
        request_id = request_id or str(uuid.uuid4())
        tries = 0
        while True:
            tries += 1
            headers = {
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "MS-RequestId": request_id,
                "MS-CorrelationId": correlation_id,
                "X-Locale": LOCALE,
                **(extra_headers or {}),
            }
            try:
                response = self.session.request(
                    method, url, headers=headers, json=body, timeout=self.timeout_s, verify=self._verify
                )
            except requests.RequestException as exc:
                timed_out = isinstance(exc, requests.Timeout)
                what = "Partner Center did not answer in time" if timed_out else "Partner Center could not be reached"
                if creates:
                    raise self._fail(method, path, correlation_id, None, f"{what}; {MAYBE_DONE}", str(exc)) from exc
                if tries >= self.max_tries:
                    raise self._fail(method, path, correlation_id, None, what, str(exc)) from exc
                delay = self._delay(tries)
                log.warning(
                    "Partner Center %s %s failed: status None, correlation id %s: %s (try %d of %d, again in %.2f s)",
                    method,
                    path,
                    correlation_id,
                    exc,
                    tries,
                    self.max_tries,
                    delay,
                )
                time.sleep(delay)
                continue

            status = response.status_code
            if status in expect:
                return response
            code, description = _error_text(response)
            detail = " ".join(part for part in (code, description) if part)
            if status == 429 or status >= 500:
                if (status == 429 or not creates) and tries < self.max_tries:
                    delay = self._delay(tries, response)
                    log.warning(
                        "Partner Center %s %s failed: status %s, correlation id %s (try %d of %d, again in %.2f s)",
                        method,
                        path,
                        status,
                        correlation_id,
                        tries,
                        self.max_tries,
                        delay,
                    )
                    time.sleep(delay)
                    continue
                if status == 429:
                    raise self._fail(method, path, correlation_id, status, BUSY, detail)
                message = f"Partner Center failed (HTTP {status})"
                if creates:
                    message += f"; {MAYBE_DONE}"
                raise self._fail(method, path, correlation_id, status, message, detail)
            if status in (401, 403):
                raise self._fail(method, path, correlation_id, status, REFUSED, detail)
            message = f"Partner Center rejected the request (HTTP {status})"
            raise self._fail(
                method, path, correlation_id, status, f"{message}: {description}" if description else message, code
            )

    def _json(self, response: requests.Response, method: str, path: str, correlation_id: str) -> dict[str, Any]:
        """The response body as a JSON object. Decoded as utf-8-sig: Microsoft APIs may start JSON with a BOM."""
        try:
            body = json.loads(response.content.decode("utf-8-sig"))
        except ValueError as exc:
            raise self._fail(
                method,
                path,
                correlation_id,
                response.status_code,
                "Partner Center sent an answer we do not understand",
                str(exc),
            ) from exc
        if not isinstance(body, dict):
            raise self._fail(
                method,
                path,
                correlation_id,
                response.status_code,
                "Partner Center sent an answer we do not understand",
                "not a JSON object",
            )
        return body

    def _unexpected(self, method: str, path: str, correlation_id: str, status: int, exc: Exception) -> ProviderError:
        return self._fail(
            method,
            path,
            correlation_id,
            status,
            "Partner Center sent an answer we do not understand",
            f"{type(exc).__name__}: {exc}",
        )

    def _subscription(
        self, body: dict[str, Any], method: str, path: str, correlation_id: str, status: int
    ) -> ProviderSubscription:
        try:
            commitment_end = _parse_date(body.get("commitmentEndDate"))
            return ProviderSubscription(
                subscription_id=str(body["id"]),
                offer_id=str(body["offerId"]),
                quantity=int(body["quantity"]),
                auto_renew=bool(body.get("autoRenewEnabled", False)),
                status=str(body.get("status", "")),
                billing_cycle=str(body.get("billingCycle", "")),
                renew_on=commitment_end,
                commitment_end=commitment_end,
                cancellation_allowed_until=_parse_datetime(body.get("cancellationAllowedUntilDate")),
                refundable=_refundable(body.get("refundableQuantity")),
                term=str(body.get("termDuration") or "P1Y"),
                term_started_on=_parse_date(body.get("effectiveStartDate")),  # issue 13, ordering
                scheduled=_scheduled(body.get("scheduledNextTermInstructions")),  # issue 13, renewals
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise self._unexpected(method, path, correlation_id, status, exc) from exc

    # --- the interface ------------------------------------------------------------------------------------------

    def check_domain(self, prefix: str, *, correlation_id: str) -> bool:
        path = f"/v1/domains/{prefix}.onmicrosoft.com"
        response = self._request("HEAD", path, correlation_id=correlation_id, expect=(200, 404))
        return response.status_code == 404  # 200: the domain exists, so it is not available

    def create_customer(self, profile: CompanyProfile, *, correlation_id: str) -> ProvisionedTenant:
        path = "/v1/customers"
        body = {
            "companyProfile": {"domain": profile.domain},
            "billingProfile": {
                "email": profile.contact_email,
                "culture": profile.culture,
                "language": profile.language,
                "companyName": profile.company_name,
                "defaultAddress": {
                    "country": profile.country,
                    "city": profile.city,
                    "state": profile.region,
                    "addressLine1": profile.address_line1,
                    "addressLine2": profile.address_line2,
                    "postalCode": profile.postcode,
                    "firstName": profile.contact_first_name,
                    "lastName": profile.contact_last_name,
                    "phoneNumber": profile.phone,
                },
            },
        }
        response = self._request(
            "POST", path, correlation_id=correlation_id, body=body, creates=True, expect=(200, 201, 400, 409)
        )
        status = response.status_code
        if status in (400, 409):
            code, description = _error_text(response)
            text = f"{code} {description}".lower()
            taken = status == 409 or (
                "domain" in text
                and any(
                    word in text for word in ("exist", "taken", "in use", "not available", "unavailable", "already")
                )
            )
            message = (
                f"{profile.domain} already exists"
                if taken
                else (
                    f"Partner Center rejected the customer (HTTP {status}){': ' + description if description else ''}"
                )
            )
            log.error(
                "Partner Center POST %s failed: status %s, correlation id %s: %s", path, status, correlation_id, message
            )
            error_class = DomainTaken if taken else ProviderError
            raise error_class(message, correlation_id=correlation_id, status=status)
        data = self._json(response, "POST", path, correlation_id)
        try:
            tenant_id = (data.get("companyProfile") or {}).get("tenantId") or data["id"]
        except (KeyError, AttributeError) as exc:
            raise self._unexpected("POST", path, correlation_id, status, exc) from exc
        # The first global admin's user name and temporary password, in this answer only (never logged)
        credentials = data.get("userCredentials") if isinstance(data.get("userCredentials"), dict) else {}
        user_name = str(credentials.get("userName") or "").strip() or None
        if user_name and "@" not in user_name:
            user_name = f"{user_name}@{profile.domain}"
        password = credentials.get("password") if isinstance(credentials.get("password"), str) else None
        return ProvisionedTenant(
            tenant_id=str(tenant_id),
            domain=profile.domain,
            admin_user_name=user_name.lower() if user_name else None,
            admin_password=password or None,
        )

    def accept_agreement(self, tenant_id: str, acceptance: AgreementAcceptance, *, correlation_id: str) -> None:
        body = {
            "primaryContact": {
                "firstName": acceptance.signer_first_name,
                "lastName": acceptance.signer_last_name,
                "email": acceptance.signer_email,
                "phoneNumber": acceptance.signer_phone,
            },
            "templateId": MCA_TEMPLATE_ID,
            "dateAgreed": f"{acceptance.accepted_on.isoformat()}T00:00:00",
            "type": "MicrosoftCustomerAgreement",
            "agreementLink": MCA_LINK,
        }
        self._request(
            "POST", f"/v1/customers/{tenant_id}/agreements", correlation_id=correlation_id, body=body, creates=True
        )

    def find_customer(self, domain_prefix: str, *, correlation_id: str) -> str | None:
        """GET /v1/customers?filter=… with the Domain field (starts_with is the one operator the endpoint has), then
        the exact default domain among the matches."""
        domain = f"{domain_prefix.lower()}.onmicrosoft.com"
        query = urllib.parse.quote(json.dumps({"Field": "Domain", "Value": domain, "Operator": "starts_with"}))
        path = f"/v1/customers?size=50&filter={query}"
        response = self._request("GET", path, correlation_id=correlation_id)
        data = self._json(response, "GET", "/v1/customers", correlation_id)
        try:
            for item in data["items"]:
                if str(item["companyProfile"]["domain"]).lower() == domain:
                    return str(item["id"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise self._unexpected("GET", "/v1/customers", correlation_id, response.status_code, exc) from exc
        return None

    def list_subscribed_skus(self, tenant_id: str, *, correlation_id: str) -> list[SkuUsage]:
        path = f"/v1/customers/{tenant_id}/subscribedskus"
        response = self._request("GET", path, correlation_id=correlation_id)
        data = self._json(response, "GET", path, correlation_id)
        try:
            return [
                SkuUsage(
                    sku_id=str(item["productSku"]["id"]),
                    sku_part_number=str(item["productSku"].get("skuPartNumber", "")),
                    consumed=int(item.get("consumedUnits", 0)),
                    total=int(item.get("totalUnits", 0)),
                )
                for item in data["items"]
            ]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise self._unexpected("GET", path, correlation_id, response.status_code, exc) from exc

    def create_order(
        self,
        tenant_id: str,
        offer_id: str,
        quantity: int,
        billing_cycle: str,
        *,
        correlation_id: str,
        request_id: str | None = None,
    ) -> ProviderSubscription:
        path = f"/v1/customers/{tenant_id}/orders"
        body = {
            "lineItems": [{"lineItemNumber": 0, "offerId": offer_id, "quantity": quantity}],
            "billingCycle": billing_cycle,
        }
        response = self._request(
            "POST", path, correlation_id=correlation_id, body=body, creates=True, request_id=request_id
        )
        data = self._json(response, "POST", path, correlation_id)
        try:
            subscription_id = str(data["lineItems"][0]["subscriptionId"])
        except (KeyError, IndexError, TypeError) as exc:
            # The order exists even so: say which, so someone can find its subscription in Partner Center.
            raise self._fail(
                "POST",
                path,
                correlation_id,
                response.status_code,
                f"Partner Center took order {data.get('id', '?')} but named no subscription",
                f"{type(exc).__name__}: {exc}",
            ) from exc
        return self.get_subscription(tenant_id, subscription_id, correlation_id=correlation_id)

    def _patch_subscription(
        self,
        tenant_id: str,
        subscription_id: str,
        changes: dict[str, Any],
        correlation_id: str,
        request_id: str | None = None,
    ) -> ProviderSubscription:
        path = f"/v1/customers/{tenant_id}/subscriptions/{subscription_id}"
        response = self._request("PATCH", path, correlation_id=correlation_id, body=changes, request_id=request_id)
        data = self._json(response, "PATCH", path, correlation_id)
        return self._subscription(data, "PATCH", path, correlation_id, response.status_code)

    def change_quantity(
        self, tenant_id: str, subscription_id: str, quantity: int, *, correlation_id: str, request_id: str | None = None
    ) -> ProviderSubscription:
        return self._patch_subscription(tenant_id, subscription_id, {"quantity": quantity}, correlation_id, request_id)

    def set_auto_renew(
        self, tenant_id: str, subscription_id: str, enabled: bool, *, correlation_id: str, request_id: str | None = None
    ) -> ProviderSubscription:
        changes = {"autoRenewEnabled": enabled}
        return self._patch_subscription(tenant_id, subscription_id, changes, correlation_id, request_id)

    def cancel_subscription(
        self, tenant_id: str, subscription_id: str, *, correlation_id: str, request_id: str | None = None
    ) -> ProviderSubscription:
        """PATCH the subscription with ``status`` ``deleted``: Microsoft accepts it only within 7 days of the
        purchase or renewal and refuses it after
        (https://learn.microsoft.com/partner-center/developer/cancel-an-azure-marketplace-subscription)."""
        return self._patch_subscription(tenant_id, subscription_id, {"status": "deleted"}, correlation_id, request_id)

    # -- issue 13, renewals and upgrades ----------------------------------------------------------------------------
    def schedule_next_term(
        self,
        tenant_id: str,
        subscription_id: str,
        instructions: NextTermInstructions | None,
        *,
        correlation_id: str,
        request_id: str | None = None,
    ) -> ProviderSubscription:
        """PATCH the subscription's ``scheduledNextTermInstructions`` — {product: {productId, skuId, availabilityId,
        billingCycle, termDuration}, quantity}, as Microsoft's example and its ProductTerm carry them — or null to
        clear them (https://learn.microsoft.com/partner-center/developer/create-scheduled-changes)."""
        body: dict[str, Any] = {"scheduledNextTermInstructions": None}
        if instructions is not None:
            product_id, _, sku_id = instructions.offer_id.partition(":")
            body["scheduledNextTermInstructions"] = {
                "product": {
                    "productId": product_id,
                    "skuId": sku_id,
                    "availabilityId": instructions.availability_id,
                    "billingCycle": instructions.billing_cycle,
                    "termDuration": instructions.term,
                },
                "quantity": instructions.quantity,
            }
        return self._patch_subscription(tenant_id, subscription_id, body, correlation_id, request_id)

    def get_transition_eligibilities(
        self, tenant_id: str, subscription_id: str, eligibility_type: str, *, correlation_id: str
    ) -> list[TransitionEligibility]:
        """GET …/transitionEligibilities?eligibilityType=immediate|scheduled: each item's ``catalogItemId``
        (product:sku:availability) and ``title``, kept when one of its ``eligibilities`` is eligible
        (https://learn.microsoft.com/partner-center/developer/transition-a-new-commerce-subscription)."""
        path = (
            f"/v1/customers/{tenant_id}/subscriptions/{subscription_id}/transitionEligibilities"
            f"?eligibilityType={eligibility_type}"
        )
        response = self._request("GET", path, correlation_id=correlation_id)
        data = self._json(response, "GET", path, correlation_id)
        try:
            found = []
            for item in data.get("items") or ():
                if not any(e.get("isEligible") for e in item.get("eligibilities") or ()):
                    continue
                product_id, sku_id, availability_id = (str(item["catalogItemId"]).split(":") + ["", ""])[:3]
                found.append(
                    TransitionEligibility(
                        offer_id=f"{product_id}:{sku_id}",
                        title=str(item.get("title") or ""),
                        term=str(item.get("termDuration") or ""),
                        billing_cycle=str(item.get("billingCycle") or "").lower(),
                        availability_id=availability_id or None,
                    )
                )
            return found
        except (KeyError, TypeError, AttributeError) as exc:
            raise self._unexpected("GET", path, correlation_id, response.status_code, exc) from exc

    def transition(
        self,
        tenant_id: str,
        subscription_id: str,
        to_offer_id: str,
        quantity: int,
        *,
        term: str,
        billing_cycle: str,
        correlation_id: str,
        request_id: str | None = None,
        availability_id: str | None = None,
    ) -> ProviderSubscription:
        """POST …/transitions with fromSubscriptionId, toCatalogItemId (product:sku:availability), quantity,
        termDuration, billingCycle and transitionType ``transition_only``; the subscription holding the moved seats:
        the answer's toSubscriptionId (a partial transition's new subscription), else the source, converted
        (https://learn.microsoft.com/partner-center/developer/transition-a-new-commerce-subscription)."""
        path = f"/v1/customers/{tenant_id}/subscriptions/{subscription_id}/transitions"
        catalog_item = f"{to_offer_id}:{availability_id}" if availability_id else to_offer_id
        body = {
            "fromSubscriptionId": subscription_id,
            "toCatalogItemId": catalog_item,
            "quantity": quantity,
            "termDuration": term,
            "billingCycle": billing_cycle,
            "transitionType": "transition_only",
        }
        response = self._request(
            "POST", path, correlation_id=correlation_id, body=body, creates=True, request_id=request_id
        )
        data = self._json(response, "POST", path, correlation_id)
        target = str(data.get("toSubscriptionId") or subscription_id)
        return self.get_subscription(tenant_id, target, correlation_id=correlation_id)

    def get_subscription(self, tenant_id: str, subscription_id: str, *, correlation_id: str) -> ProviderSubscription:
        path = f"/v1/customers/{tenant_id}/subscriptions/{subscription_id}"
        response = self._request("GET", path, correlation_id=correlation_id)
        data = self._json(response, "GET", path, correlation_id)
        return self._subscription(data, "GET", path, correlation_id, response.status_code)

    def list_subscriptions(self, tenant_id: str, *, correlation_id: str) -> list[ProviderSubscription]:
        """https://learn.microsoft.com/partner-center/developer/get-all-of-a-customer-s-subscriptions: the
        collection's ``items`` are subscription resources."""
        path = f"/v1/customers/{tenant_id}/subscriptions"
        response = self._request("GET", path, correlation_id=correlation_id)
        data = self._json(response, "GET", path, correlation_id)
        items = data.get("items")
        if not isinstance(items, list):
            raise self._unexpected("GET", path, correlation_id, response.status_code, KeyError("items"))
        return [self._subscription(item, "GET", path, correlation_id, response.status_code) for item in items]

    def _pages(self, path: str, correlation_id: str, *, user: bool):
        """Each page of a Partner Center collection: the next page is asked for at ``links.next.uri`` with the
        headers it names (its MS-ContinuationToken), as Microsoft's paged collections say
        (https://learn.microsoft.com/partner-center/developer/get-a-list-of-all-user-accounts-for-a-customer)."""
        headers: dict[str, str] = {}
        for _page in range(10_000):  # a bound, not a limit anyone reaches: 10,000 pages of users
            response = self._request("GET", path, correlation_id=correlation_id, user=user, extra_headers=headers)
            data = self._json(response, "GET", path, correlation_id)
            yield data, response.status_code
            following = (data.get("links") or {}).get("next") if isinstance(data.get("links"), dict) else None
            if not isinstance(following, dict) or not following.get("uri"):
                return
            uri = str(following["uri"])
            path = uri if uri.startswith("/") else f"/{uri}"
            path = path if path.startswith("/v1/") else f"/v1{path}"
            headers = {
                str(h.get("key")): str(h.get("value")) for h in following.get("headers") or [] if isinstance(h, dict)
            }

    def list_users(self, tenant_id: str, *, correlation_id: str) -> list[ProviderUser]:
        """The tenant's users, page by page (``state``: ``active`` or ``inactive``), then each one's licences."""
        path = f"/v1/customers/{tenant_id}/users?size=500"
        found: list[tuple[str, str, str, bool]] = []
        for data, status in self._pages(path, correlation_id, user=True):
            try:
                for item in data["items"]:
                    found.append(
                        (
                            str(item["id"]),
                            str(item["userPrincipalName"]).lower(),
                            str(item.get("displayName") or ""),
                            str(item.get("state") or "active").lower() == "active",
                        )
                    )
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise self._unexpected("GET", path, correlation_id, status, exc) from exc
        return [
            ProviderUser(
                user_id=user_id,
                user_principal_name=upn,
                display_name=name,
                enabled=enabled,
                sku_ids=frozenset(self.get_user_licences(tenant_id, user_id, correlation_id=correlation_id)),
            )
            for user_id, upn, name, enabled in found
        ]

    def create_user(
        self,
        tenant_id: str,
        *,
        first_name: str,
        last_name: str,
        user_principal_name: str,
        password: str,
        usage_location: str,
        correlation_id: str,
        request_id: str | None = None,
        display_name: str | None = None,
    ) -> str:
        path = f"/v1/customers/{tenant_id}/users"
        body = {
            "usageLocation": usage_location,
            "userPrincipalName": user_principal_name,
            "firstName": first_name,
            "lastName": last_name,
            "displayName": display_name or f"{first_name} {last_name}".strip(),
            "passwordProfile": {"password": password, "forceChangePassword": True},
        }
        response = self._request(
            "POST", path, correlation_id=correlation_id, body=body, user=True, creates=True, request_id=request_id
        )
        data = self._json(response, "POST", path, correlation_id)
        if not data.get("id"):
            raise self._unexpected("POST", path, correlation_id, response.status_code, KeyError("id"))
        return str(data["id"])

    def get_user_licences(self, tenant_id: str, user_id: str, *, correlation_id: str) -> list[str]:
        """The default license group's licences of one user: ``items[].productSku.id``
        (https://learn.microsoft.com/partner-center/developer/check-which-licenses-are-assigned-to-a-user)."""
        path = f"/v1/customers/{tenant_id}/users/{user_id}/licenses"
        response = self._request("GET", path, correlation_id=correlation_id, user=True)
        data = self._json(response, "GET", path, correlation_id)
        try:
            return [str(item["productSku"]["id"]) for item in data["items"]]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise self._unexpected("GET", path, correlation_id, response.status_code, exc) from exc

    def assign_licences(
        self,
        tenant_id: str,
        user_id: str,
        *,
        add_sku_ids: list[str],
        remove_sku_ids: list[str],
        correlation_id: str,
        request_id: str | None = None,
    ) -> None:
        # Setting the same licences twice changes nothing, so unlike the creating POSTs this one is retried.
        body = {
            "licensesToAssign": [{"skuId": sku_id} for sku_id in add_sku_ids],
            "licensesToRemove": list(remove_sku_ids),
        }
        self._request(
            "POST",
            f"/v1/customers/{tenant_id}/users/{user_id}/licenseupdates",
            correlation_id=correlation_id,
            body=body,
            user=True,
            request_id=request_id,
        )

    # --- one Microsoft 365 user (issue 12: reads for recovery, and the changes) ---------------------------------

    def _user_of(self, item: Any, tenant_id: str, method: str, path: str, correlation_id: str, status: int):
        """A CustomerUser resource as a ProviderUser, with its licences. ``state`` is "active", or "inactive" for a
        user Partner Center holds deleted or stopped (https://learn.microsoft.com/partner-center/developer/user-resources)."""
        try:
            user_id = str(item["id"])
            upn = str(item["userPrincipalName"]).lower()
            name = str(item.get("displayName") or "")
            enabled = str(item.get("state") or "active").lower() == "active"
            first, last, location = (item.get(key) for key in ("firstName", "lastName", "usageLocation"))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise self._unexpected(method, path, correlation_id, status, exc) from exc
        licences = self.get_user_licences(tenant_id, user_id, correlation_id=correlation_id)
        return ProviderUser(
            user_id,
            upn,
            name,
            enabled,
            frozenset(licences),
            first_name=str(first) if first is not None else None,
            last_name=str(last) if last is not None else None,
            usage_location=str(location).upper() if location else None,
        )

    def find_user(self, tenant_id: str, user_principal_name: str, *, correlation_id: str) -> ProviderUser | None:
        """Partner Center filters a customer's users by state only: its pages are read until the user name is met
        (https://learn.microsoft.com/partner-center/developer/get-a-list-of-all-user-accounts-for-a-customer)."""
        wanted = user_principal_name.lower()
        path = f"/v1/customers/{tenant_id}/users?size=500"
        for data, status in self._pages(path, correlation_id, user=True):
            items = data.get("items")
            if not isinstance(items, list):
                raise self._unexpected("GET", path, correlation_id, status, KeyError("items"))
            for item in items:
                if isinstance(item, dict) and str(item.get("userPrincipalName", "")).lower() == wanted:
                    return self._user_of(item, tenant_id, "GET", path, correlation_id, status)
        return None

    def get_user(self, tenant_id: str, user_id: str, *, correlation_id: str) -> ProviderUser | None:
        """GET .../users/{user-id} (https://learn.microsoft.com/partner-center/developer/get-a-user-account-by-id);
        404: no such user."""
        path = f"/v1/customers/{tenant_id}/users/{user_id}"
        response = self._request("GET", path, correlation_id=correlation_id, user=True, expect=(200, 404))
        if response.status_code == 404:
            return None
        data = self._json(response, "GET", path, correlation_id)
        return self._user_of(data, tenant_id, "GET", path, correlation_id, response.status_code)

    def _patch_user(
        self, tenant_id: str, user_id: str, changes: dict[str, Any], correlation_id: str, request_id: str | None
    ) -> None:
        """PATCH .../users/{user-id} with the CustomerUser fields to change: Partner Center's "update user accounts for
        a customer" (https://learn.microsoft.com/partner-center/developer/update-user-accounts-for-a-customer; its body
        fields: https://learn.microsoft.com/rest/api/partner-center/manage-customer-accounts/update-customer). Setting
        the same fields again changes nothing, so it is retried like any PATCH, with the same MS-RequestId."""
        body = {**changes, "attributes": {"objectType": "CustomerUser"}}
        path = f"/v1/customers/{tenant_id}/users/{user_id}"
        self._request("PATCH", path, correlation_id=correlation_id, body=body, user=True, request_id=request_id)

    def update_user(
        self,
        tenant_id: str,
        user_id: str,
        *,
        first_name: str,
        last_name: str,
        display_name: str,
        usage_location: str,
        correlation_id: str,
        request_id: str | None = None,
    ) -> None:
        """PATCH .../users/{user-id} with the names and usage location
        (https://learn.microsoft.com/partner-center/developer/update-user-accounts-for-a-customer: a CustomerUser
        with firstName, lastName, displayName, usageLocation; the same values again change nothing)."""
        changes = {
            "firstName": first_name,
            "lastName": last_name,
            "displayName": display_name,
            "usageLocation": usage_location,
        }
        self._patch_user(tenant_id, user_id, changes, correlation_id, request_id)

    def set_user_enabled(
        self, tenant_id: str, user_id: str, enabled: bool, *, correlation_id: str, request_id: str | None = None
    ) -> None:
        """Refused, without a call: Partner Center cannot block a user's sign-in. Its user update has no
        ``accountEnabled``; its only switch, ``state`` "inactive", DELETES the user (restorable for 30 days, dropped
        from the user list, its licences freed: https://learn.microsoft.com/partner-center/developer/restore-a-user-for-a-customer).
        Blocking sign-in is Microsoft Graph's ``accountEnabled`` (the Microsoft 365 admin centre's "Block sign-in"),
        outside the Partner Center API: the portal says so rather than delete someone asked only to be disabled."""
        raise ProviderError(
            "Partner Center cannot block a user's sign-in (only delete the user): block it in the Microsoft 365 "
            "admin centre",
            correlation_id=correlation_id,
            status=501,
        )

    def delete_user(self, tenant_id: str, user_id: str, *, correlation_id: str, request_id: str | None = None) -> None:
        """DELETE .../users/{user-id}; 404 (already gone) is what was asked
        (https://learn.microsoft.com/partner-center/developer/delete-user-accounts-for-a-customer)."""
        path = f"/v1/customers/{tenant_id}/users/{user_id}"
        self._request(
            "DELETE", path, correlation_id=correlation_id, user=True, expect=(200, 204, 404), request_id=request_id
        )

    def reset_user_password(
        self, tenant_id: str, user_id: str, *, password: str, correlation_id: str, request_id: str | None = None
    ) -> None:
        """A new ``passwordProfile`` with ``forceChangePassword``: the user must change it at the next sign-in
        (https://learn.microsoft.com/partner-center/developer/reset-user-password-for-a-customer)."""
        changes = {"passwordProfile": {"password": password, "forceChangePassword": True}}
        self._patch_user(tenant_id, user_id, changes, correlation_id, request_id)

    # --- price sheet (issue 13, catalogue) ------------------------------------------------------------------------

    def get_price_sheet(self, market: str, *, month: str | None = None, correlation_id: str) -> bytes:
        """GET {partner API}/v1.0/sales/pricesheets(Market='{market}',PricesheetView='updatedlicensebased')/$value,
        App+User only. The page's ``timeline`` is ``current`` by default, ``history`` with ``month`` (YYYYMM) for a past
        month, ``future`` for the sheet published ahead (next month's); ``Accept-Encoding: deflate`` asks for the zip
        (https://learn.microsoft.com/partner-center/developer/get-a-price-sheet). The bytes as sent: a CSV file or a
        zip of it (app/services/pricesheet.py reads both)."""
        market = market.strip().upper()
        if len(market) != 2 or not market.isalpha():
            raise ProviderError(f"{market!r} is not a two-letter market", correlation_id=correlation_id, status=400)
        path = f"/v1.0/sales/pricesheets(Market='{market}',PricesheetView='updatedlicensebased')/$value"
        if month is not None:
            if len(month) != 6 or not month.isdigit():
                raise ProviderError(f"month {month!r} is not YYYYMM", correlation_id=correlation_id, status=400)
            this_month = f"{clock.today():%Y%m}"
            if month < this_month:
                path += "?" + urllib.parse.urlencode({"timeline": "history", "month": month})
            elif month > this_month:
                path += "?" + urllib.parse.urlencode({"timeline": "future"})
        response = self._request(
            "GET",
            path,
            correlation_id=correlation_id,
            user=True,
            expect=(200,),
            base_url=self.partner_api_url,
            scopes=PARTNER_API_USER_SCOPES,
            extra_headers={"Accept": "text/csv, application/octet-stream", "Accept-Encoding": "deflate"},
        )
        return response.content

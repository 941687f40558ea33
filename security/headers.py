"""What every response says about itself to the browser, and which requests are believed.

- Flask-Talisman sets the Content-Security-Policy (scripts only from the portal itself or with this response's nonce:
  FAB's inline scripts carry ``csp_nonce()``; no ``unsafe-inline`` for scripts), ``frame-ancestors 'none'`` and
  ``X-Frame-Options: DENY`` (Launch, Disable and order buttons cannot be framed), ``nosniff``, the Referrer-Policy,
  and HSTS when the portal's base URL is https.
- ``Cache-Control: no-store`` on everything but static files: signed-in pages, sign-in and downloads stay out of
  shared and back-button caches.
- The Host header: only ``TRUSTED_HOSTS`` are answered (a poisoned Host never reaches a view or an emailed link);
  ``X-Forwarded-*`` are believed only from ``PROXY_COUNT`` proxies, when configured.
"""

from __future__ import annotations

from flask import Flask, Response, request
from flask_talisman import Talisman
from werkzeug.exceptions import SecurityError
from werkzeug.middleware.proxy_fix import ProxyFix

POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",  # and this response's nonce (Talisman adds it)
    # FAB's templates, Bootstrap's widgets and plotly set style attributes; styles cannot run code.
    "style-src": ["'self'", "'unsafe-inline'"],
    "img-src": ["'self'", "data:"],
    "font-src": ["'self'", "data:"],
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}
STATIC_ENDPOINTS = frozenset({"static", "appbuilder.static", "vendor.plotly_js", "vendor.favicon"})


def _refuse_unknown_hosts():
    """Flask checked the Host against TRUSTED_HOSTS when it matched the URL: answer plainly, before anything else
    runs (no page, no link, no session is built on a host we do not serve)."""
    if isinstance(request.routing_exception, SecurityError):
        return Response("Unknown host.\n", status=400, mimetype="text/plain")
    return None


def _no_store(response: Response) -> Response:
    if request.endpoint not in STATIC_ENDPOINTS:
        response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask) -> None:
    proxies = app.config["PROXY_COUNT"]
    if proxies:
        app.wsgi_app = ProxyFix(
            app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies, x_port=proxies, x_prefix=proxies
        )
    # One Talisman per app: it keeps its app and options on itself (tests build several apps).
    app.extensions["talisman"] = Talisman(
        app,
        force_https=False,  # TLS is the proxy's or the server's; the base URL says which
        strict_transport_security=app.config["HSTS"],
        content_security_policy=POLICY,
        content_security_policy_nonce_in=["script-src"],
        frame_options="DENY",
        # Same-origin requests keep their Referer: Flask-WTF checks it on https form posts.
        referrer_policy="same-origin",
        session_cookie_secure=app.config["SESSION_COOKIE_SECURE"],
        session_cookie_http_only=True,
        session_cookie_samesite=app.config["SESSION_COOKIE_SAMESITE"],
    )
    app.before_request_funcs.setdefault(None, []).insert(0, _refuse_unknown_hosts)
    app.after_request(_no_store)

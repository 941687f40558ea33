"""Links that leave the portal (emails): built on the configured ``PORTAL_BASE_URL``, never on the Host header of the
request that caused them — a forged Host must not put an attacker's address into a genuine reset link."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app


def external_url(endpoint: str, **values) -> str:
    base = urlsplit(current_app.config["PORTAL_BASE_URL"])
    adapter = current_app.url_map.bind(base.netloc, script_name=base.path or "/", url_scheme=base.scheme)
    return adapter.build(endpoint, values, force_external=True)

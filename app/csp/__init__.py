"""Microsoft CSP: the provider interface (base), the embedded sandbox and the Partner Center REST client."""

from __future__ import annotations

from flask import current_app

from app.csp.base import CspProvider


def get_provider() -> CspProvider:
    """The app's provider, as CSP_PROVIDER chooses; one object per app (it holds connections and tokens)."""
    provider = current_app.extensions.get("csp_provider")
    if provider is None:
        config = current_app.config
        if config["CSP_PROVIDER"] == "partner_center":
            from app.csp.partner_center import PartnerCenterProvider

            provider = PartnerCenterProvider.from_config(config)
        else:
            from app.csp.sandbox import SandboxProvider
            from app.extensions import db

            provider = SandboxProvider.from_config(config, lambda: db.engine)
        current_app.extensions["csp_provider"] = provider
    return provider

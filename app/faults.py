"""Deterministic crash points for fault tests: ``PORTAL_FAULT_POINT=<name>`` makes the process exit at the point of
that name, as a ``kill -9`` would (no clean-up, no answer), so a test of a crash never depends on timing. The setting
is read as empty in production (config.py): there, no point ever fires."""

from __future__ import annotations

import logging
import os

from flask import current_app, has_app_context

log = logging.getLogger(__name__)

#: The points the code offers, by name.
EXPORT_PROGRESS = "export_progress"  # a background export, after writing its first rows
BEFORE_CREATE_CUSTOMER = "before_create_customer"  # a new tenant, before Microsoft is asked to create it
AFTER_CREATE_CUSTOMER = "after_create_customer"  # a new tenant, created at Microsoft, before the portal records it
AFTER_CREATE_CART = "after_create_cart"  # an order's cart made at Microsoft, before its checkout
AFTER_CREATE_ORDER = "after_create_order"  # an order, placed at Microsoft, before the portal records it
AFTER_PROVIDER_CALL = "after_provider_call"  # any other change (quantity, auto-renew, licence, user): Microsoft
# answered, the portal has not recorded it yet
AFTER_ADD_SUB_ACCOUNT = "after_add_sub_account"  # Add Sub Account committed, before the page answers
POINTS = frozenset(
    {
        EXPORT_PROGRESS,
        BEFORE_CREATE_CUSTOMER,
        AFTER_CREATE_CUSTOMER,
        AFTER_CREATE_CART,
        AFTER_CREATE_ORDER,
        AFTER_PROVIDER_CALL,
        AFTER_ADD_SUB_ACCOUNT,
    }
)


def point(name: str) -> None:
    """Exit the process here if the configured fault point is ``name``."""
    if name not in POINTS:
        raise ValueError(f"unknown fault point {name!r}")
    if has_app_context() and current_app.config.get("PORTAL_FAULT_POINT") == name:
        log.warning("Fault point %s: the process exits now (PORTAL_FAULT_POINT)", name)
        os._exit(137)

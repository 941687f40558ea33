"""The one capability check: may the current request do ``action`` on ``resource`` (security/permissions.py)?

Services call it before they decide (may this user order, see Microsoft's cost, set prices?), and views call it to
draw a page; nothing else asks FAB directly. While launched, a capability counts only if the customer user's role and
the partner user's both hold it (the request's permissions are already the intersection: security/impersonation.py).
Outside a request — the CLI, a worker's job — the caller is the operator's own process and may.
"""

from __future__ import annotations

from flask import current_app, has_request_context

from security import permissions as P


class NotAllowed(PermissionError):
    """The current user may not do this; answered as 404 (or the field's message) by the view."""


def may(resource: str, action: str = P.READ) -> bool:
    if not has_request_context():
        return True
    return current_app.appbuilder.sm.has_access(f"can_{action}", resource)


def require(resource: str, action: str = P.WRITE) -> None:
    """``may`` or ``NotAllowed``."""
    if not may(resource, action):
        raise NotAllowed(f"not allowed: {action} {resource}")

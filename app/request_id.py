"""One id per request, on every event, every log line and the 500 page, and in the ``X-Request-ID`` response header:
what a user reads out from an error page finds the log lines and events of that request."""

from __future__ import annotations

import uuid

from flask import Flask, g, has_request_context

HEADER = "X-Request-ID"


def current() -> str | None:
    """This request's id (None outside a request)."""
    if not has_request_context():
        return None
    if "request_id" not in g:
        g.request_id = uuid.uuid4().hex
    return g.request_id


def _assign() -> None:
    current()


def _answer_with_id(response):
    response.headers[HEADER] = current()
    return response


def init_app(app: Flask) -> None:
    app.before_request_funcs.setdefault(None, []).insert(0, _assign)
    app.after_request(_answer_with_id)

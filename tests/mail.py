"""Real mail for tests: an SMTP server (aiosmtpd) on a free local port, and the embedded outbox folder."""

from __future__ import annotations

import email
import email.policy
import re
import socket
import threading
from contextlib import contextmanager
from pathlib import Path

from aiosmtpd.controller import Controller


class Inbox:
    """An aiosmtpd handler that keeps every message it receives, parsed."""

    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 Message accepted"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def smtp_server(port: int | None = None, inbox: Inbox | None = None):
    """An SMTP server on ``port`` (a free one by default) keeping what it receives in ``inbox``."""
    inbox = inbox or Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port or free_port())
    controller.start()
    try:
        yield inbox, controller.port
    finally:
        controller.stop()


def wait_for_mail(timeout: float = 30) -> None:
    """Wait until this process's mail outbox sender (app/services/outbox.py) has nothing left to try: mail is sent
    after the answer of the request that queued it, by that thread (it exits once it finds nothing more due)."""
    for thread in threading.enumerate():
        if thread.name == "mail-outbox":
            thread.join(timeout)
            assert not thread.is_alive(), "the mail outbox sender is still busy"


@contextmanager
def mail_through_smtp(app, port: int):
    """Point the app's Flask-Mailman at an SMTP server (as MAIL_SERVER/MAIL_PORT would in production). Mail queued
    in the block is sent through it: leaving the block waits for the outbox sender."""
    wait_for_mail()  # mail queued before goes where it was meant to
    state = app.extensions["mailman"]
    saved = (state.backend, state.server, state.port, state.use_tls, state.use_ssl, state.timeout)
    state.backend, state.server, state.port, state.use_tls, state.use_ssl, state.timeout = (
        "smtp",
        "127.0.0.1",
        port,
        False,
        False,
        5,
    )
    try:
        yield
        wait_for_mail()
    finally:
        state.backend, state.server, state.port, state.use_tls, state.use_ssl, state.timeout = saved


def body_of(message) -> str:
    part = message.get_body(preferencelist=("plain",)) if message.is_multipart() else message
    return part.get_content()


def link_in(message, base: str = "") -> str:
    """The path of the first portal link in a message."""
    url = re.search(r"https?://[^\s\"<>]+/activate/[^\s\"<>]+", body_of(message)).group(0)
    return re.sub(r"^https?://[^/]+", base, url)


def outbox_messages(app) -> list:
    """The messages the embedded backend has written, once the outbox sender is done."""
    wait_for_mail()
    folder = Path(app.config["MAIL_FILE_PATH"])
    return (
        [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in sorted(folder.glob("*.eml"))]
        if folder.exists()
        else []
    )


def empty_outbox(app) -> None:
    wait_for_mail()
    for path in Path(app.config["MAIL_FILE_PATH"]).glob("*.eml"):
        path.unlink()

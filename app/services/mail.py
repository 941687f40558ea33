"""Sending mail with Flask-Mailman: SMTP in production, the embedded outbox (``instance/outbox/``) by default."""

from __future__ import annotations

import logging
import smtplib
import uuid
from pathlib import Path

from flask import current_app, render_template
from flask_mailman import EmailMultiAlternatives
from flask_mailman.backends.base import BaseEmailBackend

from app.models.base import utcnow

log = logging.getLogger(__name__)


class MailError(Exception):
    """A message could not be handed to the mail server; the message says why."""


class OutboxEmailBackend(BaseEmailBackend):
    """The embedded mail server: each message becomes one ``.eml`` file in the outbox, with one log line."""

    def send_messages(self, email_messages) -> int:
        outbox = Path(self.mailman.file_path)
        outbox.mkdir(parents=True, exist_ok=True)
        for message in email_messages:
            path = outbox / f"{utcnow():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:8]}.eml"
            path.write_bytes(message.message().as_bytes())
            log.info("Mail to %s: %s (written to %s)", ", ".join(message.to), message.subject, path)
        return len(email_messages)


def send_mail(to: str, subject: str, template: str, **context) -> None:
    """Send the text (``<template>.txt``) and HTML (``<template>.html``) message to one address."""
    text = render_template(f"mail/{template}.txt", **context)
    html = render_template(f"mail/{template}.html", **context)
    message = EmailMultiAlternatives(subject, text, current_app.config["MAIL_DEFAULT_SENDER"], [to])
    message.attach_alternative(html, "text/html")
    try:
        message.send()
    except (smtplib.SMTPException, OSError) as exc:
        log.warning("Mail to %s (%s) failed: %s", to, subject, exc)
        raise MailError(str(exc) or type(exc).__name__) from exc

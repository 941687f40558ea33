"""Mail with Flask-Mailman: SMTP in production, the embedded outbox (``instance/outbox/``) by default. Messages are
queued and sent by the mail outbox (app/services/outbox.py), never straight from a web request."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

from flask import current_app, render_template
from flask_mailman import EmailMultiAlternatives
from flask_mailman.backends.base import BaseEmailBackend

from app.models.base import utcnow

log = logging.getLogger(__name__)


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


def render(template: str, **context) -> tuple[str, str]:
    """The text (``mail/<template>.txt``) and HTML (``mail/<template>.html``) bodies of a message."""
    return render_template(f"mail/{template}.txt", **context), render_template(f"mail/{template}.html", **context)


def send(connection, to: str, subject: str, text: str, html: str) -> None:
    """Hand one message to an open mail ``connection`` (Flask-Mailman's); raises what the server answered."""
    message = EmailMultiAlternatives(
        subject, text, current_app.config["MAIL_DEFAULT_SENDER"], [to], connection=connection
    )
    message.attach_alternative(html, "text/html")
    message.send()

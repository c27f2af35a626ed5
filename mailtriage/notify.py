"""Short notifications to a team's address over SMTP (standard library ``smtplib``)."""

from __future__ import annotations

import smtplib
import ssl
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from mailtriage.errors import NotifyError
from mailtriage.settings import Security, SmtpSettings


class Notifier:
    """Sends plain-text notifications through the configured SMTP server."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    def send(self, to: str, subject: str, body: str, now: datetime) -> None:
        """Send one notification. Raises NotifyError when the server cannot be reached or refuses it."""
        s = self.settings
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = s.from_address, to, subject
        message["Date"], message["Message-ID"] = format_datetime(now), make_msgid()
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to this, please
        message.set_content(body)
        assert s.host is not None
        try:
            if s.security is Security.TLS:
                client: smtplib.SMTP = smtplib.SMTP_SSL(s.host, s.effective_port, timeout=s.timeout,
                                                        context=ssl.create_default_context())  # fmt: skip
            else:
                client = smtplib.SMTP(s.host, s.effective_port, timeout=s.timeout)
            with client:
                if s.security is Security.STARTTLS:
                    client.starttls(context=ssl.create_default_context())
                if s.username and s.secret is not None:
                    client.login(s.username, s.secret.read("smtp", "secret"))
                client.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            raise NotifyError(f"cannot send a notification to {to} via {s.host}:{s.effective_port}: {exc}") from None

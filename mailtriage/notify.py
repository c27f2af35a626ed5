"""Short notifications: to a team's address over SMTP (standard library ``smtplib``), and as JSON to a webhook
(``urllib``): a chat tool's incoming webhook shows the ``text`` field, anything else can read the rest."""

from __future__ import annotations

import json
import smtplib
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from http.client import HTTPException
from typing import Any

from mailtriage import __version__
from mailtriage.errors import NotifyError
from mailtriage.settings import Security, SmtpSettings, webhook_site


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


class Webhook:
    """Posts JSON to a configured URL: an incoming webhook of a chat tool, or any receiver of one's own."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout

    def post(self, payload: Mapping[str, Any]) -> None:
        """Post one JSON object. Raises NotifyError when the receiver cannot be reached or answers with an error;
        the URL's path is never in the message (it often holds the token)."""
        request = urllib.request.Request(
            self.url,
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json", "User-Agent": f"mailtriage/{__version__}"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 (http/https only)
                response.read()
        except urllib.error.HTTPError as exc:
            raise NotifyError(f"the webhook at {webhook_site(self.url)} answered {exc.code} {exc.reason}") from None
        except (OSError, HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise NotifyError(f"cannot reach the webhook at {webhook_site(self.url)}: {reason}") from None

"""The sections of the configuration, one pydantic model each; ``settings.Settings`` holds them together and is
what the rest of mailtriage imports."""

from __future__ import annotations

import enum
import ipaddress
import os
import re
import shlex
import subprocess
from datetime import date
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from mailtriage.errors import SecretError
from mailtriage.routing_settings import EMAIL, Section, regex


class Security(enum.StrEnum):
    TLS = "tls"
    STARTTLS = "starttls"
    NONE = "none"


class Auth(enum.StrEnum):
    PASSWORD = "password"
    XOAUTH2 = "xoauth2"


class Secret(Section):
    """Where a mailbox's password or token comes from: exactly one of ``env``, ``file`` or ``command``."""

    env: str | None = None
    file: Path | None = None
    command: str | None = None
    timeout: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _exactly_one_source(self) -> Secret:
        given = [name for name in ("env", "file", "command") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("exactly one of env, file or command")
        return self

    def describe(self) -> str:
        """Say where the secret comes from, without revealing it (a command line may itself carry a secret)."""
        if self.env is not None:
            return f"environment variable {self.env}"
        if self.file is not None:
            return f"file {self.file}"
        return "command (hidden)"

    def check(self, source: str, key: str) -> None:
        """Raise SecretError now if an environment variable or file secret cannot be read; commands run later."""
        if self.env is not None and not os.environ.get(self.env):
            raise SecretError(source, f"{key}.env", self.env, "an environment variable that is set and not empty")
        if self.file is not None:
            try:
                if not self.file.read_text(encoding="utf-8").strip():
                    raise SecretError(source, f"{key}.file", str(self.file), "a file holding the secret (it is empty)")
            except OSError as exc:
                raise SecretError(source, f"{key}.file", str(self.file), f"a readable file ({exc.strerror})") from None

    def read(self, source: str, key: str) -> str:
        """Return the secret, stripped of surrounding whitespace; a command runs each time (tokens expire)."""
        self.check(source, key)
        if self.env is not None:
            return os.environ[self.env].strip()
        if self.file is not None:
            return self.file.read_text(encoding="utf-8").strip()
        assert self.command is not None
        try:
            done = subprocess.run(
                shlex.split(self.command), capture_output=True, text=True, timeout=self.timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SecretError(
                source, f"{key}.command", "(hidden)", f"a command that runs and prints the secret ({exc})"
            ) from None
        if done.returncode != 0 or not done.stdout.strip():
            # What the command said on stderr tells the operator why (an expired refresh token, a 503): its last
            # line, shortened. Its stdout is never shown: that is where a secret would be.
            said = (done.stderr.strip().splitlines() or [""])[-1][:200]
            raise SecretError(
                source,
                f"{key}.command",
                "(hidden)",
                f"a command that exits 0 and prints the secret (it exited {done.returncode}"
                + (f", saying: {said})" if said else ")"),
            )
        return done.stdout.strip()


class Folders(Section):
    """Folder names; drafts and sent are found by SPECIAL-USE (RFC 6154) when not set."""

    inbox: str = "INBOX"
    drafts: str | None = None
    sent: str | None = None


class MailboxSettings(Section):
    """One mailbox to triage: an IMAP account or a local Maildir."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.@-]+$")
    maildir: Path | None = None
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Security = Security.TLS
    tls_verify: bool = True
    ca_file: Path | None = None
    username: str | None = None
    auth: Auth = Auth.PASSWORD
    secret: Secret | None = None
    folders: Folders = Folders()
    timeout: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _imap_or_maildir(self) -> MailboxSettings:
        if self.maildir is not None:
            if self.host is not None:
                raise ValueError("either maildir or host, not both")
            return self
        missing = [key for key in ("host", "username", "secret") if getattr(self, key) is None]
        if missing:
            raise ValueError(f"maildir = PATH, or an IMAP account with {', '.join(missing)} set")
        return self

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return 993 if self.security is Security.TLS else 143


class ScheduleSettings(Section):
    poll_interval: float = Field(default=60.0, gt=0, description="seconds between polls")
    idle: bool = True
    idle_timeout: float = Field(default=1500.0, gt=0, le=1740, description="seconds before IDLE is re-issued")
    backoff_initial: float = Field(default=5.0, gt=0)
    backoff_max: float = Field(default=300.0, gt=0)
    corrections_interval: float = Field(default=600.0, gt=0)
    corrections_window_days: float = Field(default=14.0, gt=0)


class IntakeSettings(Section):
    batch_size: int = Field(default=100, ge=1, le=5000)
    max_per_cycle: int = Field(default=2000, ge=1)
    backfill_days: float | None = Field(default=None, gt=0)
    own_addresses: tuple[str, ...] = ()

    @field_validator("own_addresses")
    @classmethod
    def _lowercase(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(address.strip().lower() for address in value)


class StoreSettings(Section):
    url: str = "sqlite:///mailtriage.db"
    busy_timeout: float = Field(default=30.0, gt=0)

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        try:
            make_url(value)
        except ArgumentError:
            raise ValueError("a database URL such as sqlite:///mailtriage.db or postgresql://host/db") from None
        return value


class ClusterSettings(Section):
    """Several daemons sharing one store (PostgreSQL) and the mailboxes: each mailbox is worked by one of them at a
    time, under a lease it renews."""

    name: str = ""
    """This daemon's name among those sharing the store, unique to it; empty: HOST:PID."""
    lease_seconds: float = Field(default=30.0, ge=3, le=3600)
    """A daemon that stops renewing (killed, its machine or its database connection gone) loses its mailboxes
    after this long, and the others take them over."""

    @field_validator("name")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.isprintable() or len(value) > 200:
            raise ValueError("a name of at most 200 printable characters, unique to this daemon")
        return value.strip()


class ConsoleSettings(Section):
    """The web console (``mailtriage console``): where compliance approves templates and team leads watch what
    waits. It serves plain HTTP on loopback, for the company's reverse proxy to put TLS in front of it."""

    host: str = "127.0.0.1"
    port: int = Field(default=8025, ge=1, le=65535)
    session_hours: float = Field(default=8.0, gt=0, le=24 * 30)
    """A session ends this long after its login."""
    idle_minutes: float = Field(default=30.0, gt=0, le=24 * 60)
    """A session unused this long ends."""
    secure_cookie: bool = True
    """The session cookie is sent over HTTPS only (browsers also send it to http://127.0.0.1 and localhost)."""
    login_attempts: int = Field(default=5, ge=1, le=1000)
    """Failed logins allowed per account, and per client address, in ``login_window_minutes``; more are refused
    until the window has passed."""
    login_window_minutes: float = Field(default=15.0, gt=0, le=24 * 60)
    proxy_header: str = ""
    """The header a trusted reverse proxy names the signed-in user in (e.g. X-Forwarded-User); empty: local
    logins only. The user must have a console account: its role is the account's."""
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")
    """The addresses ``proxy_header`` is believed from; from any other it is ignored."""

    @field_validator("proxy_header")
    @classmethod
    def _header_name(cls, value: str) -> str:
        if value and not re.fullmatch(r"[A-Za-z0-9-]{1,100}", value):
            raise ValueError("an HTTP header name (letters, digits, dashes), or empty")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for address in value:
            ipaddress.ip_network(address, strict=False)  # ValueError names the address
        return value


class SmtpSettings(Section):
    """The mail server that carries notifications to teams (never replies to customers: those are drafts)."""

    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Security = Security.STARTTLS
    username: str | None = None
    secret: Secret | None = None
    from_address: str = "mailtriage@example.com"
    timeout: float = Field(default=30.0, gt=0)

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return {Security.TLS: 465, Security.STARTTLS: 587, Security.NONE: 25}[self.security]


SHIPPED_TEMPLATES = Path(__file__).resolve().parent / "shipped_templates"
"""The default templates, policy and approvals, at the top of the source tree."""


class DraftSettings(Section):
    """How reply drafts are written."""

    from_address: str = "support@example.com"
    signatures: dict[str, str] = Field(default_factory=dict)
    """The team's signature per language (``{{ signature }}``): these win over ``signature`` and the defaults."""
    signature: str | None = None
    """One signature for every language without one in ``signatures`` (older configs); default: the defaults."""
    templates: Path = SHIPPED_TEMPLATES
    fallback_language: str = "en"
    reference_patterns: tuple[str, ...] = (r"\b[A-Z]{1,3}-\d{3,}(?:-\d+)*\b", r"#\d{4,}\b")
    model_patterns: tuple[str, ...] = (r"\b[A-Z]{2,4}-?\d{2,4}[A-Z]{0,2}\b(?!-\d)",)
    """Product model numbers (NC-700, KT-170) the customer gave, offered to templates as ``models`` (and then not
    among ``references``)."""
    foreign_reply_to: Literal["use", "sender"] = "use"
    """A Reply-To outside the sender's domain: address the draft to it, or to the sender; noted either way."""

    @field_validator("reference_patterns", "model_patterns")
    @classmethod
    def _patterns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            regex(pattern)
        return value

    def signature_for(self, language: str) -> str:
        """The signature of a draft in ``language``: its own in ``signatures``, else ``signature``, else the
        default of that language (English for a language without one)."""
        if language in self.signatures:
            return self.signatures[language]
        if self.signature is not None:
            return self.signature
        return DEFAULT_SIGNATURES.get(language, DEFAULT_SIGNATURES["en"])


DEFAULT_SIGNATURES = {
    "en": "Kind regards,\nThe customer service team",
    "fr": "Bien cordialement,\nL'équipe du service client",
    "de": "Mit freundlichen Grüßen\nIhr Kundenservice",
}
"""The signature of a draft in each language when the config sets none."""


class ClassifierSettings(Section):
    """The model that sorts customer mail into categories, and how sure it must be."""

    model: Path | None = None
    """None: the default model, built from the seed set on first use and kept in the user's cache folder."""
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    fallback: str = Field(default="needs-triage", pattern=r"^[a-z0-9][a-z0-9-]*$")
    features: Literal["auto", "ngrams", "ngrams+embeddings"] = "auto"
    """What a model trained by ``train`` or the scheduled retrain reads (``classify.choose_features``)."""
    retrain: str | None = None
    training_folders: dict[str, str] = Field(default_factory=dict)

    @field_validator("retrain")
    @classmethod
    def _crontab(cls, value: str | None) -> str | None:
        if value is not None:
            from apscheduler.triggers.cron import CronTrigger

            try:
                CronTrigger.from_crontab(value)
            except ValueError:
                raise ValueError("a crontab expression such as '0 3 * * 0' (Sundays at 03:00)") from None
        return value


WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_SPAN = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


def _spans(value: tuple[str, ...]) -> tuple[str, ...]:
    previous = ""
    for span in value:
        found = _SPAN.match(span)
        if not found or (span[6:] != "24:00" and span[6:8] == "24"):
            raise ValueError(f"working spans written HH:MM-HH:MM, such as '09:00-12:30' (not {span!r})")
        start, end = span[:5], span[6:]
        if end != "00:00" and end <= start:
            raise ValueError(f"spans that end after they start (not {span!r}); '22:00-00:00' runs to midnight")
        if start < previous:
            raise ValueError(f"spans in order, without overlap (not {span!r} after one ending at {previous})")
        previous = "24:00" if end == "00:00" else end
    return value


class CalendarSettings(Section):
    """Business hours: the working spans of each weekday in a time zone, and the holidays (no working time)."""

    timezone: str = "UTC"
    monday: tuple[str, ...] = ("09:00-17:00",)
    tuesday: tuple[str, ...] = ("09:00-17:00",)
    wednesday: tuple[str, ...] = ("09:00-17:00",)
    thursday: tuple[str, ...] = ("09:00-17:00",)
    friday: tuple[str, ...] = ("09:00-17:00",)
    saturday: tuple[str, ...] = ()
    sunday: tuple[str, ...] = ()
    holidays: tuple[date, ...] = ()

    _valid_spans = field_validator(*WEEKDAYS)(_spans)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("an IANA time zone such as 'Europe/Paris' or 'America/New_York'") from None
        return value

    @model_validator(mode="after")
    def _some_work(self) -> CalendarSettings:
        if not any(getattr(self, day) for day in WEEKDAYS):
            raise ValueError("working spans on at least one weekday (for round-the-clock, clock = 'wall-clock')")
        return self


class DeadlineSettings(Section):
    """First-response deadlines: the target, how its hours are counted, when to warn, and whom to tell."""

    enabled: bool = True
    target_hours: float = Field(default=24.0, gt=0)
    clock: Literal["wall-clock", "business"] = "wall-clock"
    calendar: CalendarSettings = CalendarSettings()
    warn_hours_left: float | None = Field(default=4.0, ge=0)
    warn_share: float | None = Field(default=None, gt=0, lt=1)
    sweep_interval: float = Field(default=60.0, gt=0)
    watch_days: float = Field(default=30.0, gt=0)
    digest_to: str | None = Field(default=None, pattern=EMAIL)
    webhook_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    webhook_timeout: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _some_warning(self) -> DeadlineSettings:
        if self.warn_hours_left is None and self.warn_share is None:
            raise ValueError("warn_hours_left or warn_share (or both), so that a warning comes before a breach")
        return self


class HealthSettings(Section):
    """How the daemon tells a supervisor it is alive: ``mailtriage status``, a heartbeat file, Prometheus metrics."""

    stale_after: float = Field(default=900.0, gt=0)
    heartbeat_file: Path | None = None
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_address: str = "127.0.0.1"


class LoggingSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

"""Configuration: one TOML file plus ``MAILTRIAGE_*`` environment overrides; the only place config is read.

Environment variables override the file with ``__`` between nesting levels, e.g.
``MAILTRIAGE_SCHEDULE__POLL_INTERVAL=30``. Secrets are never required in the file: each mailbox names an
environment variable, a file or a command that yields its password or XOAUTH2 token.
"""

from __future__ import annotations

import enum
import os
import re
import shlex
import subprocess
import tomllib
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from mailtriage.errors import MISSING, ConfigError, SecretError

ENV_PREFIX = "MAILTRIAGE_"
EMAIL = r"^[^@\s]+@[^@\s]+$"
CONFIG_ENV = "MAILTRIAGE_CONFIG"
DEFAULT_CONFIG = "mailtriage.toml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Security(enum.StrEnum):
    TLS = "tls"
    STARTTLS = "starttls"
    NONE = "none"


class Auth(enum.StrEnum):
    PASSWORD = "password"
    XOAUTH2 = "xoauth2"


class Secret(_Section):
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


class Folders(_Section):
    """Folder names; drafts and sent are found by SPECIAL-USE (RFC 6154) when not set."""

    inbox: str = "INBOX"
    drafts: str | None = None
    sent: str | None = None


class MailboxSettings(_Section):
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


class ScheduleSettings(_Section):
    poll_interval: float = Field(default=60.0, gt=0, description="seconds between polls")
    idle: bool = True
    idle_timeout: float = Field(default=1500.0, gt=0, le=1740, description="seconds before IDLE is re-issued")
    backoff_initial: float = Field(default=5.0, gt=0)
    backoff_max: float = Field(default=300.0, gt=0)
    corrections_interval: float = Field(default=600.0, gt=0)
    corrections_window_days: float = Field(default=14.0, gt=0)


class IntakeSettings(_Section):
    batch_size: int = Field(default=100, ge=1, le=5000)
    max_per_cycle: int = Field(default=2000, ge=1)
    backfill_days: float | None = Field(default=None, gt=0)
    own_addresses: tuple[str, ...] = ()

    @field_validator("own_addresses")
    @classmethod
    def _lowercase(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(address.strip().lower() for address in value)


class StoreSettings(_Section):
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


class Category(_Section):
    """A category mail is sorted into, and what happens to its mail."""

    name: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str = ""
    folder: str | None = None
    keywords: tuple[str, ...] = ()
    flag: bool = False
    template: str | None = None
    draft: bool = True
    notify: str | None = Field(default=None, pattern=EMAIL)
    target_hours: float | None = Field(default=None, ge=0)
    """The first-response target of this category's mail; None: ``deadlines.target_hours``; 0: no deadline."""

    @field_validator("keywords")
    @classmethod
    def _atoms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [k for k in value if not re.fullmatch(r"[^\s()\[\]{%*\"\\]+", k) or k.startswith("\\")]
        if bad:
            raise ValueError(f"IMAP keywords without spaces, brackets, quotes or a leading backslash (not {bad})")
        return value

    @property
    def template_name(self) -> str:
        return self.template or self.name


def _regex(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"a regular expression ({exc})") from None
    return value


class Rule(_Section):
    """An override rule: when every pattern given matches, its action wins over the classifier."""

    name: str = Field(min_length=1)
    sender: str | None = None
    recipient: str | None = None
    subject: str | None = None
    body: str | None = None
    attachment_type: str | None = None
    language: str | None = None
    action: Literal["category", "no-draft", "untouched"] = "category"
    category: str | None = None

    _patterns = field_validator("sender", "recipient", "subject", "body", "attachment_type")(_regex)

    @model_validator(mode="after")
    def _complete(self) -> Rule:
        if self.action == "category" and self.category is None:
            raise ValueError("a category for action = 'category'")
        if not any(
            getattr(self, key) for key in ("sender", "recipient", "subject", "body", "attachment_type", "language")
        ):
            raise ValueError("at least one of sender, recipient, subject, body, attachment_type or language")
        return self


class SmtpSettings(_Section):
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


SHIPPED_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
"""The default templates, policy and approvals, at the top of the source tree."""


class DraftSettings(_Section):
    """How reply drafts are written."""

    from_address: str = "support@example.com"
    signature: str = "Kind regards,\nThe support team"
    templates: Path = SHIPPED_TEMPLATES
    fallback_language: str = "en"
    reference_patterns: tuple[str, ...] = (r"\b[A-Z]{1,3}-\d{3,}(?:-\d+)*\b", r"#\d{4,}\b")
    foreign_reply_to: Literal["use", "sender"] = "use"
    """A Reply-To outside the sender's domain: address the draft to it, or to the sender; noted either way."""

    @field_validator("reference_patterns")
    @classmethod
    def _patterns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            _regex(pattern)
        return value


DEFAULT_CATEGORIES = (
    Category(name="defect-complaint", description="Complaint about a defective or damaged product"),
    Category(name="return-refund", description="Return, exchange, cancellation or refund"),
    Category(name="repair", description="Repair and maintenance, in or out of warranty"),
    Category(name="how-to", description="How to set up, use or care for a product"),
    Category(name="spare-parts", description="Spare parts and accessories"),
    Category(name="order-delivery", description="Order and delivery status"),
    Category(name="billing", description="Billing, invoices and payments"),
    Category(name="feedback", description="Praise, suggestions and other feedback"),
)


class ClassifierSettings(_Section):
    """The model that sorts customer mail into categories, and how sure it must be."""

    model: Path = Path("models/default.skops")
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    fallback: str = Field(default="needs-triage", pattern=r"^[a-z0-9][a-z0-9-]*$")
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


class CalendarSettings(_Section):
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


class DeadlineSettings(_Section):
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


class HealthSettings(_Section):
    """How the daemon tells a supervisor it is alive: ``mailtriage status``, a heartbeat file, Prometheus metrics."""

    stale_after: float = Field(default=900.0, gt=0)
    heartbeat_file: Path | None = None
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_address: str = "127.0.0.1"


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class Settings(BaseSettings):
    """The whole configuration: what ``config.example.toml`` documents."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True, case_sensitive=False
    )

    mailboxes: tuple[MailboxSettings, ...] = Field(min_length=1)
    schedule: ScheduleSettings = ScheduleSettings()
    intake: IntakeSettings = IntakeSettings()
    store: StoreSettings = StoreSettings()
    categories: tuple[Category, ...] = DEFAULT_CATEGORIES
    classifier: ClassifierSettings = ClassifierSettings()
    rules: tuple[Rule, ...] = ()
    drafts: DraftSettings = DraftSettings()
    smtp: SmtpSettings = SmtpSettings()
    deadlines: DeadlineSettings = DeadlineSettings()
    health: HealthSettings = HealthSettings()
    logging: LoggingSettings = LoggingSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file arrives as init arguments; the environment wins over it.
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        names = [mailbox.name for mailbox in self.mailboxes]
        if len(set(names)) != len(names):
            raise ValueError(f"mailbox names that are unique (got {', '.join(names)})")
        categories = self.category_names()
        if len(set(categories)) != len(categories) or len(categories) < 2:
            raise ValueError(f"at least two categories with unique names (got {', '.join(categories)})")
        if self.classifier.fallback in categories:
            raise ValueError(f"a classifier.fallback that is not one of the categories ({self.classifier.fallback})")
        if any(c.notify for c in self.categories) and self.smtp.host is None:
            raise ValueError("an [smtp] host, since a category has a notify address")
        if self.deadlines.digest_to and self.smtp.host is None:
            raise ValueError("an [smtp] host, since deadlines.digest_to is set")
        ruled = {rule.category for rule in self.rules if rule.category} - set(categories) - {self.classifier.fallback}
        if ruled:
            raise ValueError(f"rules whose category is configured, not {', '.join(sorted(ruled))}")
        unknown = sorted(set(self.classifier.training_folders.values()) - set(categories))
        if unknown:
            raise ValueError(f"classifier.training_folders naming configured categories, not {', '.join(unknown)}")
        return self

    def category_names(self) -> tuple[str, ...]:
        return tuple(category.name for category in self.categories)

    def own_addresses(self) -> frozenset[str]:
        """Our own addresses: the configured ones and every IMAP username that is an address."""
        usernames = {m.username.lower() for m in self.mailboxes if m.username and "@" in m.username}
        return frozenset(self.intake.own_addresses) | usernames


def find_config(path: Path | None, environ: Mapping[str, str] | None = None) -> Path:
    """The config file to use: the one given, else ``$MAILTRIAGE_CONFIG``, else ``./mailtriage.toml``."""
    environ = os.environ if environ is None else environ
    if path is not None:
        return path
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    return Path(DEFAULT_CONFIG)


def load_settings(path: Path, *, check_secrets: bool = True) -> Settings:
    """Read and validate the config file at ``path`` with environment overrides.

    Relative paths (Maildir, secret files, a SQLite store) are taken relative to the file's folder.

    Raises:
        ConfigError: naming the file, key, value and what was expected, for the first bad value.
    """
    source = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(source, "(file)", str(path), f"a config file (copy config.example.toml to {path})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, "(file)", str(path), f"a readable UTF-8 file ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "(syntax)", MISSING, f"valid TOML ({exc})") from None
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise _config_error(source, exc, data) from None
    settings = _resolve_paths(settings, path.resolve().parent)
    if check_secrets:
        for index, mailbox in enumerate(settings.mailboxes):
            if mailbox.secret is not None:
                mailbox.secret.check(source, f"mailboxes[{index}].secret")
        if settings.smtp.secret is not None:
            settings.smtp.secret.check(source, "smtp.secret")
    return settings


_SECRET_KEY = re.compile(r"secret|passw|token|webhook_url|credential|api_?key", re.IGNORECASE)
"""Keys whose refused value is never shown in an error: it may be the secret itself."""


def _config_error(source: str, exc: ValidationError, data: Mapping[str, Any]) -> ConfigError:
    error = exc.errors()[0]
    loc = [part for part in error["loc"] if part not in ("function-after",)]
    env_name = ENV_PREFIX + "__".join(str(part) for part in loc).upper()
    if loc and env_name in {name.upper() for name in os.environ}:
        source = f"environment {env_name}"
    key = ".".join(f"[{part}]" if isinstance(part, int) else str(part) for part in loc).replace(".[", "[")
    value = error.get("input", MISSING) if error["type"] != "missing" else MISSING
    if isinstance(value, Mapping) and error["type"] != "extra_forbidden":
        value = MISSING if error["type"] == "missing" else "{...}"
    expected = str(error["msg"])
    for prefix in ("Input should be ", "Value error, "):
        expected = expected.removeprefix(prefix)
    if _SECRET_KEY.search(key) and value is not MISSING:
        value = "(hidden)"  # a secret written where it does not belong is still a secret
    if error["type"] in ("enum", "literal_error"):
        expected = f"one of {expected}"
    elif error["type"] == "extra_forbidden":
        expected = "no such setting; see config.example.toml for the known keys"
    elif error["type"] == "missing":
        expected = "a value (this setting is required)"
        if loc == ["mailboxes"]:
            expected = "at least one [[mailboxes]] table"
    elif error["type"] == "too_short" and loc == ["mailboxes"]:
        expected = "at least one [[mailboxes]] table"
    return ConfigError(source, key or "(top level)", value, expected)


def _resolve_paths(settings: Settings, base: Path) -> Settings:
    def under(path: Path | None) -> Path | None:
        return None if path is None else (base / path.expanduser())

    mailboxes = []
    for mailbox in settings.mailboxes:
        secret = mailbox.secret
        if secret is not None and secret.file is not None:
            secret = secret.model_copy(update={"file": under(secret.file)})
        mailboxes.append(
            mailbox.model_copy(
                update={"maildir": under(mailbox.maildir), "ca_file": under(mailbox.ca_file), "secret": secret}
            )
        )
    classifier = settings.classifier.model_copy(update={"model": base / settings.classifier.model.expanduser()})
    drafts = settings.drafts.model_copy(update={"templates": base / settings.drafts.templates.expanduser()})
    store = settings.store
    url = make_url(store.url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        store = store.model_copy(update={"url": url.set(database=str(base / url.database)).render_as_string(False)})
    health = settings.health.model_copy(update={"heartbeat_file": under(settings.health.heartbeat_file)})
    return settings.model_copy(
        update={
            "mailboxes": tuple(mailboxes), "store": store, "classifier": classifier, "drafts": drafts,
            "health": health,
        }
    )  # fmt: skip


def masked(settings: Settings) -> dict[str, Any]:
    """The effective configuration as plain data, with every secret and password replaced by a description."""
    data = settings.model_dump(mode="json")
    for index, mailbox in enumerate(settings.mailboxes):
        if mailbox.secret is not None:
            data["mailboxes"][index]["secret"] = mailbox.secret.describe()
    if settings.smtp.secret is not None:
        data["smtp"]["secret"] = settings.smtp.secret.describe()
    data["store"]["url"] = make_url(settings.store.url).render_as_string(hide_password=True)
    if settings.deadlines.webhook_url:
        # A webhook URL often carries its token in the path (Slack, Teams, Mattermost): only the site is shown.
        data["deadlines"]["webhook_url"] = webhook_site(settings.deadlines.webhook_url) + "/(hidden)"
    return data


def webhook_site(url: str) -> str:
    """The scheme and host of a URL, which may be shown (its path and query may hold a token)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0].split('?', 1)[0].rpartition('@')[2]}"

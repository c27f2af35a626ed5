"""Configuration: one TOML file plus ``MAILTRIAGE_*`` environment overrides; the only place config is read.

Environment variables override the file with ``__`` between nesting levels, e.g.
``MAILTRIAGE_SCHEDULE__POLL_INTERVAL=30``. Secrets are never required in the file: each mailbox names an
environment variable, a file or a command that yields its password or XOAUTH2 token.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from sqlalchemy.engine import make_url

from mailtriage.errors import MISSING, ConfigError
from mailtriage.routing_settings import DEFAULT_CATEGORIES, Category, EscalationSettings, Rule, Variant
from mailtriage.sections import (
    SHIPPED_TEMPLATES,
    WEEKDAYS,
    Auth,
    CalendarSettings,
    ClassifierSettings,
    ClusterSettings,
    ConsoleSettings,
    DeadlineSettings,
    DraftSettings,
    Folders,
    HealthSettings,
    IntakeSettings,
    LoggingSettings,
    MailboxSettings,
    ScheduleSettings,
    Secret,
    Security,
    SmtpSettings,
    StoreSettings,
)

ENV_PREFIX = "MAILTRIAGE_"
CONFIG_ENV = "MAILTRIAGE_CONFIG"
DEFAULT_CONFIG = "mailtriage.toml"

M = TypeVar("M", bound=BaseModel)

__all__ = [
    "Auth",
    "CalendarSettings",
    "Category",
    "ClassifierSettings",
    "ClusterSettings",
    "ConsoleSettings",
    "DEFAULT_CATEGORIES",
    "DeadlineSettings",
    "DraftSettings",
    "EscalationSettings",
    "Folders",
    "HealthSettings",
    "IntakeSettings",
    "LoggingSettings",
    "MailboxSettings",
    "Rule",
    "SHIPPED_TEMPLATES",
    "ScheduleSettings",
    "Secret",
    "Security",
    "Settings",
    "SmtpSettings",
    "StoreSettings",
    "Variant",
    "WEEKDAYS",
    "find_config",
    "load_settings",
    "masked",
    "webhook_site",
]


class Settings(BaseSettings):
    """The whole configuration: what ``config.example.toml`` documents."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True, case_sensitive=False
    )

    mailboxes: tuple[MailboxSettings, ...] = Field(min_length=1)
    schedule: ScheduleSettings = ScheduleSettings()
    intake: IntakeSettings = IntakeSettings()
    store: StoreSettings = StoreSettings()
    cluster: ClusterSettings = ClusterSettings()
    console: ConsoleSettings = ConsoleSettings()
    categories: tuple[Category, ...] = DEFAULT_CATEGORIES
    classifier: ClassifierSettings = ClassifierSettings()
    rules: tuple[Rule, ...] = ()
    escalation: EscalationSettings = EscalationSettings()
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
        if (self.escalation.notify or any(rule.notify for rule in self.rules)) and self.smtp.host is None:
            raise ValueError("an [smtp] host, since escalation.notify or a rule's notify is set")
        if self.deadlines.digest_to and self.smtp.host is None:
            raise ValueError("an [smtp] host, since deadlines.digest_to is set")
        ruled = {rule.category for rule in self.rules if rule.category} - set(categories) - {self.classifier.fallback}
        if ruled:
            raise ValueError(f"rules whose category is configured, not {', '.join(sorted(ruled))}")
        if self.classifier.retrain and self.classifier.model is None:
            raise ValueError("a classifier.model path, since classifier.retrain writes the retrained model there")
        unknown = sorted(set(self.classifier.training_folders.values()) - set(categories))
        if unknown:
            raise ValueError(f"classifier.training_folders naming configured categories, not {', '.join(unknown)}")
        return self

    def routing_rules(self) -> tuple[Rule, ...]:
        """The rules routing tries, in order: the default escalations (``escalation.py``), then the configured."""
        from mailtriage.escalation import default_rules

        return (*default_rules(self.escalation), *self.rules)

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
        close = difflib.get_close_matches(str(loc[-1]), _known_keys(loc[:-1]), n=1)
        expected = f"no such setting (did you mean {close[0]}?)" if close else "no such setting"
        expected += "; see config.example.toml for the known keys"
    elif error["type"] == "missing":
        expected = "a value (this setting is required)"
        if loc == ["mailboxes"]:
            expected = "at least one [[mailboxes]] table"
    elif error["type"] == "too_short" and loc == ["mailboxes"]:
        expected = "at least one [[mailboxes]] table"
    return ConfigError(source, key or "(top level)", value, expected)


def _known_keys(loc: Sequence[Any]) -> list[str]:
    """The settings one level below ``loc`` (a validation error's location), for a "did you mean"."""
    model: Any = Settings
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part)) if hasattr(model, "model_fields") else None
        if field is None:
            return []
        kinds = [field.annotation, *getattr(field.annotation, "__args__", ())]
        models = [k for k in kinds if isinstance(k, type) and issubclass(k, BaseModel)]
        if not models:
            return []
        model = models[0]
    return list(model.model_fields)


def _resolve_paths(settings: Settings, base: Path) -> Settings:
    """Every path setting, wherever it is (found by its type, not by a list kept by hand), and a SQLite store's
    file, taken relative to ``base`` (the config file's folder) when it is relative."""
    resolved = _under(settings, base)
    store = resolved.store
    url = make_url(store.url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        store = store.model_copy(update={"url": url.set(database=str(base / url.database)).render_as_string(False)})
    return resolved.model_copy(update={"store": store})


def _under(model: M, base: Path) -> M:
    changes: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, Path):
            changes[name] = base / value.expanduser()  # an absolute path stays as it is
        elif isinstance(value, BaseModel):
            changes[name] = _under(value, base)
        elif isinstance(value, tuple) and any(isinstance(item, BaseModel) for item in value):
            changes[name] = tuple(_under(item, base) if isinstance(item, BaseModel) else item for item in value)
    return model.model_copy(update=changes) if changes else model


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

"""The ``mailtriage`` command group and what every command shares: finding the configuration, logging, and
turning a MailtriageError into one line and its exit code.

Exit codes: 0 success; 1 unexpected error; 2 bad configuration; 3 a mailbox could not be read; 4 the store failed;
5 (``status``) a mailbox has not completed a cycle within ``health.stale_after``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from mailtriage.errors import MailboxError, MailtriageError
from mailtriage.files import tighten_umask
from mailtriage.settings import Settings, find_config, load_settings
from mailtriage.terminal import CleanFormatter

RET_OK = 0
RET_MAILBOX = MailboxError.exit_code
RET_STALE = 5

F = TypeVar("F", bound=Callable[..., Any])


def errors_as_lines(command: F) -> F:
    """Turn a MailtriageError into one line on stderr and its exit code, never a traceback."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except MailtriageError as exc:
            click.echo(f"mailtriage: {exc}", err=True)
            sys.exit(exc.exit_code)

    return wrapper  # type: ignore[return-value]


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(CleanFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, level), handlers=[handler])
    for noisy in ("apscheduler", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    # imapclient's INFO lines ("Connection closed") are noise at INFO; its DEBUG protocol trace is wanted at DEBUG.
    logging.getLogger("imapclient").setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)


def settings_of(ctx: click.Context, *, secrets: bool = False) -> Settings:
    """The configuration; ``secrets``: check now that every mailbox's secret can be read (for commands that log
    in: the others work from the store and need none)."""
    path = find_config(ctx.obj["config"])
    settings = load_settings(path, check_secrets=secrets)
    setup_logging(ctx.obj["log_level"] or settings.logging.level)
    return settings


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from mailtriage import __version__
    from mailtriage.compliance import approval_problem, read_approvals, template_names
    from mailtriage.model import DEFAULT_CATEGORY_NAMES, default_model_path, model_state
    from mailtriage.settings import SHIPPED_TEMPLATES

    model = model_state(default_model_path(), DEFAULT_CATEGORY_NAMES)
    built = f"version {model['version']}" if model["problem"] is None else "not built yet (built at first use)"
    names = template_names(SHIPPED_TEMPLATES)
    approvals = read_approvals(SHIPPED_TEMPLATES)
    unapproved = [name for name in names if approval_problem(SHIPPED_TEMPLATES, name, approvals)]
    templates = f"{len(names) - len(unapproved)} of {len(names)} approved"
    click.echo(f"mailtriage {__version__}")
    click.echo(f"default model: {built}, {model['path']}")
    click.echo(f"shipped templates: {templates}, {SHIPPED_TEMPLATES}")
    ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-c", "--config", type=click.Path(path_type=Path, dir_okay=False),
    help="Config file (default: $MAILTRIAGE_CONFIG, else ./mailtriage.toml).",
)  # fmt: skip
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]), help="Override logging.level.")
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Print the version, the default model's state and the shipped templates', and exit.")  # fmt: skip
@click.pass_context
def main(ctx: click.Context, config: Path | None, log_level: str | None) -> None:
    """Triage a customer-support inbox: read new mail from IMAP or a Maildir, exactly once, and record it.

    \b
    Example:
      mailtriage demo
      mailtriage --config /etc/mailtriage.toml run
    """
    tighten_umask()  # what any command creates (store, heartbeat, models, reports) holds customers' data
    ctx.obj = {"config": config, "log_level": log_level}


def optional_settings(ctx: click.Context) -> Settings | None:
    """The configuration if there is one: train, evaluate, classify and templates also work without any."""
    path = find_config(ctx.obj["config"])
    if ctx.obj["config"] is None and not path.exists():
        setup_logging(ctx.obj["log_level"] or "WARNING")
        return None
    return settings_of(ctx)

"""``mailtriage init DIR``: a working deployment to start from. A config with only what a first mailbox needs, the
reply templates with their lint policy and approvals (the deployment's own copy, which compliance owns and edits),
and a folder for models."""

from __future__ import annotations

import shutil
from pathlib import Path

from mailtriage.errors import ConfigError
from mailtriage.settings import SHIPPED_TEMPLATES

SECRET_ENV = "SUPPORT_IMAP_PASSWORD"

CONFIG = f"""\
# mailtriage's configuration, written by `mailtriage init`. Only what a first mailbox needs is set here; every
# other setting is documented, with its default, in config.example.toml (`mailtriage config check` shows them
# all). Relative paths are taken relative to this file's folder.

[[mailboxes]]
name = "support"
host = "imap.example.com"                 # your IMAP server
username = "support@example.com"          # the support mailbox's login
secret = {{ env = "{SECRET_ENV}" }}   # or {{ file = "..." }}, or {{ command = "..." }} for OAuth2 tokens
# port = 993                              # TLS on 993 by default; security = "starttls" for 143

[store]
url = "sqlite:///mailtriage.db"

[drafts]
from_address = "Support <support@example.com>"
# The templates folder is this deployment's own copy: compliance edits and approves it
# (mailtriage --config mailtriage.toml templates check / approve).
templates = "templates"

# [classifier]
# model = "models/ours.npz"             # after `mailtriage train --out models/ours.npz`; default: built in

# [intake]
# backfill_days = 14                      # on a mailbox with years of history: triage only the last two weeks

# [[categories]], [[rules]], [deadlines], [smtp], [health]: see config.example.toml.
"""


def create(directory: Path) -> Path:
    """Write a deployment into ``directory`` (made if missing); returns its config file.

    Raises:
        ConfigError: ``directory`` already holds a config or templates: nothing is overwritten.
    """
    config = directory / "mailtriage.toml"
    templates = directory / "templates"
    for existing in (config, templates):
        if existing.exists():
            raise ConfigError(str(existing), "(file)", str(existing), "a folder without a mailtriage deployment in it "
                              "(init never overwrites one)")  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    config.write_text(CONFIG, encoding="utf-8")
    shutil.copytree(SHIPPED_TEMPLATES, templates, ignore=shutil.ignore_patterns("__pycache__"))
    (directory / "models").mkdir(exist_ok=True)
    return config


def next_steps(config: Path) -> list[str]:
    """The three commands that take a new deployment to a running daemon."""
    return [
        f"edit {config} (host, username, from_address), then: export {SECRET_ENV}=...",
        f"mailtriage --config {config} config check --connect",
        f"mailtriage --config {config} run",
    ]

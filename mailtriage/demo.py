"""``mailtriage demo``: sample support mail in English, French and German, triaged from a temporary Maildir."""

from __future__ import annotations

import mailbox
from importlib import resources
from pathlib import Path

from mailtriage.pipeline import CycleReport
from mailtriage.settings import (
    ClassifierSettings,
    DraftSettings,
    IntakeSettings,
    MailboxSettings,
    Settings,
    StoreSettings,
)
from mailtriage.store import MessageRecord
from mailtriage.wiring import daemon_from_settings

SUPPORT_ADDRESS = "support@shop.example.com"


def sample_mail() -> list[bytes]:
    """The demo's sample messages, shipped in the package (``mailtriage/demo_mail``)."""
    folder = resources.files("mailtriage").joinpath("demo_mail")
    return [
        entry.read_bytes() for entry in sorted(folder.iterdir(), key=lambda e: e.name) if entry.name.endswith(".eml")
    ]


def build_maildir(path: Path) -> int:
    """Fill a new Maildir at ``path`` with the sample mail; returns how many messages it holds."""
    box = mailbox.Maildir(path, create=True)
    for data in sample_mail():
        box.add(data)
    return len(box)


def demo_settings(workdir: Path) -> Settings:
    return Settings(
        mailboxes=(MailboxSettings(name="demo", maildir=workdir / "Maildir"),),
        store=StoreSettings(url=f"sqlite:///{workdir / 'mailtriage.db'}"),
        intake=IntakeSettings(own_addresses=(SUPPORT_ADDRESS,)),
        classifier=ClassifierSettings(model=workdir / "models" / "default.skops"),
        drafts=DraftSettings(from_address=f"Support <{SUPPORT_ADDRESS}>"),
    )


DEMO_CONFIG = f"""\
# The demo's configuration, written by `mailtriage demo --keep`: the same daemon on the demo Maildir.
# Run it:   mailtriage --config {{config}} run
# Every setting is documented in config.example.toml.

[[mailboxes]]
name = "demo"
maildir = "Maildir"

[store]
url = "sqlite:///mailtriage.db"

[intake]
own_addresses = ["{SUPPORT_ADDRESS}"]

[classifier]
model = "models/default.skops"

[drafts]
from_address = "Support <{SUPPORT_ADDRESS}>"

[schedule]
poll_interval = 10

[health]
heartbeat_file = "mailtriage.heartbeat.json"
"""


def write_config(workdir: Path) -> Path:
    """The demo's configuration as a file in ``workdir``, for running the daemon on the kept demo."""
    path = workdir / "mailtriage.toml"
    path.write_text(DEMO_CONFIG.format(config=path), encoding="utf-8")
    return path


def run_demo(workdir: Path) -> tuple[list[CycleReport], list[MessageRecord]]:
    """Build the sample Maildir under ``workdir``, run one cycle over it and return what was recorded."""
    build_maildir(workdir / "Maildir")
    settings = demo_settings(workdir)
    daemon = daemon_from_settings(settings)
    reports = daemon.run_once()
    records = daemon.store.messages.all()
    daemon.store.close()
    return reports, records

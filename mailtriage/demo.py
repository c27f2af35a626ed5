"""``mailtriage demo``: sample support mail in English, French and German, triaged from a Maildir of its own.

Run once in a temporary folder, or kept (``--keep DIR``) with a config on which the daemon runs; ``add_mail``
drops a fresh sample mail into a kept demo, for the running daemon to triage.
"""

from __future__ import annotations

import email
import mailbox
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.utils import format_datetime, make_msgid
from importlib import resources
from pathlib import Path

from mailtriage.models import MessageKind
from mailtriage.parse import parse_message
from mailtriage.pipeline import CycleReport
from mailtriage.route import matching_rule
from mailtriage.settings import DraftSettings, IntakeSettings, MailboxSettings, Settings, StoreSettings
from mailtriage.store import MessageRecord, Status, Store

SUPPORT_ADDRESS = "support@shop.example.com"
MAILDIR = "Maildir"


def sample_mail() -> list[bytes]:
    """The demo's sample messages, shipped in the package (``mailtriage/demo_mail``)."""
    folder = resources.files("mailtriage").joinpath("demo_mail")
    return [
        entry.read_bytes() for entry in sorted(folder.iterdir(), key=lambda e: e.name) if entry.name.endswith(".eml")
    ]


def build_maildir(path: Path) -> int:
    """Fill a new Maildir at ``path`` with the sample mail (one that exists already is left as it is); returns
    how many messages it holds."""
    if (path / "cur").is_dir():
        return len(mailbox.Maildir(path, create=False))
    box = mailbox.Maildir(path, create=True)
    for data in sample_mail():
        box.add(data)
    return len(box)


def demo_settings(workdir: Path) -> Settings:
    return Settings(
        mailboxes=(MailboxSettings(name="demo", maildir=workdir / MAILDIR),),
        store=StoreSettings(url=f"sqlite:///{workdir / 'mailtriage.db'}"),
        intake=IntakeSettings(own_addresses=(SUPPORT_ADDRESS,)),
        drafts=DraftSettings(from_address=f"Support <{SUPPORT_ADDRESS}>"),
    )


DEMO_CONFIG = f"""\
# The demo's configuration, written by `mailtriage demo --keep`: the same daemon on the demo Maildir.
# Run it:   mailtriage --config {{config}} run
# Every setting is documented in config.example.toml.

[[mailboxes]]
name = "demo"
maildir = "{MAILDIR}"

[store]
url = "sqlite:///mailtriage.db"

[intake]
own_addresses = ["{SUPPORT_ADDRESS}"]

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


@dataclass(frozen=True)
class Done:
    """One message of a demo run and what became of it."""

    record: MessageRecord
    decided: str
    """Its category and how sure the model was, or why it was not triaged."""
    done: str
    """What was done: the draft written, where it was moved, or why it was left for a human."""


@dataclass(frozen=True)
class DemoRun:
    reports: list[CycleReport]
    done: list[Done]
    """The messages this run read (a rerun of a kept demo reads only what is new)."""
    earlier: int
    """Messages a previous run of a kept demo had already triaged."""

    @property
    def drafted(self) -> int:
        return sum(1 for item in self.done if "draft written" in item.done)


def run_demo(workdir: Path, say: Callable[[str], None] = lambda line: None) -> DemoRun:
    """Build the sample Maildir under ``workdir`` (if it is new), run one cycle over it, and tell what this run
    did; ``say`` hears each step as it begins."""
    from mailtriage.wiring import daemon_from_settings

    say("filling a Maildir with the sample mail")
    build_maildir(workdir / MAILDIR)
    settings = demo_settings(workdir)
    earlier = Store(settings.store.url).messages.count()
    say("loading the model (built from the shipped seed mails the first time: a few seconds)")
    daemon = daemon_from_settings(settings)
    say("triaging: classifying, drafting replies, filing")
    reports = daemon.run_once()
    records = daemon.store.messages.all()[earlier:]
    done = [_done(daemon.store, record) for record in records]
    daemon.store.close()
    return DemoRun(reports, done, earlier)


def _done(store: Store, record: MessageRecord) -> Done:
    from mailtriage import logline

    if record.status is Status.SKIPPED:
        if record.kind == MessageKind.CUSTOMER:
            return Done(record, "skipped", "older than the backfill window")
        return Done(record, f"skipped: {record.kind}", f"never answered ({record.kind_reason})")
    decided = logline.decided(record.category, record.decided_by, record.confidence)
    if record.status is Status.NEEDS_HUMAN or record.status is Status.FAILED:
        return Done(record, decided, f"left for a human: {record.error}")
    parts = []
    if store.audit.has(record.id, "draft-appended"):
        parts.append("draft written")
    if store.audit.has(record.id, "flags-added"):
        parts.append("flagged")
    if store.audit.has(record.id, "moved"):
        parts.append(f"moved to {record.folder}")
    return Done(record, decided, ", ".join(parts) or "left as it is")


def add_mail(workdir: Path, now: datetime | None = None) -> Path:
    """Drop a fresh copy of a sample customer mail (a new Message-ID and date, so it is new mail) into the kept
    demo's Maildir, where the daemon finds it; returns the file. The copy is one the daemon drafts a reply to:
    customer mail that no escalation rule, in any language, holds for a person."""
    maildir = workdir / MAILDIR
    if not (maildir / "new").is_dir():
        from mailtriage.errors import ConfigError

        raise ConfigError(str(workdir), "(folder)", str(workdir), "a kept demo (mailtriage demo --keep DIR)")
    rules = demo_settings(workdir).routing_rules()
    languages = {rule.language for rule in rules if rule.language is not None} or {"en"}
    customers = [
        data
        for data, parsed in ((data, parse_message(data)) for data in sample_mail())
        if parsed.kind is MessageKind.CUSTOMER
        and all(matching_rule(parsed, language, rules) is None for language in languages)
    ]
    message = email.message_from_bytes(random.choice(customers), policy=policy.compat32)
    del message["Message-ID"], message["Date"]
    message["Message-ID"] = make_msgid(domain="demo.example")
    message["Date"] = format_datetime(now or datetime.now(UTC))
    key = mailbox.Maildir(maildir, create=False).add(message.as_bytes())
    return maildir / "new" / key

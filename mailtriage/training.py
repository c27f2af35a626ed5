"""Where training data comes from (files, the store, labelled IMAP folders, the seed set), and the scheduled
retrain that replaces the live model only when the new one is not worse."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mailtriage.classify import (
    DEFAULT_CATEGORY_NAMES,
    Example,
    example_from_mail,
    feature_text,
    read_eml_folder,
    read_table,
    save_atomically,
    seed_examples,
    train,
)
from mailtriage.cursor import batches, uids_above
from mailtriage.errors import MISSING, ConfigError
from mailtriage.mailbox import Mailbox, open_mailbox
from mailtriage.settings import Settings, find_config
from mailtriage.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sources:
    """What ``mailtriage train`` learns from."""

    tables: tuple[Path, ...] = ()
    """CSV or JSONL files of labelled examples, with these columns:"""
    text_column: str = "text"
    label_column: str = "label"
    eml_folders: tuple[Path, ...] = ()
    """Folders with one subfolder of .eml files per category."""
    store: bool = False
    """The messages the daemon has seen, with the category each ended up in."""
    folders: bool = False
    """The labelled IMAP folders of ``classifier.training_folders``."""
    seed: bool | None = None
    """The shipped seed mails; None: when no other source is given."""


def gather(sources: Sources, settings: Settings | None) -> tuple[list[Example], list[str]]:
    """The examples of every source asked for, and the sources' names (for the model's metadata).

    Raises:
        ConfigError: the store or the IMAP folders are asked for without a configuration.
    """
    examples: list[Example] = []
    names: list[str] = []
    if sources.store or sources.folders:
        if settings is None:
            raise ConfigError(
                str(find_config(None)), "(file)", MISSING, "a config file for --from-store/--from-folders"
            )
        if sources.store:
            examples += store_examples(Store(settings.store.url, settings.store.busy_timeout),
                                       settings.classifier.fallback)  # fmt: skip
            names.append("store")
        if sources.folders:
            mailbox = open_mailbox(settings.mailboxes[0])
            try:
                examples += folder_examples(mailbox, settings.classifier.training_folders)
            finally:
                mailbox.close()
            names.append("folders")
    for path in sources.tables:
        examples += read_table(path, sources.text_column, sources.label_column)
        names.append(str(path))
    for folder in sources.eml_folders:
        examples += read_eml_folder(folder)
        names.append(str(folder))
    if sources.seed or (sources.seed is None and not names):
        examples += seed_examples()
        names.append("seed")
    return examples, names


def store_examples(store: Store, fallback: str) -> list[Example]:
    """The messages the daemon has seen, each with the category it ended up in: an agent's correction first."""
    return [
        Example(feature_text(r.subject, r.new_text), str(r.category_now), r.language or "unknown")
        for r in store.messages.learnable(exclude=fallback)
    ]


def folder_examples(mailbox: Mailbox, folders: dict[str, str]) -> list[Example]:
    """Every message in the labelled folders (folder -> category), read without changing them."""
    examples = []
    for folder, category in folders.items():
        status = mailbox.status(folder)
        for batch in batches(mailbox, folder, uids_above(mailbox, folder, 0, status.uidnext), 100, status.uidvalidity):
            examples += [example_from_mail(raw.data, category) for raw in batch]
    return examples


def default_sources(settings: Settings, store: Store) -> tuple[list[Example], list[str]]:
    """What the scheduled retrain learns from: the store, and the seed set when the categories are the defaults."""
    examples, sources = store_examples(store, settings.classifier.fallback), ["store"]
    if sorted(settings.category_names()) == sorted(DEFAULT_CATEGORY_NAMES):
        examples += seed_examples()
        sources.append("seed")
    return examples, sources


def retrain(
    model_path: Path,
    examples: Sequence[Example],
    sources: Sequence[str],
    live_macro_f1: float | None,
    features: str = "auto",
) -> bool:
    """Train a new model and put it in place of the live one only if its cross-validated macro-F1 is not lower.

    Returns whether the live model was replaced; logs both figures either way.
    """
    trained = train(examples, sources=sources, features=features)
    new = float(trained.metadata["cross_validation"]["macro_f1"])
    if live_macro_f1 is not None and new < live_macro_f1:
        log.warning(
            "retrain: kept the live model %s: the new one's cross-validated macro-F1 %.3f is below the live %.3f",
            model_path, new, live_macro_f1,
        )  # fmt: skip
        return False
    save_atomically(trained, model_path)
    log.info(
        "retrain: replaced the live model %s: cross-validated macro-F1 %.3f (was %s) on %d examples",
        model_path, new, "none" if live_macro_f1 is None else f"{live_macro_f1:.3f}", len(examples),
    )  # fmt: skip
    return True

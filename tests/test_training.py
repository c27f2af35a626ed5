from __future__ import annotations

import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailtriage import classify
from mailtriage.mailbox.imap import ImapMailbox
from mailtriage.mailbox.memory import MemoryMailbox
from mailtriage.models import Classification, ParsedEmail
from mailtriage.pipeline import Triage, one_by_one, run_cycle
from mailtriage.store import Store
from mailtriage.training import folder_examples, retrain, store_examples
from tests.dovecot import Account

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def live_copy(seed_model: Path, tmp_path: Path) -> Path:
    path = tmp_path / "live.npz"
    shutil.copy(seed_model, path)
    shutil.copy(classify.metadata_path(seed_model), classify.metadata_path(path))
    return path


def some_seed_examples() -> list[classify.Example]:
    """A third of the seed set, 30 mails a category in every language: a retrain cross-validates on it in a third
    of the time the whole set takes."""
    return classify.seed_examples()[::3]


def noisy_examples() -> list[classify.Example]:
    """Labels that have nothing to do with the text: a model trained on them is worse than the seed model."""
    seed = some_seed_examples()
    labels = [e.label for e in seed]
    return [classify.Example(e.text, labels[(i * 7) % len(labels)], e.language) for i, e in enumerate(seed)]


def test_a_retrain_that_would_lower_macro_f1_keeps_the_live_model_and_says_so(
    seed_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = live_copy(seed_model, tmp_path)
    before = path.read_bytes()
    live = classify.load(path).metadata["cross_validation"]["macro_f1"]
    with caplog.at_level(logging.WARNING):
        replaced = retrain(path, noisy_examples(), ["test"], live)
    assert not replaced and path.read_bytes() == before
    assert f"below the live {live:.3f}" in caplog.text and "kept the live model" in caplog.text


def test_a_retrain_that_is_not_worse_replaces_the_live_model(seed_model: Path, tmp_path: Path) -> None:
    path = live_copy(seed_model, tmp_path)
    assert retrain(path, some_seed_examples(), ["seed"], live_macro_f1=0.0)
    assert classify.load(path).metadata["sources"] == ["seed"]
    assert sorted(tmp_path.iterdir()) == sorted([path, classify.metadata_path(path)])  # nothing staged left over


def test_train_from_store_learns_the_category_each_message_ended_up_in(store: Store) -> None:
    def stages(parsed: ParsedEmail) -> Classification:
        category = "billing" if "invoice" in parsed.subject else "needs-triage"
        return Classification(category, "billing", 0.9, "en", "test")

    mailbox = MemoryMailbox()
    for n, subject in enumerate(["invoice wrong", "hello", "invoice missing"]):
        mailbox.append("INBOX", f"From: c{n}@example.com\nSubject: {subject}\n\nText {n}.\n".encode())
    run_cycle(mailbox, store, now=lambda: NOW, stages=Triage(classify=one_by_one(stages)))
    examples = store_examples(store, fallback="needs-triage")
    assert [(e.text.splitlines()[0], e.label) for e in examples] == [
        ("invoice wrong", "billing"),
        ("invoice missing", "billing"),
    ]


@pytest.mark.dovecot
def test_labelled_imap_folders_become_training_examples_without_being_changed(account: Account) -> None:
    client = account.client()
    client.create_folder("Returns")
    client.logout()
    account.append_many([b"From: a@example.com\nSubject: send it back\n\nI want to return the toaster.\n"], "Returns")
    examples = folder_examples(ImapMailbox(account.settings()), {"Returns": "return-refund"})
    assert [(e.label, e.text) for e in examples] == [("return-refund", "send it back\nI want to return the toaster.")]
    assert not any(b"\\Seen" in flags for flags in account.flags("Returns").values())

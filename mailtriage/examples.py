"""Labelled examples to train and judge the classifier on: the shipped seed mails, CSV or JSONL tables, folders of
.eml files by category, and a mail as the daemon reads it (subject and the customer's new words)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mailtriage.errors import TrainingError
from mailtriage.language import detect
from mailtriage.parse import customer_text, parse_message


@dataclass(frozen=True)
class Example:
    """One labelled text: the subject and the customer's new words, joined."""

    text: str
    label: str
    language: str


def feature_text(subject: str, new_text: str) -> str:
    """What the model reads of a message."""
    return f"{subject}\n{new_text}".strip()


# --- training data -----------------------------------------------------------------------------------------------


def seed_examples() -> list[Example]:
    """The shipped seed set: English, French and German mails for the default categories, written for mailtriage."""
    folder = resources.files("mailtriage").joinpath("seed")
    examples = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".jsonl"):
            for line in entry.read_text(encoding="utf-8").splitlines():
                item = json.loads(line)
                text = feature_text(item["subject"], customer_text(item["body"]))
                examples.append(Example(text, item["label"], item["language"]))
    return examples


def read_table(path: Path, text_column: str = "text", label_column: str = "label") -> list[Example]:
    """Examples from a CSV file (with a header row) or a JSONL file (one object per line).

    Raises:
        TrainingError: naming the file and what is wrong with it (missing, unreadable, a column absent).
    """
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainingError(f"cannot read {path}: {exc}") from None
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        try:
            rows = [json.loads(line) for line in content.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise TrainingError(f"{path}: line {exc.lineno} is not JSON") from None
    else:
        rows = list(csv.DictReader(content.splitlines()))
    examples = []
    for number, row in enumerate(rows, start=1):
        if text_column not in row or label_column not in row:
            raise TrainingError(
                f"{path}: row {number} has no {text_column!r} or {label_column!r} column "
                "(choose them with --text-column and --label-column)"
            )
        text, label = str(row[text_column]).strip(), str(row[label_column]).strip()
        if text and label:
            examples.append(Example(text, label, str(row.get("language") or detect(text)[0])))
    return examples


def read_eml_folder(path: Path) -> list[Example]:
    """Examples from a folder holding one subfolder per category, each with ``.eml`` files."""
    if not path.is_dir():
        raise TrainingError(f"{path} is not a folder of category subfolders")
    examples = []
    for folder in sorted(p for p in path.iterdir() if p.is_dir()):
        for eml in sorted(folder.glob("*.eml")):
            examples.append(example_from_mail(eml.read_bytes(), folder.name))
    return examples


def example_from_mail(data: bytes, label: str) -> Example:
    parsed = parse_message(data)
    text = feature_text(parsed.subject, parsed.new_text or customer_text(parsed.text))
    return Example(text, label, detect(text)[0])

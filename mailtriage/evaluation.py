"""How well a model does on labelled examples it was not trained on: accuracy and macro-F1, per category and per
language, the confusion between categories, and the table an admin chooses the confidence threshold from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from mailtriage.examples import Example

THRESHOLDS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass
class Metrics:
    """How well a model did on labelled examples it was not trained on."""

    examples: int
    accuracy: float
    macro_f1: float
    per_category: dict[str, dict[str, float]]
    per_language: dict[str, dict[str, float]]
    confusion: dict[str, dict[str, int]]
    thresholds: list[dict[str, float]]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure(examples: Sequence[Example], predicted: Sequence[str], confidence: Sequence[float]) -> Metrics:
    """Metrics of ``predicted`` (with its confidence) against the examples' labels."""
    truth = [e.label for e in examples]
    labels = sorted(set(truth) | set(predicted))
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, labels=labels, zero_division=0)
    per_category = {
        label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
    }
    per_language = {}
    for language in sorted({e.language for e in examples}):
        index = [i for i, e in enumerate(examples) if e.language == language]
        mine_truth, mine_predicted = [truth[i] for i in index], [predicted[i] for i in index]
        per_language[language] = {
            "examples": len(index),
            "accuracy": float(accuracy_score(mine_truth, mine_predicted)),
            "macro_f1": float(f1_score(mine_truth, mine_predicted, average="macro", zero_division=0)),
        }
    matrix = confusion_matrix(truth, predicted, labels=labels)
    confusion = {a: {b: int(matrix[i][j]) for j, b in enumerate(labels) if matrix[i][j]} for i, a in enumerate(labels)}
    return Metrics(
        examples=len(examples),
        accuracy=float(accuracy_score(truth, predicted)),
        macro_f1=float(f1_score(truth, predicted, average="macro", zero_division=0)),
        per_category=per_category,
        per_language=per_language,
        confusion=confusion,
        thresholds=_threshold_table(truth, predicted, confidence),
    )


def _threshold_table(
    truth: Sequence[str], predicted: Sequence[str], confidence: Sequence[float]
) -> list[dict[str, float]]:
    """For each threshold: the share of mail the model would decide (coverage) and how often it would be right."""
    rows = []
    for threshold in THRESHOLDS:
        kept = [t == p for t, p, c in zip(truth, predicted, confidence, strict=True) if c >= threshold]
        rows.append(
            {
                "threshold": threshold,
                "coverage": len(kept) / len(truth) if truth else 0.0,
                "precision": sum(kept) / len(kept) if kept else 0.0,
            }
        )
    return rows

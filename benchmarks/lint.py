"""Binding-language lint benchmark: how well the lint of ``templates/policy.toml`` tells committing sentences from
neutral ones, per class and language, and what it costs per draft.

What it measures, in one run:

1. **Accuracy** on the labelled evaluation set ``tests/fixtures/lint/{en,fr,de}.jsonl`` (one support-reply
   sentence per line, labelled with one of the six classes or ``neutral``), on its ``held-out`` part by default:
   the sentences kept out of the rules' development, read only to report. Each sentence is linted as approval
   lints a template (``Policy.lint``: every language's rules, exemptions applied; length findings ignored).
   Per language and class: **recall**, the share of its committing sentences the lint flags (with any class: a
   flagged sentence is refused either way), and the share flagged with their own class; **precision** per class,
   the share of the sentences flagged with that class that are committing. Per language: the share of neutral
   sentences flagged (**false flags**). Targets: recall >= 0.95 for every class in each language, at most 3 % of
   neutral sentences flagged.
2. **Speed**: the lint of a 200-word draft (neutral sentences of the three languages, in turn, until 200 words),
   ``--repeat`` (200) times. Cold: the token cache emptied before each lint, as for a draft of words never seen;
   warm: as in the daemon, where replies share most of their words. The baseline, timed in the same run and in
   turns with the lint, is the Jinja2 rendering of that draft (compiled once, its customer fields as variables):
   the step of drafting the lint follows. Target: under 5 ms warm, as the daemon lints draft after draft; the cold
   figure is given beside it.

Run it from the repository root (a few seconds)::

    .venv/bin/python benchmarks/lint.py
    .venv/bin/python benchmarks/lint.py --split dev --misses      # the development part, with what it gets wrong
    .venv/bin/python benchmarks/lint.py --json lint.json

``--misses`` lists the committing sentences the lint lets through and the neutral ones it flags (with the rule):
meant for the development part; reading the held-out part's misses makes it part of development. Progress goes
to stderr, the tables to stdout; ``--json FILE`` writes the figures to FILE too (``benchmarks/common.py``).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jinja2
import simplemma
from common import ROOT, Figure, Machine, argument_parser, log, options_of, write_json

from mailtriage.lint import token
from mailtriage.policy import CLASSES, Policy, load_policy

FIXTURES = ROOT / "tests" / "fixtures" / "lint"
LANGUAGES = ("en", "fr", "de")
NEUTRAL = "neutral"
RECALL_TARGET, FALSE_FLAG_TARGET, MILLISECONDS_TARGET = 0.95, 0.03, 5.0
DRAFT_WORDS = 200


@dataclass(frozen=True)
class Labelled:
    text: str
    language: str
    label: str
    split: str


@dataclass(frozen=True)
class Outcome:
    sentence: Labelled
    flagged: frozenset[str]
    """The classes the lint found."""
    rules: tuple[str, ...]


def labelled(split: str) -> list[Labelled]:
    """The evaluation set's sentences of ``split`` ('all': every part)."""
    found = []
    for language in LANGUAGES:
        for line in (FIXTURES / f"{language}.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if split in ("all", row["split"]):
                found.append(Labelled(row["text"], row["language"], row["label"], row["split"]))
    return found


def lint_all(policy: Policy, sentences: Sequence[Labelled]) -> list[Outcome]:
    outcomes = []
    for sentence in sentences:
        findings = [f for f in policy.lint(sentence.text, sentence.language) if f.kind in CLASSES]
        outcomes.append(Outcome(sentence, frozenset(f.kind for f in findings), tuple(f.rule for f in findings)))
    return outcomes


def accuracy(outcomes: Sequence[Outcome]) -> dict[str, dict[str, Any]]:
    """Per language: per class its count, recall, own-class share and precision; the neutral count and share
    flagged."""
    figures: dict[str, dict[str, Any]] = {}
    for language in LANGUAGES:
        mine = [o for o in outcomes if o.sentence.language == language]
        flagged_as: Counter[str] = Counter(kind for o in mine for kind in o.flagged)
        right_as: Counter[str] = Counter(kind for o in mine if o.sentence.label != NEUTRAL for kind in o.flagged)
        classes = {}
        for kind in CLASSES:
            of_class = [o for o in mine if o.sentence.label == kind]
            classes[kind] = {
                "sentences": len(of_class),
                "recall": _share(sum(1 for o in of_class if o.flagged), len(of_class)),
                "own_class": _share(sum(1 for o in of_class if kind in o.flagged), len(of_class)),
                "precision": _share(right_as[kind], flagged_as[kind]),
            }
        neutral = [o for o in mine if o.sentence.label == NEUTRAL]
        figures[language] = {"classes": classes, "neutral": len(neutral),
                             "false_flags": _share(sum(1 for o in neutral if o.flagged), len(neutral))}  # fmt: skip
    return figures


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


# --- speed ---------------------------------------------------------------------------------------------------------


def draft_text() -> str:
    """About 200 words of neutral reply sentences, the three languages in turn, from the development part."""
    by_language = defaultdict(list)
    for sentence in labelled("dev"):
        if sentence.label == NEUTRAL:
            by_language[sentence.language].append(sentence.text)
    chosen: list[str] = []
    for index in range(1000):
        chosen.append(by_language[LANGUAGES[index % 3]][index // 3])
        if len(" ".join(chosen).split()) >= DRAFT_WORDS:
            break
    return " ".join(chosen)


def speed(policy: Policy, text: str, repeat: int) -> dict[str, Any]:
    """Median milliseconds of the lint of ``text`` cold and warm, and of the baseline, in turns."""
    template = jinja2.Environment(autoescape=False).from_string(
        "Dear {{ name }},\n\n" + text + "\n\nYour reference: {{ reference }}.\n{{ signature }}"
    )
    context = {"name": "Anna Schmidt", "reference": "A-10234", "signature": "The support team"}
    cold, warm, baseline = [], [], []
    for _ in range(repeat):
        token.cache_clear()
        cold.append(_timed(lambda: policy.lint(text, "en")))
        warm.append(_timed(lambda: policy.lint(text, "en")))
        baseline.append(_timed(lambda: template.render(context)))
    cold_ms, warm_ms, base_ms = (statistics.median(t) * 1000 for t in (cold, warm, baseline))
    return {"words": len(text.split()), "repeat": repeat, "cold_ms": cold_ms, "warm_ms": warm_ms,
            "render_ms": base_ms, "cold_vs_render": cold_ms / base_ms, "warm_vs_render": warm_ms / base_ms}  # fmt: skip


def _timed(work: Any) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


# --- the report ----------------------------------------------------------------------------------------------------


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def tables(machine: Machine, split: str, figures: dict[str, dict[str, Any]], timing: dict[str, Any]) -> str:
    lines = [*machine.lines("Binding-language lint benchmark"), "",
             f"Evaluation set {FIXTURES.relative_to(ROOT)}, part {split!r}: recall = share of a class's sentences "
             "flagged, own = flagged with that class, precision = share of sentences flagged with the class that "
             "are committing", "",
             f"{'language':<9}{'class':<11}{'n':>4}{'recall':>8}{'own':>7}{'precision':>11}"]  # fmt: skip
    for language, found in figures.items():
        for kind, row in found["classes"].items():
            lines.append(f"{language:<9}{kind:<11}{row['sentences']:>4}{_cell(row['recall']):>8}"
                         f"{_cell(row['own_class']):>7}{_cell(row['precision']):>11}")  # fmt: skip
        lines.append(f"{language:<9}{'neutral':<11}{found['neutral']:>4}   flagged {_cell(found['false_flags'])}")
    lines += ["", f"Lint of a {timing['words']}-word draft, median of {timing['repeat']}: cold {timing['cold_ms']:.2f} "
              f"ms, warm {timing['warm_ms']:.2f} ms; rendering it (the baseline) {timing['render_ms']:.3f} ms: "
              f"cold x{timing['cold_vs_render']:.0f}, warm x{timing['warm_vs_render']:.0f} the rendering"]  # fmt: skip
    return "\n".join(lines)


def headlines(figures: dict[str, dict[str, Any]], timing: dict[str, Any]) -> list[Figure]:
    rows = []
    for language, found in figures.items():
        recalls = [row["recall"] for row in found["classes"].values() if row["recall"] is not None]
        lowest = min(recalls) if recalls else 0.0
        rows.append(Figure.check(f"{language}: lowest recall of a class", f"{lowest:.2f}", f">= {RECALL_TARGET}",
                                 lowest >= RECALL_TARGET))  # fmt: skip
        flags = found["false_flags"] or 0.0
        rows.append(Figure.check(f"{language}: neutral sentences flagged", f"{flags:.1%}",
                                 f"<= {FALSE_FLAG_TARGET:.0%}", flags <= FALSE_FLAG_TARGET))  # fmt: skip
    rows.append(Figure.check(f"lint of a {timing['words']}-word draft", f"{timing['warm_ms']:.2f} ms",
                             f"< {MILLISECONDS_TARGET:.0f} ms", timing["warm_ms"] < MILLISECONDS_TARGET))  # fmt: skip
    rows.append(Figure("the same, every word new (cold)", f"{timing['cold_ms']:.2f} ms"))
    return rows


def misses(outcomes: Sequence[Outcome]) -> list[str]:
    lines = []
    for o in outcomes:
        if o.sentence.label == NEUTRAL and o.flagged:
            lines.append(f"false flag {o.sentence.language}: {o.sentence.text} ({', '.join(o.rules)})")
        elif o.sentence.label != NEUTRAL and not o.flagged:
            lines.append(f"missed {o.sentence.language} {o.sentence.label}: {o.sentence.text}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argument_parser(__doc__)
    parser.add_argument("--split", default="held-out", choices=["held-out", "dev", "all"],
                        help="the part of the evaluation set (default %(default)s)")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=200, help="timed lints (default %(default)s)")
    parser.add_argument("--misses", action="store_true", help="list what the lint gets wrong")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    machine = Machine({"simplemma": getattr(simplemma, "__version__", "?")})
    policy = load_policy(ROOT / "templates" / "policy.toml")
    log(f"linting the {args.split!r} part of the evaluation set")
    outcomes = lint_all(policy, labelled(args.split))
    figures = accuracy(outcomes)
    log(f"timing the lint of a {DRAFT_WORDS}-word draft {args.repeat} times")
    timing = speed(policy, draft_text(), args.repeat)
    print(tables(machine, args.split, figures, timing))
    if args.misses:
        print("\n" + "\n".join(misses(outcomes) or ["nothing missed, nothing falsely flagged"]))
    write_json(args.json, "lint", machine, options_of(args), headlines(figures, timing),
               {"accuracy": figures, "speed": timing, "sentences": len(outcomes)})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

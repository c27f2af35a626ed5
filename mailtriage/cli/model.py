"""Commands for the classifier: ``train``, ``evaluate``, ``classify``. None needs a configuration."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

from mailtriage.cli.app import errors_as_lines, main, optional_settings
from mailtriage.settings import Settings

if TYPE_CHECKING:
    from mailtriage.model import Classifier
from mailtriage.terminal import clean


def _classifier(model: Path | None, settings: Settings | None) -> Classifier:
    """The model a command uses: --model, else the configured one, else the default model (built if missing)."""
    from mailtriage.model import DEFAULT_CATEGORY_NAMES, load, load_or_build_default

    if model is not None:
        return load(model, settings.category_names() if settings else None)
    categories = settings.category_names() if settings else DEFAULT_CATEGORY_NAMES
    configured = settings.classifier.model if settings else None
    return load_or_build_default(configured, categories, lambda line: click.echo(line, err=True))


@main.command()
@click.option("--data", "data", type=click.Path(path_type=Path, dir_okay=False), multiple=True,
              help="A CSV or JSONL file of labelled examples (repeatable).")  # fmt: skip
@click.option("--text-column", default="text", show_default=True, help="Column of --data holding the text.")
@click.option("--label-column", default="label", show_default=True, help="Column of --data holding the category.")
@click.option("--eml", "eml_dirs", type=click.Path(path_type=Path, file_okay=False), multiple=True,
              help="A folder with one subfolder of .eml files per category (repeatable).")  # fmt: skip
@click.option(
    "--from-store", is_flag=True, help="The messages the daemon has seen, with the category each ended up in."
)
@click.option("--from-folders", is_flag=True, help="The labelled IMAP folders of classifier.training_folders.")
@click.option("--seed/--no-seed", "use_seed", default=None,
              help="Include the shipped seed mails (the default when no other source is given).")  # fmt: skip
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), help="Model file to write.")
@click.option("--cv", "folds", default=5, show_default=True, help="Cross-validation folds for the metrics.")
@click.option("--features", type=click.Choice(["auto", "ngrams", "ngrams+embeddings"]),
              help="What the model reads (default: classifier.features, else auto).")  # fmt: skip
@click.pass_context
@errors_as_lines
def train(
    ctx: click.Context,
    data: tuple[Path, ...],
    text_column: str,
    label_column: str,
    eml_dirs: tuple[Path, ...],
    from_store: bool,
    from_folders: bool,
    use_seed: bool | None,
    out: Path | None,
    folds: int,
    features: str | None,
) -> None:
    """Train the classifier and write it with its metadata (categories, counts, cross-validated metrics).

    Needs no configuration: the categories are the labels in the data. With a configuration, the model is
    written where classifier.model says unless --out is given.

    \b
    Example:
      mailtriage train                                   # the shipped seed set, en/fr/de
      mailtriage train --data tickets.csv --label-column category --out models/ours.npz
      mailtriage train --eml ./labelled-mail --seed
      mailtriage train --data banking77.csv --label-column category --features ngrams+embeddings
      mailtriage --config mailtriage.toml train --from-store --seed
    """
    from mailtriage import classify, training

    settings = optional_settings(ctx)
    sources = training.Sources(data, text_column, label_column, eml_dirs, from_store, from_folders, use_seed)
    examples, names = training.gather(sources, settings)
    path = out or (settings.classifier.model if settings else None) or Path("models/default.npz")
    chosen = features or (settings.classifier.features if settings else "auto")
    metadata = classify.save(classify.train(examples, folds=folds, sources=names, features=chosen), path)
    click.echo(f"wrote {path} (version {metadata['version']}): {len(examples)} examples, "
               f"{len(metadata['categories'])} categories, reading {metadata['features']}, trained in "
               f"{metadata['training_seconds']} s")  # fmt: skip
    _said_trained(metadata)


def _said_trained(metadata: dict[str, Any]) -> None:
    """What cross-validation said of the features tried and of the model written."""
    for name, scores in (metadata.get("feature_choice") or {}).items():
        languages = ", ".join(f"{language} {f1:.3f}" for language, f1 in scores["per_language"].items())
        click.echo(f"  {name}: cross-validated macro-F1 {scores['macro_f1']:.3f} ({languages})")
    cv = metadata["cross_validation"]
    if cv:
        click.echo(
            f"cross-validated ({cv['folds']} folds): accuracy {cv['accuracy']:.3f}, macro-F1 {cv['macro_f1']:.3f}"
        )
        for language, scores in cv["per_language"].items():
            click.echo(f"  {language}: macro-F1 {scores['macro_f1']:.3f} over {scores['examples']} examples")


@main.command()
@click.option("--model", type=click.Path(path_type=Path, dir_okay=False), help="Model to judge (with --data).")
@click.option("--data", type=click.Path(path_type=Path, dir_okay=False), help="Labelled examples (CSV or JSONL).")
@click.option("--text-column", default="text", show_default=True)
@click.option("--label-column", default="label", show_default=True)
@click.option("--cv", "folds", type=int, help="Instead of a model: cross-validate a new model on --data (or the seed).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.pass_context
@errors_as_lines
def evaluate(
    ctx: click.Context,
    model: Path | None,
    data: Path | None,
    text_column: str,
    label_column: str,
    folds: int | None,
    as_json: bool,
) -> None:
    """Judge a model on labelled data: accuracy, macro-F1, per category and language, confusion, thresholds.

    The threshold table shows, for each confidence threshold, the share of mail the model would decide and how
    often it would be right: choose classifier.threshold from it.

    \b
    Example:
      mailtriage evaluate --model models/default.npz --data held-out.csv
      mailtriage evaluate --cv 5 --data tickets.csv --label-column category --json
    """
    from mailtriage import classify

    settings = optional_settings(ctx)
    examples = classify.read_table(data, text_column, label_column) if data else classify.seed_examples()
    if folds is not None:
        metrics = classify.cross_validate(examples, folds)
    else:
        classifier = _classifier(model, settings)
        predictions = [classifier.predict(e.text) for e in examples]
        metrics = classify.measure(examples, [p[0] for p in predictions], [p[1] for p in predictions])
    if as_json:
        click.echo(json.dumps(metrics.as_dict(), indent=2))
        return
    _print_metrics(metrics)


def _print_metrics(metrics: Any) -> None:
    console = Console()
    console.print(f"{metrics.examples} examples: accuracy {metrics.accuracy:.3f}, macro-F1 {metrics.macro_f1:.3f}")
    categories = Table("category", "precision", "recall", "F1", "examples", title="per category")
    for name, row in metrics.per_category.items():
        categories.add_row(
            name, f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}", str(row["support"])
        )
    console.print(categories)
    languages = Table("language", "accuracy", "macro-F1", "examples", title="per language")
    for name, row in metrics.per_language.items():
        languages.add_row(name, f"{row['accuracy']:.3f}", f"{row['macro_f1']:.3f}", str(row["examples"]))
    console.print(languages)
    labels = list(metrics.per_category)
    confusion = Table("true \\ predicted", *[label[:8] for label in labels], title="confusion matrix")
    for label in labels:
        confusion.add_row(label, *[str(metrics.confusion.get(label, {}).get(other, "")) for other in labels])
    console.print(confusion)
    thresholds = Table(
        "threshold", "decided (coverage)", "right when decided (precision)", title="choosing the threshold"
    )
    for row in metrics.thresholds:
        thresholds.add_row(f"{row['threshold']:.1f}", f"{row['coverage']:.1%}", f"{row['precision']:.1%}")
    console.print(thresholds)


@main.command("classify")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--model", type=click.Path(path_type=Path, dir_okay=False), help="Model file (default: from config).")
@click.option("--json", "as_json", is_flag=True, help="Print the decisions as JSON.")
@click.pass_context
@errors_as_lines
def classify_command(ctx: click.Context, files: tuple[Path, ...], model: Path | None, as_json: bool) -> None:
    """Classify .eml files as the daemon would: category, confidence, language, model, and the words that
    weighed most.

    \b
    Example:
      mailtriage classify complaint.eml
      mailtriage classify --model models/ours.npz --json inbox/*.eml
    """
    from mailtriage import classify
    from mailtriage.parse import parse_message

    settings = optional_settings(ctx)
    classifier = _classifier(model, settings)
    threshold = settings.classifier.threshold if settings else 0.5
    fallback = settings.classifier.fallback if settings else "needs-triage"
    predictor = classify.Predictor(classifier, threshold, fallback)
    results = []
    messages = [parse_message(path.read_bytes()) for path in files]
    for path, parsed, decision in zip(files, messages, predictor(messages), strict=True):
        text = classify.feature_text(parsed.subject, parsed.new_text)
        words = classifier.explain(text, decision.predicted)
        results.append({"file": str(path), **asdict(decision), "kind": parsed.kind.value, "words": words})
    if as_json:
        click.echo(json.dumps(results, indent=2, ensure_ascii=False))
        return
    for result in results:
        click.echo(
            f"{result['file']}: {result['category']} (predicted {result['predicted']}, confidence "
            f"{result['confidence']:.2f}; language {result['language']}; model {result['model_version']})"
        )
        if result["kind"] != "customer":
            click.echo(f"  note: {result['kind']} mail, which the daemon records and never triages")
        click.echo("  weighed most: " + ", ".join(f"{clean(term)} ({weight:.2f})" for term, weight in result["words"]))

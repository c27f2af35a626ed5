"""The ``mailtriage`` command: thin wrappers over the library.

Exit codes: 0 success; 1 unexpected error; 2 bad configuration; 3 a mailbox could not be read; 4 the store failed;
5 (``status``) a mailbox has not completed a cycle within ``health.stale_after``.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from mailtriage.errors import MISSING, ConfigError, MailboxError, MailtriageError
from mailtriage.files import file_warnings, tighten_umask
from mailtriage.mailbox import open_mailbox
from mailtriage.pipeline import CycleReport
from mailtriage.settings import Settings, find_config, load_settings, masked
from mailtriage.store import Store
from mailtriage.terminal import CleanFormatter, cell, clean, inline

RET_OK = 0
RET_MAILBOX = MailboxError.exit_code
RET_STALE = 5

F = TypeVar("F", bound=Callable[..., Any])


def _errors_as_lines(command: F) -> F:
    """Turn a MailtriageError into one line on stderr and its exit code, never a traceback."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except MailtriageError as exc:
            click.echo(f"mailtriage: {exc}", err=True)
            sys.exit(exc.exit_code)

    return wrapper  # type: ignore[return-value]


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(CleanFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, level), handlers=[handler])
    for noisy in ("apscheduler", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    # imapclient's INFO lines ("Connection closed") are noise at INFO; its DEBUG protocol trace is wanted at DEBUG.
    logging.getLogger("imapclient").setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)


def _settings(ctx: click.Context, *, secrets: bool = False) -> Settings:
    """The configuration; ``secrets``: check now that every mailbox's secret can be read (for commands that log
    in: the others work from the store and need none)."""
    path = find_config(ctx.obj["config"])
    settings = load_settings(path, check_secrets=secrets)
    _setup_logging(ctx.obj["log_level"] or settings.logging.level)
    return settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-c", "--config", type=click.Path(path_type=Path, dir_okay=False),
    help="Config file (default: $MAILTRIAGE_CONFIG, else ./mailtriage.toml).",
)  # fmt: skip
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]), help="Override logging.level.")
@click.version_option(package_name="mailtriage")
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


@main.group()
def config() -> None:
    """Inspect the configuration.

    \b
    Example:
      mailtriage config check mailtriage.toml
    """


@config.command("check")
@click.argument("file", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--connect", is_flag=True, help="Also log in to every mailbox and say what its server offers.")
@click.pass_context
@_errors_as_lines
def config_check(ctx: click.Context, file: Path | None, connect: bool) -> None:
    """Validate FILE and print the effective configuration, secrets masked (exit 2 on any bad value).

    Environment overrides (MAILTRIAGE_SECTION__KEY=value) are applied, relative paths resolved, and secret
    files and variables checked for readability. With --connect, log in to each mailbox and print what its
    server offers (IDLE, MOVE, UIDPLUS, SPECIAL-USE, NAMESPACE, CONDSTORE, keywords), what mailtriage will
    therefore do there, and the folders it resolved; exit 3 if a mailbox cannot be reached.

    \b
    Example:
      mailtriage config check config.example.toml
      mailtriage config check --connect mailtriage.toml
      MAILTRIAGE_SCHEDULE__POLL_INTERVAL=30 mailtriage config check
    """
    path = find_config(file or ctx.obj["config"])
    settings = load_settings(path)
    for warning in [*template_warnings(settings), *file_warnings(settings)]:
        click.echo(f"mailtriage: warning: {warning}", err=True)
    click.echo(f"# {path}: OK")
    click.echo(json.dumps(masked(settings), indent=2, ensure_ascii=False))
    if connect:
        sys.exit(_connect_all(settings))


def _connect_all(settings: Settings) -> int:
    """Describe every mailbox's server; the exit code: 0, or 3 when one could not be reached."""
    from mailtriage.mailbox.server import describe

    folders = [category.folder for category in settings.categories if category.folder]
    failed = False
    for configured in settings.mailboxes:
        mailbox = open_mailbox(configured)
        try:
            lines = describe(mailbox.profile(folders))  # folder names are the server's words
            click.echo(clean("\n".join(lines), newlines=True))
        except MailboxError as exc:
            click.echo(f"mailtriage: {exc}", err=True)
            failed = True
        finally:
            mailbox.close()
    return RET_MAILBOX if failed else RET_OK


@main.command()
@click.option("--once", is_flag=True, help="Run one cycle for every mailbox, print a summary per mailbox, exit.")
@click.option("--json", "as_json", is_flag=True, help="With --once: print the summary as JSON.")
@click.pass_context
@_errors_as_lines
def run(ctx: click.Context, once: bool, as_json: bool) -> None:
    """Watch the configured mailboxes and triage new mail until stopped (SIGTERM or Ctrl-C).

    With --once, do one cycle and exit: 0 when every mailbox was read, 3 when one could not be.

    \b
    Example:
      mailtriage --config mailtriage.toml run
      mailtriage run --once --json     # from cron or a monitoring check
    """
    from mailtriage.scheduler import daemon_from_settings

    settings = _settings(ctx, secrets=True)
    for warning in template_warnings(settings):
        logging.getLogger("mailtriage").warning("%s", warning)
    daemon = daemon_from_settings(settings)
    if not once:
        daemon.run_forever()
        return
    reports = daemon.run_once()
    if as_json:
        click.echo(json.dumps([{**asdict(r), "reasons": sorted(r.reasons)} for r in reports], indent=2))
    else:
        for report in reports:
            click.echo(_summary(report))
    sys.exit(RET_OK if all(report.ok for report in reports) else RET_MAILBOX)


def template_warnings(settings: Settings) -> list[str]:
    """Templates in use that would draft nothing: unapproved, changed since their approval, or missing."""
    from mailtriage.compliance import approval_problem, read_approvals

    folder = settings.drafts.templates
    approvals = read_approvals(folder)
    warnings = []
    for category in settings.categories:
        if not category.draft or category.name == settings.classifier.fallback:
            continue
        paths = sorted(folder.glob(f"{category.template_name}/*.txt.j2"))
        if not paths:
            warnings.append(f"category {category.name}: no template in {folder / category.template_name}")
        for path in paths:
            name = f"{category.template_name}/{path.name.removesuffix('.txt.j2')}"
            problem = approval_problem(folder, name, approvals)
            if problem:
                warnings.append(f"category {category.name}: {problem}; its mail gets no draft")
    return warnings


def _summary(report: CycleReport) -> str:
    if not report.ok:
        return f"{report.mailbox}: FAILED: {clean(report.error)}"  # the server's words are in it
    backlog = f", {report.backlog} left for the next cycle" if report.backlog else ""
    return f"{report.mailbox}: {report.new} new, {report.skipped} skipped, {report.failed} failed{backlog}"


@main.command()
@click.option("--keep", type=click.Path(path_type=Path, file_okay=False), help="Build the demo in DIR and keep it.")
@click.pass_context
@_errors_as_lines
def demo(ctx: click.Context, keep: Path | None) -> None:
    """Triage ~30 sample support mails (English, French, German) from a temporary Maildir and show the result.

    Needs no configuration and no server.

    \b
    Example:
      mailtriage demo
      mailtriage demo --keep ./demo    # keep the Maildir, the store and a config to run the daemon on
    """
    from mailtriage.demo import run_demo

    _setup_logging(ctx.obj["log_level"] or "WARNING")
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        reports, records = run_demo(keep)
    else:
        with tempfile.TemporaryDirectory(prefix="mailtriage-demo-") as workdir:
            reports, records = run_demo(Path(workdir))
    table = Table(title="mailtriage demo: what one cycle did", expand=True)
    table.add_column("UID", justify="right", no_wrap=True)
    table.add_column("From", no_wrap=True, overflow="ellipsis", ratio=2)
    table.add_column("Subject", no_wrap=True, overflow="ellipsis", ratio=3)
    table.add_column("Lang", no_wrap=True)
    table.add_column("Decision", no_wrap=True)
    for record in records:
        if record.category is not None:
            decision = f"{record.category} {record.confidence or 0:.2f}"
        else:
            decision = f"{record.status} ({record.kind})"
        table.add_row(str(record.uid), cell(record.sender), cell(record.subject), record.language or "", decision)
    console = Console()
    console.print(table)
    for report in reports:
        console.print(_summary(report))
    drafted = sum(1 for record in records if (record.route or {}).get("template"))
    console.print(f"{drafted} reply drafts written to the Maildir's Drafts folder, threaded to their messages")
    if keep is not None:
        from mailtriage.demo import write_config

        config = write_config(keep)
        click.echo(f"Maildir (drafts in {keep / 'Maildir' / '.Drafts'}) and store kept in {keep}")
        click.echo(f"Run the daemon on it (mail dropped into {keep / 'Maildir' / 'new'} is triaged within 10 s):")
        click.echo(f"  mailtriage --config {config} run")


def _optional_settings(ctx: click.Context) -> Settings | None:
    """The configuration if there is one: train, evaluate and classify also work without any."""
    path = find_config(ctx.obj["config"])
    if ctx.obj["config"] is None and not path.exists():
        _setup_logging(ctx.obj["log_level"] or "WARNING")
        return None
    return _settings(ctx)


def _model_path(model: Path | None, settings: Settings | None) -> Path:
    if model is not None:
        return model
    if settings is not None:
        return settings.classifier.model
    return Path("models/default.skops")


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
@click.pass_context
@_errors_as_lines
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
) -> None:
    """Train the classifier and write it with its metadata (categories, counts, cross-validated metrics).

    Needs no configuration: the categories are the labels in the data. With a configuration, the model is
    written where classifier.model says unless --out is given.

    \b
    Example:
      mailtriage train                                   # the shipped seed set, en/fr/de
      mailtriage train --data tickets.csv --label-column category --out models/ours.skops
      mailtriage train --eml ./labelled-mail --seed
      mailtriage --config mailtriage.toml train --from-store --seed
    """
    from mailtriage import classify, training

    settings = _optional_settings(ctx)
    examples: list[classify.Example] = []
    sources: list[str] = []
    if from_store or from_folders:
        if settings is None:
            raise ConfigError(
                str(find_config(None)), "(file)", MISSING, "a config file for --from-store/--from-folders"
            )
        if from_store:
            examples += training.store_examples(Store(settings.store.url), settings.classifier.fallback)
            sources.append("store")
        if from_folders:
            mailbox = open_mailbox(settings.mailboxes[0])
            try:
                examples += training.folder_examples(mailbox, settings.classifier.training_folders)
            finally:
                mailbox.close()
            sources.append("folders")
    for path in data:
        examples += classify.read_table(path, text_column, label_column)
        sources.append(str(path))
    for folder in eml_dirs:
        examples += classify.read_eml_folder(folder)
        sources.append(str(folder))
    if use_seed or (use_seed is None and not sources):
        examples += classify.seed_examples()
        sources.append("seed")
    path = _model_path(out, settings)
    trained = classify.train(examples, folds=folds, sources=sources)
    metadata = classify.save(trained, path)
    cv = metadata["cross_validation"]
    click.echo(f"wrote {path} (version {metadata['version']}): {len(examples)} examples, "
               f"{len(metadata['categories'])} categories, trained in {metadata['training_seconds']} s")  # fmt: skip
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
@_errors_as_lines
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
      mailtriage evaluate --model models/default.skops --data held-out.csv
      mailtriage evaluate --cv 5 --data tickets.csv --label-column category --json
    """
    from mailtriage import classify

    settings = _optional_settings(ctx)
    examples = classify.read_table(data, text_column, label_column) if data else classify.seed_examples()
    if folds is not None:
        metrics = classify.cross_validate(examples, folds)
    else:
        classifier = classify.load(_model_path(model, settings))
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
@_errors_as_lines
def classify_command(ctx: click.Context, files: tuple[Path, ...], model: Path | None, as_json: bool) -> None:
    """Classify .eml files as the daemon would: category, confidence, language, model, and the words that
    weighed most.

    \b
    Example:
      mailtriage classify complaint.eml
      mailtriage classify --model models/ours.skops --json inbox/*.eml
    """
    from mailtriage import classify
    from mailtriage.parse import parse_message

    settings = _optional_settings(ctx)
    classifier = classify.load(_model_path(model, settings), settings.category_names() if settings else None)
    threshold = settings.classifier.threshold if settings else 0.5
    fallback = settings.classifier.fallback if settings else "needs-triage"
    predictor = classify.Predictor(classifier, threshold, fallback)
    results = []
    for path in files:
        parsed = parse_message(path.read_bytes())
        decision = predictor(parsed)
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


@main.command()
@click.option("-n", "--limit", default=50, show_default=True, help="How many decisions, newest first.")
@click.option("--mailbox", help="Only this mailbox.")
@click.option("--category", help="Only this category.")
@click.option("--status", help="Only this status (routed, pending, needs-human, classified, skipped, failed...).")
@click.option("--decided-by", help="Only decisions by this: 'model', 'fallback', 'rule' or 'rule:NAME'.")
@click.option("--since", type=click.DateTime(), help="Only messages recorded since (UTC), e.g. 2026-11-23.")
@click.option("--json", "as_json", is_flag=True, help="Print the decisions as JSON.")
@click.pass_context
@_errors_as_lines
def review(
    ctx: click.Context,
    limit: int,
    mailbox: str | None,
    category: str | None,
    status: str | None,
    decided_by: str | None,
    since: Any,
    as_json: bool,
) -> None:
    """Recent decisions: who decided each message's category (a rule or the model) and what was done; with
    --json, each draft's template, its content hash and who approved it.

    \b
    Example:
      mailtriage review
      mailtriage review --decided-by rule --since 2026-11-23
      mailtriage review --status needs-human --json
    """

    settings = _settings(ctx)
    store = Store(settings.store.url)
    records = store.recent(
        limit=limit, mailbox=mailbox, category=category, status=status, decided_by=decided_by,
        since=since.replace(tzinfo=UTC) if since else None,
    )  # fmt: skip
    rows: list[dict[str, Any]] = [
        {
            "time": record.recorded_at.isoformat(timespec="seconds"),
            "mailbox": record.mailbox,
            "sender": record.sender,
            "subject": record.subject,
            "category": record.category,
            "confidence": record.confidence,
            "language": record.language,
            "decided_by": record.decided_by,
            "reason": (record.route or {}).get("reason"),
            "draft": bool((record.route or {}).get("template")),
            "folder": (record.route or {}).get("folder"),
            "status": record.status,
            "error": record.error,
            "drafts": [e.detail for e in store.events(record.id, "draft-appended")],
        }
        for record in records
    ]
    for row in rows:
        row["notes"] = [draft["note"] for draft in row["drafts"] if draft.get("note")]
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    table = Table(title=f"the {len(rows)} latest decisions", expand=True)
    for column in ("Time", "From", "Subject", "Category", "Conf.", "Lang", "Decided by", "Draft", "Folder", "Status"):
        table.add_column(column, no_wrap=column not in ("From", "Subject", "Draft"), overflow="ellipsis")
    for row in rows:
        table.add_row(
            row["time"][5:16].replace("T", " "), cell(row["sender"]), cell(row["subject"]), cell(row["category"]),
            f"{row['confidence']:.2f}" if row["confidence"] is not None else "", cell(row["language"]),
            cell(row["decided_by"]), cell("; ".join(["yes", *row["notes"]]) if row["draft"] else "no"),
            cell(row["folder"]), cell(row["status"]),
        )  # fmt: skip
    Console().print(table)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the state as JSON.")
@click.pass_context
@_errors_as_lines
def status(ctx: click.Context, as_json: bool) -> None:
    """Is the daemon working? Per mailbox: its last successful cycle, failures in a row and the last error, the
    backlog, today's mail by status and what waits for an answer; then the model, the templates and the heartbeat.

    Exits 0 when every mailbox completed a cycle within health.stale_after seconds, 5 otherwise: a monitoring
    check can alert on the exit code alone.

    \b
    Example:
      mailtriage status
      mailtriage status --json
      mailtriage status > /dev/null || echo "mailtriage needs a look"
    """
    from mailtriage.classify import model_state
    from mailtriage.scheduler import utcnow

    settings = _settings(ctx)
    now = utcnow()
    store = Store(settings.store.url)
    health = store.health()
    stale_after = timedelta(seconds=settings.health.stale_after)
    mailboxes = []
    for configured in settings.mailboxes:
        known = health.get(configured.name)
        last_ok = known.last_ok_at if known else None
        mailboxes.append({
            "name": configured.name,
            "last_ok_at": _iso(last_ok),
            "stale": last_ok is None or now - last_ok > stale_after,
            "failures": known.failures if known else 0,
            "last_error": known.last_error if known and known.failures else None,
            "last_error_at": _iso(known.last_error_at) if known and known.failures else None,
            "backlog": known.backlog if known else 0,
            "last_24h": store.status_counts(configured.name, now - timedelta(days=1)),
        })  # fmt: skip
    heartbeat = settings.health.heartbeat_file
    beat = None
    if heartbeat is not None and heartbeat.exists():
        beat = datetime.fromtimestamp(heartbeat.stat().st_mtime, UTC)
    state = {
        "at": now.isoformat(timespec="seconds"),
        "healthy": not any(m["stale"] for m in mailboxes),
        "stale_after_seconds": settings.health.stale_after,
        "mailboxes": mailboxes,
        "model": model_state(settings.classifier.model, settings.category_names()),
        "templates": template_warnings(settings),
        "heartbeat": None if heartbeat is None else {"file": str(heartbeat), "written_at": _iso(beat)},
    }
    if as_json:
        click.echo(json.dumps(state, indent=2, ensure_ascii=False))
    else:
        _print_status(state, now)
    if not state["healthy"]:
        sys.exit(RET_STALE)


def _print_status(state: dict[str, Any], now: datetime) -> None:
    from mailtriage.deadlines import format_span

    def ago(moment: str | None) -> str:
        return "never" if moment is None else f"{format_span(now - datetime.fromisoformat(moment))} ago"

    console = Console()
    table = Table(title="mailboxes", expand=True)
    for column in ("Mailbox", "Last good cycle", "Failing", "Backlog", "Last 24 h", "Waiting for an answer"):
        table.add_column(column, overflow="fold")
    for box in state["mailboxes"]:
        counts = box["last_24h"]
        recorded = ", ".join(f"{n} {k.split(':', 1)[1]}" for k, n in sorted(counts.items()) if k.startswith("rec"))
        waiting = ", ".join(f"{n} {k.split(':', 1)[1]}" for k, n in sorted(counts.items()) if k.startswith("open"))
        last = ago(box["last_ok_at"])
        failing = f"{box['failures']} in a row: {box['last_error']}" if box["failures"] else "no"
        table.add_row(cell(box["name"]), f"[red]{last}[/red]" if box["stale"] else last,
                      f"[red]{inline(failing)}[/red]" if box["failures"] else failing, str(box["backlog"]),
                      cell(recorded or "nothing"), cell(waiting or "nothing"))  # fmt: skip
    console.print(table)
    model = state["model"]
    trained = f"version {model['version']}, trained {model['trained_at']}, macro-F1 {model['macro_f1']}"
    shown = f"[red]{inline(model['problem'])}[/red]" if model["problem"] else inline(trained)
    console.print(f"model {inline(model['path'])}: {shown}")
    if state["templates"]:
        console.print("templates: [yellow]" + inline("; ".join(state["templates"])) + "[/yellow]")
    else:
        console.print("templates: every template in use is approved as it is")
    if state["heartbeat"]:
        console.print(
            f"heartbeat {inline(state['heartbeat']['file'])}: written {ago(state['heartbeat']['written_at'])}"
        )
    verdict = "healthy" if state["healthy"] else "[red]not healthy[/red]: a mailbox has no recent good cycle"
    console.print(f"{verdict} (stale after {state['stale_after_seconds']:.0f} s)")


@main.command()
@click.option("--at", "at", help="Show the states as they will be then: '2026-11-24 09:00', 'tomorrow 9:00', '+3h'.")
@click.option("--mailbox", help="Only this mailbox.")
@click.option("--json", "as_json", is_flag=True, help="Print the messages as JSON.")
@click.pass_context
@_errors_as_lines
def deadlines(ctx: click.Context, at: str | None, mailbox: str | None, as_json: bool) -> None:
    """Messages waiting for a first response, soonest due first: sender, subject, category, due time, time
    left and state (on-track, warning, breached). Times are in the calendar's time zone; --at without a zone too.

    \b
    Example:
      mailtriage deadlines
      mailtriage deadlines --at "tomorrow 9:00"     # what is overdue by tomorrow at nine?
      mailtriage deadlines --json
    """
    from zoneinfo import ZoneInfo

    from mailtriage.deadlines import format_span, parse_when, policy_from_settings
    from mailtriage.scheduler import utcnow

    settings = _settings(ctx)
    policy = policy_from_settings(settings)
    if policy is None:
        click.echo("Deadlines are turned off (deadlines.enabled = false).")
        return
    now = utcnow()
    try:
        moment = parse_when(at, now, policy.display_zone) if at else now
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--at") from None
    zone = ZoneInfo(policy.display_zone)
    rows: list[dict[str, Any]] = []
    for record in Store(settings.store.url).open_deadlines(mailbox):
        assert record.due_at is not None
        rows.append({
            "mailbox": record.mailbox, "sender": record.sender, "subject": record.subject,
            "category": record.corrected or record.category, "received_at": _iso(record.received_at),
            "due_at": record.due_at.isoformat(), "left_seconds": int((record.due_at - moment).total_seconds()),
            "state": policy.state(record.due_at, record.category, moment).value, "folder": record.folder,
        })  # fmt: skip
    if as_json:
        click.echo(json.dumps({"at": moment.isoformat(), "messages": rows}, indent=2, ensure_ascii=False))
        return
    when = "now" if at is None else moment.astimezone(zone).strftime("at %a %d %b %H:%M %Z")
    table = Table(title=f"{len(rows)} messages waiting for a first response, {when}", expand=True)
    for column in ("From", "Subject", "Category", "Due", "Left", "State"):
        table.add_column(column, no_wrap=column not in ("From", "Subject"), overflow="ellipsis")
    colours = {"on-track": "green", "warning": "yellow", "breached": "bold red"}
    for row in rows:
        due = datetime.fromisoformat(row["due_at"]).astimezone(zone).strftime("%a %d %b %H:%M")
        left = format_span(timedelta(seconds=row["left_seconds"]))
        style = colours[row["state"]]
        table.add_row(cell(row["sender"]), cell(row["subject"]), cell(row["category"]), due, left,
                      f"[{style}]{row['state']}[/{style}]")  # fmt: skip
    Console().print(table)


@main.command()
@click.option("--since", type=click.DateTime(), help="Only mail received since this day (UTC), e.g. 2026-11-01.")
@click.option("--mailbox", help="Only this mailbox.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print one CSV line per category and language.")
@click.option("--png", type=click.Path(path_type=Path, dir_okay=False), help="Also draw a chart into this PNG file.")
@click.pass_context
@_errors_as_lines
def report(
    ctx: click.Context, since: datetime | None, mailbox: str | None, as_json: bool, as_csv: bool, png: Path | None
) -> None:
    """Per category and language: volume, median and 90th-percentile first-response time (on the configured
    clock), share answered within target, breaches, share classified automatically above the threshold,
    corrections by agents; and the words and phrases customers use most in each category.

    \b
    Example:
      mailtriage report --since 2026-11-01
      mailtriage report --csv > november.csv
      mailtriage report --since 2026-11-01 --png november.png
    """
    from mailtriage.deadlines import policy_from_settings
    from mailtriage.report import build_report, chart, render, to_csv, to_json
    from mailtriage.scheduler import utcnow

    if as_json and as_csv:
        raise click.UsageError("--json or --csv, not both")
    settings = _settings(ctx)
    start = since.replace(tzinfo=UTC) if since else None
    records = Store(settings.store.url).messages(mailbox, since=start)
    built = build_report(records, policy=policy_from_settings(settings), threshold=settings.classifier.threshold,
                         since=start, now=utcnow())  # fmt: skip
    if as_json:
        click.echo(json.dumps(to_json(built), indent=2, ensure_ascii=False))
    elif as_csv:
        click.echo(to_csv(built), nl=False)
    else:
        render(built, Console())
    if png is not None:
        chart(built, png)
        click.echo(f"Chart written to {png}", err=as_json or as_csv)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


@main.group("templates")
def templates_group() -> None:
    """Reply templates for compliance: lint, approval by content hash, and what they look like filled in.

    \b
    Example:
      mailtriage templates check
      mailtriage templates approve return-refund/fr --by "A. Martin" --note "reviewed 2026-11-23"
    """


def _template_folder(ctx: click.Context) -> tuple[Path, Any]:
    from mailtriage.compliance import load_policy
    from mailtriage.settings import DraftSettings

    settings = _optional_settings(ctx)
    folder = (settings.drafts if settings is not None else DraftSettings()).templates
    return folder, load_policy(folder / "policy.toml")


@templates_group.command("check")
@click.pass_context
@_errors_as_lines
def templates_check(ctx: click.Context) -> None:
    """List every template with its lint findings and approval; exit 1 if any is unapproved, changed since its
    approval, or failing the lint (fit for CI).

    \b
    Example:
      mailtriage templates check
      mailtriage --config mailtriage.toml templates check
    """
    from mailtriage.compliance import approval_problem, read_approvals, source_findings, template_names

    folder, policy = _template_folder(ctx)
    approvals = read_approvals(folder)
    failed = 0
    for name in template_names(folder):
        problems = [str(f) for f in source_findings(folder, name, policy)]
        approval = approval_problem(folder, name, approvals)
        if approval:
            problems.append(approval)
        if problems:
            failed += 1
            click.echo(f"FAIL {name}: " + "; ".join(problems))
        else:
            click.echo(f"ok   {name}: approved by {approvals[name].approved_by} on {approvals[name].approved_at[:10]}")
    click.echo(f"{failed} of {len(template_names(folder))} templates need attention" if failed else "all templates ok")
    sys.exit(1 if failed else 0)


@templates_group.command("approve")
@click.argument("names", nargs=-1, required=True)
@click.option("--by", "by", required=True, help="Who approves (recorded in the manifest).")
@click.option("--note", default="", help="Why, or what was checked.")
@click.pass_context
@_errors_as_lines
def templates_approve(ctx: click.Context, names: tuple[str, ...], by: str, note: str) -> None:
    """Approve templates as they are now (NAME: category/language); refused when the text fails the lint.

    \b
    Example:
      mailtriage templates approve return-refund/fr --by "A. Martin" --note "ticket COMP-12"
    """
    from datetime import UTC, datetime

    from mailtriage.compliance import approve

    folder, policy = _template_folder(ctx)
    for name in names:
        approval = approve(folder, name, by, note, policy, datetime.now(UTC))
        click.echo(f"approved {name} ({approval.sha256[:12]}) by {by}")


@templates_group.command("show")
@click.argument("names", nargs=-1)
@click.option("--html", "html_file", type=click.Path(path_type=Path, dir_okay=False), help="Also write one HTML page.")
@click.pass_context
@_errors_as_lines
def templates_show(ctx: click.Context, names: tuple[str, ...], html_file: Path | None) -> None:
    """Print each template's text, the variables it uses and a sample rendering, for compliance to read.

    \b
    Example:
      mailtriage templates show return-refund/fr
      mailtriage templates show --html templates-review.html
    """
    from mailtriage.compliance import read_approvals, template_names, template_report

    folder, policy = _template_folder(ctx)
    approvals = read_approvals(folder)
    reports = [template_report(folder, name, policy, approvals) for name in (names or template_names(folder))]
    for report in reports:
        click.echo(f"=== {report['name']} ({report['state']})\nvariables: {', '.join(report['variables']) or '-'}")
        click.echo(f"--- source\n{report['source']}\n--- sample\n{report['sample']}\n")
    if html_file is not None:
        html_file.write_text(_html(reports), encoding="utf-8")
        click.echo(f"wrote {html_file}")


def _html(reports: list[dict[str, Any]]) -> str:
    from html import escape

    sections = "".join(
        f"<section><h2>{escape(r['name'])}</h2><p>{escape(r['state'])}; variables: "
        f"{escape(', '.join(r['variables']) or '-')}</p><h3>Template</h3><pre>{escape(r['source'])}</pre>"
        f"<h3>Sample</h3><pre>{escape(r['sample'])}</pre></section>"
        for r in reports
    )
    style = "body{font-family:sans-serif;max-width:60em;margin:auto}pre{background:#f4f4f4;padding:1em}"
    head = f"<meta charset='utf-8'><title>mailtriage templates</title><style>{style}</style>"
    return f"<!doctype html><html><head>{head}</head><body><h1>Reply templates</h1>{sections}</body></html>\n"

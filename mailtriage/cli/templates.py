"""Commands for compliance: ``templates check``, ``approve``, ``show``, ``lint``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mailtriage.cli.app import errors_as_lines, main, optional_settings
from mailtriage.terminal import clean

if TYPE_CHECKING:
    from mailtriage.policy import SentenceLint


@main.group("templates")
def templates_group() -> None:
    """Reply templates for compliance: lint, approval by content hash, and what they look like filled in.

    \b
    Example:
      mailtriage templates check
      mailtriage templates approve return-refund/fr --by "A. Martin" --note "reviewed 2026-11-23"
      mailtriage templates lint "We will issue a full refund to your card."
    """


def _template_folder(ctx: click.Context) -> tuple[Path, Any]:
    from mailtriage.policy import load_policy
    from mailtriage.settings import DraftSettings

    settings = optional_settings(ctx)
    folder = (settings.drafts if settings is not None else DraftSettings()).templates
    return folder, load_policy(folder / "policy.toml")


@templates_group.command("check")
@click.pass_context
@errors_as_lines
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
            click.echo(f"ok   {name}: {approvals[name].describe()}")
    click.echo(f"{failed} of {len(template_names(folder))} templates need attention" if failed else "all templates ok")
    sys.exit(1 if failed else 0)


@templates_group.command("approve")
@click.argument("names", nargs=-1, required=True)
@click.option("--by", "by", required=True, help="Who approves: your console account, else a name (marked unchecked).")
@click.option("--note", default="", help="Why, or what was checked.")
@click.option("--password-stdin", is_flag=True, help="Read the console account's password from standard input.")
@click.pass_context
@errors_as_lines
def templates_approve(ctx: click.Context, names: tuple[str, ...], by: str, note: str, password_stdin: bool) -> None:
    """Approve templates as they are now (NAME: category/language); refused when the text fails the lint.

    When --by names a console account (`mailtriage console user add`), its password is asked and the approval is
    recorded under that account; any other name is recorded as "approved from the command line", unchecked.

    \b
    Example:
      mailtriage templates approve return-refund/fr --by amartin --note "ticket COMP-12"
    """
    from datetime import UTC, datetime

    from mailtriage.compliance import Signature, approve

    folder, policy = _template_folder(ctx)
    signer = _signer(ctx, by, password_stdin)
    for name in names:
        approval = approve(folder, name, Signature(signer.by, signer.account), note, policy, datetime.now(UTC))
        signer.audit("template-approved", name, approval.sha256, note)
        click.echo(f"approved {name} ({approval.sha256[:12]}): {approval.describe()}")


@templates_group.command("reject")
@click.argument("names", nargs=-1, required=True)
@click.option("--by", "by", required=True, help="Who rejects: your console account, else a name (marked unchecked).")
@click.option("--note", required=True, help="Why: what the author should change.")
@click.option("--password-stdin", is_flag=True, help="Read the console account's password from standard input.")
@click.pass_context
@errors_as_lines
def templates_reject(ctx: click.Context, names: tuple[str, ...], by: str, note: str, password_stdin: bool) -> None:
    """Refuse templates as they are now: an approved text loses its approval (it drafts nothing until approved
    again); a change not yet approved stays unapproved. Recorded in the audit log with the note.

    \b
    Example:
      mailtriage templates reject billing/de --by amartin --note "no dates in the second paragraph"
    """
    from mailtriage.compliance import reject

    folder, _ = _template_folder(ctx)
    signer = _signer(ctx, by, password_stdin)
    for name in names:
        sources, withdrawn = reject(folder, name)
        signer.audit("template-rejected", name, sources.sha256, note, withdrawn=withdrawn is not None)
        click.echo(f"rejected {name} ({sources.sha256[:12]})" + ("; its approval is withdrawn" if withdrawn else ""))


def _signer(ctx: click.Context, by: str, password_stdin: bool) -> Any:
    from mailtriage.cli.signer import signer_for

    return signer_for(optional_settings(ctx), by, password_stdin)


@templates_group.command("show")
@click.argument("names", nargs=-1)
@click.option("--html", "html_file", type=click.Path(path_type=Path, dir_okay=False), help="Also write one HTML page.")
@click.pass_context
@errors_as_lines
def templates_show(ctx: click.Context, names: tuple[str, ...], html_file: Path | None) -> None:
    """Print each template's text, the variables it uses and a sample rendering, for compliance to read.

    \b
    Example:
      mailtriage templates show return-refund/fr
      mailtriage templates show --html templates-review.html
    """
    from mailtriage.compliance import read_approvals, template_names
    from mailtriage.template_review import review, review_page

    folder, policy = _template_folder(ctx)
    approvals = read_approvals(folder)
    reviews = [review(folder, name, policy, approvals) for name in (names or template_names(folder))]
    for shown in reviews:
        click.echo(f"=== {shown.name} ({shown.summary})\nvariables: {', '.join(shown.variables) or '-'}")
        click.echo(f"--- source\n{shown.source}\n--- sample\n{shown.sample}\n")
    if html_file is not None:
        html_file.write_text(review_page(reviews), encoding="utf-8")
        click.echo(f"wrote {html_file}")


@templates_group.command("lint")
@click.argument("text", nargs=-1, required=True)
@click.option(
    "--language",
    "languages",
    multiple=True,
    metavar="CODE",
    help="Only this language's rules (repeatable); by default every language's, as approval checks.",
)
@click.pass_context
@errors_as_lines
def templates_lint(ctx: click.Context, text: tuple[str, ...], languages: tuple[str, ...]) -> None:
    """Explain how the lint reads TEXT (a sentence or more; '-' reads standard input): per sentence, each rule it
    meets with the words matched, the rule's pattern and its reason, and any exemption that clears it. Exit 1 when
    `templates approve` would refuse the text.

    \b
    Example:
      mailtriage templates lint "We will issue a full refund to your card."
      mailtriage templates lint --language fr "Nous nous engageons à réparer votre appareil."
      mailtriage templates lint - < templates/billing/en.txt
    """  # fmt: skip
    _, policy = _template_folder(ctx)
    written = sys.stdin.read() if text == ("-",) else " ".join(text)
    unknown = sorted(set(languages) - set(policy.rules.languages))
    if unknown:
        known = ", ".join(policy.rules.languages)
        raise click.BadParameter(f"no rules for {', '.join(unknown)} (the policy has {known})", param_hint="--language")
    read = policy.explain(written, languages)
    for number, sentence in enumerate(read, 1):
        click.echo("\n".join(_explained(number, sentence)))
    refused = sum(1 for sentence in read if sentence.binding)
    click.echo(f"{refused} of {len(read)} sentences would be refused" if refused else "nothing binding found")
    sys.exit(1 if refused else 0)


def _explained(number: int, sentence: SentenceLint) -> list[str]:
    lines = [f"{number}. {clean(sentence.sentence)!r}"]
    if sentence.question:
        lines.append("   a question: only rules with questions = true apply")
    for match in sentence.matches:
        rule = match.rule
        verdict = "cleared" if match.exempted_by else "BINDING"
        lines += [f"   {verdict} {rule.kind}: {clean(match.text)!r} (rule {rule.name}, {rule.language})",
                  f"      pattern: {rule.pattern}", f"      reason:  {rule.reason}"]  # fmt: skip
        if match.exempted_by is not None:
            exemption = match.exempted_by.pattern
            lines.append(f"      cleared by exemption {exemption.name} ({exemption.pattern}): {exemption.reason}")
    if not sentence.matches:
        lines.append("   no rule matches")
    return lines

"""Commands for compliance: ``templates check``, ``approve``, ``show``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from mailtriage.cli.app import errors_as_lines, main, optional_settings


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
            click.echo(f"ok   {name}: approved by {approvals[name].approved_by} on {approvals[name].approved_at[:10]}")
    click.echo(f"{failed} of {len(template_names(folder))} templates need attention" if failed else "all templates ok")
    sys.exit(1 if failed else 0)


@templates_group.command("approve")
@click.argument("names", nargs=-1, required=True)
@click.option("--by", "by", required=True, help="Who approves (recorded in the manifest).")
@click.option("--note", default="", help="Why, or what was checked.")
@click.pass_context
@errors_as_lines
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
@errors_as_lines
def templates_show(ctx: click.Context, names: tuple[str, ...], html_file: Path | None) -> None:
    """Print each template's text, the variables it uses and a sample rendering, for compliance to read.

    \b
    Example:
      mailtriage templates show return-refund/fr
      mailtriage templates show --html templates-review.html
    """
    from mailtriage.compliance import read_approvals, review_page, template_names, template_report

    folder, policy = _template_folder(ctx)
    approvals = read_approvals(folder)
    reports = [template_report(folder, name, policy, approvals) for name in (names or template_names(folder))]
    for report in reports:
        click.echo(f"=== {report['name']} ({report['state']})\nvariables: {', '.join(report['variables']) or '-'}")
        click.echo(f"--- source\n{report['source']}\n--- sample\n{report['sample']}\n")
    if html_file is not None:
        html_file.write_text(review_page(reports), encoding="utf-8")
        click.echo(f"wrote {html_file}")

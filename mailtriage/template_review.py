"""What compliance reads of a template: its text and what it includes, the variables it uses, the lint's findings,
a sample rendering, its approval, and what changed since that approval (``templates show``, the console)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from html import escape
from pathlib import Path

import jinja2
from jinja2 import meta

from mailtriage.compliance import Approval, approval_problem, source_findings
from mailtriage.errors import TemplateError
from mailtriage.policy import Finding, Policy
from mailtriage.templates import Sources, read_sources, render_sources

SAMPLE = {
    "greeting_name": "Renée Lefèvre",
    "first_name": "Renée",
    "subject": "Commande A-10234",
    "references": ["A-10234"],
    "models": [],
    "photos": False,
    "documents": False,
    "reason": False,
    "signature": "",
    "due": "2026-11-24 14:00",
}
"""A made-up customer's values, for the sample rendering."""


@dataclass(frozen=True)
class FileChange:
    """How one file of a template differs from its approved text: ``lines`` is a unified diff."""

    path: str
    status: str
    """"changed", "new" (not in the approved text) or "no longer included"."""
    lines: tuple[str, ...]


@dataclass(frozen=True)
class TemplateReview:
    name: str
    """'category/language'."""
    sources: Sources
    variables: tuple[str, ...]
    findings: tuple[Finding, ...]
    """What the lint refuses: while there is any, the template cannot be approved."""
    sample: str
    """The text drafted for a made-up customer, or why it cannot be rendered."""
    approval: Approval | None
    problem: str | None
    """Why it may not draft (unapproved, changed since its approval), or None."""
    changes: tuple[FileChange, ...] | None
    """What changed since the approval, file by file; None when there is no approved text on record to compare."""

    @property
    def language(self) -> str:
        return self.name.partition("/")[2]

    @property
    def source(self) -> str:
        return self.sources.files[self.sources.main]

    @property
    def included(self) -> dict[str, str]:
        return {path: text for path, text in self.sources.files.items() if path != self.sources.main}

    @property
    def state(self) -> str:
        """One of "fails the lint", "not approved", "changed since its approval", "approved"."""
        if self.findings:
            return "fails the lint"
        if self.problem is None:
            return "approved"
        return "changed since its approval" if self.approval is not None else "not approved"

    @property
    def summary(self) -> str:
        """The findings and the approval problem, or who approved it: one line."""
        lines = [*(str(f) for f in self.findings), *([self.problem] if self.problem else [])]
        if lines or self.approval is None:
            return "; ".join(lines)
        return self.approval.describe()


def review(folder: Path, name: str, policy: Policy, approvals: dict[str, Approval]) -> TemplateReview:
    """Template ``name`` as compliance reads it now.

    Raises:
        TemplateError: it cannot be read (missing, or naming a template that is not there).
    """
    from mailtriage.sections import DraftSettings

    sources = read_sources(folder, name)
    parsed = [meta.find_undeclared_variables(jinja2.Environment().parse(text)) for text in sources.files.values()]
    language = name.partition("/")[2]
    try:
        sample = render_sources(sources, {**SAMPLE, "signature": DraftSettings().signature_for(language)})
    except TemplateError as exc:
        sample = f"(cannot be rendered: {exc.reason})"
    approval = approvals.get(name)
    return TemplateReview(
        name, sources, tuple(sorted(set().union(*parsed))), tuple(source_findings(folder, name, policy, sources)),
        sample, approval, approval_problem(folder, name, approvals, sources),
        None if approval is None else changes_since(approval, sources),
    )  # fmt: skip


def changes_since(approval: Approval, sources: Sources) -> tuple[FileChange, ...] | None:
    """How ``sources`` differ from the text ``approval`` kept, file by file (unchanged files left out); None when
    it kept no text, or a text that is not the one its hash names (the manifest was edited by hand)."""
    approved = Sources(sources.name, approval.texts)
    if not approval.texts or approved.sha256 != approval.sha256:
        return None
    changes = []
    for path in [*approval.texts, *(p for p in sources.files if p not in approval.texts)]:
        before, after = approval.texts.get(path), sources.files.get(path)
        if before == after:
            continue
        status = "changed" if before is not None and after is not None else "new" if before is None else "gone"
        diff = difflib.unified_diff((before or "").splitlines(), (after or "").splitlines(), f"approved/{path}",
                                    f"now/{path}", lineterm="")  # fmt: skip
        changes.append(FileChange(path, "no longer included" if status == "gone" else status, tuple(diff)))
    return tuple(changes)


def review_page(reviews: list[TemplateReview]) -> str:
    """Every template's review as one HTML page for compliance to read (``templates show --html``)."""
    sections = "".join(
        f"<section><h2>{escape(r.name)}</h2><p>{escape(r.summary)}; variables: "
        f"{escape(', '.join(r.variables) or '-')}</p><h3>Template</h3><pre>{escape(r.source)}</pre>"
        f"<h3>Sample</h3><pre>{escape(r.sample)}</pre></section>"
        for r in reviews
    )
    style = "body{font-family:sans-serif;max-width:60em;margin:auto}pre{background:#f4f4f4;padding:1em}"
    head = f"<meta charset='utf-8'><title>mailtriage templates</title><style>{style}</style>"
    return f"<!doctype html><html><head>{head}</head><body><h1>Reply templates</h1>{sections}</body></html>\n"

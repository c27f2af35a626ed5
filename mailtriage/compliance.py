"""Template compliance: approvals by content hash (of a template and everything it includes), what a template
would draft and why it may not, and the review page compliance reads. The lint itself is ``policy.py``."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailtriage.errors import ConfigError, TemplateError
from mailtriage.files import write_private
from mailtriage.policy import Finding, Policy
from mailtriage.templates import Sources, read_sources, render_sources

if TYPE_CHECKING:
    from mailtriage.settings import Settings

# --- approvals -------------------------------------------------------------------------------------------------

MANIFEST = "approvals.json"
NEUTRAL = {"greeting_name": "", "first_name": "", "subject": "", "references": [], "signature": "", "due": "",
           "models": [], "photos": False, "documents": False, "reason": False}  # fmt: skip
"""Placeholders for the customer's values and the team's: what remains is the template's own text."""


@dataclass(frozen=True)
class Approval:
    sha256: str
    approved_by: str
    approved_at: str
    note: str
    files: dict[str, str] = field(default_factory=dict)
    """Each file the approved text was made of (the template and what it includes, imports or extends) -> its
    SHA-256, so a change can be traced to the file. Empty in approvals recorded before includes were covered."""


def content_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_approvals(folder: Path) -> dict[str, Approval]:
    """The approvals manifest beside the templates: template ('category/language') -> its approval."""
    path = folder / MANIFEST
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {name: Approval(**entry) for name, entry in data.items()}
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(str(path), "(file)", str(path), f"the approvals manifest as JSON ({exc})") from None


def write_approvals(folder: Path, approvals: dict[str, Approval]) -> None:
    data = {name: asdict(approval) for name, approval in sorted(approvals.items())}
    write_private(folder / MANIFEST, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def approval_problem(
    folder: Path, name: str, approvals: dict[str, Approval], sources: Sources | None = None
) -> str | None:
    """Why template ``name`` ('category/language') may not draft, or None when its current text, and that of every
    template it includes, is approved. ``sources``: as already read (else they are read now)."""
    approval = approvals.get(name)
    if approval is None:
        return f"template {name} is not approved (mailtriage templates approve {name} --by NAME)"
    try:
        sources = sources or read_sources(folder, name)
    except TemplateError as exc:
        return exc.reason
    if sources.sha256 == approval.sha256:
        return None
    since = f"since {approval.approved_by} approved it on {approval.approved_at[:10]}"
    current = sources.hashes
    changed = [path for path, digest in current.items() if approval.files.get(path) != digest]
    dropped = [path for path in approval.files if path not in current]
    if approval.files and (changed or dropped):
        what = [*(f"{path} changed" if path in approval.files else f"{path} is new" for path in changed),
                *(f"{path} is no longer included" for path in dropped)]  # fmt: skip
        return f"template {name} changed {since}: {', '.join(what)}"
    return f"template {name} changed {since}"


def template_warnings(settings: Settings) -> list[str]:
    """Templates in use that would draft nothing: unapproved, changed since their approval, or missing."""
    folder = settings.drafts.templates
    approvals = read_approvals(folder)
    warnings = []
    for category in settings.categories:
        if not category.draft or category.name == settings.classifier.fallback:
            continue
        for template in (category.template_name, *(v.template for v in category.variants)):
            paths = sorted(folder.glob(f"{template}/*.txt.j2"))
            if not paths:
                warnings.append(f"category {category.name}: no template in {folder / template}")
            for path in paths:
                problem = approval_problem(folder, f"{template}/{path.name.removesuffix('.txt.j2')}", approvals)
                if problem:
                    warnings.append(f"category {category.name}: {problem}; its mail gets no draft")
    return warnings


def template_names(folder: Path) -> list[str]:
    """Every template under ``folder``, as 'category/language'."""
    return sorted(str(p.relative_to(folder)).removesuffix(".txt.j2") for p in folder.glob("*/*.txt.j2"))


def approve(folder: Path, name: str, by: str, note: str, policy: Policy, now: datetime) -> Approval:
    """Record the approval of template ``name`` as it is now.

    Raises:
        TemplateError: the template is missing or its text fails the lint (the findings are listed).
    """
    path = folder / f"{name}.txt.j2"
    if not path.is_file():
        raise TemplateError(name, f"no such template: {path}")
    sources = read_sources(folder, name)
    findings = source_findings(folder, name, policy, sources)
    if findings:
        raise TemplateError(name, "refused, it fails the lint: " + "; ".join(str(f) for f in findings))
    approvals = read_approvals(folder)
    approvals[name] = Approval(sources.sha256, by, now.isoformat(timespec="seconds"), note, sources.hashes)
    write_approvals(folder, approvals)
    return approvals[name]


def source_findings(folder: Path, name: str, policy: Policy, sources: Sources | None = None) -> list[Finding]:
    """The lint of a template's own text, what it includes with it: rendered with neutral placeholders for what
    is not its own."""
    language = name.partition("/")[2]
    text = render_sources(sources or read_sources(folder, name), NEUTRAL)
    return policy.lint(text, language, template=name)


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


def template_report(folder: Path, name: str, policy: Policy, approvals: dict[str, Approval]) -> dict[str, Any]:
    """What compliance reads of a template: its text, the variables it uses, a sample rendering, its state."""
    import jinja2
    from jinja2 import meta

    from mailtriage.sections import DraftSettings

    sources = read_sources(folder, name)
    source = sources.files[sources.main]
    variables = sorted(
        {v for text in sources.files.values() for v in meta.find_undeclared_variables(jinja2.Environment().parse(text))}
    )
    language = name.partition("/")[2]
    sample = render_sources(sources, {**SAMPLE, "signature": DraftSettings().signature_for(language)})
    findings = source_findings(folder, name, policy, sources)
    problem = approval_problem(folder, name, approvals, sources)
    state = "; ".join([*(str(f) for f in findings), *([problem] if problem else [])]) or (
        f"approved by {approvals[name].approved_by} on {approvals[name].approved_at[:10]}"
    )
    included = {path: text for path, text in sources.files.items() if path != sources.main}
    return {"name": name, "state": state, "variables": variables, "source": source, "included": included,
            "sample": sample}  # fmt: skip


def review_page(reports: list[dict[str, Any]]) -> str:
    """Every template's report (``template_report``) as one HTML page for compliance to read."""
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

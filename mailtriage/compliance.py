"""Template compliance: approvals by content hash (of a template and everything it includes), and why a template
may not draft. What compliance reads of a template is ``template_review.py``; the lint itself is ``policy.py``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from mailtriage.errors import ConfigError, TemplateError
from mailtriage.files import locked, write_private
from mailtriage.policy import Finding, Policy
from mailtriage.templates import Sources, read_sources, render_sources

if TYPE_CHECKING:
    from mailtriage.settings import Settings

# --- approvals -------------------------------------------------------------------------------------------------

MANIFEST = "approvals.json"
NEUTRAL = {"greeting_name": "", "first_name": "", "subject": "", "references": [], "signature": "", "due": "",
           "models": [], "photos": False, "documents": False, "reason": False}  # fmt: skip
"""Placeholders for the customer's values and the team's: what remains is the template's own text."""


COMMAND_LINE = "command line"
CONSOLE = "console"


@dataclass(frozen=True)
class Approval:
    sha256: str
    approved_by: str
    approved_at: str
    note: str
    files: dict[str, str] = field(default_factory=dict)
    """Each file the approved text was made of (the template and what it includes, imports or extends) -> its
    SHA-256, so a change can be traced to the file. Empty in approvals recorded before includes were covered."""
    via: str = ""
    """Where it was given: "console" or "command line"; empty in approvals recorded before the console."""
    account: str = ""
    """The console account that gave it, its identity checked (signed in to the console, or its password given at
    the command line); empty: ``approved_by`` is a name nobody checked."""
    texts: dict[str, str] = field(default_factory=dict)
    """The approved text of each file, for the diff against what it says now; empty in older approvals."""

    def describe(self) -> str:
        """Who approved, where and when, for people to read."""
        day = self.approved_at[:10]
        if self.account:
            where = "in the console" if self.via == CONSOLE else "from the command line, password checked"
            return f"approved by {self.approved_by} ({self.account}) {where} on {day}"
        if self.via == COMMAND_LINE:
            return f"approved from the command line as {self.approved_by!r}, a name not checked, on {day}"
        return f"approved by {self.approved_by} on {day} (recorded before console accounts: the name was not checked)"


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


@dataclass(frozen=True)
class Signature:
    """Who gives an approval, and how sure that is (as ``Approval``'s fields of the same names)."""

    by: str
    account: str = ""
    via: str = COMMAND_LINE


def approve(folder: Path, name: str, signed: Signature, note: str, policy: Policy, now: datetime) -> Approval:
    """Record the approval of template ``name`` as it is now, with its text.

    Raises:
        TemplateError: the template is missing or its text fails the lint (the findings are listed).
    """
    sources = _existing(folder, name)
    findings = source_findings(folder, name, policy, sources)
    if findings:
        raise TemplateError(name, "refused, it fails the lint: " + "; ".join(str(f) for f in findings))
    approval = Approval(sources.sha256, signed.by, now.isoformat(timespec="seconds"), note, sources.hashes,
                        signed.via, signed.account, dict(sources.files))  # fmt: skip
    with _manifest(folder, name):  # another approval at the same moment waits, rather than being overwritten
        approvals = read_approvals(folder)
        approvals[name] = approval
        write_approvals(folder, approvals)
    return approval


def reject(folder: Path, name: str) -> tuple[Sources, Approval | None]:
    """Refuse template ``name`` as it is now: when its current text is the approved one, the approval is withdrawn
    (it drafts nothing until approved again); a change not yet approved stays unapproved. Returns what was refused,
    and the approval withdrawn, if any. Who refused and why go to the audit log (the caller's).

    Raises:
        TemplateError: there is no such template.
    """
    sources = _existing(folder, name)
    with _manifest(folder, name):
        approvals = read_approvals(folder)
        withdrawn = approvals.get(name)
        if withdrawn is None or withdrawn.sha256 != sources.sha256:
            return sources, None
        del approvals[name]
        write_approvals(folder, approvals)
    return sources, withdrawn


@contextmanager
def _manifest(folder: Path, name: str) -> Iterator[None]:
    """Hold the manifest's lock to change it.

    Raises:
        TemplateError: the manifest cannot be locked or written (a template folder the user may not write).
    """
    path = folder / MANIFEST
    try:
        with locked(path):
            yield
    except OSError as exc:
        raise TemplateError(name, f"its approval cannot be recorded in {path}: {exc.strerror or exc}") from None


def _existing(folder: Path, name: str) -> Sources:
    path = folder / f"{name}.txt.j2"
    if not path.is_file() or name not in template_names(folder):
        raise TemplateError(name, f"no such template: {path}")
    return read_sources(folder, name)


def source_findings(folder: Path, name: str, policy: Policy, sources: Sources | None = None) -> list[Finding]:
    """The lint of a template's own text, what it includes with it: rendered with neutral placeholders for what
    is not its own."""
    language = name.partition("/")[2]
    text = render_sources(sources or read_sources(folder, name), NEUTRAL)
    return policy.lint(text, language, template=name)

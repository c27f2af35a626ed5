"""The binding-language lint: phrases that could commit the company, per language, from a policy file that
compliance edits (``templates/policy.toml``), matched whole-word and regardless of case and accents.

Only text our templates add is linted: what comes from the customer (their name, subject, quoted mail) is not
our commitment, and is masked before the lint runs.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailtriage.errors import ConfigError, TemplateError
from mailtriage.files import write_private
from mailtriage.templates import Sources, read_sources, render_sources

if TYPE_CHECKING:
    from mailtriage.settings import Settings

CLASSES = ("guarantee", "promise", "liability", "deadline", "legal", "absolute")
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")
_MASK = "\u2026"  # where customer text stood: matches no phrase


@dataclass(frozen=True)
class Phrase:
    """A pattern that commits the company: ``kind`` (one of CLASSES), in ``language`` ('*': every language)."""

    kind: str
    language: str
    pattern: str
    reason: str
    compiled: re.Pattern[str]


@dataclass(frozen=True)
class Allowance:
    """A phrase compliance allowed in one template, and why."""

    template: str
    pattern: str
    justification: str


@dataclass(frozen=True)
class Finding:
    """Something in a text the policy does not allow."""

    kind: str
    text: str
    reason: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.text!r} ({self.reason})"


@dataclass(frozen=True)
class Policy:
    phrases: tuple[Phrase, ...]
    allowances: tuple[Allowance, ...]
    max_words: int
    max_sentences: int

    def lint(
        self, text: str, language: str, *, template: str | None = None, customer: Iterable[str] = ()
    ) -> list[Finding]:
        """What in ``text`` (in ``language``) the policy does not allow, once the ``customer``'s own words (their
        name, subject, order numbers) are masked; phrases allowed for ``template`` are let through."""
        for value in sorted((v for v in customer if v), key=len, reverse=True):
            text = text.replace(value, _MASK)
        plain = fold(text)
        allowed = {fold(a.pattern) for a in self.allowances if a.template == template}
        findings = []
        for phrase in self.phrases:
            if phrase.language not in ("*", language):
                continue
            for match in phrase.compiled.finditer(plain):
                if not any(re.fullmatch(_whole(a), match.group(0)) for a in allowed):
                    findings.append(Finding(phrase.kind, match.group(0), phrase.reason))
        words, sentences = len(text.split()), len(_SENTENCE_END.findall(text))
        if words > self.max_words:
            findings.append(Finding("length", f"{words} words", f"at most {self.max_words} words"))
        if sentences > self.max_sentences:
            findings.append(Finding("length", f"{sentences} sentences", f"at most {self.max_sentences} sentences"))
        return findings


def fold(text: str) -> str:
    """Lower case without accents, for matching: 'Responsabilité' and 'responsabilite' read the same."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).replace("ß", "ss")


def _whole(pattern: str) -> str:
    return rf"(?<!\w)(?:{pattern})(?!\w)"


def load_policy(path: Path) -> Policy:
    """Read the policy file.

    Raises:
        ConfigError: naming the file, the entry and what is wrong with it.
    """
    source = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(source, "(file)", str(path), "the lint policy file (templates/policy.toml)") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(source, "(file)", str(path), f"a readable TOML file ({exc})") from None
    phrases = tuple(_phrase(source, index, entry) for index, entry in enumerate(data.get("phrases", [])))
    allowances = tuple(
        Allowance(str(a["template"]), str(a["phrase"]), str(a["justification"])) for a in data.get("allow", [])
    )
    limits = data.get("limits", {})
    return Policy(phrases, allowances, int(limits.get("max_words", 120)), int(limits.get("max_sentences", 8)))


def _phrase(source: str, index: int, entry: dict[str, object]) -> Phrase:
    kind, pattern = str(entry.get("class", "")), str(entry.get("pattern", ""))
    if kind not in CLASSES:
        raise ConfigError(source, f"phrases[{index}].class", kind, f"one of {', '.join(CLASSES)}")
    try:
        compiled = re.compile(_whole(fold(pattern)))
    except re.error as exc:
        raise ConfigError(source, f"phrases[{index}].pattern", pattern, f"a regular expression ({exc})") from None
    return Phrase(kind, str(entry.get("language", "*")), pattern, str(entry.get("reason", "")), compiled)


def phrase_classes(policy: Policy, languages: Sequence[str]) -> dict[str, set[str]]:
    """Which classes of phrases the policy covers per language (for a check that none is missing)."""
    return {language: {p.kind for p in policy.phrases if p.language in ("*", language)} for language in languages}


# --- approvals -------------------------------------------------------------------------------------------------

MANIFEST = "approvals.json"
NEUTRAL = {"greeting_name": "", "subject": "", "references": [], "signature": "", "due": ""}
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
        paths = sorted(folder.glob(f"{category.template_name}/*.txt.j2"))
        if not paths:
            warnings.append(f"category {category.name}: no template in {folder / category.template_name}")
        for path in paths:
            name = f"{category.template_name}/{path.name.removesuffix('.txt.j2')}"
            problem = approval_problem(folder, name, approvals)
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
    "subject": "Commande A-10234",
    "references": ["A-10234"],
    "signature": "Kind regards,\nThe support team",
    "due": "2026-11-24 14:00",
}


def template_report(folder: Path, name: str, policy: Policy, approvals: dict[str, Approval]) -> dict[str, Any]:
    """What compliance reads of a template: its text, the variables it uses, a sample rendering, its state."""
    import jinja2
    from jinja2 import meta

    sources = read_sources(folder, name)
    source = sources.files[sources.main]
    variables = sorted(
        {v for text in sources.files.values() for v in meta.find_undeclared_variables(jinja2.Environment().parse(text))}
    )
    sample = render_sources(sources, SAMPLE)
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

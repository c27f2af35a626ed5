"""The documentation is checked like code: the example config loads and documents every setting; the README
starts with the two commands a newcomer runs, and .ci/run runs the README's test command; the README stays short;
every link in the README and docs/ leads to a file (and heading) that exists; and docs/architecture.md names every
module of the package, and only code that exists."""

from __future__ import annotations

import importlib
import re
import shutil
from pathlib import Path

import pytest
from pydantic import BaseModel

from mailtriage.mailbox import Mailbox
from mailtriage.settings import DEFAULT_CATEGORIES, Settings, load_settings
from mailtriage.store import Store

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "mailtriage"
EXAMPLE = ROOT / "config.example.toml"
README = ROOT / "README.md"
DOCS = ROOT / "docs"
ARCHITECTURE = DOCS / "architecture.md"
MARKDOWN = [README, *sorted(DOCS.glob("*.md"))]
README_LIMIT = 12_000
"""Bytes: under 12 KB, whichever way a KB is counted."""


def setting_keys(model: type[BaseModel]) -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        keys.add(name)
        annotation = field.annotation
        for candidate in getattr(annotation, "__args__", (annotation,)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                keys |= setting_keys(candidate)
    return keys


def test_the_example_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPPORT_IMAP_PASSWORD", "example")
    settings = load_settings(EXAMPLE)
    assert [m.name for m in settings.mailboxes] == ["support"]


def test_a_copy_of_the_example_config_checks_with_only_the_mailbox_secret_set(tmp_path: Path) -> None:
    """What a new admin does first: cp config.example.toml mailtriage.toml; export the one secret; config check."""
    from click.testing import CliRunner

    from mailtriage.cli import main

    copy = tmp_path / "mailtriage.toml"
    shutil.copy(EXAMPLE, copy)
    result = CliRunner().invoke(main, ["config", "check", str(copy)], env={"SUPPORT_IMAP_PASSWORD": "example",
                                                                         "SMTP_PASSWORD": None})  # fmt: skip
    assert result.exit_code == 0, result.output


def test_the_example_config_documents_every_setting() -> None:
    text = EXAMPLE.read_text()
    documented = set(re.findall(r"^#?\s*([a-z_]+)\s*=", text, flags=re.MULTILINE))
    documented |= set(re.findall(r"^#? ?\[+(?:[a-z_]+\.)*([a-z_]+)\]+", text, flags=re.MULTILINE))
    assert setting_keys(Settings) - documented == set()


def readme_commands() -> list[str]:
    blocks = re.findall(r"```(?:sh|bash|console)?\n(.*?)```", README.read_text(), flags=re.DOTALL)
    return [line for block in blocks[:2] for line in block.strip().splitlines()]


def test_the_readme_opens_with_the_demo_command_and_the_test_command() -> None:
    first, second = readme_commands()[:2]
    assert first.endswith("mailtriage demo")
    assert "pip install" in second and "[dev]" in second and "pytest" in second


def test_ci_runs_exactly_the_readme_test_command() -> None:
    test_command = readme_commands()[1]
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_the_readme_is_under_12_kb() -> None:
    size = len(README.read_bytes())
    assert size < README_LIMIT, f"README.md is {size:,} bytes: move detail into docs/ and link it"


# --- links ---------------------------------------------------------------------------------------------------------

FENCE = re.compile(r"^[ \t]*```.*?^[ \t]*```[ \t]*$", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
BARE_DOCS_PATH = re.compile(r"(?<![\w./-])docs/[\w./-]*[\w/]")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def prose(text: str) -> str:
    """Markdown without its fenced code blocks (a ``# comment`` there is no heading, ``[x](y)`` no link)."""
    return FENCE.sub("", text)


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text lower-cased, punctuation but hyphens dropped, spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading reads as its text
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor in a markdown file; a repeated heading gets -1, -2... as on GitHub."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for heading in HEADING.findall(prose(path.read_text())):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(path: Path) -> list[str]:
    """The relative links of a markdown file whose file, or heading, does not exist: markdown links, relative to
    the file, and bare ``docs/...`` paths, relative to the repository's root."""
    text = path.read_text()
    targets = [(target, path.parent) for target in LINK.findall(prose(text)) if not SCHEME.match(target)]
    targets += [(target, ROOT) for target in BARE_DOCS_PATH.findall(text)]
    broken = []
    for target, base in targets:
        file_part, _, anchor = target.partition("#")
        linked = (base / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target}: no such file {linked}")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading #{anchor} in {linked.name}")
    return broken


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(path: Path) -> None:
    assert broken_links(path) == []


def test_the_link_checker_finds_a_missing_file_and_a_missing_heading(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# A title\n\n[ok](#a-title) [gone](missing.md) [no heading](#nowhere) docs/nothing-here.md\n")
    assert len(broken_links(page)) == 3


def test_github_anchors() -> None:
    assert slug("Running from cron with `run --once`") == "running-from-cron-with-run---once"
    assert slug("Microsoft 365 (Exchange Online)") == "microsoft-365-exchange-online"
    assert slug("Each step once, and when something fails") == "each-step-once-and-when-something-fails"


def test_the_readme_links_every_doc() -> None:
    linked = {(README.parent / target.partition("#")[0]).resolve() for target in LINK.findall(README.read_text())}
    assert sorted(p.name for p in DOCS.iterdir() if p.is_file() and p.resolve() not in linked) == []


# --- the architecture and the code ---------------------------------------------------------------------------------


def package_modules() -> set[str]:
    """Every module of the package, as a path under mailtriage/ (migrations, __init__ and __main__ left out)."""
    return {
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if "migrations" not in path.relative_to(PACKAGE).parts and path.name not in ("__init__.py", "__main__.py")
    }


def module_table() -> list[str]:
    """The names in the first column of the table under docs/architecture.md's "## Modules" heading."""
    section = ARCHITECTURE.read_text().split("\n## Modules\n", 1)[1].split("\n## ", 1)[0]
    cells = [line.split("|")[1] for line in section.splitlines() if line.startswith("|")]
    return [name for cell in cells for name in re.findall(r"`([^`]+)`", cell)]


def test_every_module_in_the_architecture_table_exists() -> None:
    named = module_table()
    assert named, "docs/architecture.md has no module table under '## Modules'"
    assert [name for name in named if not (PACKAGE / name).exists()] == []


def test_the_architecture_table_names_every_module() -> None:
    assert sorted(package_modules() - set(module_table())) == []


CODE_NAME = re.compile(r"(?<![\w./$-])([a-z_]+(?:\.[A-Za-z_]\w*)+)(?![\w/-])")
FILE_ENDINGS = {"py", "md", "json", "toml", "txt", "j2", "npz", "service", "eml", "csv", "png", "html", "db"}


def code_names(text: str) -> set[str]:
    """Dotted names that start with a module of the package (``cursor.unread``, ``store.messages.record``), in the
    text and its diagram alike; file names (``parse.py``) are left out."""
    tops = {path.stem for path in PACKAGE.glob("*.py")} | {path.name for path in PACKAGE.iterdir() if path.is_dir()}
    return {
        name
        for name in CODE_NAME.findall(text)
        if name.split(".")[0] in tops and name.rsplit(".", 1)[1] not in FILE_ENDINGS
    }


def walk(thing: object, names: list[str]) -> bool:
    for name in names:
        if not hasattr(thing, name):
            return False
        thing = getattr(thing, name)
    return True


def setting(names: list[str]) -> bool:
    """Whether ``names`` is a path of settings (``health.metrics_port``)."""
    model: object = Settings
    for name in names:
        if not (isinstance(model, type) and issubclass(model, BaseModel) and name in model.model_fields):
            return False
        model = model.model_fields[name].annotation
    return True


def resolves(name: str, store: Store) -> bool:
    """A module's attribute (``deadlines.Policy.due``), a method of the store's repositories or of the Mailbox
    protocol, as the pipeline calls them (``store.messages.record``, ``mailbox.fetch``), or a setting."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            module = importlib.import_module("mailtriage." + ".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        if walk(module, parts[cut:]):
            return True
        break
    roots: dict[str, object] = {"store": store, "mailbox": Mailbox}
    return (parts[0] in roots and walk(roots[parts[0]], parts[1:])) or setting(parts)


def test_the_code_the_architecture_names_exists(tmp_path: Path) -> None:
    names = code_names(ARCHITECTURE.read_text())
    assert {"cursor.unread", "store.messages.record", "actions.Actions", "watch.sweep_deadlines"} <= names
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        assert sorted(name for name in names if not resolves(name, store)) == []
    finally:
        store.close()


def test_a_name_that_is_not_in_the_code_does_not_resolve(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        assert not resolves("cursor.no_such_function", store)
        assert not resolves("store.messages.no_such_method", store)
        assert resolves("health.stale_after", store)  # a setting
    finally:
        store.close()


def readme_block_after(marker: str) -> list[str]:
    """The commands of the README's first code block after ``marker``, comments stripped."""
    text = README.read_text(encoding="utf-8")
    block = re.search(r"```sh\n(.*?)```", text[text.index(marker) :], flags=re.DOTALL)
    assert block is not None
    return [line.split("  #")[0].strip() for line in block.group(1).strip().splitlines()]


def test_the_readme_steps_that_give_the_kept_demo_a_new_mail_work_as_written(tmp_path: Path) -> None:
    import os
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    keep, run, add, review = readme_block_after("give it a new mail and watch")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    shell = subprocess.Popen(["bash", "-c", f"{keep} && {run} wait"], cwd=tmp_path, env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    store = tmp_path / "demo" / "mailtriage.db"

    def count(query: str) -> int:
        try:
            with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
                return int(db.execute(query).fetchone()[0])
        except sqlite3.Error:
            return 0

    def recorded() -> int:
        return count("SELECT count(*) FROM messages")

    def newest_drafted() -> int:
        newest = "(SELECT max(id) FROM messages)"
        return count(f"SELECT count(*) FROM audit_log WHERE message = {newest} AND action = 'draft-appended'")

    try:
        deadline = time.monotonic() + 120
        while recorded() < 30 and time.monotonic() < deadline:
            time.sleep(0.2)
        added = subprocess.run(["bash", "-c", add], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert added.returncode == 0, added.stderr
        deadline = time.monotonic() + 30  # the daemon watches the Maildir: within seconds, not at its next poll
        while (recorded() < 31 or not newest_drafted()) and time.monotonic() < deadline:
            time.sleep(0.2)  # the record comes first, then the draft: review shows it once both are there
        assert recorded() == 31 and newest_drafted() == 1
        shown = subprocess.run(["bash", "-c", review], cwd=tmp_path, env={**env, "COLUMNS": "200"},
                               capture_output=True, text=True)  # fmt: skip
        assert shown.returncode == 0 and "the 1 latest decisions" in shown.stdout and "yes" in shown.stdout
    finally:
        os.killpg(shell.pid, signal.SIGTERM)
        shell.wait(timeout=30)


def test_the_example_configs_categories_are_the_defaults_variants_included(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPPORT_IMAP_PASSWORD", "x")
    example = load_settings(ROOT / "config.example.toml")
    defaults = {c.name: c.variants for c in DEFAULT_CATEGORIES}
    assert {c.name: c.variants for c in example.categories} == defaults

"""The documentation is checked like code: the example config loads and documents every setting; the README
starts with the two commands a newcomer runs, and .ci/run runs the README's test command."""

from __future__ import annotations

import re

import pytest
from pydantic import BaseModel

from mailtriage.settings import Settings, load_settings
from tests.conftest import ROOT

EXAMPLE = ROOT / "config.example.toml"
README = ROOT / "README.md"


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
    monkeypatch.setenv("SMTP_PASSWORD", "example")
    settings = load_settings(EXAMPLE)
    assert [m.name for m in settings.mailboxes] == ["support", "local"]


def test_the_example_config_documents_every_setting() -> None:
    text = EXAMPLE.read_text()
    documented = set(re.findall(r"^#?\s*([a-z_]+)\s*=", text, flags=re.MULTILINE))
    documented |= set(re.findall(r"^\[+(?:[a-z_]+\.)*([a-z_]+)\]+", text, flags=re.MULTILINE))
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

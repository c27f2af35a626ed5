"""Customer text reaches a terminal as text: rich markup, ANSI escape sequences, hyperlinks and bidirectional
overrides in a subject or a sender are shown, never obeyed, by every command that prints them."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailtriage.cli import main
from mailtriage.models import Classification, RawMessage, RouteDecision
from mailtriage.parse import parse_message
from mailtriage.store import Outcome, Status
from mailtriage.terminal import CleanFormatter, cell, clean
from tests.test_cli import store_config

MARKUP = "[link=https://evil.example]Click here[/link] [red]URGENT[/red]"
ESCAPES = "\x1b[31mred\x1b[0m \x1b]8;;https://evil.example\x07link\x1b]8;;\x07 \u202eevil\u202c"


def hostile_store(tmp_path: Path) -> Path:
    """A store holding one waiting message whose subject and sender carry markup and escape sequences."""
    path, store = store_config(tmp_path)
    now = datetime.now(UTC)
    data = (
        f'From: "{MARKUP}" <anna@example.org>\r\nSubject: {MARKUP} {ESCAPES}\r\n'
        "Message-ID: <hostile@example.org>\r\n\r\nWhere is my order?\r\n"
    ).encode()
    parsed = parse_message(data, internal_date=now)
    classification = Classification("billing", "billing", 0.9, "en", "m")
    decision = RouteDecision("billing", "model", f"because {MARKUP}", folder="Support/[bold]x[/bold]")
    outcome = Outcome(Status.ROUTED, classification, decision, due_at=now + timedelta(hours=2))
    store.messages.record("support", RawMessage("INBOX", 1, 1, data, frozenset(), now), parsed, outcome, now)
    store.health.cycle_done(
        "support", error=f"mailbox 'support': the server said {MARKUP} {ESCAPES}", backlog=0, now=now
    )
    return path


@pytest.mark.parametrize("command", [["review"], ["deadlines"], ["report"], ["status"]])
def test_markup_and_escape_sequences_in_customer_text_are_shown_not_obeyed(tmp_path: Path, command: list[str]) -> None:
    config = hostile_store(tmp_path)
    result = CliRunner().invoke(main, ["--config", str(config), *command], env={"COLUMNS": "600", "FORCE_COLOR": "1"})
    assert result.exit_code in (0, 5), result.output  # status: 5, the mailbox's last cycle failed
    out = result.output
    assert "\x1b]8;" not in out  # no hyperlink
    assert "\x1b[31mred" not in out and "\u202e" not in out  # the customer's own escapes and overrides are gone
    if command != ["report"]:  # the report shows categories and phrases, not subjects
        assert "[link=https://evil.example]Click here[/link]" in out or "[red]URGENT[/red]" in out


def test_cleaning_replaces_controls_and_keeps_the_words() -> None:
    assert clean("a\x1b[31mb\rc\nd\te\u202ef") == "a [31mb c d e f"
    assert clean("line\nnext", newlines=True) == "line\nnext"
    assert cell(MARKUP).plain == MARKUP  # a Text: rich reads no markup in it


def test_log_lines_carry_no_control_characters_from_a_subject() -> None:
    record = logging.LogRecord("mailtriage", logging.INFO, __file__, 1, "subject %s", (ESCAPES,), None)
    line = CleanFormatter("%(message)s").format(record)
    assert "\x1b" not in line and "\x07" not in line and "red" in line

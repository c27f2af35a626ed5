"""Customer text on a terminal: what a subject or sender says is shown, never obeyed.

A subject can carry rich markup (``[link=https://evil.example]Click here[/link]``), ANSI escape sequences (colours,
OSC 8 hyperlinks, a cleared screen) or bidirectional overrides that make text read backwards. Everything that came
from a mail, a server or a store is passed through here before it is printed or logged.
"""

from __future__ import annotations

import logging
import re

from rich.markup import escape
from rich.text import Text

_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
"""C0 and C1 controls (ESC among them) but tab and newline, DEL, and the bidirectional marks and overrides."""
_CONTROLS_AND_NEWLINES = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def clean(value: object, *, newlines: bool = False) -> str:
    """``value`` as text without control characters (each becomes a space); newlines kept only if asked."""
    return (_CONTROLS if newlines else _CONTROLS_AND_NEWLINES).sub(" ", "" if value is None else str(value))


def cell(value: object) -> Text:
    """A table cell for untrusted text: no markup is read in it, no control character reaches the terminal."""
    return Text(clean(value))


def inline(value: object) -> str:
    """Untrusted text to put inside a rich markup string (``f"model {inline(path)}: [red]...[/red]"``)."""
    return escape(clean(value))


class CleanFormatter(logging.Formatter):
    """A log formatter whose lines carry no control characters: a subject or an address in a log line cannot
    drive the terminal of whoever reads the log there."""

    def format(self, record: logging.LogRecord) -> str:
        return clean(super().format(record), newlines=True)

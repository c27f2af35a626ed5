"""The ``mailtriage`` command: thin wrappers over the library, one module per group of commands.

Exit codes: 0 success; 1 unexpected error; 2 bad configuration; 3 a mailbox could not be read; 4 the store failed;
5 (``status``) a mailbox has not completed a cycle within ``health.stale_after``.
"""

from mailtriage.cli import console, daemon, model, store, templates, views  # noqa: F401 - each registers its commands
from mailtriage.cli.app import main, setup_logging

__all__ = ["main", "setup_logging"]

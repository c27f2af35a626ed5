"""The exception tree: one root, one subclass per stage.

The CLI turns any :class:`MailtriageError` into one line on stderr and the exit code named by ``exit_code``.
"""

from __future__ import annotations


class MailtriageError(Exception):
    """Raised when mailtriage cannot do what it was asked; the root of every error it raises on purpose."""

    exit_code = 1


class ConfigError(MailtriageError):
    """Raised when the configuration file or an environment override holds a value mailtriage cannot use.

    The message names the file (or environment variable), the key, the bad value and what was expected.
    """

    exit_code = 2

    def __init__(self, source: str, key: str, value: object, expected: str) -> None:
        self.source = source
        self.key = key
        self.value = value
        self.expected = expected
        shown = "(missing)" if value is _MISSING else repr(value)
        super().__init__(f"{source}: {key} = {shown}: expected {expected}")


class _Missing:
    def __repr__(self) -> str:
        return "(missing)"


_MISSING: object = _Missing()
MISSING = _MISSING
"""Stands for a value that is absent from the configuration, in a :class:`ConfigError`."""


class SecretError(ConfigError):
    """Raised when a mailbox secret cannot be read from its environment variable, file or command."""


class MailboxError(MailtriageError):
    """Raised when a mailbox (IMAP server or Maildir) cannot be reached or refuses an operation.

    ``mailbox`` names the configured mailbox; ``retryable`` says whether trying again later may succeed (a network
    fault) or not (a refused login still retries, but is logged as needing an admin).
    """

    exit_code = 3

    def __init__(self, mailbox: str, message: str, *, retryable: bool = True) -> None:
        self.mailbox = mailbox
        self.retryable = retryable
        super().__init__(f"mailbox {mailbox!r}: {message}")


class AuthenticationFailed(MailboxError):
    """Raised when the server refuses the mailbox's credentials (password or XOAUTH2 token)."""


class LeaseLost(MailboxError):
    """Raised when this daemon no longer holds a mailbox's lease (it went unrenewed, or another daemon took it over)
    and was about to change something there: it stops before that change, and the daemon holding the lease now
    finishes what was begun."""

    def __init__(self, mailbox: str, message: str = "this daemon no longer holds its lease") -> None:
        super().__init__(mailbox, message, retryable=True)


class StoreError(MailtriageError):
    """Raised when the store (the database of sync state, messages and audit log) cannot be opened or written."""

    exit_code = 4


class ModelError(MailtriageError):
    """Raised when the classifier's model file cannot be used: missing, altered, untrusted, or sorting into other
    categories than the configuration names."""

    exit_code = 2

    def __init__(self, path: object, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"model {path}: {reason}")


class TrainingError(MailtriageError):
    """Raised when training data cannot be read or is not enough to train on."""

    exit_code = 2


class TemplateError(MailtriageError):
    """Raised when a reply template is missing or cannot be rendered (a syntax error, an undefined variable,
    something the sandbox refuses); the message it was for is left for a human."""

    def __init__(self, template: str, reason: str) -> None:
        self.template = template
        self.reason = reason
        super().__init__(f"template {template}: {reason}")


class NotifyError(MailtriageError):
    """Raised when a notification cannot be sent (the SMTP server is unreachable or refuses it)."""


class AccountError(MailtriageError):
    """Raised when a console account cannot do what was asked: a wrong password, an account disabled, or a role
    that may not (a lead approving a template)."""

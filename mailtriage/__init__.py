"""mailtriage: first-pass triage of a customer-support inbox."""

__version__ = "0.1.0.dev0"

"""Listening for new mail beside the poll: IMAP IDLE, or a Maildir's folders, on a handle of its own, waking the
mailbox's cycle the moment something arrives. Any failure, at start too, is retried with backoff for as long as the
daemon runs; the log says once when listening stops and once when it is back."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from mailtriage.backoff import backoff, seconds
from mailtriage.errors import MailboxError
from mailtriage.mailbox import Mailbox
from mailtriage.settings import ScheduleSettings

log = logging.getLogger(__name__)


def listen(mailbox: Mailbox, wake: Callable[[], None], stop: threading.Event, schedule: ScheduleSettings) -> None:
    """Until ``stop``: wait for new mail in ``mailbox``'s inbox and call ``wake`` when it comes. Returns at once
    where the mailbox cannot be waited on (an IMAP server without IDLE): polling alone finds its mail."""
    listener = mailbox.twin()
    failures = 0

    def back() -> None:
        log.info("mailbox %s: listening again after %d failed attempts; a cycle looks for what arrived meanwhile",
                 mailbox.name, failures)  # fmt: skip
        wake()

    try:
        while not stop.is_set():
            try:
                if not listener.can_wait():
                    log.info("mailbox %s: the server has no IDLE; polling only", mailbox.name)
                    return
                # After a failure, mail may have arrived while nobody listened: once listening again, a cycle looks
                # (mail arriving from then on wakes the listener itself).
                if listener.wait_for_mail(schedule.idle_timeout, stop, back if failures else None):
                    wake()
                failures = 0
            except MailboxError as exc:
                failures += 1
                delay = backoff(failures, schedule)
                if failures == 1:
                    log.warning("%s (IDLE); polling goes on; listening again in %s, then a cycle looks for what "
                                "arrived meanwhile", exc, seconds(delay))  # fmt: skip
                else:
                    log.debug("%s (IDLE); attempt %d failed, next in %s", exc, failures, seconds(delay))
                stop.wait(delay)
    finally:
        listener.close()

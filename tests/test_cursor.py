"""The folder cursor never moves past mail the server holds, whatever its search answers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

import pytest

from mailtriage.cursor import read, unread
from mailtriage.errors import MailboxError
from mailtriage.mailbox.memory import MemoryMailbox
from mailtriage.models import RawMessage
from mailtriage.pipeline import CycleOptions, run_cycle
from mailtriage.store import Status, Store, SyncState
from tests.helpers import now
from tests.test_pipeline import fill

AT = datetime(2026, 11, 20, 9, tzinfo=UTC)


class ShortSearch(MemoryMailbox):
    """A server whose ``UID SEARCH UID n:*`` answers nothing (or only the first ``answers`` UIDs), as GNU
    Mailutils' imap4d does; an explicit range is answered truthfully unless ``never`` is set."""

    def __init__(self, answers: int = 0, never: bool = False) -> None:
        super().__init__()
        self.answers = answers
        self.never = never
        self.explicit: list[tuple[int, int]] = []

    def uids_above(self, folder: str, uid: int, upto: int | None = None) -> list[int]:
        if upto is None:
            return super().uids_above(folder, uid)[: self.answers]
        self.explicit.append((uid, upto))
        return [] if self.never else super().uids_above(folder, uid, upto)


def test_an_empty_search_answer_while_the_folder_holds_mail_is_asked_again_with_an_explicit_range(
    store: Store,
) -> None:
    mailbox = ShortSearch()
    fill(mailbox, 20)
    found = unread(mailbox, store, "INBOX", AT)
    assert found.uids == tuple(range(1, 21))
    assert mailbox.explicit == [(0, 20)]


def test_a_short_search_answer_is_completed_up_to_the_last_uid(store: Store) -> None:
    mailbox = ShortSearch(answers=5)
    fill(mailbox, 12)
    assert unread(mailbox, store, "INBOX", AT).uids == tuple(range(1, 13))


def test_a_server_that_never_lists_its_mail_raises_and_keeps_the_position(store: Store) -> None:
    mailbox = ShortSearch(never=True)
    fill(mailbox, 3)
    with pytest.raises(MailboxError, match="holds messages up to UID 3.*position stays at UID 0"):
        unread(mailbox, store, "INBOX", AT)
    assert store.sync.get("memory", "INBOX") == SyncState(1, 0)


def test_the_position_moves_to_uidnext_only_when_the_server_confirms_nothing_lies_above(store: Store) -> None:
    mailbox = MemoryMailbox()
    fill(mailbox, 4)
    store.sync.set("memory", "INBOX", SyncState(1, 2), AT)
    mailbox.expunge("INBOX", 3)
    mailbox.expunge("INBOX", 4)  # the newest were deleted by another client
    assert unread(mailbox, store, "INBOX", AT).uids == ()
    assert store.sync.get("memory", "INBOX") == SyncState(1, 4)


def test_a_cycle_against_a_server_whose_search_answers_nothing_triages_every_message(store: Store) -> None:
    mailbox = ShortSearch()
    fill(mailbox, 20)
    report = run_cycle(mailbox, store, now=now)
    again = run_cycle(mailbox, store, now=now)
    assert (report.new, again.new, again.skipped) == (20, 0, 0)
    assert sorted(r.uid for r in store.messages.with_status("memory", Status.UNCLASSIFIED)) == list(range(1, 21))


def test_mail_arriving_after_a_short_answer_is_still_found(store: Store) -> None:
    mailbox = ShortSearch()
    fill(mailbox, 2)
    run_cycle(mailbox, store, now=now)
    fill(mailbox, 3, start=2)
    assert run_cycle(mailbox, store, now=now).new == 3


class Withholding(MemoryMailbox):
    """A server that lists a message but does not return it when fetched."""

    def __init__(self, withheld: set[int]) -> None:
        super().__init__()
        self.withheld = withheld

    def fetch(self, folder: str, uids: Sequence[int], headers_only: bool = False) -> Iterator[RawMessage]:
        return super().fetch(folder, [uid for uid in uids if uid not in self.withheld], headers_only)


def test_a_listed_message_the_server_will_not_return_stops_the_read_before_it() -> None:
    mailbox = Withholding({2})
    fill(mailbox, 3)
    with pytest.raises(MailboxError, match="lists UID 2 but does not return it"):
        read(mailbox, "INBOX", [1, 2, 3], 1)


def test_a_message_expunged_between_listing_and_fetching_is_not_waited_for() -> None:
    mailbox = MemoryMailbox()
    fill(mailbox, 3)
    mailbox.expunge("INBOX", 2)
    assert [raw.uid for raw in read(mailbox, "INBOX", [1, 2, 3], 1)] == [1, 3]


def test_a_cycle_records_nothing_past_a_message_it_could_not_read(store: Store) -> None:
    mailbox = Withholding({3})
    fill(mailbox, 5)
    with pytest.raises(MailboxError, match="UID 3"):
        run_cycle(mailbox, store, now=now, options=CycleOptions(batch_size=2))
    assert store.sync.get("memory", "INBOX") == SyncState(1, 2)
    mailbox.withheld = set()
    assert run_cycle(mailbox, store, now=now).new == 3

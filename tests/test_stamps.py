from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from mailtriage.stamps import Stamped

LONG_AGO = 1_700_000_000


def reader(reads: list[str]) -> Callable[[str], tuple[str, list[Path]]]:
    def read(key: str) -> tuple[str, list[Path]]:
        path = Path(key)
        reads.append(key)
        return path.read_text(), [path]

    return read


def still(path: Path, text: str, when: int = LONG_AGO) -> None:
    path.write_text(text)
    os.utime(path, (when, when))


def test_a_file_unchanged_since_it_was_read_is_not_read_again(tmp_path: Path) -> None:
    reads: list[str] = []
    still(tmp_path / "a.txt", "one")
    held = Stamped(reader(reads))
    assert [held.get(str(tmp_path / "a.txt")) for _ in range(3)] == ["one"] * 3
    assert len(reads) == 1


def test_a_file_changed_since_it_was_read_is_read_again(tmp_path: Path) -> None:
    reads: list[str] = []
    still(tmp_path / "a.txt", "one")
    held = Stamped(reader(reads))
    held.get(str(tmp_path / "a.txt"))
    still(tmp_path / "a.txt", "two", LONG_AGO + 1)  # same size, another modification time
    assert held.get(str(tmp_path / "a.txt")) == "two" and len(reads) == 2
    still(tmp_path / "a.txt", "three", LONG_AGO + 1)  # same time, another size
    assert held.get(str(tmp_path / "a.txt")) == "three" and len(reads) == 3


def test_a_file_modified_just_now_is_read_again_until_it_has_been_still(tmp_path: Path) -> None:
    reads: list[str] = []
    (tmp_path / "a.txt").write_text("fresh")
    now = os.stat(tmp_path / "a.txt").st_mtime
    clock = [now]
    held = Stamped(reader(reads), clock=lambda: clock[0])
    held.get(str(tmp_path / "a.txt"))
    held.get(str(tmp_path / "a.txt"))
    assert len(reads) == 2  # a second change within the timestamp's granularity could go unseen
    clock[0] = now + 10
    held.get(str(tmp_path / "a.txt"))
    held.get(str(tmp_path / "a.txt"))
    assert len(reads) == 3


def test_a_file_that_disappears_is_read_again_and_its_error_is_raised(tmp_path: Path) -> None:
    reads: list[str] = []
    still(tmp_path / "a.txt", "one")
    held = Stamped(reader(reads))
    held.get(str(tmp_path / "a.txt"))
    (tmp_path / "a.txt").unlink()
    with pytest.raises(FileNotFoundError):  # never served from memory
        held.get(str(tmp_path / "a.txt"))

"""Stale temporary directories of atomic writes, and the lock that tells stale from live."""

from __future__ import annotations

from pathlib import Path

import pytest

from pomona.storage import LockedError, exclusive_writer, remove_stale_partials


def test_only_this_targets_leftovers_are_removed(tmp_path: Path) -> None:
    mine = [tmp_path / ".ds.0123abcd.partial", tmp_path / ".ds.89abcdef.old"]
    others = [
        tmp_path / ".ds.v2.0123abcd.partial",  # another dataset, ds.v2, being written
        tmp_path / ".ds.notatoken.partial",
        tmp_path / "ds",
    ]
    for path in mine + others:
        path.mkdir()
    assert sorted(remove_stale_partials(tmp_path / "ds")) == sorted(mine)
    assert sorted(tmp_path.iterdir()) == sorted(others)


def test_one_writer_at_a_time_and_no_lock_file_left(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "ds"
    with (
        exclusive_writer(target),
        pytest.raises(LockedError, match="another process is writing"),
        exclusive_writer(target),
    ):
        pass
    with exclusive_writer(target):
        pass
    assert list((tmp_path / "sub").iterdir()) == []


def test_a_lock_that_cannot_be_made_is_reported_for_the_target(tmp_path: Path) -> None:
    (tmp_path / ".ds.lock").mkdir()  # what the lock file must be, as a folder: open fails
    with pytest.raises(OSError) as raised, exclusive_writer(tmp_path / "ds"):
        pass
    assert raised.value.filename == str(tmp_path / "ds")
    assert raised.value.strerror.startswith("cannot be created (")

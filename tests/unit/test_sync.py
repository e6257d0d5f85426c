"""Tests for ``reduct_twisted.sync``: group commit rounds and fsync of paths."""

import os

import pytest
from twisted.internet.defer import Deferred, fail, succeed

from reduct_twisted.errors import InternalError
from reduct_twisted.sync import GroupSync, fsync_paths


class Rounds:
    """A run_in_thread whose calls complete when the test says so."""

    def __init__(self):
        self.calls = []  # (files, directories, Deferred)

    def __call__(self, f, files, directories):
        d = Deferred()
        self.calls.append((files, directories, d))
        return d


class Dirty:
    def __init__(self):
        self.files, self.dirs = set(), set()

    def add(self, *files, dirs=()):
        self.files.update(files)
        self.dirs.update(dirs)

    def take(self):
        taken = (self.files, self.dirs)
        self.files, self.dirs = set(), set()
        return taken


def fired(d):
    results = []
    d.addBoth(results.append)
    return results


def test_one_round_serves_every_caller_queued_while_the_previous_ran():
    """The first caller starts a round; callers during it share the next one."""
    dirty, rounds = Dirty(), Rounds()
    group = GroupSync(dirty.take, rounds)
    dirty.add("/d/a.meta", dirs=["/d"])
    first = fired(group.wait())
    assert [(c[0], c[1]) for c in rounds.calls] == [(["/d/a.meta"], ["/d"])]
    dirty.add("/d/b.meta")
    second, third = fired(group.wait()), fired(group.wait())
    assert len(rounds.calls) == 1  # no second round while one runs
    assert first == second == third == []

    rounds.calls[0][2].callback(None)
    assert first == [None] and second == [] and third == []
    assert [c[0] for c in rounds.calls] == [["/d/a.meta"], ["/d/b.meta"]]
    rounds.calls[1][2].callback(None)
    assert second == [None] and third == [None]
    assert (group.rounds, group.served) == (2, 3)
    assert len(rounds.calls) == 2  # nobody waiting: no third round


def test_a_caller_is_never_served_by_a_round_that_started_before_it():
    """What a caller committed may not be in a round already running."""
    dirty, rounds = Dirty(), Rounds()
    group = GroupSync(dirty.take, rounds)
    group.wait()
    dirty.add("/late")  # committed after the round took its set
    late = fired(group.wait())
    rounds.calls[0][2].callback(None)
    assert late == []
    assert rounds.calls[1][0] == ["/late"]


def test_failed_round_fails_its_waiters_with_500_and_the_next_round_runs(log_events):
    """A sync failure is a 500 for exactly the writes it covered, logged without traceback."""
    dirty, rounds = Dirty(), Rounds()
    group = GroupSync(dirty.take, rounds)
    first = fired(group.wait())
    second = fired(group.wait())
    rounds.calls[0][2].errback(OSError(5, "Input/output error"))
    [failure] = first
    assert failure.check(InternalError)
    assert failure.value.status == 500
    assert str(failure.value) == "Failed to sync data to disk: Input/output error"
    assert second == []
    rounds.calls[1][2].callback(None)
    assert second == [None]
    [event] = [e for e in log_events if "Sync of written data failed" in e.get("log_format", "")]
    assert "log_failure" not in event


def test_take_dirty_raising_fails_the_waiters():
    def broken():
        raise OSError(28, "No space left on device")

    group = GroupSync(broken, lambda f, *a: succeed(f(*a)))
    [failure] = fired(group.wait())
    assert failure.check(InternalError)
    assert fired(GroupSync(lambda: ((), ()), lambda f, *a: succeed(f(*a))).wait()) == [None]


def test_fsync_paths_syncs_files_and_directories_and_skips_vanished(tmp_path, monkeypatch):
    """Files are fdatasync'ed, directories fsync'ed (their entries); a removed path is skipped."""
    (tmp_path / "a").write_bytes(b"x")
    synced = []

    def spy(name, real):
        def flush(fd):
            synced.append((name, os.readlink(f"/proc/self/fd/{fd}")))
            real(fd)

        return flush

    monkeypatch.setattr(os, "fsync", spy("fsync", os.fsync))
    monkeypatch.setattr(os, "fdatasync", spy("fdatasync", os.fdatasync))
    fsync_paths([str(tmp_path / "a"), str(tmp_path / "gone")], [str(tmp_path)])
    assert synced == [("fdatasync", str(tmp_path / "a")), ("fsync", str(tmp_path))]


def test_fsync_paths_raises_other_errors(tmp_path):
    with pytest.raises(NotADirectoryError):
        (tmp_path / "f").write_bytes(b"")
        fsync_paths([], [str(tmp_path / "f")])


def test_failing_thread_call(log_events):
    group = GroupSync(lambda: ((), ()), lambda f, *a: fail(OSError(30, "Read-only file system")))
    [failure] = fired(group.wait())
    assert str(failure.value) == "Failed to sync data to disk: Read-only file system"

"""
The on-disk tree log (``storage/disk/treelog.py``): contents, roots and
proofs against the naive RFC 9162 code of test_integrity_merkle, the
format header, and crash safety (every torn tail of the last append, and
a process killed with SIGKILL while appending).
"""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap

import pytest

from reduct_twisted.integrity.merkle import EMPTY_ROOT, leaf_hash
from reduct_twisted.storage.disk import treelog_files
from reduct_twisted.storage.disk.durability import DirtySet
from reduct_twisted.storage.disk.treelog import TreeLog, TreeLogError
from reduct_twisted.storage.disk.treelog_files import FORMAT_VERSION, nodes
from tests.unit.test_integrity_merkle import mth, path, subproof, verify_consistency, verify_inclusion

FILES = ("leaves", "offsets", "hashes")


def leaf_of(i: int) -> bytes:
    """Leaf number ``i`` (1-based) of the tests: variable length."""
    return b"leaf-%d-" % i + b"x" * (i * 7 % 23)


def leaves_of(n: int) -> list:
    return [leaf_of(i) for i in range(1, n + 1)]


@pytest.fixture
def where(tmp_path):
    return str(tmp_path / ".log")


def make(where, n, batches=(1, 3, 80, 7, 2)):
    log = TreeLog.open(where, merkle=True)
    i = 0
    for b in iter(lambda: batches[i % len(batches)], None):
        if log.size >= n:
            break
        log.append([leaf_of(j) for j in range(log.size + 1, min(n, log.size + b) + 1)])
        i += 1
    return log


def test_new_log(where):
    with TreeLog.open(where, merkle=True) as log:
        assert log.size == 0 and log.root() == EMPTY_ROOT
        assert sorted(os.listdir(where)) == ["format", "hashes", "leaves", "offsets"]
        with pytest.raises(IndexError):
            log.leaf(1)
    with open(os.path.join(where, "format"), "rb") as f:
        assert json.loads(f.read()) == {"format": "reduct-twisted-treelog", "version": FORMAT_VERSION,
                                        "merkle": True}


def test_contents_roots_and_proofs(where):
    data = leaves_of(300)
    with make(where, 300) as log:
        assert log.size == 300
        assert log.leaf(1) == data[0] and log.leaf(300) == data[299]
        assert log.leaves(1, 300) == data
        assert log.leaves(17, 17) == [data[16]]
        assert log.leaves(40, 123) == data[39:123]
        for n in range(0, 301):
            assert log.root(n) == mth(data[:n]), n
        for n in (1, 2, 3, 64, 65, 127, 300):
            top = mth(data[:n])
            for i in range(1, n + 1):
                proof = log.inclusion(i, n)
                assert proof == path(i - 1, data[:n])
                assert verify_inclusion(i - 1, n, leaf_hash(data[i - 1]), proof, top)
            for m in range(1, n + 1):
                proof = log.consistency(m, n)
                assert proof == subproof(m, data[:n], True)
                assert verify_consistency(m, n, mth(data[:m]), top, proof)


def test_reopen_and_continue(where):
    data = leaves_of(1000)
    rng = random.Random(3)
    n = 0
    while n < 1000:
        with TreeLog.open(where, merkle=True) as log:
            assert log.size == n and log.root() == mth(data[:n])
            for _ in range(rng.randrange(1, 4)):
                k = min(1000 - n, rng.choice([1, 1, 2, 80, 13]))
                log.append(data[n:n + k])
                n += k
    with TreeLog.open(where, merkle=True) as log:
        assert log.root() == mth(data)
        assert os.path.getsize(os.path.join(where, "hashes")) == 32 * nodes(1000)
        assert os.path.getsize(os.path.join(where, "offsets")) == 8 * 1000
        assert os.path.getsize(os.path.join(where, "leaves")) == sum(map(len, data))


def test_bad_arguments(where):
    with make(where, 10) as log:
        for first, last in ((0, 1), (3, 2), (5, 11)):
            with pytest.raises(IndexError):
                log.leaves(first, last)
        with pytest.raises(IndexError):
            log.leaf(11)
        with pytest.raises(ValueError):
            log.root(11)
        with pytest.raises(ValueError):
            log.inclusion(0, 5)
        with pytest.raises(ValueError):
            log.inclusion(6, 5)
        with pytest.raises(ValueError):
            log.inclusion(1, 11)
        with pytest.raises(ValueError):
            log.consistency(0, 5)
        with pytest.raises(ValueError):
            log.consistency(3, 11)
        with pytest.raises(ValueError):
            log.subtree(1, 2)
        with pytest.raises(ValueError):
            log.subtree(8, 4)
        with pytest.raises(ValueError):
            log.truncate(11)
        assert log.append([]) == 10


def test_proofs_cost_log_n_reads(where, monkeypatch):
    with make(where, 5000, batches=(80,)) as log:
        reads = []
        real = treelog_files.pread_exact

        def counting(fd, size, offset):
            reads.append(size)
            return real(fd, size, offset)

        monkeypatch.setattr("reduct_twisted.storage.disk.treelog.pread_exact", counting)
        for i in (1, 2500, 4097, 5000):
            reads.clear()
            log.inclusion(i, 5000)
            assert len(reads) <= 2 * 13
        for m in (1, 1234, 4096, 4999):
            reads.clear()
            log.consistency(m, 4999)
            assert len(reads) <= 2 * 13 + 1
        reads.clear()
        log.root(4321)
        assert len(reads) == bin(4321).count("1")


def test_truncate(where):
    data = leaves_of(200)
    with make(where, 200) as log:
        log.truncate(77)
        assert log.size == 77 and log.root() == mth(data[:77])
        log.append([b"other"])
        assert log.root() == mth(data[:77] + [b"other"])
    with TreeLog.open(where, merkle=True) as log:
        assert log.size == 78 and log.leaf(78) == b"other"
        log.truncate(0)
        assert log.root() == EMPTY_ROOT
        assert all(os.path.getsize(os.path.join(where, f)) == 0 for f in FILES)


def test_without_hashes_and_switching(where):
    data = leaves_of(5000)
    with TreeLog.open(where, merkle=False) as log:
        log.append(data[:4500])
        assert log.leaves(4499, 4500) == data[4498:4500]
        with pytest.raises(TreeLogError):
            log.root()
        assert os.path.getsize(os.path.join(where, "hashes")) == 0
    with TreeLog.open(where, merkle=True) as log:  # hashes built from the leaves
        assert log.size == 4500 and log.root() == mth(data[:4500])
        log.append(data[4500:4600])
    with TreeLog.open(where, merkle=False) as log:  # marked, then appended without hashes
        log.append(data[4600:])
    with open(os.path.join(where, "format")) as f:
        assert json.load(f)["merkle"] is False
    with TreeLog.open(where, merkle=True) as log:
        assert log.size == 5000 and log.root() == mth(data)
        assert log.inclusion(4999, 5000) == path(4998, data)


@pytest.mark.parametrize("content, message", [
    (b'{"format":"reduct-twisted-treelog","version":%d,"merkle":true}\n' % (FORMAT_VERSION + 1), "newer"),
    (b'{"format":"something-else","version":1,"merkle":true}\n', "not a tree log"),
    (b'not json\n', "not a tree log"),
    (b'{"format":"reduct-twisted-treelog","version":1,"merkle":true}', "not a tree log"),
    (b'{"format":"reduct-twisted-treelog","version":"1","merkle":true}\n', "version"),
    (b'{"format":"reduct-twisted-treelog","version":1}\n', "merkle"),
])
def test_format_refused(where, content, message):
    with make(where, 5):
        pass
    with open(os.path.join(where, "format"), "wb") as f:
        f.write(content)
    before = {name: _read(os.path.join(where, name)) for name in os.listdir(where)}
    with pytest.raises(TreeLogError, match=message) as info:
        TreeLog.open(where, merkle=True)
    assert "\n" not in str(info.value)
    assert {name: _read(os.path.join(where, name)) for name in os.listdir(where)} == before


def test_data_without_format_refused(where):
    with make(where, 5):
        pass
    os.unlink(os.path.join(where, "format"))
    with pytest.raises(TreeLogError, match="no format"):
        TreeLog.open(where, merkle=True)


def test_crash_before_format_rename(where):
    """A crash while the log was created: no format, empty files, maybe format.tmp: made anew."""
    os.makedirs(where)
    for name in ("leaves", "offsets", "format.tmp"):
        open(os.path.join(where, name), "wb").close()
    with TreeLog.open(where, merkle=True) as log:
        log.append([b"a"])
    with TreeLog.open(where, merkle=True) as log:
        assert log.leaves(1, 1) == [b"a"]


def test_dirty_set_and_paths(where):
    dirty = DirtySet()
    log = TreeLog.open(where, merkle=True, dirty=dirty)
    files, dirs = dirty.take()
    assert {os.path.join(where, f) for f in FILES + ("format",)} <= files
    assert where in dirs and os.path.dirname(where) in dirs
    log.append([b"a", b"b"])
    files, dirs = dirty.take()
    assert files == {os.path.join(where, f) for f in FILES} == set(log.paths())
    assert len(log.filenos()) == 3
    log.close()


def test_failed_write_leaves_log_unchanged(where, monkeypatch):
    data = leaves_of(20)
    log = make(where, 10)
    sizes = {f: os.path.getsize(os.path.join(where, f)) for f in FILES}
    hashes_fd = log.filenos()[2]
    real = os.pwrite

    def failing(fd, buf, offset):
        if fd == hashes_fd:
            real(fd, bytes(buf)[:5], offset)  # a torn write, then the error
            raise OSError(28, "No space left on device")
        return real(fd, buf, offset)

    monkeypatch.setattr(os, "pwrite", failing)
    with pytest.raises(OSError):
        log.append(data[10:13])
    monkeypatch.setattr(os, "pwrite", real)
    assert log.size == 10
    assert {f: os.path.getsize(os.path.join(where, f)) for f in FILES} == sizes
    log.append(data[10:])
    assert log.root() == mth(data)
    log.close()


# -- crash safety ------------------------------------------------------------------------


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _snapshot(where):
    return {f: _read(os.path.join(where, f)) for f in FILES}


def _restore(where, contents, cuts):
    for f in FILES:
        with open(os.path.join(where, f), "wb") as out:
            out.write(contents[f][:cuts[f]])


def _check_prefix(where, low, high):
    """The log reopens as a consistent prefix of ``leaves_of(high)``, at least ``low`` long."""
    data = leaves_of(high + 1)
    with TreeLog.open(where, merkle=True) as log:
        n = log.size
        assert low <= n <= high
        assert (log.leaves(1, n) if n else []) == data[:n]
        assert log.root() == mth(data[:n])
        for f, size in (("offsets", 8 * n), ("hashes", 32 * nodes(n))):
            assert os.path.getsize(os.path.join(where, f)) == size
        log.append([data[n]])  # and it goes on
        assert log.root() == mth(data[:n + 1])
    return n


@pytest.mark.parametrize("old, batch", [(0, 1), (1, 1), (7, 1), (15, 1), (12, 5), (30, 34), (255, 1)])
def test_torn_last_append_every_byte(where, old, batch):
    """Every file cut at every byte of the last append (the others whole, or all cut alike)."""
    with make(where, old) as log:
        before = {f: os.path.getsize(os.path.join(where, f)) for f in FILES}
        log.append(leaves_of(old + batch)[old:])
    after = _snapshot(where)
    for f in FILES:
        for cut in range(before[f], len(after[f]) + 1):
            cuts = {g: len(after[g]) for g in FILES}
            cuts[f] = cut
            _restore(where, after, cuts)
            n = _check_prefix(where, old, old + batch)
            assert (n == old + batch) == (cut == len(after[f])), (f, cut, n)
            if cut == before[f]:
                assert n == old
    rng = random.Random(old * 1000 + batch)
    for _ in range(60):  # every file torn at once
        cuts = {f: rng.randint(before[f], len(after[f])) for f in FILES}
        _restore(where, after, cuts)
        _check_prefix(where, old, old + batch)


def test_stored_hash_that_disagrees_is_cut(where):
    """A whole but wrong last leaf hash (not a torn write: power loss garbage) cuts that leaf."""
    with make(where, 12):
        pass
    with open(os.path.join(where, "hashes"), "r+b") as f:
        f.seek(32 * nodes(11))
        f.write(b"\xff" * 32)  # leaf 12's own hash
    assert _check_prefix(where, 11, 11) == 11
    with open(os.path.join(where, "hashes"), "r+b") as f:
        f.seek(32 * (nodes(12) - 1))
        f.write(b"\xff" * 32)  # the 4-leaf subtree leaf 12 completed (leaves 9..12)
    assert _check_prefix(where, 11, 11) == 11


CHILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[2])
    from reduct_twisted.storage.disk.treelog import TreeLog
    from tests.unit.test_treelog import leaf_of
    log = TreeLog.open(sys.argv[1], merkle=True)
    n = log.size
    sizes = [1, 2, 80, 3, 17, 1, 1, 200]
    i = 0
    while True:
        k = sizes[i % len(sizes)]
        i += 1
        log.append([leaf_of(j) for j in range(n + 1, n + k + 1)])
        n += k
        sys.stdout.write("%d\\n" % n)
        sys.stdout.flush()
""")


@pytest.mark.parametrize("kill_after", [1, 7, 40, 137])
def test_sigkill_while_appending(where, kill_after):
    """A child appends in a loop and is killed with SIGKILL; the log reopens as a consistent prefix
    holding at least every append the child saw return, and goes on."""
    root_dir = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    acknowledged = 0
    for round_ in range(2):
        child = subprocess.Popen([sys.executable, "-c", CHILD, where, root_dir],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            for _ in range(kill_after * (round_ + 1)):
                line = child.stdout.readline()
                assert line, child.stderr.read()
                acknowledged = int(line)
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
            rest = child.stdout.read().split()
            high = int(rest[-1]) if rest else acknowledged
        finally:
            if child.poll() is None:
                os.kill(child.pid, signal.SIGKILL)
                child.wait()
            child.stdout.close()
            child.stderr.close()
        assert child.returncode == -signal.SIGKILL
        # at most one append (up to 200 leaves) was in flight past what was printed
        _check_prefix(where, acknowledged, high + 200)
        with TreeLog.open(where, merkle=True) as log:
            acknowledged = log.size


def test_lost_hashes_rebuilt_lost_leaves_refused(where):
    data = leaves_of(50)
    with make(where, 50):
        pass
    os.unlink(os.path.join(where, "hashes"))
    with TreeLog.open(where, merkle=True) as log:
        assert log.size == 50 and log.root() == mth(data)
    for name in ("leaves", "offsets"):
        kept = _read(os.path.join(where, name))
        os.unlink(os.path.join(where, name))
        before = sorted(os.listdir(where))
        with pytest.raises(TreeLogError, match=f"lost its {name}"):
            TreeLog.open(where, merkle=True)
        assert sorted(os.listdir(where)) == before
        with open(os.path.join(where, name), "wb") as f:
            f.write(kept)
    with TreeLog.open(where, merkle=True) as log:
        assert log.size == 50 and log.root() == mth(data)

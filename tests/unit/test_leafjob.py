"""
The leaf worker's protocol (storage/leafjob.py): a job's answer is exactly
what the daemon would append itself, frames survive any chunking, and the
worker loop (run here over real pipes, in a thread) answers every job in
order and ends with its input.
"""

import hashlib
import os
import random
import threading

import pytest

from reduct_twisted.storage import leafjob
from reduct_twisted.storage.disk.treelog import TreeLog
from reduct_twisted.storage.disk.blockfile import encode_record
from reduct_twisted.storage.entry_leaves import _RECORD_LINE, fields_leaf, line_leaves, run_leaves
from reduct_twisted.storage.entry_pending import line_rows
from reduct_twisted.storage.records import Record
from tests import rfc9162


def _rows(rng, first, count):
    rows = []
    for n in range(first, first + count):
        ts = rng.choice([rng.randrange(2 ** 53), 2 ** 53 + rng.randrange(1000), 0])
        digest = None if rng.random() < 0.1 else hashlib.sha256(b"%d" % n).digest()
        labels = {rng.choice(["a", "\u00e9", "\U0001F600", "k"]): rng.choice(["", "x,y", '"q"'])
                  for _ in range(rng.randrange(3))}
        rows.append((n, ts, rng.randrange(2 ** 40), rng.choice(["", "text/plain", "a\u20ac"]),
                     labels, digest))
    return rows


def lines_of(rows) -> bytes:
    """The ``.meta`` lines a write run appends for ``rows`` (``blockfile.encode_record``)."""
    return b"".join(
        encode_record(Record(ts, f"{ts}.dat", 7, size, ct, labels, number=n, digest=digest, crc=9), size)
        for n, ts, size, ct, labels, digest in rows)


def _parts(rng, rows):
    """``rows`` as a job carries them: some as fields rows, runs of them as ``.meta`` lines."""
    parts, i = [], 0
    while i < len(rows):
        take = rng.randrange(1, 9)
        if rng.random() < 0.5:
            parts += rows[i:i + take]
        else:
            parts.append(lines_of(rows[i:i + take]))
        i += take
    rng.shuffle(parts)  # a part may come before numbers below it (belated records in older blocks)
    return parts


@pytest.mark.parametrize("merkle", [True, False])
def test_answers_append_the_same_log_as_the_daemon(tmp_path, merkle):
    """Jobs of varying sizes (rows and .meta lines mixed, in any order), chained from
    each answer's peaks: the files and root equal a log appended leaf by leaf (and
    the independent RFC 9162 root)."""
    rng = random.Random(1)
    theirs = TreeLog.open(str(tmp_path / "worker"), merkle)
    ours = TreeLog.open(str(tmp_path / "local"), merkle)
    leaves, n = [], 0
    for count in (1, 2, 3, 64, 7, 255, 1):
        rows = _rows(rng, n + 1, count)
        job = leafjob.encode_job(n, theirs.frontier, theirs.leaves_end, n + 1, n + count, _parts(rng, rows))
        answer = leafjob.run_job(job)
        theirs.append_built(*leafjob.decode_answer(answer))
        made = [fields_leaf(*row) for row in rows]
        for leaf in made:
            ours.append([leaf])
        leaves += made
        n += count
    assert theirs.size == ours.size == n
    for name in ("leaves", "offsets", "hashes"):
        assert (tmp_path / "worker" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()
    if merkle:
        assert theirs.root() == ours.root() == rfc9162.MTH(leaves)
    assert theirs.leaves(1, n) == leaves


def test_an_answer_built_from_another_end_of_the_log_is_refused(tmp_path):
    """The worker packs the leaves' ends from the job's ``leaves_end``: an answer that
    does not continue the log where its leaves end changes nothing."""
    rng = random.Random(7)
    log = TreeLog.open(str(tmp_path / "log"), True)
    log.append([fields_leaf(*row) for row in _rows(rng, 1, 3)])
    before = {name: (tmp_path / "log" / name).read_bytes() for name in ("leaves", "offsets", "hashes")}
    rows = _rows(rng, 4, 5)
    for leaves_end in (0, log.leaves_end - 1, log.leaves_end + 1):
        answer = leafjob.run_job(leafjob.encode_job(3, log.frontier, leaves_end, 4, 8, _parts(rng, rows)))
        with pytest.raises(ValueError, match="not built from the end"):
            log.append_built(*leafjob.decode_answer(answer))
        assert log.size == 3
        assert {name: (tmp_path / "log" / name).read_bytes() for name in before} == before
    answer = leafjob.run_job(leafjob.encode_job(3, log.frontier, log.leaves_end, 4, 8, _parts(rng, rows)))
    assert log.append_built(*leafjob.decode_answer(answer)) == 8


def test_a_job_that_fails_answers_an_error():
    answer = leafjob.run_job(leafjob.encode_job(0, [], 0, 1, 1, [(1, 2, 3)]))  # a short row
    with pytest.raises(leafjob.JobFailed, match="TypeError"):
        leafjob.decode_answer(answer)
    answer = leafjob.run_job(leafjob.encode_job(0, [], 0, 1, 2, [lines_of(_rows(random.Random(4), 1, 1))]))
    with pytest.raises(leafjob.JobFailed, match="KeyError"):  # number 2 is in no part
        leafjob.decode_answer(answer)
    answer = leafjob.run_job(leafjob.encode_job(0, [], 0, 1, 1, [b'{"k":"r","ts":1}\n']))
    with pytest.raises(leafjob.JobFailed, match="KeyError"):  # not a whole record line
        leafjob.decode_answer(answer)
    with pytest.raises(leafjob.JobFailed, match="unreadable"):
        leafjob.decode_answer(b"\xff\x00")
    with pytest.raises(leafjob.JobFailed):
        leafjob.decode_answer(leafjob.run_job(b"not marshal"))


def test_frames_survive_any_chunking():
    rng = random.Random(2)
    frames = [(rng.randrange(2 ** 63), os.urandom(rng.randrange(0, 3000))) for _ in range(50)]
    stream = b"".join(leafjob.frame(job, payload) for job, payload in frames)
    reader, got, pos = leafjob.FrameReader(), [], 0
    while pos < len(stream):
        step = rng.choice([1, 5, 12, 13, 700, 5000])
        got += reader.feed(stream[pos:pos + step])
        pos += step
    assert got == frames


def test_an_oversized_frame_is_refused():
    with pytest.raises(ValueError, match="frame of"):
        leafjob.FrameReader().feed(leafjob.HEADER.pack(leafjob.MAX_PAYLOAD + 1, 1))


def test_serve_answers_every_job_in_order_and_ends_with_its_input():
    rng = random.Random(3)
    job_in, job_out = os.pipe()
    answer_in, answer_out = os.pipe()
    result, chunks = [], []

    def drain():
        while chunk := os.read(answer_in, 1 << 16):
            chunks.append(chunk)

    def work():
        try:
            result.append(leafjob.serve(job_in, answer_out))
        finally:
            os.close(answer_out)

    threads = [threading.Thread(target=drain), threading.Thread(target=work)]
    for thread in threads:
        thread.start()
    jobs = {}
    try:
        for job in range(1, 21):
            count = rng.randrange(1, 40)
            payload = leafjob.encode_job(0, [], 0, 1, count, _parts(rng, _rows(rng, 1, count)))
            jobs[job] = payload
            os.write(job_out, leafjob.frame(job, payload))
    finally:
        os.close(job_out)
    for thread in threads:
        thread.join(30)
    os.close(answer_in)
    os.close(job_in)
    assert result == [0]
    answers = leafjob.FrameReader().feed(b"".join(chunks))
    assert [job for job, _ in answers] == list(jobs)
    for job, payload in answers:
        assert payload == leafjob.run_job(jobs[job])


def _line_cases():
    """Record lines of every shape the fast path takes and leaves (zeros, no labels, the
    timestamp beyond 2**53 - 1, crc and z fields, escapes, no digest, two labels of one name)."""
    rng = random.Random(5)
    digest = hashlib.sha256(b"x").digest()
    plain = [(n, rng.choice([0, 1, 2 ** 53 - 1, 2 ** 53, 2 ** 63 - 1, 1_700_000_000_000_000 + n]),
              rng.choice([0, 1, 1024, 2 ** 40]), rng.choice(["", "text/plain", "a b,c]"]),
              rng.choice([{}, {"b": "2", "a": "1"}, {"x": "],[\"y"[:2]}, {"k": ""}]), digest)
             for n in range(1, 200)]
    yield "plain", lines_of(plain)
    yield "crc and z", b"".join(
        encode_record(Record(ts, "1.blk", 0, size, ct, labels, number=n, digest=d, crc=n, zsize=3), size)
        for n, ts, size, ct, labels, d in plain)
    yield "escapes", lines_of([(1, 5, 6, "t\u00e9xt", {"\U0001F600": '"q"'}, digest)] + plain[:5])
    yield "no digest", lines_of(plain[:3] + [(500, 5, 6, "", {}, None)])
    yield "a name twice", (lines_of(plain[:2]) + b'{"k":"r","ts":1,"seg":"1.blk","off":0,"size":2,'
                           b'"ct":"","labels":[["a","1"],["a","2"]],"n":9,"sha256":"' + digest.hex().encode()
                           + b'"}\n')


@pytest.mark.parametrize("case", [name for name, _ in _line_cases()])
def test_line_leaves_are_the_leaves_of_the_decoded_lines(case):
    """The worker's leaves made from the lines' text equal fields_leaf of the decoded rows."""
    lines = dict(_line_cases())[case]
    assert line_leaves(lines) == {n: fields_leaf(*row) for n, row in line_rows(lines).items()}


def test_line_leaves_refuse_what_line_rows_refuses():
    for bad in (b'{"k":"r","ts":1}\n', b'{"k":"h","n":1}\n', b'not json\n'):
        with pytest.raises((ValueError, KeyError)):
            line_leaves(bad)
    # A leading zero: not JSON, so not a leaf either (the pattern does not copy it as text).
    digest = hashlib.sha256(b"x").hexdigest().encode()
    with pytest.raises(ValueError):
        line_leaves(b'{"k":"r","ts":1,"seg":"1.blk","off":0,"size":02,"ct":"","labels":[],"n":7,'
                    b'"sha256":"' + digest + b'"}\n')


def test_the_usual_lines_take_the_text_path():
    """Lines without escapes are matched whole by the pattern (the per-record fast path)."""
    cases = dict(_line_cases())
    for name in ("plain", "crc and z"):
        assert len(_RECORD_LINE.findall(cases[name])) == cases[name].count(b"\n") == 199


def _uniform_rows(first, count, ts=1_700_000_000_000_000, labels=None):
    digest = hashlib.sha256(b"u").digest()
    labels = {"camera": "front", "a": "1"} if labels is None else labels
    return [(n, ts + n, 1024, "application/octet-stream", labels, digest)
            for n in range(first, first + count)]


def test_run_leaves_of_a_batch_are_its_leaves_in_order():
    rows = _uniform_rows(5, 300)
    lines = lines_of(rows)
    assert run_leaves(lines, 5, 304) == [fields_leaf(*row) for row in rows]
    no_labels = _uniform_rows(1, 3, labels={})
    assert run_leaves(lines_of(no_labels), 1, 3) == [fields_leaf(*row) for row in no_labels]


@pytest.mark.parametrize("case", ["mixed labels", "escapes", "out of order", "a number missing",
                                  "more numbers", "timestamp 9e15", "no digest", "empty"])
def test_run_leaves_leave_other_lines_to_the_decoded_path(case):
    rows = _uniform_rows(1, 10)
    first, last = 1, 10
    if case == "mixed labels":
        rows[4] = rows[4][:4] + ({"camera": "back", "a": "1"},) + rows[4][5:]
    elif case == "escapes":
        rows[9] = rows[9][:3] + ("t\u00e9xt",) + rows[9][4:]
    elif case == "out of order":
        rows[2], rows[3] = rows[3], rows[2]
    elif case == "a number missing":
        del rows[5]
    elif case == "more numbers":
        last = 9
    elif case == "timestamp 9e15":
        rows[0] = (1, 9 * 10 ** 15) + rows[0][2:]
    elif case == "no digest":
        rows[7] = rows[7][:5] + (None,)
    elif case == "empty":
        rows, last = [], 0
    assert run_leaves(lines_of(rows), first, last) is None


def test_lines_labelled_one_by_one_make_no_pattern():
    """Only lines that all share the first one's (short) texts get a pattern of their own."""
    from reduct_twisted.storage import entry_leaves

    entry_leaves._UNIFORM.clear()
    rows = [row[:4] + ({"big": "x" * 300 + str(row[0])},) + row[5:] for row in _uniform_rows(1, 20)]
    assert run_leaves(lines_of(rows), 1, 20) is None
    assert line_leaves(lines_of(rows)) == {row[0]: fields_leaf(*row) for row in rows}
    long = _uniform_rows(1, 5, labels={"big": "y" * 2000})
    assert run_leaves(lines_of(long), 1, 5) is None
    assert not entry_leaves._UNIFORM
    assert run_leaves(lines_of(_uniform_rows(1, 5)), 1, 5) is not None
    assert len(entry_leaves._UNIFORM) == 1


def test_a_job_of_batch_lines_answers_what_the_decoded_path_makes(tmp_path):
    """run_job's uniform path and its general path append the same log."""
    rows = _uniform_rows(1, 200)
    parts = [lines_of(rows[i:i + 80]) for i in range(0, 200, 80)]
    assert run_leaves(b"".join(parts), 1, 200) is not None
    fast = leafjob.decode_answer(leafjob.run_job(leafjob.encode_job(0, [], 0, 1, 200, parts)))
    slow = leafjob.decode_answer(leafjob.run_job(leafjob.encode_job(0, [], 0, 1, 200, parts + [rows[0]])))
    assert fast == slow
    log = TreeLog.open(str(tmp_path / "log"), True)
    log.append_built(*fast)
    assert log.root() == rfc9162.MTH([fields_leaf(*row) for row in rows])

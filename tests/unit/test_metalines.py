"""
The fast reading of ``.meta`` record lines (``storage/disk/metalines.py``):
whatever it accepts it reads exactly as the line-by-line replay does, and
whatever it does not know it leaves to that replay.
"""

import random

import attr
import pytest

from reduct_twisted.storage.disk import blockfile
from reduct_twisted.storage.disk import metalines
from reduct_twisted.storage.disk.metalines import fast_table
from reduct_twisted.storage.records import FINISHED, Record

BLOCK = 1700000000000000


def _rows(table: dict) -> list:
    return [attr.astuple(table[ts], recurse=False) for ts in sorted(table)] + [list(table)]


def _replayed(data: bytes) -> dict:
    """The line-by-line replay: what ``read_meta`` did before the fast reading."""
    table: dict = {}
    for raw in data.split(b"\n")[1:-1]:
        obj = blockfile.json.loads(raw)
        blockfile._LINE_KINDS[obj["k"]](table, obj, BLOCK)
    return table


def _meta(tmp_path, lines) -> tuple:
    data = blockfile.encode_header(BLOCK, blockfile.FORMAT_VERSION) + b"".join(lines)
    path = tmp_path / f"{BLOCK}.meta"
    path.write_bytes(data)
    return str(path), data


_TEXTS = ["", "a", "sensor-1", "with space", "quote\"d", "back\\slash", "tab\there", "ünï", "日本",
          "new\nline", "~!@#$%^&*()_+{}|:<>?`-=[];',./"]


_PLAIN = [t for t in _TEXTS if t.isascii() and t.isprintable() and '"' not in t and "\\" not in t]


def _record(rng: random.Random, ts: int, offset: int, texts: list) -> Record:
    packed = rng.random() < 0.2
    private = not packed and rng.random() < 0.2
    if packed:
        segment = f"{BLOCK}-{rng.randint(1, 3)}.zst"
    elif private:
        segment = blockfile.private_name(BLOCK, ts)
    else:
        segment = blockfile.shared_name(BLOCK)
    labels = {rng.choice(texts[1:]): rng.choice(texts) for _ in range(rng.randint(0, 3))}
    return Record(
        ts, segment, offset, rng.randint(0, 1 << 40), rng.choice(texts + ["application/json"]),
        labels, FINISHED,
        crc=rng.choice([None, 0, rng.randint(0, 0xFFFFFFFF), 0xFFFFFFFF]),
        zsize=rng.randint(0, 1 << 20) if packed else None,
        number=rng.choice([None, 1, rng.randint(1, 1 << 50)]),
        digest=rng.choice([None, bytes(32), rng.randbytes(32)]),
    )


@pytest.mark.parametrize("seed", range(30))
def test_same_table_as_the_replay(tmp_path, seed):
    rng = random.Random(seed)
    texts = _PLAIN if seed % 2 else _TEXTS  # odd seeds: lines the fast reading takes
    records, ts = [], BLOCK
    for _ in range(rng.randint(1, 60)):
        ts += rng.choice([0, 1, 1, 7, 10 ** 9])  # a repeated timestamp: the later line wins
        records.append(_record(rng, ts, rng.randint(0, 1 << 30), texts))
    path, data = _meta(tmp_path, [blockfile.encode_record(r, r.size) for r in records])
    table, end = blockfile.read_meta(path, BLOCK)
    assert end == len(data)
    assert _rows(table) == _rows(_replayed(data))
    fast = fast_table(data, data.find(b"\n") + 1, len(data), BLOCK, blockfile.classify,
                      blockfile.DATA_SUFFIX)
    if seed % 2:
        assert fast is not None  # lines as written without escapes: the fast reading takes them
    if fast is not None:
        assert _rows(fast) == _rows(table)
        # records with the same labels share one dict, the others have their own
        by_text = {}
        for record in fast.values():
            by_text.setdefault(tuple(record.labels.items()), set()).add(id(record.labels))
        assert all(len(ids) == 1 for ids in by_text.values())


def test_a_batch_of_uniform_lines_is_read_fast(tmp_path):
    records = [Record(BLOCK + i, blockfile.shared_name(BLOCK), 1024 * i, 1024, "application/octet-stream",
                      {"bench": "1", "sensor": "s1"}, FINISHED, number=i + 1, digest=bytes([i % 256]) * 32)
               for i in range(1024)]
    path, data = _meta(tmp_path, [blockfile.encode_record(r, r.size) for r in records])
    fast = fast_table(data, data.find(b"\n") + 1, len(data), BLOCK, blockfile.classify,
                      blockfile.DATA_SUFFIX)
    assert fast is not None and _rows(fast) == _rows(_replayed(data))
    # one label dict for all (never changed in place: storage/tablesize.py)
    assert len({id(record.labels) for record in fast.values()}) == 1


_GOOD = (b'{"k":"r","ts":%d,"seg":"%d.blk","off":0,"size":3,"ct":"t","labels":[["a","b"]],'
         b'"crc":5,"n":1,"sha256":"' + b"ab" * 32 + b'"}\n') % (BLOCK + 5, BLOCK)


@pytest.mark.parametrize("old, new", [
    (b'"off":0', b'"off":00'),  # a leading zero: not JSON
    (b'"n":1', b'"n":0'),  # entry numbers start at 1
    (b'"crc":5', b'"crc":4294967296'),  # beyond 32 bits
    (b'"seg":"%d.blk"' % BLOCK, b'"seg":"%d.blk"' % (BLOCK + 1)),  # another block's segment
    (b'"seg":"%d.blk"' % BLOCK, b'"seg":"%d-7.blk"' % BLOCK),  # another record's private segment
    (b'"crc":5', b'"crc":5,"z":3'),  # a frame length in a plain segment
    (b"ab" * 32, b"AB" * 32),  # the digest in upper case
    (b"ab" * 32, b"ab" * 31),  # a short digest
    (b'"ct":"t"', b'"ct":5'),  # not a string
    (b'"labels":[["a","b"]]', b'"labels":[["a",1]]'),
    (b'"k":"r",', b'"k":"x",'),  # a kind this version does not know
    (b'"off":0,"size":3', b'"size":3,"off":0'),  # another key order (valid JSON: the replay reads it)
    (b'"ct":"t"', b'"ct":"\\u0074"'),  # an escape (valid: the replay reads it)
    (b'"ct":"t"', b'"ct":"t\x01"'),  # a raw control character: not JSON
    (b'}\n', b'} \n'),  # trailing space (valid JSON)
    (b'}\n', b'}\r\n'),
])
def test_anything_else_is_left_to_the_replay(tmp_path, old, new):
    """
    The fast reading refuses the line, and ``read_meta`` answers exactly what
    the replay does: the same table, or ``DamagedMeta``.
    """
    line = _GOOD.replace(old, new)
    assert line != _GOOD
    path, data = _meta(tmp_path, [_GOOD.replace(b"%d" % (BLOCK + 5), b"%d" % (BLOCK + 4)), line])
    assert fast_table(data, data.find(b"\n") + 1, len(data), BLOCK, blockfile.classify,
                      blockfile.DATA_SUFFIX) is None
    try:
        expected = _rows(_replayed(data))
    except (ValueError, KeyError, TypeError):
        with pytest.raises(blockfile.DamagedMeta):
            blockfile.read_meta(path, BLOCK)
    else:
        assert _rows(blockfile.read_meta(path, BLOCK)[0]) == expected


def test_the_unchanged_line_is_read_fast(tmp_path):
    path, data = _meta(tmp_path, [_GOOD])
    fast = fast_table(data, data.find(b"\n") + 1, len(data), BLOCK, blockfile.classify,
                      blockfile.DATA_SUFFIX)
    assert fast is not None and _rows(fast) == _rows(_replayed(data))


def test_an_empty_line_or_a_torn_tail(tmp_path):
    path, data = _meta(tmp_path, [_GOOD, b"\n"])
    with pytest.raises(blockfile.DamagedMeta):
        blockfile.read_meta(path, BLOCK)
    path, data = _meta(tmp_path, [_GOOD, _GOOD[:40]])
    table, end = blockfile.read_meta(path, BLOCK)
    assert end == len(data) - 40 and list(table) == [BLOCK + 5]


@pytest.mark.parametrize("seed", range(20))
def test_blocks_of_one_segment_content_type_and_label_set(tmp_path, seed):
    """The uniform reading (one pattern for the block) gives the replay's table too."""
    rng = random.Random(1000 + seed)
    template = _record(rng, BLOCK, 0, _PLAIN)
    records, ts = [], BLOCK
    count = 1 if template.segment.count("-") and template.zsize is None else rng.randint(1, 80)
    for _ in range(count):
        record = _record(rng, ts, rng.randint(0, 1 << 30), _PLAIN)
        record.segment, record.content_type = template.segment, template.content_type
        record.labels = dict(template.labels)
        if template.zsize is not None and record.zsize is None:
            record.zsize = 3
        if template.zsize is None:
            record.zsize = None
        records.append(record)
        ts += rng.choice([0, 1, 3])
    if template.segment.count("-") and template.zsize is None:
        records[0].ts = int(template.segment.split("-")[1].split(".")[0])
    path, data = _meta(tmp_path, [blockfile.encode_record(r, r.size) for r in records])
    start = data.find(b"\n") + 1
    fast = fast_table(data, start, len(data), BLOCK, blockfile.classify, blockfile.DATA_SUFFIX)
    assert fast is not None and _rows(fast) == _rows(_replayed(data))
    first = data[start:data.find(b"\n", start)]
    assert metalines._uniform(*metalines._LINE.match(first + b"\n").group(2, 5, 6)).findall(data)


def test_a_private_segment_of_another_record_is_refused(tmp_path):
    line = _GOOD.replace(b'"seg":"%d.blk"' % BLOCK, b'"seg":"%d-%d.blk"' % (BLOCK, BLOCK + 5))
    path, data = _meta(tmp_path, [line, line.replace(b'"ts":%d' % (BLOCK + 5), b'"ts":%d' % (BLOCK + 6))])
    start = data.find(b"\n") + 1
    assert fast_table(data, start, len(data), BLOCK, blockfile.classify, blockfile.DATA_SUFFIX) is None
    with pytest.raises(blockfile.DamagedMeta):
        blockfile.read_meta(path, BLOCK)


def test_records_labelled_one_by_one_make_no_pattern(tmp_path):
    """A pattern is made only for a block whose lines all share the first one's texts."""
    metalines._UNIFORM.clear()
    records = [Record(BLOCK + i, blockfile.shared_name(BLOCK), i, 1, "t", {"big": "x" * 200 + str(i)},
                      FINISHED, number=i + 1) for i in range(50)]
    path, data = _meta(tmp_path, [blockfile.encode_record(r, r.size) for r in records])
    start = data.find(b"\n") + 1
    fast = fast_table(data, start, len(data), BLOCK, blockfile.classify, blockfile.DATA_SUFFIX)
    assert fast is not None and _rows(fast) == _rows(_replayed(data))
    assert not metalines._UNIFORM
    long = [Record(BLOCK + i, blockfile.shared_name(BLOCK), i, 1, "t", {"big": "y" * 2000},
                   FINISHED, number=i + 1) for i in range(5)]
    path, data = _meta(tmp_path, [blockfile.encode_record(r, r.size) for r in long])
    assert fast_table(data, start, len(data), BLOCK, blockfile.classify, blockfile.DATA_SUFFIX)
    assert not metalines._UNIFORM  # texts too long to spell out in a pattern

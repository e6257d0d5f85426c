"""
The estimate of a loaded record table with shared label dicts
(``storage/tablesize.py``): a batch's run of alike records and a table read
from its ``.meta`` give records with the same labels one ``dict``, counted
once; the estimate follows relabels, removals and aborts exactly (it equals
a recount of the table), never changes a record's labels through another,
and stays close above the memory ``tracemalloc`` measures.
"""

import gc
import tracemalloc

import pytest

from reduct_twisted.storage.tablesize import (
    LABEL_OVERHEAD,
    RECORD_OVERHEAD,
    labels_bytes,
    table_estimate,
)

CT = "application/octet-stream"
ALIKE = {"bench": "1", "sensor": "s1"}


@pytest.fixture
def engine(engine):
    """The shared engine with digests (the default) and bucket ``b`` of big blocks."""
    engine.set_integrity("log")
    engine.create_bucket("b", {"max_block_records": 2000})
    return engine


def _run(engine, entry, specs):
    writers = engine.upload_run("b", entry, specs, [None] * len(specs), [print] * len(specs))
    for w, (_, length, _, _) in zip(writers, specs):
        w.write(b"x" * length)
        w.commit()
    engine.flush_writes()


def _block(engine, entry="e"):
    return engine._bucket("b").entry(entry).blocks[0]


def _recount(block) -> int:
    return table_estimate(list(block.table.values()))[0]


def test_a_run_of_alike_records_shares_one_dict_counted_once(engine):
    _run(engine, "e", [(1, 10, CT, {"first": "x"})])  # the entry and its block
    specs = [(ts, 10, CT, dict(ALIKE)) for ts in range(2, 52)]
    specs += [(ts, 10, "text/plain", {"n": str(ts)}) for ts in range(52, 55)]
    _run(engine, "e", specs)
    block = _block(engine)
    table = block.table
    assert len({id(table[ts].labels) for ts in range(2, 52)}) == 1
    assert len({id(table[ts].labels) for ts in range(52, 55)}) == 3
    expected = (54 * RECORD_OVERHEAD + 51 * len(CT) + 3 * len("text/plain")
                + labels_bytes({"first": "x"}) + labels_bytes(ALIKE)
                + sum(labels_bytes({"n": str(ts)}) for ts in range(52, 55)))
    assert block.table_bytes == expected == _recount(block)
    assert engine._context.tables.total == block.table_bytes


def test_relabels_removals_and_aborts_keep_the_estimate_exact(engine):
    _run(engine, "e", [(1, 10, CT, {})])
    _run(engine, "e", [(ts, 10, CT, dict(ALIKE)) for ts in range(2, 12)])
    block = _block(engine)
    # one record of the run relabelled: a dict of its own, the others keep theirs
    engine.update_labels("b", "e", {5: {"bench": "2"}})
    assert block.table[5].labels == {"bench": "2", "sensor": "s1"}
    assert block.table[6].labels == ALIKE and block.table[4].labels == ALIKE
    assert block.table_bytes == _recount(block)
    engine.remove_stamps("b", "e", [2, 3, 5])
    assert block.table_bytes == _recount(block)
    writer = engine.upload_run("b", "e", [(20, 10, CT, dict(ALIKE)), (21, 10, CT, dict(ALIKE))],
                               [None, None], [print, print])
    assert block.table_bytes == _recount(block)
    for w in writer:
        w.abort()
    assert block.table_bytes == _recount(block)
    # the last users of the shared dict leave: its bytes go with them
    engine.remove_stamps("b", "e", [4, 6, 7, 8, 9, 10, 11])
    assert block.table_bytes == _recount(block) == RECORD_OVERHEAD + len(CT)
    assert not block.sharing


def test_a_reloaded_table_shares_by_text_and_relabels_one_record_only(engine):
    for start in (1, 101):
        _run(engine, "e", [(ts, 10, CT, dict(ALIKE)) for ts in range(start, start + 50)])
    block = _block(engine)
    written = block.table_bytes
    # three dicts while written: the record that made the entry, then one per run
    assert written == _recount(block) == 100 * (RECORD_OVERHEAD + len(CT)) + 3 * labels_bytes(ALIKE)
    block.unload()
    engine.read("b", "e", 1)  # loads it again: one dict
    assert block.table_bytes == _recount(block) == written - 2 * labels_bytes(ALIKE)
    assert len({id(r.labels) for r in block.table.values()}) == 1
    engine.update_labels("b", "e", {120: {"sensor": "s9"}})
    assert [ts for ts, r in block.table.items() if r.labels != ALIKE] == [120]
    assert engine.read("b", "e", 121).record.labels == ALIKE
    assert block.table_bytes == _recount(block)


@pytest.mark.parametrize("labels", [lambda ts: dict(ALIKE),
                                    lambda ts: {"n": str(ts), "sensor": "s1"}])
def test_the_estimate_is_close_above_the_measured_memory(engine, labels):
    _run(engine, "e", [(ts, 10, CT, labels(ts)) for ts in range(1, 1025)])
    block = _block(engine)
    block.unload()
    block.load()  # once, so the parser's free lists are warm
    block.unload()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        block.load()
        measured = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert measured <= block.table_bytes <= 1.25 * measured, (measured, block.table_bytes)
    assert LABEL_OVERHEAD < 2 * RECORD_OVERHEAD

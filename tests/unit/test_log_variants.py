"""
The leaf variants of an entry log (storage/entry_log.py) as the listing
serves them, so that a client can rebuild every leaf: a number no record
holds (the gap leaf ``{"number": n, "skipped": true}``, listed as
``{"number": n, "state": "skipped"}``), a timestamp above 2**53 - 1 (a string
in the leaf, an integer in the listing).  Roots checked with tests/rfc9162.py;
the listed items fed to the verifier's own leaf builder.
"""

import hashlib

import pytest
from twisted.internet.task import Clock

from reduct_twisted.http.routes_integrity import item_json
from reduct_twisted.storage import StorageEngine
from reduct_twisted.storage.listing import Condition, ListingSpec
from reduct_twisted.storage.testing import write_record
from reduct_twisted.verifier import canonical
from tests import rfc9162

CT = "text/plain"


@pytest.fixture
def engine(tmp_path):
    engine = StorageEngine(str(tmp_path / "d"), Clock())
    engine.set_integrity("log")
    engine.open()
    engine.create_bucket("b", {"max_block_records": 4})
    yield engine
    engine.close()


def _write(engine, ts, labels=None):
    write_record(engine, "b", "e", ts, b"data %d" % ts, CT, labels or {"k": str(ts)})


def _leaf(number, ts):
    data = b"data %d" % ts
    return rfc9162.leaf(number, ts, len(data), CT, {"k": str(ts)}, hashlib.sha256(data).digest())


def _page(engine, spec):
    found = []
    engine.list_page("b", "e", spec).addBoth(found.append)
    if hasattr(found[0], "raiseException"):
        found[0].raiseException()
    return found[0]


def _items(engine, spec):
    return [item_json(leaf, stored) for leaf, stored in _page(engine, spec).items]


def _with_a_gap(engine):
    """Records 1, 2, 5 and 6: numbers 3 and 4 were taken by commits that failed."""
    _write(engine, 10)
    _write(engine, 20)
    series = engine._bucket("b").entry("e")
    series.numbers.take(), series.numbers.take()  # handed out, never written
    _write(engine, 30)
    _write(engine, 40)


def test_skipped_numbers_are_gap_leaves_listed_as_skipped(engine):
    _with_a_gap(engine)
    size, root = engine.log_head("b", "e")
    leaves = [_leaf(1, 10), _leaf(2, 20), rfc9162.gap_leaf(3), rfc9162.gap_leaf(4), _leaf(5, 30), _leaf(6, 40)]
    assert (size, root) == (6, rfc9162.MTH(leaves))
    every = _items(engine, ListingSpec(include_removed=True))
    assert [i["number"] for i in every] == [1, 2, 3, 4, 5, 6]
    assert every[2] == {"number": 3, "state": "skipped"} and every[3] == {"number": 4, "state": "skipped"}
    # the verifier rebuilds each leaf, the gap leaves included, from what is listed
    assert [canonical.record_leaf(item) for item in every] == leaves
    leaf, stored = engine.record_item("b", "e", 4)
    assert item_json(leaf, stored) == {"number": 4, "state": "skipped"}
    # without include_removed they are not listed; descending order too
    assert [i["number"] for i in _items(engine, ListingSpec())] == [1, 2, 5, 6]
    pages = [_page(engine, ListingSpec(per_page=2, page=p)) for p in (1, 2, 3)]
    assert [[leaf.number for leaf, _ in page.items] for page in pages] == [[1, 2], [5, 6], []]
    assert [(page.total, page.last_page) for page in pages] == [(4, 2)] * 3
    assert pages[1].next_start is None
    following = _page(engine, ListingSpec(per_page=2, start=pages[0].next_start))
    assert [leaf.number for leaf, _ in following.items] == [5, 6] and following.next_start is None
    every = _page(engine, ListingSpec(per_page=2, page=2, include_removed=True))
    assert ([leaf.number for leaf, _ in every.items], every.total, every.last_page) == ([3, 4], 6, 3)
    assert [i["number"] for i in _items(engine, ListingSpec(include_removed=True, descending=True))] == [
        6, 5, 4, 3, 2, 1]


def test_a_scan_never_lists_a_skipped_number(engine):
    """A gap leaf has no timestamp, labels or digest: filters and timestamp order leave it out."""
    _with_a_gap(engine)
    for spec in (
        ListingSpec(include_removed=True, order_by="timestamp"),
        ListingSpec(include_removed=True, stop_ts=35),
        ListingSpec(include_removed=True, start_ts=0),
        ListingSpec(include_removed=True, where=(Condition("k", "!=", "x"),)),
    ):
        numbers = [i["number"] for i in _items(engine, spec)]
        assert 3 not in numbers and 4 not in numbers and numbers, spec


def test_a_timestamp_beyond_2_53_is_an_integer_in_the_listing(engine):
    for ts in (2**53 - 1, 2**53, 2**64 - 1):
        _write(engine, ts)
    items = _items(engine, ListingSpec())
    assert [i["timestamp"] for i in items] == [2**53 - 1, 2**53, 2**64 - 1]
    leaves = [_leaf(1, 2**53 - 1), _leaf(2, 2**53), _leaf(3, 2**64 - 1)]
    assert b'"timestamp":"18446744073709551615"' in leaves[2]
    assert engine.log_head("b", "e") == (3, rfc9162.MTH(leaves))
    assert [canonical.record_leaf(item) for item in items] == leaves

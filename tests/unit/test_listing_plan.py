"""
``storage/listing_plan.py``: pages of a record listing (issue #16) against
a brute-force reference, for random entries (removals, belated timestamps,
labels, repeated contents) and random listings, and walks that follow the
cursors from the first page to the last.
"""

import hashlib
import random

import pytest

from reduct_twisted.storage.disk.removedset import RemovedSet
from reduct_twisted.storage.listing import Condition, ListingSpec, matches
from reduct_twisted.storage.listing_plan import (
    Leaf, by_position, by_time, plan_page, plan_time_page,
)


class Entry:
    def __init__(self, tmp_path, seed: int, size: int):
        rng = random.Random(seed)
        self.size = size
        self.leaves = {}
        for n in range(1, size + 1):
            ts = n * 10 + (rng.randrange(-40, 5) if rng.random() < 0.2 else 0)  # some belated
            labels = {"cam": rng.choice(["front", "back", "side"]), "n": str(rng.randrange(20))}
            digest = hashlib.sha256(str(rng.randrange(8)).encode()).digest()
            self.leaves[n] = Leaf(n, ts, rng.randrange(100), "b", labels, digest)
        self.removed = set(rng.sample(range(1, size + 1), size // 4)) if size else set()
        self.set = RemovedSet.open(str(tmp_path))
        self.set.add(sorted(self.removed))
        self.reads = 0

    def leaf(self, n):
        self.reads += 1
        return self.leaves[n]

    def stored(self, leaf):
        return leaf.number not in self.removed

    def reference(self, spec):
        items = [(leaf, self.stored(leaf)) for leaf in self.leaves.values()]
        items = [(leaf, kept) for leaf, kept in items
                 if (kept or spec.include_removed)
                 and (spec.digest is None or leaf.digest == spec.digest)
                 and (spec.start_ts is None or leaf.timestamp >= spec.start_ts)
                 and (spec.stop_ts is None or leaf.timestamp < spec.stop_ts)
                 and matches(leaf.labels, spec.where)]
        key = (lambda p: (p[0].timestamp, p[0].number)) if spec.order_by == "timestamp" \
            else (lambda p: p[0].number)
        return sorted(items, key=key, reverse=spec.descending)

    def page(self, spec, candidates=None):
        return plan_page(spec, self.size, self.leaf, self.stored, self.set, candidates)


def random_spec(rng, size) -> ListingSpec:
    order_by = rng.choice(["number", "number", "timestamp"])
    fields = dict(per_page=rng.choice([1, 3, 7, 100]), include_removed=rng.random() < 0.4,
                  order_by=order_by, descending=rng.random() < 0.4)
    if rng.random() < 0.3:
        fields["where"] = (Condition("cam", rng.choice(["=", "!=", "like"]),
                                     rng.choice(["front", "b%"])),)
    if rng.random() < 0.2:
        fields["start_ts"] = rng.randrange(size * 10 + 1)
    if rng.random() < 0.2:
        fields["digest"] = hashlib.sha256(str(rng.randrange(8)).encode()).digest()
    if order_by == "number" and rng.random() < 0.5:
        fields["start"] = rng.randrange(1, size + 3)
    else:
        fields["page"] = rng.randrange(1, 8)
    return ListingSpec(**fields)


@pytest.mark.parametrize("seed", range(12))
def test_pages_match_the_reference(tmp_path, seed):
    rng = random.Random(seed)
    entry = Entry(tmp_path, seed, rng.choice([0, 1, 9, 60]))
    for _ in range(60):
        spec = random_spec(rng, entry.size)
        want = entry.reference(spec)
        if spec.start is not None:
            skip = sum(1 for leaf, _ in want if (leaf.number > spec.start if spec.descending
                                                 else leaf.number < spec.start))
        else:
            skip = (spec.page - 1) * spec.per_page
        got = entry.page(spec)
        assert [(l.number, k) for l, k in got.items] == \
            [(l.number, k) for l, k in want[skip:skip + spec.per_page]], spec
        assert got.total == len(want), spec
        assert got.last_page == max(1, -(-len(want) // spec.per_page))
        assert got.current_page == skip // spec.per_page + 1, spec


@pytest.mark.parametrize("seed, descending, every", [(1, False, False), (2, True, False),
                                                     (3, False, True), (4, True, True)])
def test_following_next_cursors_visits_every_listed_record_once(tmp_path, seed, descending, every):
    entry = Entry(tmp_path, seed, 97)
    spec = ListingSpec(per_page=10, descending=descending, include_removed=every)
    seen, pages = [], 0
    page = entry.page(spec)
    while True:
        pages += 1
        seen += [leaf.number for leaf, _ in page.items]
        if page.next_start is None:
            break
        cursor = ListingSpec(start=page.next_start, per_page=10, descending=descending,
                             include_removed=every)
        page = entry.page(cursor)
        # and back: the previous page of this one starts where the last one started
        assert page.previous_start == seen[-len(seen) + (pages - 1) * 10]
    assert seen == [leaf.number for leaf, _ in entry.reference(spec)]
    assert pages == max(1, -(-len(seen) // 10))


def test_a_positional_page_reads_only_about_a_page_of_leaves(tmp_path):
    entry = Entry(tmp_path, 5, 5000)
    spec = ListingSpec(page=300, per_page=10)
    assert by_position(spec)
    entry.reads = 0
    page = entry.page(spec)
    assert len(page.items) == 10
    assert entry.reads < 40  # ten listed, the removed ones among them skipped
    cursor = ListingSpec(start=4000, per_page=10, descending=True)
    entry.reads = 0
    entry.page(cursor)
    assert entry.reads < 40


def test_a_digest_listing_reads_only_its_candidates(tmp_path):
    entry = Entry(tmp_path, 6, 200)
    wanted = entry.leaves[5].digest
    spec = ListingSpec(digest=wanted, include_removed=True)
    candidates = [n for n, leaf in entry.leaves.items() if leaf.digest[:8] == wanted[:8]] + [7]
    entry.reads = 0
    page = entry.page(spec, candidates=candidates)
    assert entry.reads == len(set(candidates))
    assert [l.number for l, _ in page.items] == \
        [l.number for l, _ in entry.reference(spec)][:100]


class TimedEntry:
    """An entry whose stored records (unique timestamps, some belated) are cut
    into blocks in time order, as ``plan_time_page`` gets them."""

    def __init__(self, tmp_path, seed: int, size: int):
        rng = random.Random(seed)
        self.size, self.leaves, used = size, {}, set()
        for n in range(1, size + 1):
            ts = n * 10 + (rng.randrange(-400, 0) if rng.random() < 0.2 else 0)
            while ts in used:
                ts += 1
            used.add(ts)
            self.leaves[n] = Leaf(n, ts, 1, "b", {"n": str(n)}, None)
        self.removed = set(rng.sample(range(1, size + 1), size // 5)) if size else set()
        self.set = RemovedSet.open(str(tmp_path))
        self.set.add(sorted(self.removed))
        rows = sorted((leaf.timestamp, n) for n, leaf in self.leaves.items()
                      if n not in self.removed)
        self.blocks = []
        while rows:
            cut = rng.randrange(1, 8)
            part, rows = rows[:cut], rows[cut:]
            self.blocks.append((len(part), part[0][0], part[-1][0], part))
            if rng.random() < 0.1:  # a block of unfinished records only
                self.blocks.append((0, part[-1][0] + 1, part[-1][0] + 1, []))
        self.reads = self.tables = 0

    def leaf(self, n):
        self.reads += 1
        return self.leaves[n]

    def records(self, handle):
        self.tables += 1
        return list(handle)

    def time_page(self, spec):
        return plan_time_page(spec, self.size, self.leaf, self.blocks, self.records)

    def scan_page(self, spec):
        return plan_page(spec, self.size, self.leaves.__getitem__,
                         lambda leaf: leaf.number not in self.removed, self.set)


def _same(got, want):
    assert got is not None
    assert [(l.number, k) for l, k in got.items] == [(l.number, k) for l, k in want.items]
    assert (got.total, got.current_page, got.last_page, got.next_start, got.previous_start) == \
        (want.total, want.current_page, want.last_page, want.next_start, want.previous_start)


@pytest.mark.parametrize("seed", range(10))
def test_time_ordered_pages_are_the_scans_pages(tmp_path, seed):
    rng = random.Random(seed)
    entry = TimedEntry(tmp_path, seed, rng.choice([0, 1, 9, 80, 300]))
    top = entry.size * 10 + 20
    for _ in range(80):
        fields = dict(order_by="timestamp", descending=rng.random() < 0.5,
                      per_page=rng.choice([1, 3, 7, 100]), page=rng.randrange(1, 12))
        if rng.random() < 0.4:
            fields["start_ts"] = rng.randrange(-500, top)
        if rng.random() < 0.4:
            fields["stop_ts"] = rng.randrange(-500, top)
        spec = ListingSpec(**fields)
        assert by_time(spec) and not by_position(spec)
        _same(entry.time_page(spec), entry.scan_page(spec))


def test_a_time_ordered_page_reads_about_a_page():
    """The 300th page of 10 reads 10 leaves and at most three block tables
    (the page's blocks: 7 records a block), whatever the entry's size."""
    rows = [(ts, ts) for ts in range(1, 7001)]
    blocks = [(7, rows[i][0], rows[i + 6][0], rows[i:i + 7]) for i in range(0, 7000, 7)]
    leaves = {n: Leaf(n, n, 1, "b", {}, None) for n in range(1, 7001)}
    counted = {"leaves": 0, "tables": 0}

    def leaf(n):
        counted["leaves"] += 1
        return leaves[n]

    def records(handle):
        counted["tables"] += 1
        return handle

    for descending, first in ((False, 2991), (True, 4010)):
        counted.update(leaves=0, tables=0)
        spec = ListingSpec(order_by="timestamp", descending=descending, page=300, per_page=10)
        page = plan_time_page(spec, 7000, leaf, blocks, records)
        assert [l.number for l, _ in page.items] == \
            list(range(first, first + 10)) if not descending else \
            list(range(first, first - 10, -1))
        assert (page.total, page.current_page, page.last_page) == (7000, 300, 700)
        assert counted == {"leaves": 10, "tables": 2}
    spec = ListingSpec(order_by="timestamp", start_ts=100, stop_ts=6000, page=5, per_page=10)
    counted.update(leaves=0, tables=0)
    page = plan_time_page(spec, 7000, leaf, blocks, records)
    assert [l.number for l, _ in page.items] == list(range(140, 150))
    assert page.total == 5900 and counted["tables"] <= 4  # the two edges, the page's blocks


@pytest.mark.parametrize("row", [(5, None), (5, 9), (5, 4)])
def test_a_time_ordered_page_gives_way_to_the_scan_for_records_not_logged(row):
    """A record without a number, with a number beyond the log, or whose leaf
    has another timestamp: None (the caller scans)."""
    leaves = {n: Leaf(n, n, 1, "b", {}, None) for n in range(1, 9)}
    blocks = [(3, 1, 5, [(1, 1), (3, 3), row])]
    spec = ListingSpec(order_by="timestamp")
    assert plan_time_page(spec, 8, leaves.__getitem__, blocks, lambda h: h) is None
    assert plan_time_page(spec, 8, leaves.__getitem__, [(2, 1, 3, [(1, 1), (3, 3)])],
                          lambda h: h) is not None


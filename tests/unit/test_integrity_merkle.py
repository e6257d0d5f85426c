"""
RFC 9162 §2.1 tree hashes and proofs (``reduct_twisted.integrity.merkle``)
against a naive MTH/PATH/PROOF written here from the RFC's recursive
definitions, and against the RFC's verification algorithms (§2.1.3.2,
§2.1.4.2), also written here.
"""

import hashlib
import json
import random

import pytest

from reduct_twisted.integrity import merkle
from reduct_twisted.integrity.merkle import (
    EMPTY_ROOT, MemorySource, consistency_path, inclusion_path, leaf_bytes, leaf_hash, node_hash, root,
)


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


# -- naive, straight from §2.1.1, §2.1.3.1, §2.1.4.1 ----------------------------------


def k_of(n):
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d):
    n = len(d)
    if n == 0:
        return sha(b"")
    if n == 1:
        return sha(b"\x00" + d[0])
    k = k_of(n)
    return sha(b"\x01" + mth(d[:k]) + mth(d[k:]))


def path(m, d):
    n = len(d)
    if n == 1:
        return []
    k = k_of(n)
    if m < k:
        return path(m, d[:k]) + [mth(d[k:])]
    return path(m - k, d[k:]) + [mth(d[:k])]


def subproof(m, d, b):
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = k_of(n)
    if m <= k:
        return subproof(m, d[:k], b) + [mth(d[k:])]
    return subproof(m - k, d[k:], False) + [mth(d[:k])]


# -- verifiers, straight from §2.1.3.2 and §2.1.4.2 ---------------------------------


def verify_inclusion(leaf_index, tree_size, leaf_h, inclusion, root_hash):
    if leaf_index >= tree_size:
        return False
    fn, sn, r = leaf_index, tree_size - 1, leaf_h
    for p in inclusion:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = sha(b"\x01" + p + r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = sha(b"\x01" + r + p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root_hash


def verify_consistency(first, second, first_hash, second_hash, proof):
    if first == second:
        return proof == [] and first_hash == second_hash
    if not proof:
        return False
    proof = list(proof)
    if first & (first - 1) == 0:  # exact power of two
        proof.insert(0, first_hash)
    fn, sn = first - 1, second - 1
    if fn & 1:
        while fn & 1:
            fn >>= 1
            sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = sha(b"\x01" + c + fr)
            sr = sha(b"\x01" + c + sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = sha(b"\x01" + sr + c)
        fn >>= 1
        sn >>= 1
    return fr == first_hash and sr == second_hash and sn == 0


# -- a counting source --------------------------------------------------------------


class CountingSource(MemorySource):
    """Precomputes every complete aligned subtree; counts ``subtree`` calls and checks alignment."""

    def __init__(self, data):
        super().__init__([sha(b"\x00" + x) for x in data])
        self.table = {}
        size = 1
        while size <= len(data):
            for start in range(0, len(data) - size + 1, size):
                self.table[start, size] = mth(data[start:start + size]) if size <= 4 else \
                    node_hash(self.table[start, size // 2], self.table[start + size // 2, size // 2])
            size *= 2
        self.calls = 0

    def subtree(self, start, size):
        assert size & (size - 1) == 0 and start % size == 0, (start, size)
        self.calls += 1
        return self.table[start, size]


def data_of(n, seed=0):
    return [b"leaf %d/%d" % (i, seed) for i in range(n)]


def test_constants_and_hashes():
    assert EMPTY_ROOT == sha(b"") == bytes.fromhex(
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    assert leaf_hash(b"x") == sha(b"\x00x")
    assert node_hash(b"a" * 32, b"b" * 32) == sha(b"\x01" + b"a" * 32 + b"b" * 32)
    assert root(MemorySource([]), 0) == EMPTY_ROOT
    with pytest.raises(ValueError):
        root(MemorySource([]), -1)


@pytest.mark.parametrize("n", list(range(1, 71)) + random.Random(16).sample(range(71, 2000), 8))
def test_root_matches_naive(n):
    data = data_of(n)
    source = CountingSource(data)
    assert root(source, n) == mth(data)
    assert source.calls == bin(n).count("1")
    for m in range(1, n + 1, max(1, n // 17)):
        assert root(source, m) == mth(data[:m])


def test_every_inclusion_path_small():
    """Every index of every tree of 1..70 leaves: the naive PATH, the RFC verifier, O(log n) calls."""
    for n in range(1, 71):
        data = data_of(n, 1)
        source = CountingSource(data)
        top = mth(data)
        for i in range(n):
            source.calls = 0
            got = inclusion_path(source, i, n)
            assert source.calls <= 2 * n.bit_length()
            assert got == path(i, data), (i, n)
            assert verify_inclusion(i, n, leaf_hash(data[i]), got, top)
            assert not verify_inclusion(i, n, leaf_hash(data[i] + b"x"), got, top)
            if got:
                bad = list(got)
                bad[-1] = bytes(32)
                assert not verify_inclusion(i, n, leaf_hash(data[i]), bad, top)


def test_every_consistency_path_small():
    """Every (m, n) with 1 <= m <= n <= 70."""
    data = data_of(70, 2)
    source = CountingSource(data)
    roots = [mth(data[:m]) for m in range(71)]
    for n in range(1, 71):
        for m in range(1, n + 1):
            source.calls = 0
            got = consistency_path(source, m, n)
            assert source.calls <= 2 * n.bit_length() + 1
            assert got == subproof(m, data[:n], True), (m, n)
            assert verify_consistency(m, n, roots[m], roots[n], got)
            if m < n:
                assert not verify_consistency(m, n, roots[m - 1] if m > 1 else bytes(32), roots[n], got)
                assert not verify_consistency(m, n, roots[m], roots[n - 1], got) or roots[n - 1] == roots[n]


@pytest.mark.parametrize("seed", range(6))
def test_random_larger_trees(seed):
    rng = random.Random(seed)
    n = rng.randrange(100, 5000)
    data = data_of(n, seed)
    source = CountingSource(data)
    top = mth(data)
    for _ in range(40):
        i = rng.randrange(n)
        source.calls = 0
        got = inclusion_path(source, i, n)
        assert source.calls <= 2 * n.bit_length()
        assert got == path(i, data)
        assert verify_inclusion(i, n, leaf_hash(data[i]), got, top)
        m = rng.randrange(1, n + 1)
        source.calls = 0
        proof = consistency_path(source, m, n)
        assert source.calls <= 2 * n.bit_length() + 1
        assert proof == subproof(m, data, True)
        assert verify_consistency(m, n, mth(data[:m]), top, proof)


def test_huge_tree_costs_log_n_calls():
    """A virtual tree of 10**12 leaves: proofs cost O(log n) subtree calls."""

    class Virtual:
        calls = 0

        def subtree(self, start, size):
            assert size & (size - 1) == 0 and start % size == 0
            self.calls += 1
            return sha(b"%d/%d" % (start, size))

    source = Virtual()
    n = 10 ** 12 + 12345
    inclusion_path(source, 10 ** 12 + 7, n)
    consistency_path(source, 999_999_999_999, n)
    root(source, n)
    assert source.calls <= 6 * n.bit_length()


@pytest.mark.parametrize("index, n", [(0, 0), (5, 5), (-1, 3)])
def test_inclusion_bad_arguments(index, n):
    with pytest.raises(ValueError):
        inclusion_path(MemorySource([b"x" * 32] * 8), index, n)


@pytest.mark.parametrize("m, n", [(0, 5), (6, 5), (-1, 2)])
def test_consistency_bad_arguments(m, n):
    with pytest.raises(ValueError):
        consistency_path(MemorySource([b"x" * 32] * 8), m, n)


def test_leaf_bytes():
    """Contract 4: JCS of the six fields, digest as sha-256:<hex>."""
    digest = sha(b"content")
    out = leaf_bytes(3, 1_700_000_000_000_001, 7, "text/plain", {"z": "1", "a": "\u00e9"}, digest)
    assert out == ('{"content_type":"text/plain","digest":"sha-256:%s","labels":{"a":"\u00e9","z":"1"},'
                   '"number":3,"size":7,"timestamp":1700000000000001}' % digest.hex()).encode("utf-8")
    assert json.loads(out)["digest"] == "sha-256:" + digest.hex()
    assert leaf_bytes(1, 0, 0, "", {}, digest) == (
        '{"content_type":"","digest":"sha-256:%s","labels":{},"number":1,"size":0,"timestamp":0}'
        % digest.hex()).encode()


@pytest.mark.parametrize("args", [
    (True, 0, 0, "", {}, bytes(32)), (1, -1, 0, "", {}, bytes(32)), (1, 0, 1.5, "", {}, bytes(32)),
    (1, 0, 0, None, {}, bytes(32)), (1, 0, 0, "", {"a": 1}, bytes(32)), (1, 0, 0, "", [], bytes(32)),
    (1, 0, 0, "", {}, bytes(31)), (1, 0, 0, "", {}, "00" * 32), (1, 2 ** 60, 0, "", {}, bytes(32)),
])
def test_leaf_bytes_refuses(args):
    with pytest.raises(ValueError):
        leaf_bytes(*args)


def test_module_has_no_disk_access():
    """The pure module opens nothing (the tree log owns the bytes)."""
    import inspect
    text = inspect.getsource(merkle)
    assert "open(" not in text and "import os" not in text


def test_leaf_bytes_is_canonical_json_of_the_six_fields():
    """The written-out leaf equals jcs.canonical of the dict, for awkward names and values too."""
    from reduct_twisted.integrity.jcs import canonical
    rng = random.Random(8785)
    alphabet = ["a", "Z", "0", "-", "\u00e9", "\ufb33", "\U0001F600", "\u20ac", "\n", '"', "\\", "\x01",
                "\x7f", "\u2028", " "]
    for _ in range(500):
        labels = {"".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 5))):
                  "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 5)))
                  for _ in range(rng.randrange(0, 6))}
        number, ts, size = rng.randrange(1, 2 ** 53), rng.randrange(0, 2 ** 53), rng.randrange(0, 2 ** 40)
        ct = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 8)))
        digest = bytes(rng.randrange(256) for _ in range(32))
        expected = canonical({"number": number, "timestamp": ts, "size": size, "content_type": ct,
                              "labels": labels, "digest": "sha-256:" + digest.hex()})
        assert leaf_bytes(number, ts, size, ct, labels, digest) == expected


@pytest.mark.parametrize("labels, ct", [({"\ud800": "x"}, ""), ({"a": "\udfff"}, ""), ({}, "\ud800")])
def test_leaf_bytes_refuses_lone_surrogates(labels, ct):
    with pytest.raises(ValueError):
        leaf_bytes(1, 1, 1, ct, labels, bytes(32))


def test_leaf_of_orders_names_by_utf16_code_units():
    """U+1F600 (UTF-16 D83D DE00) sorts before U+FB33, though after it by code point;
    below U+10000 the fast path's code-point order is the same order."""
    from reduct_twisted.integrity.merkle import leaf_of
    digest = sha(b"x")
    out = leaf_of(1, 2, 3, "t", {"\ufb33": "1", "\U0001F600": "2", "a": "3"}, digest)
    assert out.decode("utf-8").index("\U0001F600") < out.decode("utf-8").index("\ufb33")
    assert json.loads(out)["labels"] == {"a": "3", "\U0001F600": "2", "\ufb33": "1"}
    assert list(json.loads(leaf_of(1, 2, 3, "t", {"\ufb33": "1", "\u00e9": "2", "b": "3"}, digest))
                ["labels"]) == ["b", "\u00e9", "\ufb33"]


def test_leaf_of_templates_do_not_leak_between_records():
    """Leaves built from the kept templates (same labels in another order, the same
    labels under another content type, a label set that differs in one value, a full
    template table) equal the canonical JSON of each record's own fields."""
    from reduct_twisted.integrity import merkle
    from reduct_twisted.integrity.jcs import canonical
    rng = random.Random(9162)
    kinds = [("a", {"x": "1", "y": "2"}), ("a", {"y": "2", "x": "1"}), ("b", {"x": "1", "y": "2"}),
             ("a", {"x": "1", "y": "3"}), ("a", {}), ("", {"x": ""})]
    for i in range(3 * merkle._TEMPLATES_MAX):
        ct, labels = kinds[i % len(kinds)] if i % 2 else ("t", {"n": str(i)})
        number, ts, size, digest = i + 1, rng.randrange(2 ** 53), rng.randrange(2 ** 40), sha(b"%d" % i)
        expected = canonical({"number": number, "timestamp": ts, "size": size, "content_type": ct,
                              "labels": labels, "digest": "sha-256:" + digest.hex()})
        assert merkle.leaf_of(number, ts, size, ct, labels, digest) == expected
        assert len(merkle._TEMPLATES) <= merkle._TEMPLATES_MAX

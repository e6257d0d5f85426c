"""
The three RFC 9162 / RFC 8785 implementations of issue #16 agree: the
server's (reduct_twisted.integrity), the verifier's (reduct_twisted.verifier)
and the test reference (tests/rfc9162.py).
"""

import base64
import random

from reduct_twisted.integrity import jcs, merkle, signing
from reduct_twisted.verifier import canonical, checks, proofs
from tests import rfc9162 as ref

POOL = ["a", "\x00", "\x1f", "\x7f", '"', "\\", "\u2028", "\u20ac", "\ufb33", "\U0001f600", "\n", "\u00e9"]


def test_leaves_agree():
    rng = random.Random(16)

    def rs():
        return "".join(rng.choice(POOL) for _ in range(rng.randint(0, 5)))

    for _ in range(2000):
        labels = {rs(): rs() for _ in range(rng.randint(0, 5))}
        n, ts, size, ct, dg = rng.randint(1, 2**40), rng.randint(0, 2**53 - 1), rng.randint(0, 2**40), rs(), rng.randbytes(32)
        item = {"number": n, "timestamp": ts, "size": size, "content_type": ct, "labels": labels, "digest": "sha-256:" + dg.hex()}
        assert merkle.leaf_bytes(n, ts, size, ct, labels, dg) == ref.leaf(n, ts, size, ct, labels, dg) == canonical.record_leaf(item)


def test_server_proofs_verify_with_both_verifiers():
    for n in range(1, 70):
        leaves = [b"L%d" % i for i in range(n)]
        src = merkle.MemorySource([ref.leaf_hash(x) for x in leaves])
        root = merkle.root(src, n)
        assert root == ref.MTH(leaves)
        for m in range(n):
            path = merkle.inclusion_path(src, m, n)
            assert ref.verify_inclusion(ref.leaf_hash(leaves[m]), m, n, path, root)
            assert proofs.inclusion_holds(ref.leaf_hash(leaves[m]), m, n, path, root)
        for m in range(1, n + 1):
            path = merkle.consistency_path(src, m, n)
            assert ref.verify_consistency(m, n, ref.MTH(leaves[:m]), root, path)
            assert proofs.consistency_holds(m, n, ref.MTH(leaves[:m]), root, path)


def test_server_signed_head_verifies_with_the_verifier():
    key = signing.LogKey(bytes(range(32)))
    head = key.sign_head("b", "a/\u00e9", 5, bytes(32), 1_700_000_000_000_000)
    unsigned = {k: v for k, v in head.items() if k != "signature"}
    assert canonical.canonical(unsigned) == jcs.canonical(unsigned) == ref.jcs(unsigned)
    assert checks.LogKey(key.describe()).verifies(base64.b64decode(head["signature"]), canonical.canonical(unsigned))


def test_leaf_variants_agree():
    """The documented variants (storage/entry_log.py): "digest": null, a
    timestamp above 2**53 - 1 as a decimal string, the gap leaf of a skipped
    number; the verifier rebuilds each from the listing item the server serves."""
    from types import SimpleNamespace

    from reduct_twisted.http.routes_integrity import item_json
    from reduct_twisted.storage.entry_log import gap_leaf, record_leaf
    from reduct_twisted.storage.log_api import parse_leaf

    cases = [(ts, dg) for ts in (0, 2**53 - 1, 2**53, 2**53 + 1, 2**64 - 1) for dg in (None, bytes(range(32)))]
    for number, (ts, dg) in enumerate(cases, 1):
        labels = {"\u00e9": "x", "a": "\U0001f600"}
        record = SimpleNamespace(number=number, ts=ts, size=7, content_type="text/plain", labels=labels, digest=dg)
        leaf = record_leaf(record)
        assert leaf == ref.leaf(number, ts, 7, "text/plain", labels, dg)
        item = item_json(parse_leaf(leaf), True)  # what the listing serves
        assert item["timestamp"] == ts and item["state"] == "stored"
        assert canonical.record_leaf(item) == leaf, (ts, dg)
    for number in (1, 2**40):
        leaf = gap_leaf(number)
        assert leaf == ref.gap_leaf(number) == b'{"number":%d,"skipped":true}' % number
        item = item_json(parse_leaf(leaf), False)
        assert item == {"number": number, "state": "skipped"}
        assert canonical.record_leaf(item) == leaf

"""
The test-side RFC 9162 reference (tests/rfc9162.py) checked against the RFC
itself: hand-built trees of 1..8 leaves, the worked example of §2.1.5 (the
seven-leaf tree with its named nodes), every proof of small trees, and the
negative cases a verifier must refuse.  Also its RFC 8785 canonicalizer,
against the examples of RFC 8785.
"""

import ast
import hashlib
import random
from pathlib import Path

import pytest

from tests import rfc9162 as ref


def H(data):
    return hashlib.sha256(data).digest()


def L(d):
    return H(b"\x00" + d)


def N(a, b):
    return H(b"\x01" + a + b)


D = [bytes([i]) * (i + 1) for i in range(8)]


def test_reference_imports_nothing_from_the_project():
    """The yardstick must not share code with what it measures."""
    tree = ast.parse(Path(ref.__file__).read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert names == ["hashlib"]


def test_hashes_of_small_trees_by_hand():
    """MTH of 0..8 leaves equals the trees drawn by hand from §2.1.1."""
    a, b, c, d, e, f, g, h = (L(x) for x in D)
    expected = {
        0: H(b""),
        1: a,
        2: N(a, b),
        3: N(N(a, b), c),
        4: N(N(a, b), N(c, d)),
        5: N(N(N(a, b), N(c, d)), e),
        6: N(N(N(a, b), N(c, d)), N(e, f)),
        7: N(N(N(a, b), N(c, d)), N(N(e, f), g)),
        8: N(N(N(a, b), N(c, d)), N(N(e, f), N(g, h))),
    }
    for n, root in expected.items():
        assert ref.MTH(D[:n]) == root, n
    # The empty hash is the well-known SHA-256 of nothing.
    assert ref.MTH([]).hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_worked_example_of_section_2_1_5():
    """The seven-leaf example: named nodes, its inclusion paths and consistency proofs."""
    a, b, c, d, e, f, d6 = (L(x) for x in D[:7])
    g, h, i = N(a, b), N(c, d), N(e, f)
    j = d6
    k, l = N(g, h), N(i, j)
    root = N(k, l)
    assert ref.MTH(D[:7]) == root
    assert ref.PATH(0, D[:7]) == [b, h, l]
    assert ref.PATH(3, D[:7]) == [c, g, l]
    assert ref.PATH(4, D[:7]) == [f, j, k]
    assert ref.PATH(6, D[:7]) == [i, k]
    assert ref.PROOF(3, D[:7]) == [c, d, g, l]
    assert ref.PROOF(4, D[:7]) == [l]
    assert ref.PROOF(6, D[:7]) == [i, j, k]
    for m, path in [(0, [b, h, l]), (3, [c, g, l]), (4, [f, j, k]), (6, [i, k])]:
        assert ref.verify_inclusion(L(D[m]), m, 7, path, root)
    assert ref.verify_consistency(3, 7, N(g, c), root, [c, d, g, l])
    assert ref.verify_consistency(4, 7, k, root, [l])
    assert ref.verify_consistency(6, 7, N(k, i), root, [i, j, k])


def test_every_proof_of_trees_up_to_33_leaves_verifies():
    leaves = [b"leaf %d" % i for i in range(33)]
    for n in range(1, 34):
        root = ref.MTH(leaves[:n])
        for m in range(n):
            assert ref.verify_inclusion(ref.leaf_hash(leaves[m]), m, n, ref.PATH(m, leaves[:n]), root), (m, n)
        for m in range(1, n + 1):
            proof = ref.PROOF(m, leaves[:n])
            assert ref.verify_consistency(m, n, ref.MTH(leaves[:m]), root, proof), (m, n)


def _flip(h, bit=0):
    return bytes([h[0] ^ (1 << bit)]) + h[1:]


def test_inclusion_refuses_tampering():
    leaves = [b"x%d" % i for i in range(11)]
    root = ref.MTH(leaves)
    for m in range(11):
        lh, path = ref.leaf_hash(leaves[m]), ref.PATH(m, leaves)
        assert not ref.verify_inclusion(_flip(lh), m, 11, path, root)
        assert not ref.verify_inclusion(lh, m, 11, path, _flip(root, 7))
        for i in range(len(path)):
            bad = list(path)
            bad[i] = _flip(bad[i], 3)
            assert not ref.verify_inclusion(lh, m, 11, bad, root)
        for other in range(11):
            if other != m:
                assert not ref.verify_inclusion(lh, other, 11, path, root), (m, other)
        # A wrong tree size is refused whenever it changes the path's shape
        # (the size itself is authenticated by the signed head, not the path).
        refused = 0
        for size in range(m + 1, 40):
            if size != 11 and len(ref.PATH(m, [b""] * size)) != len(path):
                assert not ref.verify_inclusion(lh, m, size, path, root), (m, size)
                refused += 1
        assert refused
        assert not ref.verify_inclusion(lh, m, 11, path[:-1], root)
        assert not ref.verify_inclusion(lh, m, 11, path + [root], root)
    assert not ref.verify_inclusion(ref.leaf_hash(leaves[0]), 11, 11, [], root)
    assert not ref.verify_inclusion(ref.leaf_hash(leaves[0]), -1, 11, [], root)


def test_consistency_refuses_tampering():
    leaves = [b"y%d" % i for i in range(13)]
    for first in range(1, 13):
        old, new = ref.MTH(leaves[:first]), ref.MTH(leaves)
        proof = ref.PROOF(first, leaves)
        assert ref.verify_consistency(first, 13, old, new, proof)
        assert not ref.verify_consistency(first, 13, _flip(old), new, proof)
        assert not ref.verify_consistency(first, 13, old, _flip(new), proof)
        for i in range(len(proof)):
            bad = list(proof)
            bad[i] = _flip(bad[i], 5)
            assert not ref.verify_consistency(first, 13, old, new, bad), (first, i)
        for size in range(first + 1, 40):
            if size != 13 and len(ref.PROOF(first, [b""] * size)) != len(proof):
                assert not ref.verify_consistency(first, size, old, new, proof), (first, size)
        # A rewritten prefix: the old head of a different history.
        other = [b"z"] + leaves[1:]
        assert not ref.verify_consistency(first, 13, ref.MTH(other[:first]), new, proof)
        if first < 12:
            assert not ref.verify_consistency(first, 13, old, new, [])
    assert not ref.verify_consistency(5, 3, ref.MTH(leaves[:5]), ref.MTH(leaves[:3]), [])
    assert ref.verify_consistency(4, 4, ref.MTH(leaves[:4]), ref.MTH(leaves[:4]), [])
    assert not ref.verify_consistency(4, 4, ref.MTH(leaves[:4]), ref.MTH(leaves[:3]), [])


def test_random_trees_against_a_plain_recomputation():
    """For random sizes, a path's siblings really are the subtree hashes the RFC names."""
    rng = random.Random(9162)
    for _ in range(40):
        n = rng.randint(2, 300)
        leaves = [rng.randbytes(rng.randint(0, 20)) for _ in range(n)]
        m = rng.randrange(n)
        path = ref.PATH(m, leaves)
        assert len(path) <= (n - 1).bit_length()
        assert ref.verify_inclusion(ref.leaf_hash(leaves[m]), m, n, path, ref.MTH(leaves))


# -- RFC 8785 ------------------------------------------------------------------------


def test_jcs_sorts_by_utf16_code_units():
    """RFC 8785 §3.2.3's example: the emoji (a surrogate pair) sorts before U+FB33."""
    obj = {"\u20ac": 1, "\r": 2, "\ufb33": 3, "1": 4, "\U0001f600": 5, "\u0080": 6, "\u00f6": 7}
    out = ref.jcs(obj).decode("utf-8")
    keys = ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    assert out == "{" + ",".join(ref._jcs_string(k) + ":" + str(obj[k]) for k in keys) + "}"
    assert out.startswith('{"\\r":2,"1":4,')


def test_jcs_string_escapes():
    """RFC 8785 §3.2.2.2: short escapes, lowercase \\u00xx for other controls, the rest literal."""
    s = "\u20ac$\u000f\nA'B\"\\\\\"/"
    assert ref.jcs({"k": s}) == ('{"k":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}').encode("utf-8")
    assert ref.jcs({"c": "\x00\x1f\x7f\u2028"}) == '{"c":"\\u0000\\u001f\x7f\u2028"}'.encode("utf-8")
    with pytest.raises(ValueError):
        ref.jcs({"k": "\ud800"})


def test_leaf_of_contract_4():
    digest = bytes(range(32))
    out = ref.leaf(7, 1_700_000_000_000_000, 3, "text/plain", {"b": "2", "a": "1"}, digest)
    assert out == (
        b'{"content_type":"text/plain","digest":"sha-256:' + digest.hex().encode() + b'",'
        b'"labels":{"a":"1","b":"2"},"number":7,"size":3,"timestamp":1700000000000000}'
    )

"""
The verifier's own pieces, each measured against an independent yardstick:
its Merkle proof code and RFC 8785 code against tests/rfc9162.py (written
separately, from the RFC's step-by-step algorithms), its layering, the
state file, the progress bar, the header parsers.
"""

import io
import json
import os
import random

import pytest

from reduct_twisted.verifier import canonical, checks, client, progress, proofs, state
from tests import rfc9162 as ref
from tests.unit.test_layering import import_graph


def _flip(h, bit=0):
    return bytes([h[0] ^ (1 << bit)]) + h[1:]


def test_the_verifier_imports_nothing_of_the_daemon():
    """Client side only: no storage, http or integrity (the server's own log code)."""
    _, graph = import_graph()
    mine = {m: deps for m, deps in graph.items() if m.startswith("reduct_twisted.verifier")}
    assert "reduct_twisted.verifier.cli" in mine and "reduct_twisted.verifier.proofs" in mine
    allowed = {"reduct_twisted"}  # __version__ for the User-Agent
    for module, deps in mine.items():
        outside = {d for d in deps if not d.startswith("reduct_twisted.verifier")} - allowed
        assert outside == set(), module


def test_hash_prefixes_match_the_reference():
    assert proofs.hash_leaf(b"abc") == ref.leaf_hash(b"abc")
    assert proofs.hash_children(b"l" * 32, b"r" * 32) == ref.node_hash(b"l" * 32, b"r" * 32)


def test_inclusion_agrees_with_the_reference_on_every_small_tree():
    leaves = [b"r%d" % i for i in range(40)]
    for n in range(1, 41):
        root = ref.MTH(leaves[:n])
        for m in range(n):
            lh, path = ref.leaf_hash(leaves[m]), ref.PATH(m, leaves[:n])
            assert proofs.inclusion_holds(lh, m, n, path, root)
            cases = [
                (_flip(lh), m, n, path, root),
                (lh, m, n, path, _flip(root)),
                (lh, (m + 1) % n, n, path, root),
                (lh, m, n + 1, path, root),
                (lh, m, n, path + [root], root),
                (lh, m, n, path[:-1], root),
                (lh, n, n, path, root),
            ]
            if path:
                cases.append((lh, m, n, [_flip(path[0])] + path[1:], root))
            for case in cases:
                # Both verifiers give the same answer on every tampered case.
                assert proofs.inclusion_holds(*case) == ref.verify_inclusion(*case), (m, n, case[1:3])
            assert not proofs.inclusion_holds(_flip(lh), m, n, path, root)


def test_consistency_agrees_with_the_reference_on_every_small_tree():
    leaves = [b"c%d" % i for i in range(34)]
    other = [b"X"] + leaves[1:]
    for n in range(1, 35):
        new = ref.MTH(leaves[:n])
        for m in range(1, n + 1):
            old, proof = ref.MTH(leaves[:m]), ref.PROOF(m, leaves[:n])
            assert proofs.consistency_holds(m, n, old, new, proof), (m, n)
            cases = [
                (m, n, _flip(old), new, proof),
                (m, n, old, _flip(new), proof),
                (m, n, ref.MTH(other[:m]), new, proof),
                (m, n + 1, old, new, proof),
                (m, n, old, new, proof + [new]),
                (m, n, old, new, proof[1:]),
            ]
            if proof:
                cases.append((m, n, old, new, proof[:-1] + [_flip(proof[-1])]))
            for case in cases:
                assert proofs.consistency_holds(*case) == ref.verify_consistency(*case), (m, n)
    assert proofs.consistency_holds(0, 5, b"", ref.MTH(leaves[:5]), [])
    assert not proofs.consistency_holds(5, 3, ref.MTH(leaves[:5]), ref.MTH(leaves[:3]), [])


def test_streaming_root_is_the_tree_hash():
    rng = random.Random(8)
    leaves = [rng.randbytes(rng.randint(0, 9)) for _ in range(130)]
    tree = proofs.StreamingRoot()
    assert tree.root() == ref.MTH([])
    for i, leaf in enumerate(leaves, 1):
        tree.add(ref.leaf_hash(leaf))
        assert tree.root() == ref.MTH(leaves[:i]), i


def _random_string(rng):
    pool = ["a", "Z", "0", "\x00", "\x1f", "\x7f", '"', "\\", "/", "\u00e9", "\u2028", "\u20ac", "\ufb33", "\U0001f600", "\U00010000", "\n", "\t"]
    return "".join(rng.choice(pool) for _ in range(rng.randint(0, 6)))


def test_canonical_json_agrees_with_the_reference():
    rng = random.Random(8785)
    for _ in range(500):
        labels = {_random_string(rng): _random_string(rng) for _ in range(rng.randint(0, 6))}
        item = {
            "number": rng.randint(1, 2**40),
            "timestamp": rng.randint(0, 2**53),
            "size": rng.randint(0, 2**40),
            "content_type": _random_string(rng),
            "labels": labels,
            "digest": "sha-256:" + rng.randbytes(32).hex(),
            "state": "stored",
        }
        expected = ref.leaf(
            item["number"], item["timestamp"], item["size"], item["content_type"], labels, bytes.fromhex(item["digest"][8:])
        )
        assert canonical.record_leaf(item) == expected
        # The result parses back to the same object.
        assert json.loads(expected) == {k: v for k, v in item.items() if k != "state"}


def test_canonical_refusals():
    with pytest.raises(canonical.NotCanonicalizable):
        canonical.canonical({"a": "\udc00"})
    with pytest.raises(canonical.NotCanonicalizable):
        canonical.canonical({"a": 2**53 + 1})
    with pytest.raises(canonical.NotCanonicalizable):
        canonical.canonical({"a": 1.5})
    assert canonical.canonical({"b": [True, None], "a": False}) == b'{"a":false,"b":[true,null]}'


def test_repr_digest_and_link_parsing():
    digest = bytes(range(32))
    import base64

    b64 = base64.b64encode(digest).decode()
    assert checks.parse_repr_digest(f"sha-256=:{b64}:") == digest
    assert checks.parse_repr_digest(f"sha-512=:AAAA:, sha-256=:{b64}:") == digest
    assert checks.parse_repr_digest("sha-256=:AAAA:") is None
    assert checks.parse_repr_digest(f"sha-256={b64}") is None
    assert checks.parse_repr_digest(None) is None
    links = client.parse_links('<http://h/a?start=3>; rel="next", <http://h/a?start=1>; rel="previous"')
    assert links == {"next": "http://h/a?start=3", "previous": "http://h/a?start=1"}
    assert client.parse_links('<http://h/x>; title="a"; rel=next') == {"next": "http://h/x"}
    assert client.parse_links("") == {}
    assert client.entry_path("a/b c/%") == "a/b%20c/%25"


def test_links_to_another_origin_are_not_followed():
    c = client.Client("http://127.0.0.1:8383/base", token="t")
    assert c.base == "http://127.0.0.1:8383/base/"
    assert c.same_origin("http://127.0.0.1:8383/base/api/v1/records/b/e?start=5") == "/base/api/v1/records/b/e?start=5"
    assert c.same_origin("/base/x?y=1") == "/base/x?y=1"
    with pytest.raises(client.ClientError, match="another origin"):
        c.same_origin("http://evil.example/base/api")
    with pytest.raises(client.ClientError, match="another origin"):
        c.same_origin("https://127.0.0.1:8383/base/api")


def test_state_file_is_replaced_atomically(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    s = state.State(str(path))
    head = {"tree_size": 3, "root_hash": "ab" * 32, "key_id": "cd" * 32, "timestamp": 5}
    s.remember("b", "e/f", head, "2026-12-06T00:00:00Z")
    before = path.read_bytes()
    assert state.State(str(path)).head("b", "e/f")["tree_size"] == 3

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(state.StateError, match="No space left"):
        s.remember("b", "g", head, "2026-12-06T00:00:01Z")
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["state.json"]
    path.write_text('{"version": 99}')
    with pytest.raises(state.StateError, match="not a version 1"):
        state.State(str(path))
    path.write_text("{")
    with pytest.raises(state.StateError, match="cannot read"):
        state.State(str(path))


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_progress_on_a_terminal_redraws_one_line():
    now = [0.0]
    out = FakeTTY()
    bar = progress.Progress(out, clock=lambda: now[0])
    assert bar.tty
    bar.start("b/e", 100)
    for _ in range(50):
        now[0] += 0.0625
        bar.advance(1, 1024)
    text = out.getvalue()
    assert text.count("\r") == 25  # at most every 0.1 s
    assert "\n" not in text
    assert text.endswith("b/e: 50/100 records (50%)  16.0 rec/s, 16.0 KiB/s  ETA 0:00:03")
    bar.clear()
    assert out.getvalue().endswith("\r\x1b[K")


def test_progress_in_a_log_prints_periodic_lines():
    now = [0.0]
    out = io.StringIO()
    bar = progress.Progress(out, clock=lambda: now[0], interval=10)
    bar.start("b/e", 0)
    bar.set_total(1000)
    for _ in range(1000):
        now[0] += 0.125
        bar.advance()
    lines = out.getvalue().splitlines()
    assert len(lines) == 12  # one every 10 s of 125 s
    assert lines[0] == "b/e: 80/1000 records (8%)  8.0 rec/s, 0 B/s  ETA 0:01:55"
    bar.finish()
    assert out.getvalue().splitlines()[-1].startswith("b/e: 1000/1000 records (100%)")
    quiet = io.StringIO()
    bar = progress.Progress(quiet, clock=lambda: now[0], enabled=False)
    bar.start("x", 5)
    bar.advance()
    bar.finish()
    assert quiet.getvalue() == ""

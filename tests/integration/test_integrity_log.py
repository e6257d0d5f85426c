"""
Issue #16 items 3–5 against the real daemon over real sockets: the numbered
listing (pagination by following ``Link`` headers, filters and ordering
against a reference computed here), the per-entry RFC 9162 log (every proof
checked with ``tests/rfc9162.py``, written from the RFC, not from the
daemon's code; heads checked with ``cryptography``), consistency across a
restart, and ``reduct-twisted verify`` finding a flipped byte.
"""

import base64
import hashlib
import json
import os
import re
import sys
from urllib.parse import urlsplit

import pytest_twisted
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue

from tests import rfc9162
from tests.conftest import REPO_ROOT
from tests.integration.conftest import running_server
from tests.integration.helpers import body_of, ok
from tests.integration.io_helpers import create_bucket

B = "bkt"


async def get_json(server, path: str, status: int = 200):
    resp = await server.http.get(server.api(path))
    body = await body_of(resp)
    assert resp.code == status, (path, resp.code, body)
    return resp, json.loads(body) if body else None


async def write(server, entry, ts, data, labels=None, content_type="application/octet-stream"):
    headers = {"content-type": [content_type]}
    for name, value in (labels or {}).items():
        headers[f"x-reduct-label-{name}"] = [value]
    await ok(await server.http.post(server.api(f"/b/{B}/{entry}?ts={ts}"), data=data,
                                    headers=headers))


async def assert_error(resp, status: int) -> str:
    """A clear 4xx: the status, ``x-reduct-error`` and the same text as JSON ``detail``."""
    body = await body_of(resp)
    assert resp.code == status, (resp.code, body)
    [message] = resp.headers.getRawHeaders("x-reduct-error")
    assert json.loads(body) == {"detail": message}
    return message


def leaf_of(item: dict) -> bytes:
    """The RFC 8785 leaf of a listed item (contract 4), by the test's own canonicalizer."""
    return rfc9162.leaf(item["number"], item["timestamp"], item["size"], item["content_type"],
                        item["labels"], bytes.fromhex(item["digest"].split(":", 1)[1]))


async def all_items(server, entry, query="") -> list:
    """Every listed item, by following ``Link: rel="next"`` from the first page."""
    items, url, pages = [], server.api(f"/records/{B}/{entry}?{query}"), 0
    while url:
        resp = await server.http.get(url)
        body = json.loads(await body_of(resp))
        assert resp.code == 200, body
        items += body["data"]
        pages += 1
        link = (resp.headers.getRawHeaders("link") or [None])[0]
        found = re.search(r'<([^>]+)>; rel="next"', link or "")
        assert (found.group(1) if found else None) == body["links"]["next_page"]
        url = found.group(1) if found else None
        assert pages < 1000
    return items


def verify_head(head: dict, key: dict) -> bool:
    unsigned = {k: v for k, v in head.items() if k != "signature"}
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(key["public_key"]))
    try:
        public.verify(base64.b64decode(head["signature"]), rfc9162.jcs(unsigned))
        return True
    except Exception:  # noqa: BLE001 - InvalidSignature
        return False


async def fill(server, entry="cam", count=23):
    """``count`` records with labels, one belated, contents repeating every 5."""
    await create_bucket(server, B)
    expected = []
    for i in range(count):
        ts = 1000 + 10 * i if i != 7 else 5  # record 8 is belated: its number is still 8
        data = b"frame-%d" % (i % 5)
        labels = {"cam": ["front", "back"][i % 2], "n": str(i)}
        await write(server, entry, ts, data, labels)
        expected.append({"number": i + 1, "timestamp": ts, "size": len(data),
                         "content_type": "application/octet-stream", "labels": labels,
                         "digest": "sha-256:" + hashlib.sha256(data).hexdigest(),
                         "state": "stored"})
    return expected


@pytest_twisted.ensureDeferred
async def test_listing_follows_links_and_matches_what_was_written(server):
    expected = await fill(server)
    assert await all_items(server, "cam", "per_page=4") == expected
    assert await all_items(server, "cam") == expected
    _, body = await get_json(server, f"/records/{B}/cam?per_page=5&page=2")
    assert body["data"] == expected[5:10]
    assert body["meta"] == {"total": 23, "per_page": 5, "current_page": 2, "last_page": 5}
    for name in ("self", "first_page", "next_page", "previous_page"):
        assert urlsplit(body["links"][name]).netloc == urlsplit(server.url).netloc
    _, item = await get_json(server, f"/records/{B}/cam?number=8")
    assert item == expected[7]
    await assert_error(await server.http.get(server.api(f"/records/{B}/cam?number=99")), 404)


@pytest_twisted.ensureDeferred
async def test_filters_and_ordering_against_a_reference(server):
    expected = await fill(server)
    cases = [
        ("where[cam]=front", [e for e in expected if e["labels"]["cam"] == "front"]),
        ("where[n]=10&constraint[n]=%3E%3D", [e for e in expected if int(e["labels"]["n"]) >= 10]),
        ("where[cam]=b%25&constraint[cam]=like", [e for e in expected
                                                  if e["labels"]["cam"].startswith("b")]),
        ("start_ts=1050&stop_ts=1100", [e for e in expected if 1050 <= e["timestamp"] < 1100]),
        ("orderBy[timestamp]=desc", sorted(expected, key=lambda e: -e["timestamp"])),
        ("orderBy[number]=desc", expected[::-1]),
        ("digest=" + expected[2]["digest"], [e for e in expected
                                             if e["digest"] == expected[2]["digest"]]),
    ]
    for query, want in cases:
        assert await all_items(server, "cam", query + "&per_page=3") == want, query
        _, body = await get_json(server, f"/records/{B}/cam?{query}")
        assert body["meta"]["total"] == len(want), query
    for query in ("per_page=1001", "start=x", "orderBy[size]=asc", "where[a]=1&constraint[a]=~"):
        resp = await server.http.get(server.api(f"/records/{B}/cam?{query}"))
        await assert_error(resp, 422)


@pytest_twisted.ensureDeferred
async def test_removed_records_keep_their_leaf(server):
    expected = await fill(server, count=6)
    await ok(await server.http.delete(server.api(f"/b/{B}/cam?ts={expected[2]['timestamp']}")))
    stored = await all_items(server, "cam")
    assert [e["number"] for e in stored] == [1, 2, 4, 5, 6]
    every = await all_items(server, "cam", "include_removed=true")
    assert every[2] == dict(expected[2], state="removed")
    _, head = await get_json(server, f"/log/{B}/cam")
    assert head["tree_size"] == 6
    assert bytes.fromhex(head["root_hash"]) == rfc9162.MTH([leaf_of(e) for e in every])


@pytest_twisted.ensureDeferred
async def test_every_inclusion_and_consistency_proof_checks_out(server):
    expected = await fill(server, count=13)
    _, key = await get_json(server, "/log-key")
    raw = base64.b64decode(key["public_key"])
    assert key["algorithm"] == "ed25519" and key["key_id"] == hashlib.sha256(raw).hexdigest()
    _, head = await get_json(server, f"/log/{B}/cam")
    assert head["bucket"] == B and head["entry"] == "cam" and head["key_id"] == key["key_id"]
    assert verify_head(head, key)
    assert not verify_head(dict(head, tree_size=12), key)
    leaves = [leaf_of(e) for e in expected]
    root = bytes.fromhex(head["root_hash"])
    assert root == rfc9162.MTH(leaves)
    for size in (1, 7, 13):
        sub = rfc9162.MTH(leaves[:size])
        for n in range(1, size + 1):
            _, proof = await get_json(server, f"/log/{B}/cam?proof={n}&tree_size={size}")
            assert proof["leaf_index"] == n - 1 and proof["tree_size"] == size
            path = [bytes.fromhex(h) for h in proof["audit_path"]]
            assert rfc9162.verify_inclusion(rfc9162.leaf_hash(leaves[n - 1]), n - 1, size,
                                            path, sub)
    for first in range(1, 14):
        _, proof = await get_json(server, f"/log/{B}/cam?first={first}&second=13")
        path = [bytes.fromhex(h) for h in proof["consistency_path"]]
        assert rfc9162.verify_consistency(first, 13, rfc9162.MTH(leaves[:first]), root, path)
    for query, status in (("proof=14", 422), ("proof=3&tree_size=2", 422),
                          ("first=5&second=3", 422), ("first=2", 422), ("proof=0", 422)):
        await assert_error(await server.http.get(server.api(f"/log/{B}/cam?{query}")), status)
    await assert_error(await server.http.get(server.api(f"/log/{B}/nothing")), 404)


@pytest_twisted.ensureDeferred
async def test_consistency_across_a_restart(tmp_path):
    async with running_server(tmp_path / "data") as server:
        await fill(server, count=5)
        _, before = await get_json(server, f"/log/{B}/cam")
        _, key = await get_json(server, "/log-key")
    async with running_server(tmp_path / "data") as server:
        _, again = await get_json(server, "/log-key")
        assert again == key  # the key file was kept
        for i in range(5, 9):
            await write(server, "cam", 5000 + i, b"more-%d" % i)
        _, after = await get_json(server, f"/log/{B}/cam")
        items = await all_items(server, "cam")
    assert after["tree_size"] == 9 and verify_head(after, key)
    leaves = [leaf_of(e) for e in items]
    assert bytes.fromhex(before["root_hash"]) == rfc9162.MTH(leaves[:5])
    async with running_server(tmp_path / "data") as server:
        _, proof = await get_json(server, f"/log/{B}/cam?first=5&second=9")
    path = [bytes.fromhex(h) for h in proof["consistency_path"]]
    assert rfc9162.verify_consistency(5, 9, bytes.fromhex(before["root_hash"]),
                                      bytes.fromhex(after["root_hash"]), path)


@pytest_twisted.ensureDeferred
async def test_without_the_log_the_listing_still_answers(tmp_path):
    async with running_server(tmp_path / "data", integrity="digest") as server:
        expected = await fill(server, count=3)
        assert await all_items(server, "cam") == expected
        await assert_error(await server.http.get(server.api(f"/log/{B}/cam")), 404)
        await assert_error(await server.http.get(server.api("/log-key")), 404)


async def run_verify(server, *args):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    out, err, code = await getProcessOutputAndValue(
        sys.executable, ["-m", "reduct_twisted.verifier.cli", "verify", server.url, B, *args,
                         "--quiet"], env=env, reactor=reactor)
    return code, out.decode() + err.decode()


@pytest_twisted.ensureDeferred
async def test_verify_passes_then_finds_a_flipped_byte(tmp_path):
    async with running_server(tmp_path / "data") as server:
        await fill(server, count=8)
        state = str(tmp_path / "state.json")
        code, text = await run_verify(server, "cam", "--state", state)
        assert code == 0, text
        # flip one byte of a stored record's content in its block file
        entry_dir = tmp_path / "data" / B / "cam"
        block = next(p for p in sorted(entry_dir.iterdir()) if p.suffix == ".blk")
        data = bytearray(block.read_bytes())
        where = data.find(b"frame-3")
        assert where >= 0
        data[where] ^= 0x01
        block.write_bytes(bytes(data))
        code, text = await run_verify(server, "cam", "--state", state)
    assert code == 1, text
    assert "cam" in text and "4" in text  # record number 4 holds frame-3

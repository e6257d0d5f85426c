"""
``reduct-twisted verify`` end to end against a local fixture server
(tests/unit/verifier_fixture.py) whose log is built with the test-side RFC
9162 reference: exit 0 when everything holds, 1 with the failing entry,
number, timestamp and check when one thing is tampered with, 2 for usage
and connection errors.
"""

import base64
import hashlib
import io
import json
import os

import pytest

from reduct_twisted.verifier.cli import main
from tests.unit.verifier_fixture import FakeLogServer


class Ticks:
    """A fake monotonic clock: one second per call."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        self.now += 1.0
        return self.now


def verify(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = main(["verify", *argv], stdout=out, stderr=err, clock=Ticks())
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def fake(no_rs_environ):
    server = FakeLogServer().start()
    server.add("bkt", "sensor", 9)
    server.add("bkt", "cams/front", 4)
    yield server
    server.stop()


def listing_requests(fake):
    return [t for _, t, _ in fake.requests if "/api/v1/records/" in t]


def test_all_good_exit_0(fake):
    fake.entries[("bkt", "sensor")][4].state = "removed"
    code, out, err = verify(fake.url, "bkt")
    assert code == 0, out + err
    assert "3 entries (1 without a log), 13 records: all checks hold" in out
    assert "  skipped  bkt/cams: no log, and the bucket lists it without records" in out
    assert "OK  bkt/cams/front: head 4 leaves" in out
    assert "1 removed (inclusion only)" in out
    assert "8 contents checked, 9 inclusion proofs" in out
    targets = [t for _, t, _ in fake.requests]
    # the removed record was proven but not downloaded; the nested entry was addressed as a path
    assert sum("/api/v1/b/bkt/sensor?ts=" in t for t in targets) == 8
    assert sum("/api/v1/b/bkt/cams/front?ts=" in t for t in targets) == 4
    assert sum("proof=" in t for t in targets) == 13
    assert all("include_removed=true" in t for t in listing_requests(fake))
    assert "start=1&" in listing_requests(fake)[0]


def test_contents_are_streamed_not_held(no_rs_environ):
    """A 48 MiB record is hashed as it arrives: the verifier's memory peak stays near its read size."""
    import tracemalloc

    server = FakeLogServer().start()
    try:
        records = server.add("b", "big", 2)
        big = records[1]
        big.content = os.urandom(48 << 20)
        big.digest = hashlib.sha256(big.content).digest()
        tracemalloc.start()
        try:
            code, out, _ = verify(server.url, "b", "--quiet")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert code == 0, out
        assert peak < 4 << 20, peak
        server.flip_content.add(("b", "big", 2))
        code, out, _ = verify(server.url, "b", "--quiet")
        assert code == 1 and "FAILED b/big #2" in out
    finally:
        server.stop()


def test_a_listed_entry_that_had_a_log_must_keep_it(fake, tmp_path):
    """The parent pseudo-entry is skipped only while no head was ever saved for it."""
    state = tmp_path / "s.json"
    assert verify(fake.url, "bkt", "--state", str(state), "--quiet")[0] == 0
    saved = json.loads(state.read_text())
    saved["entries"]["bkt"]["cams"] = saved["entries"]["bkt"]["sensor"]
    state.write_text(json.dumps(saved))
    code, out, _ = verify(fake.url, "bkt", "--state", str(state), "--quiet")
    assert code == 1
    assert "FAILED bkt/cams [head] the server has no log for this entry" in out
    # Asked for by name, an entry without a log is a failure too.
    code, out, _ = verify(fake.url, "bkt", "cams", "--quiet")
    assert code == 1


def test_one_entry_only(fake):
    code, out, _ = verify(fake.url, "bkt", "cams/front", "--quiet")
    assert code == 0
    assert "1 entries, 4 records: all checks hold" in out
    assert not any("/sensor" in t for _, t, _ in fake.requests)


def test_flipped_content_byte_is_reported_with_entry_number_and_timestamp(fake):
    fake.flip_content.add(("bkt", "sensor", 3))
    ts = fake.entries[("bkt", "sensor")][2].timestamp
    code, out, _ = verify(fake.url, "bkt", "--quiet")
    assert code == 1
    failed = [line for line in out.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1, out
    assert failed[0].startswith(f"FAILED bkt/sensor #3 ts={ts} (2023-11-14T22:13:20.003000Z) [content] SHA-256")
    assert "1 check(s) FAILED" in out


def test_wrong_inclusion_path(fake):
    fake.bad_path.add(("bkt", "cams/front", 2))
    code, out, _ = verify(fake.url, "bkt", "--quiet")
    assert code == 1
    assert "FAILED bkt/cams/front #2 ts=" in out and "[inclusion]" in out


def test_bad_signature(fake):
    fake.bad_signature = True
    code, out, _ = verify(fake.url, "bkt", "sensor", "--quiet")
    assert code == 1
    assert "FAILED bkt/sensor [signature] the Ed25519 signature of the signed head does not verify" in out
    # nothing is trusted under a bad head: no record was fetched
    assert not any("ts=" in t or "proof=" in t for _, t, _ in fake.requests)


def test_a_record_removed_while_the_run_goes_on(fake):
    """Listed as stored, gone when read (removed or evicted meanwhile): checked by inclusion, no failure."""
    fake.vanish.add(("bkt", "sensor", 5))
    code, out, _ = verify(fake.url, "bkt", "sensor", "--quiet")
    assert code == 0, out
    assert "8 contents checked, 9 inclusion proofs, 1 removed (inclusion only)" in out
    assert any("number=5" in t for _, t, _ in fake.requests)


def test_a_stored_record_that_cannot_be_read(fake):
    """404 on the content while the listing still says stored: a failure."""
    fake.unreadable.add(("bkt", "sensor", 6))
    code, out, _ = verify(fake.url, "bkt", "sensor", "--quiet")
    assert code == 1
    assert "FAILED bkt/sensor #6 ts=" in out and "[content] a stored record cannot be read" in out


def test_missing_repr_digest_header(fake):
    fake.no_repr_digest = True
    code, out, _ = verify(fake.url, "bkt", "cams/front", "--quiet")
    assert code == 1
    assert out.count("[repr-digest]") == 4


def test_a_record_left_out_of_the_listing(fake):
    fake.hide.add(("bkt", "sensor", 4))
    code, out, _ = verify(fake.url, "bkt", "sensor", "--quiet")
    assert code == 1
    assert "FAILED bkt/sensor [listing] number 4 is in the log but not in the listing" in out


def test_pagination_follows_link_headers(fake):
    code, out, _ = verify(fake.url, "bkt", "sensor", "--per-page", "2", "--quiet")
    assert code == 0, out
    pages = listing_requests(fake)
    assert len(pages) == 5
    # every page after the first came from a next link (the fixture refuses guessed cursors)
    assert all(f"k={fake.cursor_secret}" in t for t in pages[1:])
    assert "9 records listed" in out


def test_records_newer_than_the_head_wait_for_the_next_run(fake):
    fake.head_size[("bkt", "sensor")] = 6
    code, out, _ = verify(fake.url, "bkt", "sensor", "--quiet")
    assert code == 0, out
    assert "3 newer than the head (next run)" in out
    assert "6 inclusion proofs" in out


def test_api_base_path(no_rs_environ):
    server = FakeLogServer(base="/store/").start()
    try:
        server.add("b", "e", 3)
        code, out, _ = verify(server.url.rstrip("/"), "b", "--quiet")
        assert code == 0, out
        assert all(t.startswith("/store/api/v1/") for _, t, _ in server.requests)
    finally:
        server.stop()


# -- the state file and history rewrites ------------------------------------------------


def test_state_saved_then_consistency_proven(fake, tmp_path):
    state = tmp_path / "state.json"
    code, out, _ = verify(fake.url, "bkt", "--state", str(state), "--quiet")
    assert code == 0
    saved = json.loads(state.read_text())
    assert saved["version"] == 1
    assert saved["entries"]["bkt"]["sensor"]["tree_size"] == 9
    assert saved["entries"]["bkt"]["cams/front"]["root_hash"] == fake.head("bkt", "cams/front")["root_hash"]
    fake.add("bkt", "sensor", 5, start_ts=1_800_000_000_000_000)
    code, out, _ = verify(fake.url, "bkt", "--state", str(state), "--quiet")
    assert code == 0, out
    assert "consistency: 9 -> 14 proven" in out
    assert "consistency: 4 -> 4 (unchanged)" in out
    assert any("first=9&second=14" in t for _, t, _ in fake.requests)
    assert json.loads(state.read_text())["entries"]["bkt"]["sensor"]["tree_size"] == 14
    assert [p for p in os.listdir(tmp_path)] == ["state.json"]


def _first_run(fake, tmp_path):
    state = tmp_path / "state.json"
    assert verify(fake.url, "bkt", "sensor", "--state", str(state), "--quiet")[0] == 0
    return state, state.read_bytes()


def test_fewer_leaves_than_saved_is_a_rewrite(fake, tmp_path):
    state, before = _first_run(fake, tmp_path)
    del fake.entries[("bkt", "sensor")][7:]
    code, out, _ = verify(fake.url, "bkt", "sensor", "--state", str(state), "--quiet")
    assert code == 1
    assert "[consistency] the log shrank from 9 to 7 leaves: history was rewritten" in out
    assert state.read_bytes() == before


def test_a_different_prefix_is_a_rewrite(fake, tmp_path):
    state, before = _first_run(fake, tmp_path)
    record = fake.entries[("bkt", "sensor")][1]
    record.labels = {"rewritten": "yes"}  # leaf 2 differs; every record still self-consistent
    fake.add("bkt", "sensor", 3)
    code, out, _ = verify(fake.url, "bkt", "sensor", "--state", str(state), "--quiet")
    assert code == 1
    assert "[consistency] the head of 12 leaves does not extend the saved head of 9" in out
    assert sum(line.startswith("FAILED") for line in out.splitlines()) == 1  # the rewritten log is internally sound: only the history check sees it
    assert state.read_bytes() == before


def test_same_size_other_root_is_a_rewrite(fake, tmp_path):
    state, before = _first_run(fake, tmp_path)
    fake.entries[("bkt", "sensor")][8].content_type = "image/jpeg"
    code, out, _ = verify(fake.url, "bkt", "sensor", "--state", str(state), "--quiet")
    assert code == 1
    assert "same size 9 as the saved head but another root" in out
    assert state.read_bytes() == before


def test_changed_log_key(fake, tmp_path):
    state, before = _first_run(fake, tmp_path)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    fake.key = Ed25519PrivateKey.generate()
    fake.public = fake.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    code, out, _ = verify(fake.url, "bkt", "sensor", "--state", str(state), "--quiet")
    assert code == 1
    assert "[key] the log key changed since the saved head" in out
    code, out, _ = verify(fake.url, "bkt", "sensor", "--state", str(state), "--quiet", "--accept-new-key")
    assert code == 0, out
    assert json.loads(state.read_text())["entries"]["bkt"]["sensor"]["key_id"] != json.loads(before)["entries"]["bkt"]["sensor"]["key_id"]


def test_pinned_public_key(fake):
    good = base64.b64encode(fake.public).decode()
    assert verify(fake.url, "bkt", "--public-key", good, "--quiet")[0] == 0
    other = base64.b64encode(bytes(32)).decode()
    code, out, _ = verify(fake.url, "bkt", "--public-key", other, "--quiet")
    assert code == 1
    assert "FAILED bkt [key] the server's log key" in out
    code, _, err = verify(fake.url, "bkt", "--public-key", "abc", "--quiet")
    assert code == 2 and "--public-key must be the base64 of 32 bytes" in err


def test_records_without_digest(fake, tmp_path):
    """A record logged with "digest": null: its leaf (with the null) and inclusion
    are checked, its content is not fetched; a failure unless --allow-undigested."""
    record = fake.entries[("bkt", "sensor")][2]
    record.listed_digest = False
    state = tmp_path / "s.json"
    code, out, _ = verify(fake.url, "bkt", "sensor", "--quiet", "--state", str(state))
    assert code == 1
    assert f"FAILED bkt/sensor #3 ts={record.timestamp}" in out and "[digest] no digest in the log" in out
    assert "8 contents checked, 9 inclusion proofs, 1 undigested (content not verified)" in out
    assert not state.exists()
    fake.requests.clear()
    code, out, _ = verify(fake.url, "bkt", "sensor", "--quiet", "--allow-undigested", "--state", str(state))
    assert code == 0, out
    assert "WARNING bkt/sensor #3" in out and "1 warning(s)" in out
    assert "9 inclusion proofs" in out
    assert state.exists()
    targets = [t for _, t, _ in fake.requests]
    assert f"ts={record.timestamp}" not in " ".join(targets) and any("proof=3&" in t for t in targets)


def test_a_digest_nulled_in_the_listing_is_caught(fake):
    """The log holds the record's digest, the listing says null: the leaf the
    verifier rebuilds (with the null) is not the logged one, --allow-undigested or not."""
    record = fake.entries[("bkt", "sensor")][2]
    item = record.item()
    record.item = lambda: dict(item, digest=None)
    code, out, _ = verify(fake.url, "bkt", "sensor", "--quiet", "--allow-undigested")
    assert code == 1
    assert "FAILED bkt/sensor #3" in out and "[inclusion] the record's leaf is not proven" in out


def test_a_log_the_server_cannot_read_fails_that_entry_only(fake):
    """409 on the head (a log of a newer format): that entry fails, the others are verified."""
    fake.status_for["/api/v1/log/bkt/sensor"] = 409
    code, out, _ = verify(fake.url, "bkt", "--quiet")
    assert code == 1
    assert "FAILED bkt/sensor [head] the server cannot read this entry's log (GET /api/v1/log/bkt/sensor: HTTP 409" in out
    assert "OK  bkt/cams/front: head 4 leaves" in out


def test_skipped_numbers_are_proven_not_fetched(fake):
    """A number no record holds ({"number", "state": "skipped"}): its gap leaf
    {"number": n, "skipped": true} is proven and hashed into the tree."""
    fake.add_gap("bkt", "cams/front")
    fake.add_gap("bkt", "cams/front")
    fake.add("bkt", "cams/front", 2)
    code, out, _ = verify(fake.url, "bkt", "cams/front", "--quiet")
    assert code == 0, out
    assert "8 records listed, 6 contents checked, 8 inclusion proofs, 2 skipped numbers (no record)" in out
    assert sum("/api/v1/b/bkt/cams/front?ts=" in t for _, t, _ in fake.requests) == 6


def test_a_record_listed_as_skipped_is_caught(fake):
    """The server cannot hide a record by listing its number as skipped: the gap leaf is not the logged one."""
    record = fake.entries[("bkt", "sensor")][4]
    record.item = lambda: {"number": 5, "state": "skipped"}
    code, out, _ = verify(fake.url, "bkt", "sensor", "--quiet")
    assert code == 1
    assert "FAILED bkt/sensor #5 [inclusion] the record's leaf is not proven" in out


def test_a_timestamp_beyond_2_53_is_a_string_in_the_leaf(fake):
    """Above 2**53 - 1 the leaf holds the timestamp as a decimal string; the
    listing's integer (or string) is used to fetch the content."""
    records = fake.add("bkt", "late", 3)
    records[0].timestamp = 2**53 - 1  # the last one written as a number
    records[1].timestamp = 2**53
    records[2].timestamp = 2**64 - 1
    item = records[2].item()
    records[2].item = lambda: dict(item, timestamp=str(2**64 - 1))
    assert b'"timestamp":"9007199254740992"' in records[1].leaf()
    assert b'"timestamp":9007199254740991' in records[0].leaf()
    code, out, _ = verify(fake.url, "bkt", "late", "--quiet")
    assert code == 0, out
    assert "3 contents checked, 3 inclusion proofs" in out
    targets = [t for _, t, _ in fake.requests]
    assert any(t.endswith(f"/api/v1/b/bkt/late?ts={2**64 - 1}") for t in targets)
    assert any(t.endswith(f"/api/v1/b/bkt/late?ts={2**53}") for t in targets)


def test_a_malformed_timestamp_is_a_listing_failure(fake):
    record = fake.entries[("bkt", "sensor")][1]
    item = record.item()
    for bad in ("12a", "-5", "007", 1.5, None, str(2**64)):
        record.item = lambda bad=bad: dict(item, timestamp=bad)
        code, out, _ = verify(fake.url, "bkt", "sensor", "--quiet")
        assert code == 1, bad
        assert "FAILED bkt/sensor #2 [listing] malformed listing item: timestamp is neither" in out, bad


def test_records_without_number_nor_digest(fake):
    """Stored before the server numbered records (contract 1: number None until the backfill)."""
    fake.entries[("bkt", "cams/front")].append(None)  # the fixture lists it last, as the backfill would
    code, out, _ = verify(fake.url, "bkt", "cams/front", "--quiet")
    assert code == 1
    assert "FAILED bkt/cams/front ts=1600000000000000" in out and "no number and no digest yet" in out
    assert "1 undigested (content not verified)" in out
    code, out, _ = verify(fake.url, "bkt", "cams/front", "--quiet", "--allow-undigested")
    assert code == 0, out


# -- auth and errors ------------------------------------------------------------------


def test_token_sent_as_bearer(no_rs_environ, monkeypatch):
    server = FakeLogServer(token="s3cret").start()
    try:
        server.add("b", "e", 2)
        code, _, err = verify(server.url, "b", "--quiet")
        assert code == 2
        assert "HTTP 401 Invalid token (no token given: --token or RS_API_TOKEN)" in err
        server.requests.clear()
        assert verify(server.url, "b", "--token", "s3cret", "--quiet")[0] == 0
        assert {h.get("Authorization") for _, _, h in server.requests} == {"Bearer s3cret"}
        monkeypatch.setenv("RS_API_TOKEN", "s3cret")
        assert verify(server.url, "b", "--quiet")[0] == 0
        code, _, err = verify(server.url, "b", "--token", "wrong", "--quiet")
        assert code == 2 and "(is the token right?)" in err
    finally:
        server.stop()


def test_connection_errors_exit_2(fake):
    port = fake._server.server_address[1]
    fake.stop()
    code, out, err = verify(f"http://127.0.0.1:{port}/", "bkt")
    assert code == 2
    assert err.startswith("reduct-twisted verify: error: cannot get the server's log key: cannot reach 127.0.0.1:")
    assert out == ""


def test_unknown_bucket_and_usage_errors(fake):
    code, _, err = verify(fake.url, "nope", "--quiet")
    assert code == 2 and "no bucket 'nope' on the server" in err
    assert verify(fake.url)[0] == 2
    code, _, err = verify(fake.url, "bkt", "--per-page", "0")
    assert code == 2 and "--per-page must be between 1 and 1000" in err
    assert main(["frobnicate"], stdout=io.StringIO(), stderr=io.StringIO()) == 2
    assert verify("ftp://x/", "bkt")[0] == 2


def test_progress_lines_when_not_a_terminal(fake):
    code, _, err = verify(fake.url, "bkt", "sensor")
    assert code == 0
    lines = err.splitlines()
    assert lines[-1].startswith("bkt/sensor: 9/9 records (100%)")
    code, _, err = verify(fake.url, "bkt")
    assert list(dict.fromkeys(line.split(":")[0] for line in err.splitlines())) == ["[2/3] bkt/cams/front", "[3/3] bkt/sensor"]
    assert "rec/s" in lines[-1]
    assert all("\r" not in line for line in lines)
    assert verify(fake.url, "bkt", "sensor", "--quiet")[2] == ""


def test_console_script_is_declared():
    """
    setup.cfg installs ``reduct-twisted`` as the admin CLI's main, where ``verify``
    is one subcommand (issue #18); ``python -m reduct_twisted verify`` is the same.
    """
    import configparser
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    cfg = configparser.ConfigParser()
    cfg.read(REPO_ROOT / "setup.cfg")
    scripts = [s.strip() for s in cfg["options.entry_points"]["console_scripts"].splitlines() if s.strip()]
    assert scripts == ["reduct-twisted = reduct_twisted.admin.cli:main"]
    out = subprocess.run(
        [sys.executable, "-m", "reduct_twisted", "verify", "--help"],
        capture_output=True, text=True, check=False, cwd=REPO_ROOT, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
    )
    assert out.returncode == 0
    assert "usage: reduct-twisted verify" in out.stdout and "--state FILE" in out.stdout


# -- server and transport errors: one line, exit 2 ----------------------------------------


@pytest.mark.parametrize(
    ("part", "status", "message"),
    [
        ("proof=", 500, "HTTP 500 Injected 500"),
        ("/api/v1/records/", 503, "HTTP 503 Injected 503"),
        ("/api/v1/log-key", 403, "HTTP 403 Injected 403 (no token given"),
        ("/api/v1/records/", 404, "HTTP 404 Injected 404"),
    ],
)
def test_server_errors_are_one_line(fake, part, status, message):
    fake.status_for[part] = status
    code, _, err = verify(fake.url, "bkt", "--quiet")
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("reduct-twisted verify: error: ")
    assert message in err


def test_not_json(fake):
    fake.garbage_for.add("first=")
    fake.garbage_for.add("/api/v1/log/bkt/sensor")
    code, _, err = verify(fake.url, "bkt", "sensor", "--quiet")
    assert code == 2
    assert err == "reduct-twisted verify: error: GET /api/v1/log/bkt/sensor: the answer is not JSON\n"


def test_timeout(fake):
    fake.stall_for.add("/api/v1/log/bkt/sensor")
    code, _, err = verify(fake.url, "bkt", "sensor", "--timeout", "0.2", "--quiet")
    assert code == 2
    assert err == f"reduct-twisted verify: error: 127.0.0.1:{fake._server.server_address[1]} did not answer within 0.2 s\n"


def test_an_error_midway_keeps_what_was_verified(fake):
    fake.status_for["/api/v1/log/bkt/sensor"] = 500
    code, out, err = verify(fake.url, "bkt", "--quiet")
    assert code == 2
    assert "OK  bkt/cams/front" in out and "2 entries (1 without a log), 4 records: all checks hold" in out
    assert "HTTP 500" in err


def test_tls(no_rs_environ, certificate):
    server = FakeLogServer()
    server.add("b", "e", 2)
    server.start(tls=certificate)
    try:
        code, _, err = verify(server.url, "b", "--quiet")
        assert code == 2 and "TLS with localhost" in err and "CERTIFICATE_VERIFY_FAILED" in err
        assert verify(server.url, "b", "--quiet", "--insecure")[0] == 0
        assert verify(server.url, "b", "--quiet", "--cacert", str(certificate[0]))[0] == 0
    finally:
        server.stop()

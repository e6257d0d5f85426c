"""RFC 9530 digest fields and the per-record batch digests (``wire/digest.py``)."""

import base64
import hashlib

import pytest

from reduct_twisted.wire.digest import (
    batch_digests,
    format_digest,
    parse_dictionary,
    parse_digest,
    request_digest,
)

D = hashlib.sha256(b"abc").digest()
B64 = base64.b64encode(D).decode()


def test_format_and_parse_round_trip():
    assert format_digest(D) == f"sha-256=:{B64}:".encode()
    assert parse_digest(format_digest(D)) == D


@pytest.mark.parametrize("value", [
    f"sha-256=:{B64}:",
    f"sha-512=:AAAA:, sha-256=:{B64}:",
    f"  sha-256=:{B64}:;foo=1, md5=:AAAA: ",
    f'unixsum=1, x=(a "b" ?1);q=2, sha-256=:{B64}:, y="s,t", z=?0, w=-1.5, v=tok/en',
])
def test_sha256_member_among_others(value):
    assert parse_digest(value) == D


def test_no_sha256_member():
    assert parse_digest("sha-512=:AAAA:") is None
    assert parse_digest("") is None


@pytest.mark.parametrize("value", [
    "sha-256=:AAAA:",  # not 32 bytes
    "sha-256=abc",  # a token, not a byte sequence
    "sha-256=:not base64!:",
    "Sha-256=:AAAA:",  # keys are lowercase
    "sha-256=:" + B64,  # unterminated
    "a=1,",
    "a=1 b=2",
    "=1",
    'a="open',
    "a=(1 2",
    "sha-256=:€:",
])
def test_malformed(value):
    with pytest.raises(ValueError):
        parse_digest(value)


def test_dictionary_values():
    assert parse_dictionary('a=1, b, c="x", d=?1, e=:AAAA:') == {
        "a": "1", "b": True, "c": "x", "d": True, "e": b"\0\0\0"}


def test_request_digest_reads_both_fields():
    assert request_digest([(b"Content-Digest", [f"sha-256=:{B64}:".encode()])]) == D
    assert request_digest([(b"repr-digest", [b"md5=:AAAA:", f"sha-256=:{B64}:".encode()])]) == D
    assert request_digest([(b"x-other", [b"1"])]) is None
    other = format_digest(hashlib.sha256(b"x").digest())
    with pytest.raises(ValueError):
        request_digest([(b"content-digest", [format_digest(D)]), (b"repr-digest", [other])])


def test_batch_digests_v1_and_v2():
    raw = [(b"X-Reduct-Digest-10", [format_digest(D)]), (b"x-reduct-time-10", [b"3,"]),
           (b"x-reduct-digest-11", [b"md5=:AAAA:"])]
    assert batch_digests(raw) == {10: D}
    assert batch_digests([(b"x-reduct-digest-0-5", [format_digest(D)])], v2=True) == {(0, 5): D}
    for name, v2 in ((b"x-reduct-digest-0-5", False), (b"x-reduct-digest-5", True),
                     (b"x-reduct-digest-x", False)):
        with pytest.raises(ValueError):
            batch_digests([(name, [format_digest(D)])], v2=v2)
    with pytest.raises(ValueError):
        batch_digests([(b"x-reduct-digest-1", [b"sha-256=bad"])])

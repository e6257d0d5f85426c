"""
Query links without sockets: the codec (round trip, tampering, binding,
malformed input), the signing key file (mode, versioned format, crash
leftovers, refusal of a foreign file), ``make_links`` (key and public URL
from the configuration), ``Range`` parsing and ``ContentReader.narrow``.
"""

import os
import stat
import zlib

import pytest

from reduct_twisted.config import Config
from reduct_twisted.errors import ReductError, UnprocessableEntity
from reduct_twisted.http.links import byte_range
from reduct_twisted.links import KEY_FILE, LinkCodec, LinkQuery, load_or_create_key
from reduct_twisted.links.codec import b64url, unb64url
from reduct_twisted.links.key import KEY_TMP_FILE, LinkKeyError
from reduct_twisted.storage.content import ContentReader
from reduct_twisted.storage.disk import layout
from reduct_twisted.wiring import make_links

KEY = bytes(range(32))
BINDING = b"salt+hash of token t"


def a_link(**changes) -> LinkQuery:
    fields = dict(bucket="b", entry="e", query={"query_type": "QUERY", "when": {"&x": 1}},
                  expire_at=1_900_000_000, record_entry="e/f", record_timestamp=5)
    fields.update(changes)
    return LinkQuery(**fields)


def counter_random():
    state = [0]

    def random(n):
        state[0] += 1
        return bytes([state[0]]) * n

    return random


def test_round_trip_identity_and_index():
    codec = LinkCodec(KEY)
    for link in (a_link(), a_link(record_entry=None, record_timestamp=None, index=7),
                 a_link(entry="ünï/cödé", query={"query_type": "QUERY", "entries": ["a*"]})):
        params = codec.encode(link, "t", BINDING)
        assert list(params) == ["ct", "s", "i", "n"]
        assert params["i"] == "t"
        assert codec.decode(params["ct"], params["s"], "t", params["n"], BINDING) == link


def test_nonce_makes_links_differ():
    codec = LinkCodec(KEY, counter_random())
    first, second = codec.encode(a_link(), "t", BINDING), codec.encode(a_link(), "t", BINDING)
    assert first["ct"] == second["ct"]
    assert first["n"] != second["n"] and first["s"] != second["s"]


def _refused(codec, params, binding=BINDING, **changes):
    given = dict(params, **changes)
    with pytest.raises(UnprocessableEntity) as info:
        codec.decode(given["ct"], given["s"], given["i"], given["n"], binding)
    return info.value.message


def test_every_change_is_refused():
    """Another key, binding, token name, nonce, signature or payload: refused."""
    codec = LinkCodec(KEY)
    params = codec.encode(a_link(), "t", BINDING)
    mismatch = ("Failed to decrypt query: the link's signature does not match (wrong key, or "
                "the issuing token was rotated or re-created)")
    assert _refused(LinkCodec(bytes(32)), params) == mismatch
    assert _refused(codec, params, binding=BINDING + b"x") == mismatch
    assert _refused(codec, params, i="u") == mismatch
    assert _refused(codec, params, n=b64url(b"\0" * 16)) == mismatch
    assert _refused(codec, params, s=b64url(b"\0" * 32)) == mismatch
    forged = b64url(zlib.compress(b'{"v":1,"b":"other","e":"e","q":{},"x":9,"r":0}'))
    assert _refused(codec, params, ct=forged) == mismatch


def test_malformed_parameters():
    codec = LinkCodec(KEY)
    params = codec.encode(a_link(), "t", BINDING)
    assert _refused(codec, params, ct="ab+c") == (
        "Invalid base64 in 'ct' parameter: Invalid symbol 43, offset 2.")
    assert _refused(codec, params, ct="abcde") == (
        "Invalid base64 in 'ct' parameter: Invalid input length.")
    assert _refused(codec, params, s="a=") == (
        "Failed to decrypt query: Invalid symbol 61, offset 1.")


def test_signed_but_unusable_payload_is_refused():
    """A payload of another version or shape, even correctly signed, is refused."""
    codec = LinkCodec(KEY)
    for payload in (b'{"v":2}', b"[]", b'{"v":1,"b":"b"}', b"not json",
                    b'{"v":1,"b":"b","e":"e","q":{},"x":"soon","r":0}',
                    b'{"v":1,"b":"b","e":"e","q":{},"x":1,"r":"0"}'):
        ct = b64url(zlib.compress(payload))
        s = b64url(codec._sign(ct, "t", "nn", BINDING))
        with pytest.raises(UnprocessableEntity) as info:
            codec.decode(ct, s, "t", "nn", BINDING)
        assert info.value.message.startswith("Failed to decrypt query: ")


def test_inflating_is_bounded():
    codec = LinkCodec(KEY)
    ct = b64url(zlib.compress(b" " * (2 << 20)))
    s = b64url(codec._sign(ct, "t", "nn", BINDING))
    with pytest.raises(UnprocessableEntity) as info:
        codec.decode(ct, s, "t", "nn", BINDING)
    assert info.value.message == "Failed to decrypt query: payload too large or truncated"


def test_short_key_refused():
    with pytest.raises(ValueError):
        LinkCodec(b"x" * 31)


def test_base64url_helpers():
    for data in (b"", b"a", b"ab", b"abc", bytes(range(256))):
        assert unb64url(b64url(data)) == data
        assert "=" not in b64url(data)


# -- the key file ------------------------------------------------------------------------------


def test_key_file_created_once_with_mode_0600(tmp_path):
    key = load_or_create_key(str(tmp_path), lambda n: b"\x07" * n)
    path = tmp_path / KEY_FILE
    assert key == b"\x07" * 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == b"reduct-twisted link key 1\n" + b"07" * 32 + b"\n"
    assert load_or_create_key(str(tmp_path), lambda n: b"\x09" * n) == key
    assert not (tmp_path / KEY_TMP_FILE).exists()


def test_key_file_leftover_tmp_is_replaced(tmp_path):
    """A crash before the rename leaves only the tmp file: a new key is made over it."""
    tmp = tmp_path / KEY_TMP_FILE
    tmp.write_bytes(b"reduct-twisted link key 1\n0")
    os.chmod(tmp, 0o644)
    key = load_or_create_key(str(tmp_path), lambda n: b"\x01" * n)
    assert key == b"\x01" * 32
    assert not tmp.exists()
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600


@pytest.mark.parametrize("content", [
    b"", b"reduct-twisted link key 1\n" + b"07" * 31 + b"\n",
    b"reduct-twisted link key 2\n" + b"07" * 32 + b"\n",
    b"reduct-twisted link key 1\n" + b"zz" * 32 + b"\n", b"some other file\n",
])
def test_foreign_key_file_refused_and_kept(tmp_path, content):
    path = tmp_path / KEY_FILE
    path.write_bytes(content)
    with pytest.raises(LinkKeyError) as info:
        load_or_create_key(str(tmp_path))
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert path.read_bytes() == content


def test_key_names_are_ours():
    """The data-directory layout knows both names (never taken for foreign files)."""
    assert layout.is_top_level_name(KEY_FILE)
    assert layout.is_top_level_name(KEY_TMP_FILE)


# -- make_links ---------------------------------------------------------------------------------


@pytest.mark.parametrize("settings, url", [
    ({}, "http://0.0.0.0:8383/"),
    ({"host": "127.0.0.1", "port": 80}, "http://127.0.0.1/"),
    ({"host": "::1", "port": 443}, "http://[::1]:443/"),
    ({"host": "db", "port": 8383, "api_base_path": "/reduct/"}, "http://db:8383/reduct/"),
    ({"public_url": "https://x.example/p"}, "https://x.example/p/"),
    ({"public_url": "https://x.example/"}, "https://x.example/"),
])
def test_public_url(tmp_path, settings, url):
    links = make_links(Config(data_path=str(tmp_path), **settings))
    assert links.public_url == url


def test_public_url_https_default_port(tmp_path):
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    links = make_links(Config(data_path=str(tmp_path), cert_path=str(cert),
                              cert_key_path=str(cert), host="h", port=443))
    assert links.public_url == "https://h/"


def test_configured_key(tmp_path):
    secret = "k" * 32
    links = make_links(Config(data_path=str(tmp_path), link_signing_key=secret))
    assert not (tmp_path / KEY_FILE).exists()
    params = links.codec.encode(a_link(), "t", BINDING)
    same = LinkCodec(secret.encode())
    assert same.decode(params["ct"], params["s"], "t", params["n"], BINDING) == a_link()
    with pytest.raises(ValueError) as info:
        make_links(Config(data_path=str(tmp_path), link_signing_key="short-secret"))
    assert "short-secret" not in str(info.value)


def test_file_key_used_without_configuration(tmp_path):
    links = make_links(Config(data_path=str(tmp_path)))
    params = links.codec.encode(a_link(), "t", BINDING)
    again = make_links(Config(data_path=str(tmp_path)))
    assert again.codec.decode(params["ct"], params["s"], "t", params["n"], BINDING) == a_link()


# -- Range ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("header, size, span", [
    (None, 10, None),
    (b"bytes=0-0", 10, (0, 0)),
    (b"bytes=2-5", 10, (2, 5)),
    (b"bytes=2-", 10, (2, 9)),
    (b"bytes=-3", 10, (7, 9)),
    (b"bytes=-30", 10, (0, 9)),
    (b"bytes=5-100", 10, (5, 9)),
    (b"BYTES = 1-2", 10, (1, 2)),
    (b"bytes=20-30, 1-2", 10, (1, 2)),
    (b"bytes=1-2,4-5", 10, (1, 2)),
    (b"bytes= 3-4 ", 10, (3, 4)),
    (b"items=1-2", 10, None),
    (b"bytes=", 10, None),
    (b"bytes=5-2", 10, None),
    (b"bytes=a-2", 10, None),
    (b"bytes=-", 10, None),
    (b"bytes=1", 10, None),
    (b"bytes=1-2,x", 10, None),
])
def test_byte_range(header, size, span):
    assert byte_range(header, size) == span


@pytest.mark.parametrize("header, size", [
    (b"bytes=10-", 10), (b"bytes=10-20", 10), (b"bytes=-0", 10), (b"bytes=0-", 0),
    (b"bytes=-5", 0), (b"bytes=11-12, 10-", 10),
])
def test_byte_range_unsatisfiable(header, size):
    with pytest.raises(ReductError) as info:
        byte_range(header, size)
    assert info.value.status == 416
    assert info.value.message == "Requested range not satisfiable"


# -- ContentReader.narrow -------------------------------------------------------------------------


def test_narrow_over_several_ranges():
    reader = ContentReader()
    a, b = object(), object()
    reader.ranges = [(a, 100, 10), (b, 0, 5), (a, 500, 20)]
    reader.size = 35
    reader.narrow(8, 10)
    assert reader.ranges == [(a, 108, 2), (b, 0, 5), (a, 500, 3)]
    assert reader.size == 10
    reader.narrow(2, 0)
    assert reader.ranges == [] and reader.size == 0
    with pytest.raises(ValueError):
        reader.narrow(0, 1)

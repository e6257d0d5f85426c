"""
The tree-head signing key (``reduct_twisted/integrity/signing.py``) and
the key-file helper it shares with the links' key (``reduct_twisted/keyfile.py``).
"""

import base64
import hashlib
import json
import os
import stat

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from reduct_twisted import keyfile
from reduct_twisted.integrity import signing
from reduct_twisted.integrity.signing import KEY_FILE, KEY_TMP_FILE, LogKey, LogKeyError, verify_head
from reduct_twisted.storage.disk import layout

# RFC 8032 §7.1, TEST 1.
RFC8032_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC8032_EMPTY_SIGNATURE = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46b"
    "d25bf5f0595bbe24655141438e7a100b")
HEADER = b"reduct-twisted log key 1\n"


def test_created_in_the_data_directory(tmp_path):
    key = LogKey.load_or_create(str(tmp_path), random=lambda n: RFC8032_SECRET[:n])
    path = tmp_path / KEY_FILE
    assert path.read_bytes() == HEADER + RFC8032_SECRET.hex().encode() + b"\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not (tmp_path / KEY_TMP_FILE).exists()
    assert key.public_bytes == RFC8032_PUBLIC
    again = LogKey.load_or_create(str(tmp_path), random=lambda n: b"\x01" * n)
    assert again.public_bytes == RFC8032_PUBLIC
    assert path.read_bytes() == HEADER + RFC8032_SECRET.hex().encode() + b"\n"


def test_random_keys_differ(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = LogKey.load_or_create(str(tmp_path / "a"))
    b = LogKey.load_or_create(str(tmp_path / "b"))
    assert a.public_bytes != b.public_bytes and len(a.public_bytes) == 32


def test_leftover_tmp_replaced(tmp_path):
    """A crash before the rename left a torn tmp (maybe of another mode): a key is made over it."""
    tmp = tmp_path / KEY_TMP_FILE
    tmp.write_bytes(HEADER + b"0a")
    tmp.chmod(0o644)
    key = LogKey.load_or_create(str(tmp_path), random=lambda n: RFC8032_SECRET[:n])
    assert key.public_bytes == RFC8032_PUBLIC and not tmp.exists()
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600


BAD_FILES = [
    b"", HEADER, HEADER + b"07" * 31 + b"\n", HEADER + b"07" * 32, HEADER + b"07" * 33 + b"\n",
    b"reduct-twisted log key 2\n" + b"07" * 32 + b"\n", HEADER + b"zz" * 32 + b"\n",
    b"reduct-twisted link key 1\n" + b"07" * 32 + b"\n", b"-----BEGIN PRIVATE KEY-----\n",
]


@pytest.mark.parametrize("content", BAD_FILES)
def test_malformed_file_refused_and_left_alone(tmp_path, content):
    path = tmp_path / KEY_FILE
    path.write_bytes(content)
    with pytest.raises(LogKeyError) as info:
        LogKey.load_or_create(str(tmp_path))
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert path.read_bytes() == content
    assert not (tmp_path / KEY_TMP_FILE).exists()


def test_configured_path_read_never_created(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    configured = tmp_path / "keys" / "log.key"
    with pytest.raises(LogKeyError) as info:
        LogKey.load_or_create(str(data), str(configured))
    assert str(configured) in str(info.value) and "\n" not in str(info.value)
    assert not configured.exists() and not (tmp_path / "keys").exists()
    assert os.listdir(data) == []
    configured.parent.mkdir()
    configured.write_bytes(HEADER + RFC8032_SECRET.hex().encode() + b"\n")
    configured.chmod(0o640)
    key = LogKey.load_or_create(str(data), str(configured))
    assert key.public_bytes == RFC8032_PUBLIC
    assert os.listdir(data) == []  # the data directory's key is not made
    assert stat.S_IMODE(configured.stat().st_mode) == 0o640  # not changed


@pytest.mark.parametrize("content", BAD_FILES)
def test_configured_malformed_refused(tmp_path, content):
    configured = tmp_path / "log.key"
    configured.write_bytes(content)
    with pytest.raises(LogKeyError) as info:
        LogKey.load_or_create(str(tmp_path), str(configured))
    assert str(configured) in str(info.value) and "\n" not in str(info.value)
    assert configured.read_bytes() == content and not (tmp_path / KEY_FILE).exists()


def test_configured_unreadable(tmp_path):
    with pytest.raises(LogKeyError, match="cannot be read"):
        LogKey.load_or_create(str(tmp_path), str(tmp_path))  # a directory


def test_describe():
    key = LogKey(RFC8032_SECRET)
    assert key.describe() == {
        "algorithm": "ed25519",
        "public_key": base64.b64encode(RFC8032_PUBLIC).decode(),
        "key_id": hashlib.sha256(RFC8032_PUBLIC).hexdigest(),
    }
    # the RFC 8032 vector: the same key signs as the RFC says
    assert key._private.sign(b"") == RFC8032_EMPTY_SIGNATURE


def test_signed_head_checked_independently():
    """The head's signature verifies, with the public key alone, over the JCS bytes written out here."""
    key = LogKey(RFC8032_SECRET)
    root = hashlib.sha256(b"root").digest()
    head = key.sign_head("bucket-1", "a/b", 12, root, 1_700_000_000_000_123)
    key_id = hashlib.sha256(RFC8032_PUBLIC).hexdigest()
    assert set(head) == {"bucket", "entry", "tree_size", "root_hash", "timestamp", "key_id", "signature"}
    assert head["root_hash"] == root.hex() and head["key_id"] == key_id
    signed = ('{"bucket":"bucket-1","entry":"a/b","key_id":"%s","root_hash":"%s",'
              '"timestamp":1700000000000123,"tree_size":12}' % (key_id, root.hex())).encode()
    Ed25519PublicKey.from_public_bytes(RFC8032_PUBLIC).verify(base64.b64decode(head["signature"]), signed)
    assert verify_head(head, RFC8032_PUBLIC)
    assert verify_head(json.loads(json.dumps(head)), RFC8032_PUBLIC)


@pytest.mark.parametrize("change", [
    {"bucket": "other"}, {"entry": "a/c"}, {"tree_size": 13}, {"timestamp": 1},
    {"root_hash": "11" * 32}, {"key_id": "00" * 32}, {"signature": "AAAA"}, {"signature": "not base64!"},
    {"signature": 5}, {"extra": 1}, {"tree_size": 12.5}, {"timestamp": 2 ** 60},
])
def test_changed_head_fails(change):
    key = LogKey(RFC8032_SECRET)
    head = key.sign_head("b", "e", 12, bytes(32), 5)
    assert verify_head(head, RFC8032_PUBLIC)
    bad = dict(head, **change)
    assert not verify_head(bad, RFC8032_PUBLIC)


def test_other_key_or_shape_fails():
    head = LogKey(RFC8032_SECRET).sign_head("b", "e", 0, hashlib.sha256(b"").digest(), 5)
    other = LogKey(b"\x05" * 32)
    assert not verify_head(head, other.public_bytes)
    assert not verify_head(dict(head, key_id=other.key_id), other.public_bytes)
    assert not verify_head({k: v for k, v in head.items() if k != "signature"}, RFC8032_PUBLIC)
    assert not verify_head([head], RFC8032_PUBLIC)
    assert not verify_head(head, b"short")


@pytest.mark.parametrize("args", [
    ("b", "e", 1, bytes(31), 1), ("b", "e", -1, bytes(32), 1), ("b", "e", 1, bytes(32), True),
    (None, "e", 1, bytes(32), 1), ("b", "e", 1, "00" * 32, 1),
])
def test_sign_head_refuses(args):
    with pytest.raises(ValueError):
        LogKey(RFC8032_SECRET).sign_head(*args)


def test_names_are_ours():
    """The data-directory layout knows both names (never taken for foreign files)."""
    assert (layout.LOG_KEY_FILE, layout.LOG_KEY_TMP_FILE) == (KEY_FILE, KEY_TMP_FILE)
    assert layout.is_top_level_name(KEY_FILE) and layout.is_top_level_name(KEY_TMP_FILE)


def test_keyfile_helper(tmp_path):
    """The shared helper: exact format only; create writes mode 0600 via the tmp name."""
    path, tmp = str(tmp_path / "k"), str(tmp_path / "k.tmp")
    assert keyfile.read(path) is None
    keyfile.create(path, tmp, b"h 1\n", b"\xab" * 4)
    assert keyfile.read(path) == b"h 1\nabababab\n" and not os.path.exists(tmp)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert keyfile.parse(b"h 1\nabababab\n", b"h 1\n", 4) == b"\xab" * 4
    for bad in (b"h 1\nababab\n", b"h 2\nabababab\n", b"h 1\nabababab", b"h 1\nabababzz\n"):
        assert keyfile.parse(bad, b"h 1\n", 4) is None


def test_links_key_uses_the_helper():
    """One copy of the key-file code: the links' key goes through keyfile too."""
    import inspect

    from reduct_twisted.links import key as links_key
    text = inspect.getsource(links_key)
    assert "keyfile.create(" in text and "os.fsync" not in text
    assert "os.fsync" not in inspect.getsource(signing)

"""Tests for ``reduct_twisted.auth.tokens``: the token store, its file and its writer (``reduct_twisted.persist``)."""

import hashlib
import hmac
import json
import os
import re
import stat

import pytest
from twisted.internet.defer import Deferred, fail

from reduct_twisted.auth.model import Permissions, StoredToken, iso_timestamp
from reduct_twisted.auth.tokens import AUTH_FILE, TokenStore, TokenStoreError
from reduct_twisted.errors import Conflict, InsufficientStorage, NotFound, UnprocessableEntity
from reduct_twisted.persist import SnapshotWriter, write_atomically
from tests.unit.conftest import error_message

NAME_ERROR = "Token name can contain only letters, digests and [-,_] symbols"


@pytest.fixture
def data_dir(tmp_path):
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def auth_path(data_dir):
    return str(data_dir / AUTH_FILE)


@pytest.fixture
def store(auth_path, clock):
    clock.advance(1_700_000_000.25)
    return TokenStore(auth_path, clock)


def all_file_bytes(root):
    """Every file below ``root``, name and contents."""
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                yield path, f.read()


class FakeThreads:
    """A ``run_in_thread`` whose calls finish only when the test says so."""

    def __init__(self):
        self.calls = []
        self.most_at_once = 0

    def __call__(self, f, *args):
        d = Deferred()
        self.calls.append((f, args, d))
        self.most_at_once = max(self.most_at_once, len(self.calls))
        return d

    def finish(self):
        f, args, d = self.calls.pop(0)
        f(*args)
        d.callback(None)

    def break_next(self, exception):
        _, _, d = self.calls.pop(0)
        d.errback(exception)


# -- create / get / list / remove ------------------------------------------------


def test_create_answer(store, clock):
    """Creating answers the new secret, "<name>-<32 lowercase hex>", and created_at of now."""
    answer = store.create("token-1", {})
    assert set(answer) == {"value", "created_at"}
    assert re.fullmatch(r"token-1-[0-9a-f]{32}", answer["value"])
    assert answer["created_at"] == iso_timestamp(clock.seconds()) == "2023-11-14T22:13:20.250000Z"
    assert store.create("token-2", {})["value"] != answer["value"]


def test_get_whole_object_and_created_at_stable(store, clock):
    """GET gives the whole token object, value hidden, with the created_at of the create answer."""
    answer = store.create("tok", {"full_access": True, "read": ["a"], "write": ["b*"]})
    clock.advance(5.5)
    assert store.get("tok") == {
        "name": "tok",
        "value": "",
        "created_at": answer["created_at"],
        "permissions": {"full_access": True, "read": ["a"], "write": ["b*"]},
        "is_provisioned": False,
        "expires_at": None,
        "ttl": None,
        "last_access": None,
        "ip_allowlist": [],
        "is_expired": False,
    }


def test_get_and_list_return_copies(store):
    """Changing an answer does not change the token."""
    store.create("tok", {"read": ["a"]})
    store.get("tok")["permissions"]["read"].append("x")
    store.list()[0]["permissions"]["full_access"] = True
    assert store.get("tok")["permissions"] == {"full_access": False, "read": ["a"], "write": []}


@pytest.mark.parametrize("body", [None, {}, {"full_access": None, "read": None, "write": None}])
def test_empty_body_gives_no_rights(store, body):
    """No body, {} and explicit nulls all make a token without rights."""
    store.create("tok", body)
    assert store.get("tok")["permissions"] == {"full_access": False, "read": [], "write": []}


def test_unknown_fields_refused(store):
    """Unknown fields make a body of neither shape (spec 1.20 §4.2): 422 Invalid body."""
    body = {"read": ["a"], "colour": "red", "full_access": False}
    assert error_message(UnprocessableEntity, store.create, "tok", body) == "Invalid body"
    assert store.list() == []


def test_list_sorted_by_name(store):
    """The list is sorted by name and includes provisioned tokens."""
    for name in ("b", "C", "a"):
        store.create(name, None)
    store.provision("init-token", "secret", {"full_access": True})
    assert [t["name"] for t in store.list()] == ["C", "a", "b", "init-token"]
    assert all(t["value"] == "" for t in store.list())


@pytest.mark.parametrize(
    "name", ["", "a b", "a.b", "a/b", "..", "é", "a\n", "a*", "a" * 256, "tok%20"]
)
def test_bad_names(store, name):
    """A name outside [A-Za-z0-9_-]{1,255} is refused with 422 and the upstream text."""
    assert error_message(UnprocessableEntity, store.create, name, {}) == NAME_ERROR
    assert store.list() == []


def test_longest_name_accepted(store):
    """A 255-character name of every accepted character class is fine."""
    name = ("Az09_-" * 43)[:255]
    store.create(name, {})
    assert store.get(name)["name"] == name


def test_create_twice_conflicts(store):
    """A taken name gives 409 with the upstream text; the first token is kept."""
    first = store.create("tok", {"full_access": True})
    assert error_message(Conflict, store.create, "tok", {}) == "Token 'tok' already exists"
    assert store.get("tok")["permissions"]["full_access"] is True
    assert store.authenticate(first["value"].encode()).name == "tok"


@pytest.mark.parametrize(
    "body, message",
    [
        ([], "Invalid body"),
        ("x", "Invalid body"),
        ({"full_access": "yes"}, "Invalid body"),
        ({"full_access": 1}, "Invalid body"),
        ({"read": "bucket"}, "Invalid body"),
        ({"read": [1]}, "Invalid body"),
        ({"write": {"a": 1}}, "Invalid body"),
        ({"write": [None]}, "Invalid body"),
        ({"read": ["ok", "a b"]}, "Permission can contain only bucket names or wildcard '*', got 'a b'"),
        ({"read": [""]}, "Permission can contain only bucket names or wildcard '*', got ''"),
        ({"write": ["b.c"]}, "Permission can contain only bucket names or wildcard '*', got 'b.c'"),
        ({"write": ["b?"]}, "Permission can contain only bucket names or wildcard '*', got 'b?'"),
    ],
)
def test_bad_bodies(store, body, message):
    """Wrong types and bad permission items give 422 with a clear text; nothing is created."""
    assert error_message(UnprocessableEntity, store.create, "tok", body) == message
    assert store.list() == []


def test_wildcard_items_accepted(store):
    """Items may be bucket names, prefixes ending in '*' or '*'."""
    store.create("tok", {"read": ["*", "pre*", "a-b_C9"], "write": ["x*"]})
    assert store.get("tok")["permissions"]["read"] == ["*", "pre*", "a-b_C9"]


def test_get_and_remove_missing(store):
    """A missing token gives 404 with the upstream text."""
    assert error_message(NotFound, store.get, "token-not-found") == "Token 'token-not-found' doesn't exist"
    assert error_message(NotFound, store.remove, "token-not-found") == "Token 'token-not-found' doesn't exist"


def test_remove(store):
    """A removed token is gone and its value no longer authenticates, even once looked up."""
    value = store.create("tok", {})["value"].encode()
    assert store.authenticate(value).name == "tok"
    store.remove("tok")
    assert store.authenticate(value) is None
    assert error_message(NotFound, store.get, "tok") == "Token 'tok' doesn't exist"
    store.create("tok", {})
    assert store.authenticate(value) is None


# -- authenticate ----------------------------------------------------------------


def test_authenticate(store):
    """The right value finds its token; near misses find nothing."""
    value = store.create("tok", {})["value"]
    store.create("other", {})
    assert store.authenticate(value.encode()).name == "tok"
    for wrong in (b"", b"tok", b"tok-", value[:-1].encode(), value.encode() + b"0", value.upper().encode(),
                  b"other" + value[3:].encode(), b"\xff\xfe", value.encode() + b"\xff"):
        assert store.authenticate(wrong) is None, wrong


def test_provisioned_values_are_free_form(store):
    """Provisioned values need not look like "<name>-<hex>", even when they look like another token's."""
    store.create("alpha", {})
    store.provision("p1", "alpha-0123456789abcdef0123456789abcdef")
    store.provision("p2", "no dash at all")
    store.provision("p3", "ünïcode")
    assert store.authenticate(b"alpha-0123456789abcdef0123456789abcdef").name == "p1"
    assert store.authenticate(b"no dash at all").name == "p2"
    assert store.authenticate("ünïcode".encode()).name == "p3"


def test_looked_up_values_are_remembered(store, monkeypatch):
    """Once a value matched, later lookups do no HMAC; a change forgets what was remembered."""
    value = store.create("tok", {})["value"].encode()
    calls = []
    original = StoredToken.verify
    monkeypatch.setattr(StoredToken, "verify", lambda self, v: calls.append(v) or original(self, v))
    for _ in range(100):
        assert store.authenticate(value).name == "tok"
    assert len(calls) == 1
    assert value not in store._verified
    store.create("other", {})
    assert store.authenticate(value).name == "tok"
    assert len(calls) == 2


def test_wrong_secret_and_unknown_name_take_the_same_path(store, monkeypatch):
    """
    A wrong secret under an existing name runs exactly the HMACs and digest
    comparisons (same sizes, same order) as an unknown name, so the answer
    time does not tell which token names exist (#12).
    """
    # StoredToken.verify hashes and compares in the token model module.
    from reduct_twisted.auth import model as tokens

    store.create("tok", {})
    store.provision("init-token", "some provisioned secret")
    store.provision("pro", "another one")
    calls = []
    digest, compare = tokens._digest, tokens.hmac.compare_digest
    monkeypatch.setattr(
        tokens, "_digest", lambda salt, v: calls.append(("hmac", len(salt), len(v))) or digest(salt, v)
    )
    monkeypatch.setattr(
        tokens.hmac, "compare_digest", lambda a, b: calls.append(("compare", len(a), len(b))) or compare(a, b)
    )
    paths = {}
    for value in (b"tok-" + b"0" * 32, b"nop-" + b"0" * 32, b"pro-" + b"0" * 32):
        calls.clear()
        assert store.authenticate(value) is None
        paths[value[:3]] = list(calls)
    assert paths[b"tok"] == paths[b"nop"] == paths[b"pro"]
    assert paths[b"tok"] == [("hmac", 16, 36), ("compare", 32, 32)] * 3


def test_unknown_values_are_not_remembered(store):
    """Failed lookups leave nothing behind (no unbounded memory)."""
    store.create("tok", {})
    for i in range(50):
        assert store.authenticate(f"tok-{i:032x}".encode()) is None
    assert len(store._verified) == 0


# -- provisioned tokens ----------------------------------------------------------


def test_provisioned_token(store, clock):
    """A provisioned token authenticates, is marked and cannot be removed."""
    assert store.provision("init-token", "s3cret", {"full_access": True}) is True
    assert store.get("init-token") == {
        "name": "init-token",
        "value": "",
        "created_at": iso_timestamp(clock.seconds()),
        "permissions": {"full_access": True, "read": [], "write": []},
        "is_provisioned": True,
        "expires_at": None,
        "ttl": None,
        "last_access": None,
        "ip_allowlist": [],
        "is_expired": False,
    }
    assert store.authenticate(b"s3cret").name == "init-token"
    assert (
        error_message(Conflict, store.remove, "init-token")
        == "Can't remove provisioned token 'init-token'"
    )
    assert error_message(Conflict, store.create, "init-token", {}) == "Token 'init-token' already exists"
    assert store.authenticate(b"s3cret").name == "init-token"


def test_provision_empty_value_ignored(store):
    """A provisioned token with an empty value is not installed."""
    assert store.provision("t", "", {"full_access": True}) is False
    assert store.list() == []


def test_provision_checks_name_and_permissions(store):
    """Bad provisioned names and permissions are refused like API ones."""
    assert error_message(UnprocessableEntity, store.provision, "a b", "v") == NAME_ERROR
    with pytest.raises(UnprocessableEntity, match="got 'x y'"):
        store.provision("t", "v", {"read": ["x y"]})
    assert store.list() == []


def test_provision_hides_stored_token(store, auth_path, clock):
    """A provisioned token overrides a stored one of that name; the stored value stops working."""
    stored_value = store.create("tok", {"read": ["a"]})["value"].encode()
    store.authenticate(stored_value)
    store.provision("tok", "env-value", {"write": ["b"]})
    assert store.authenticate(stored_value) is None
    assert store.authenticate(b"env-value").name == "tok"
    token = store.get("tok")
    assert token["is_provisioned"] is True
    assert token["permissions"] == {"full_access": False, "read": [], "write": ["b"]}
    # Provisioned tokens are not written; the stored one survives the next start.
    store.create("other", {})
    again = TokenStore(auth_path, clock)
    assert again.get("tok")["is_provisioned"] is False
    assert again.authenticate(stored_value).name == "tok"


def test_provision_twice_last_wins(store):
    """Provisioning a name again replaces the first one."""
    store.provision("t", "one")
    store.provision("t", "two", {"full_access": True})
    assert store.authenticate(b"one") is None
    assert store.authenticate(b"two").permissions.full_access is True


# -- buckets removed and renamed -------------------------------------------------


def test_forget_bucket(store, auth_path, clock):
    """A removed bucket leaves every list; wildcards and other buckets stay; saved and provisioned too."""
    store.create("t1", {"read": ["b", "b*", "*", "c"], "write": ["b"]})
    store.create("t2", {"write": ["c", "b"]})
    store.provision("p", "v", {"read": ["b", "bb"]})
    store.forget_bucket("b")
    assert store.get("t1")["permissions"] == {"full_access": False, "read": ["b*", "*", "c"], "write": []}
    assert store.get("t2")["permissions"]["write"] == ["c"]
    assert store.get("p")["permissions"]["read"] == ["bb"]
    assert TokenStore(auth_path, clock).get("t1")["permissions"]["read"] == ["b*", "*", "c"]


def test_rename_bucket(store, auth_path, clock):
    """A renamed bucket is renamed in every list, exact items only, without duplicates."""
    store.create("t1", {"read": ["a", "a*", "x"], "write": ["a", "z"]})
    store.provision("p", "v", {"write": ["a"]})
    store.rename_bucket("a", "z")
    assert store.get("t1")["permissions"] == {"full_access": False, "read": ["z", "a*", "x"], "write": ["z"]}
    assert store.get("p")["permissions"]["write"] == ["z"]
    assert TokenStore(auth_path, clock).get("t1")["permissions"]["read"] == ["z", "a*", "x"]


def test_bucket_changes_saved_only_when_a_token_changes(auth_path, clock):
    """Removing or renaming a bucket no token names writes nothing."""
    saved = []
    store = TokenStore(auth_path, clock, saved.append)
    store.create("t", {"read": ["a*"]})
    assert len(saved) == 1
    store.forget_bucket("a")
    store.rename_bucket("a", "b")
    store.forget_bucket("zz")
    assert len(saved) == 1
    store.create("u", {"read": ["zz"]})
    store.forget_bucket("zz")
    assert len(saved) == 3


# -- the token file --------------------------------------------------------------


def test_no_file_until_first_change(data_dir, auth_path, clock):
    """A missing file means no tokens; provisioning alone writes nothing."""
    store = TokenStore(auth_path, clock)
    store.provision("init-token", "secret", {"full_access": True})
    assert store.list()[0]["name"] == "init-token"
    assert os.listdir(data_dir) == []


def test_file_layout(store, auth_path):
    """The file holds, per stored token, a salt and HMAC-SHA256(salt, value); mode 0600."""
    value = store.create("tok", {"read": ["a*"]})["value"]
    store.provision("init-token", "secret", {"full_access": True})
    store.create("abc", None)
    with open(auth_path, "rb") as f:
        document = json.load(f)
    assert document["format"] == 2
    assert [t["name"] for t in document["tokens"]] == ["abc", "tok"]
    item = document["tokens"][1]
    assert set(item) == {
        "name", "salt", "hash", "created_at", "permissions", "expires_at", "ttl", "ip_allowlist", "provisioned",
        "free_form",
    }
    assert (item["expires_at"], item["ttl"], item["ip_allowlist"], item["provisioned"]) == (None, None, [], False)
    assert item["permissions"] == {"full_access": False, "read": ["a*"], "write": []}
    assert item["created_at"] == store.get("tok")["created_at"]
    salt = bytes.fromhex(item["salt"])
    assert len(salt) == 16
    assert item["hash"] == hmac.new(salt, value.encode(), hashlib.sha256).hexdigest()
    assert document["tokens"][0]["salt"] != item["salt"]
    assert stat.S_IMODE(os.stat(auth_path).st_mode) == 0o600


def test_restart_keeps_tokens(store, auth_path, clock):
    """A new store on the same file has the same tokens, and old values still authenticate."""
    a = store.create("a", {"full_access": True})
    b = store.create("b", {"read": ["x*"], "write": ["y"]})
    store.create("c", {})
    store.remove("c")
    before = store.list()
    clock.advance(100)
    again = TokenStore(auth_path, clock)
    assert again.list() == before
    assert again.get("a")["created_at"] == a["created_at"]
    assert again.authenticate(a["value"].encode()).name == "a"
    assert again.authenticate(b["value"].encode()).permissions.may_read("x1")
    assert error_message(NotFound, again.get, "c") == "Token 'c' doesn't exist"


def test_secrets_never_on_disk_or_shown(tmp_path, store, log_events):
    """No file under the data directory, no repr and no log event holds a secret (nor its hex part)."""
    values = [store.create(f"tok{i}", {"read": ["a"]})["value"] for i in range(3)]
    store.provision("init-token", "provisioned-secret-value", {"full_access": True})
    for value in values + ["provisioned-secret-value"]:
        store.authenticate(value.encode())
    store.remove("tok1")
    store.forget_bucket("a")
    secrets = [v.encode() for v in values] + [v.rpartition("-")[2].encode() for v in values]
    secrets.append(b"provisioned-secret-value")
    files = list(all_file_bytes(tmp_path))
    assert files
    for path, content in files:
        for secret in secrets:
            assert secret not in content, path
            assert secret not in path.encode()
    shown = [repr(store), repr(store.find("tok0")), repr(store.find("init-token")), repr(store.find("tok0").permissions)]
    shown += [repr(e) for e in log_events]
    for text in shown:
        for secret in secrets:
            assert secret.decode() not in text


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not json",
        b"\xff\xfe\x00",
        b"[]",
        b'{"tokens": []}',
        b'{"format": 3, "tokens": []}',
        b'{"format": 1}',
        b'{"format": 1, "tokens": {}}',
        b'{"format": 1, "tokens": [1]}',
        b'{"format": 1, "tokens": [{"name": "a b", "salt": "00", "hash": "00"}]}',
        b'{"format": 1, "tokens": [{"name": "t", "hash": "' + b"0" * 64 + b'", "created_at": "x"}]}',
        b'{"format": 1, "tokens": [{"name": "t", "salt": "zz", "hash": "' + b"0" * 64 + b'", "created_at": "x"}]}',
        b'{"format": 1, "tokens": [{"name": "t", "salt": "' + b"0" * 30 + b'", "hash": "' + b"0" * 64
        + b'", "created_at": "x"}]}',
        b'{"format": 1, "tokens": [{"name": "t", "salt": "' + b"0" * 32 + b'", "hash": "' + b"0" * 64 + b'"}]}',
        b'{"format": 1, "tokens": [{"name": "t", "salt": "' + b"0" * 32 + b'", "hash": "' + b"0" * 64
        + b'", "created_at": "x", "permissions": {"read": ["a.b"]}}]}',
    ],
)
def test_corrupt_file(auth_path, clock, content):
    """An unusable file raises TokenStoreError with one line naming the file."""
    with open(auth_path, "wb") as f:
        f.write(content)
    with pytest.raises(TokenStoreError) as info:
        TokenStore(auth_path, clock)
    message = str(info.value)
    assert message.startswith(f"Corrupt token file '{auth_path}': ")
    assert "\n" not in message


def test_duplicate_token_in_file(store, auth_path, clock):
    """A file naming a token twice is corrupt."""
    store.create("t", {})
    with open(auth_path) as f:
        document = json.load(f)
    document["tokens"].append(document["tokens"][0])
    with open(auth_path, "w") as f:
        json.dump(document, f)
    with pytest.raises(TokenStoreError, match="token 't' appears twice"):
        TokenStore(auth_path, clock)


def test_unreadable_file(auth_path, clock):
    """A file that cannot be read raises TokenStoreError naming it."""
    os.mkdir(auth_path)
    with pytest.raises(TokenStoreError) as info:
        TokenStore(auth_path, clock)
    assert str(info.value).startswith(f"Cannot read token file '{auth_path}': ")


def test_leftover_temporaries_removed(data_dir, auth_path, clock):
    """Temporary files a crash left are deleted on load; other files are not."""
    (data_dir / (AUTH_FILE + ".abc123.tmp")).write_bytes(b"x")
    (data_dir / "bucket.tmp").write_bytes(b"x")
    TokenStore(auth_path, clock)
    assert os.listdir(data_dir) == ["bucket.tmp"]


def test_persist_failure_changes_nothing(auth_path, clock):
    """If saving fails at once, the change does not happen (507), nor reaches a later save."""
    saved = []

    def flaky(data):
        if not saved:
            saved.append(None)
            raise OSError(28, "No space left on device")
        saved.append(data)

    store = TokenStore(auth_path, clock, flaky)
    with pytest.raises(InsufficientStorage, match="No space left on device"):
        store.create("t", {})
    assert store.list() == []
    store.create("u", {})
    assert [t["name"] for t in json.loads(saved[-1])["tokens"]] == ["u"]


def test_persist_deferred_failure_logged(auth_path, clock, log_events):
    """A Deferred from persist that fails is logged, not left unhandled."""
    store = TokenStore(auth_path, clock, lambda data: fail(OSError(5, "I/O error")))
    store.create("t", {})
    assert store.get("t")["name"] == "t"
    errors = []
    store.saved().addErrback(errors.append)
    assert errors[0].value.message == "Failed to save tokens: I/O error"
    failures = [e for e in log_events if "log_failure" in e]
    assert len(failures) == 1
    assert failures[0]["log_failure"].check(OSError)
    assert failures[0]["log_format"] == "Could not write the token file {path}"
    assert failures[0]["path"] == auth_path


def test_persist_receives_snapshots(auth_path, clock):
    """Each change hands the complete new file contents to persist."""
    saved = []
    store = TokenStore(auth_path, clock, saved.append)
    store.create("a", {})
    store.create("b", {})
    store.remove("a")
    assert [[t["name"] for t in json.loads(s)["tokens"]] for s in saved] == [["a"], ["a", "b"], ["b"]]
    assert not os.path.exists(auth_path)


# -- write_atomically ------------------------------------------------------------


def test_write_atomically(data_dir):
    """The file gets the data, mode 0600, and no temporary file is left."""
    path = str(data_dir / "f.json")
    write_atomically(path, b"one")
    write_atomically(path, b"two")
    with open(path, "rb") as f:
        assert f.read() == b"two"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.listdir(data_dir) == ["f.json"]


def test_write_atomically_failure_keeps_old(data_dir, monkeypatch):
    """A failed write leaves the old contents and no temporary file."""
    path = str(data_dir / "f.json")
    write_atomically(path, b"old")

    def no_rename(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(OSError):
        write_atomically(path, b"new")
    with open(path, "rb") as f:
        assert f.read() == b"old"
    assert os.listdir(data_dir) == ["f.json"]


# -- SnapshotWriter --------------------------------------------------------------


def read(path):
    with open(path, "rb") as f:
        return f.read()


def test_writer_one_at_a_time_and_coalescing(data_dir):
    """Writes never overlap; data replaced while waiting is skipped; each Deferred fires once its data or newer is on disk."""
    path = str(data_dir / "f")
    threads = FakeThreads()
    writer = SnapshotWriter(path, threads)
    fired = []
    d1 = writer.write(b"1")
    d2 = writer.write(b"2")
    d3 = writer.write(b"3")
    for name, d in (("1", d1), ("2", d2), ("3", d3)):
        d.addCallback(lambda _, name=name: fired.append((name, read(path))))
    assert len(threads.calls) == 1
    threads.finish()
    assert fired == [("1", b"1")]
    assert len(threads.calls) == 1
    assert threads.calls[0][1] == (path, b"3")
    threads.finish()
    assert fired == [("1", b"1"), ("2", b"3"), ("3", b"3")]
    assert threads.calls == []
    assert threads.most_at_once == 1


def test_writer_idle(data_dir):
    """idle() fires at once when nothing is written, else after the last write."""
    threads = FakeThreads()
    writer = SnapshotWriter(str(data_dir / "f"), threads)
    assert writer.idle().called
    writer.write(b"1")
    writer.write(b"2")
    idle = writer.idle()
    threads.finish()
    assert not idle.called
    threads.finish()
    assert idle.called


def test_writer_failure_then_next(data_dir):
    """A failed write fails its Deferreds; the waiting data is still written."""
    path = str(data_dir / "f")
    threads = FakeThreads()
    writer = SnapshotWriter(path, threads)
    d1 = writer.write(b"1")
    d2 = writer.write(b"2")
    errors = []
    d1.addErrback(errors.append)
    threads.break_next(OSError(5, "I/O error"))
    assert errors and errors[0].check(OSError)
    assert not d2.called
    threads.finish()
    assert d2.called and read(path) == b"2"


def test_writer_write_from_callback(data_dir):
    """A write made when an earlier one fires waits its turn and ends up last on disk."""
    path = str(data_dir / "f")
    threads = FakeThreads()
    writer = SnapshotWriter(path, threads)
    writer.write(b"1").addCallback(lambda _: writer.write(b"3"))
    writer.write(b"2")
    threads.finish()
    assert len(threads.calls) == 1 and threads.calls[0][1][1] == b"3"
    threads.finish()
    assert threads.calls == [] and read(path) == b"3"
    assert threads.most_at_once == 1


def test_writer_synchronous_runner(data_dir):
    """A runner that finishes at once (or raises) works too."""
    path = str(data_dir / "f")

    def now(f, *args):
        f(*args)
        d = Deferred()
        d.callback(None)
        return d

    writer = SnapshotWriter(path, now)
    assert writer.write(b"x").called and read(path) == b"x"

    def broken(f, *args):
        raise RuntimeError("pool stopped")

    errors = []
    SnapshotWriter(path, broken).write(b"y").addErrback(errors.append)
    assert errors[0].check(RuntimeError) and read(path) == b"x"


def test_store_with_writer(auth_path, clock):
    """The store hands snapshots to a SnapshotWriter: the file appears once the thread ran."""
    threads = FakeThreads()
    writer = SnapshotWriter(auth_path, threads.__call__)
    store = TokenStore(auth_path, clock, writer.write)
    value = store.create("t", {})["value"]
    store.create("u", {})
    assert not os.path.exists(auth_path)
    threads.finish()
    threads.finish()
    assert threads.calls == []
    again = TokenStore(auth_path, clock)
    assert [t["name"] for t in again.list()] == ["t", "u"]
    assert again.authenticate(value.encode()).name == "t"


def test_saved_waits_for_the_last_write(auth_path, clock):
    """saved() fires once the file holds the last change; a change that wrote nothing is saved at once."""
    threads = FakeThreads()
    store = TokenStore(auth_path, clock, SnapshotWriter(auth_path, threads).write)
    assert store.saved().called
    store.create("t", {"read": ["a"]})
    first = store.saved()
    store.create("u", {})
    second = store.saved()
    assert not first.called and not second.called
    threads.finish()
    assert first.called and not second.called
    store.forget_bucket("nothing-refers-to-this")
    assert store.saved().called
    threads.finish()
    assert second.called
    assert store.saved().called
    store.forget_bucket("a")
    pending = store.saved()
    threads.finish()
    assert pending.called


def test_saved_reports_a_failed_write(auth_path, clock, log_events):
    """If the write of the last change fails, saved() fails with 507 and the failure is logged once."""
    threads = FakeThreads()
    store = TokenStore(auth_path, clock, SnapshotWriter(auth_path, threads).write)
    store.create("t", {})
    early = store.saved()
    threads.break_next(OSError(28, "No space left on device"))
    late = store.saved()
    for d in (early, late):
        errors = []
        d.addErrback(errors.append)
        assert errors[0].check(InsufficientStorage)
        assert errors[0].value.message == "Failed to save tokens: No space left on device"
    assert len([e for e in log_events if "log_failure" in e]) == 1
    store.create("u", {})
    threads.finish()
    assert store.saved().called


def test_saved_synchronous(store):
    """With the default synchronous persist, saved() has always fired."""
    store.create("t", {})
    assert store.saved().called


def test_permissions_equality_and_repr():
    """Permissions compare by value and show their lists."""
    assert Permissions(True, ["a"], []) == Permissions(True, ("a",), ())
    assert Permissions(False, ["a"]) != Permissions(False, ["b"])
    assert "read=['a']" in repr(Permissions(False, ["a"]))

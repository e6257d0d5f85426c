"""Tests for ``reduct_twisted.auth.policy``: policies, header parsing, both access classes."""

import itertools
import re

import pytest
from twisted.internet.defer import Deferred

from reduct_twisted.auth.model import BucketMatcher, StoredToken, iso_timestamp
from reduct_twisted.auth.policy import INIT_TOKEN_NAME, OpenAccess, Policy, TokenAccess
from reduct_twisted.auth.tokens import AUTH_FILE, TokenStoreError
from reduct_twisted.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized
from tests.unit.conftest import error_message

INIT = b"Bearer init-secret"
NO_BEARER = "No bearer token in request header"
INVALID = "Invalid token"


@pytest.fixture
def access(tmp_path, clock):
    clock.advance(1_000_000)
    return TokenAccess.open(str(tmp_path), clock, "init-secret")


def bearer(value):
    return b"Bearer " + value.encode()


def make(access, name, **permissions):
    """Create a token; return its Authorization header."""
    return bearer(access.create_token(name, permissions)["value"])


# -- OpenAccess -------------------------------------------------------------------


def test_open_access_everything_passes(clock):
    """With auth disabled every policy passes, whatever the header, as AUTHENTICATION-DISABLED."""
    auth = OpenAccess(clock)
    assert auth.enabled is False
    for header in (None, b"", b"Basic x", b"Bearer nothing"):
        for policy in Policy:
            token = auth.check(header, policy, "b")
            assert token["name"] == "AUTHENTICATION-DISABLED"
            assert token["permissions"] == {"full_access": True, "read": [], "write": []}
    assert auth.may_read(token, "any") is True


def test_open_access_token_built_once_per_second(clock):
    """The pseudo-token is "now", rebuilt when the second changes."""
    auth = OpenAccess(clock)
    clock.advance(10.2)
    first = auth.check(None, Policy.AUTHENTICATED)
    clock.advance(0.5)
    assert auth.check(None, Policy.AUTHENTICATED) is first
    clock.advance(0.5)
    second = auth.check(None, Policy.AUTHENTICATED)
    assert second["created_at"] == iso_timestamp(11) != first["created_at"]


def test_open_access_token_api(clock):
    """Auth disabled: no tokens, create/get answer 400, remove and bucket changes do nothing."""
    auth = OpenAccess(clock)
    assert auth.list_tokens() == []
    assert error_message(BadRequest, auth.create_token, "t", {}) == "Authentication is disabled"
    assert error_message(BadRequest, auth.get_token, "t") == "Authentication is disabled"
    with pytest.raises(BadRequest) as info:
        auth.get_token("t")
    assert info.value.status == 400
    assert auth.remove_token("t") is None
    assert auth.forget_bucket("b") is None
    assert auth.rename_bucket("a", "b") is None
    assert auth.saved().called


# -- TokenAccess: the header -------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [None, b"", b"bearer init-secret", b"BEARER init-secret", b"Bearer", b"Bearerinit-secret",
     b"Basic abc", b" Bearer init-secret", b"Token init-secret", b"init-secret"],
)
def test_no_bearer(access, header):
    """A header absent or not starting with the exact "Bearer " gives 401 "No bearer token"."""
    for policy in (Policy.AUTHENTICATED, Policy.FULL_ACCESS, Policy.READ, Policy.WRITE):
        with pytest.raises(Unauthorized) as info:
            access.check(header, policy, "b")
        assert info.value.message == NO_BEARER
        assert info.value.status == 401


@pytest.mark.parametrize(
    "header",
    [b"Bearer ", b"Bearer \xff", b"Bearer init-secret\xff", b"Bearer wrong", b"Bearer  init-secret",
     b"Bearer init-secret ", b"Bearer init-secre", b"Bearer INIT-SECRET", b"Bearer init-token"],
)
def test_invalid_token(access, header):
    """After "Bearer ", anything but a token's exact value (bad UTF-8 included) gives 401 "Invalid token"."""
    for policy in (Policy.AUTHENTICATED, Policy.FULL_ACCESS, Policy.READ, Policy.WRITE):
        with pytest.raises(Unauthorized) as info:
            access.check(header, policy, "b")
        assert info.value.message == INVALID


def test_anonymous_never_looks(access):
    """ANONYMOUS passes whatever the header."""
    for header in (None, b"junk", b"Bearer wrong", INIT):
        assert access.check(header, Policy.ANONYMOUS) == {}


def test_unauthorized_before_forbidden(access):
    """A bad token gives 401 even where a good one would get 403."""
    make(access, "nothing")
    assert error_message(Unauthorized, access.check, b"Bearer nothing-x", Policy.FULL_ACCESS) == INVALID
    assert error_message(Unauthorized, access.check, None, Policy.WRITE, "b") == NO_BEARER


# -- TokenAccess: policies ----------------------------------------------------------


def test_init_token(access, clock):
    """RS_API_TOKEN is init-token: provisioned, full access, listed, not removable."""
    assert access.enabled is True
    me = access.check(INIT, Policy.AUTHENTICATED)
    assert me == {
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
    for policy in (Policy.FULL_ACCESS, Policy.READ, Policy.WRITE):
        assert access.check(INIT, policy, "any") is me
    assert access.check(INIT, Policy.WRITE, "x") is me
    assert [t["name"] for t in access.list_tokens()] == ["init-token"]
    assert error_message(Conflict, access.remove_token, INIT_TOKEN_NAME) == "Can't remove provisioned token 'init-token'"


def test_forbidden_texts(access):
    """A valid token lacking a right gives 403 with the 1.16+ texts."""
    header = make(access, "weak")
    assert access.check(header, Policy.AUTHENTICATED)["name"] == "weak"
    assert error_message(Forbidden, access.check, header, Policy.FULL_ACCESS) == "Token 'weak' doesn't have full access"
    assert (
        error_message(Forbidden, access.check, header, Policy.READ, "data")
        == "Token 'weak' doesn't have read access to bucket 'data'"
    )
    assert (
        error_message(Forbidden, access.check, header, Policy.WRITE, "data")
        == "Token 'weak' doesn't have write access to bucket 'data'"
    )


def test_read_does_not_imply_write(access):
    """Read-only tokens cannot write and write-only tokens cannot read."""
    reader = make(access, "reader", read=["b"])
    writer = make(access, "writer", write=["b"])
    assert access.check(reader, Policy.READ, "b")["name"] == "reader"
    assert access.check(writer, Policy.WRITE, "b")["name"] == "writer"
    with pytest.raises(Forbidden, match="write access"):
        access.check(reader, Policy.WRITE, "b")
    with pytest.raises(Forbidden, match="read access"):
        access.check(writer, Policy.READ, "b")
    for header in (reader, writer):
        with pytest.raises(Forbidden, match="full access"):
            access.check(header, Policy.FULL_ACCESS)


def test_full_access_token(access):
    """A full-access token passes every policy on every bucket."""
    header = make(access, "admin", full_access=True)
    for policy in Policy:
        access.check(header, policy, "whatever")
    assert access.may_read(access.check(header, Policy.AUTHENTICATED), "whatever") is True


@pytest.mark.parametrize(
    "items, bucket, expected",
    [
        (["*"], "anything", True),
        (["pre*"], "prefix", True),
        (["pre*"], "pre", True),
        (["pre*"], "pr", False),
        (["pre*"], "xpre", False),
        (["pre"], "prefix", False),
        (["exact"], "exact", True),
        (["exact"], "Exact", False),
        (["a", "b*"], "bz", True),
        (["a", "b*"], "c", False),
        ([], "a", False),
        (["a*b"], "ab", False),
        (["a*b"], "axb", False),
    ],
)
def test_wildcards(access, items, bucket, expected):
    """'*' matches all, 'prefix*' names starting with prefix, other items only themselves."""
    reader = make(access, "r", read=items)
    writer = make(access, "w", write=items)
    token = access.check(reader, Policy.AUTHENTICATED)
    assert access.may_read(token, bucket) is expected
    for header, policy in ((reader, Policy.READ), (writer, Policy.WRITE)):
        if expected:
            access.check(header, policy, bucket)
        else:
            with pytest.raises(Forbidden):
                access.check(header, policy, bucket)


def _words(alphabet, longest):
    return ["".join(w) for n in range(longest + 1) for w in itertools.product(alphabet, repeat=n)]


def test_matcher_agrees_with_definition():
    """BucketMatcher gives what the spec's definition does, for every small list and name."""
    items = [w for w in _words("ab*", 3) if w]
    buckets = [w for w in _words("ab", 3) if w]
    lists = [[]] + [[i] for i in items] + list(itertools.combinations(items[:12], 2))
    for permission_list in lists:
        matcher = BucketMatcher(permission_list)
        for bucket in buckets:
            expected = any(
                bucket.startswith(i[:-1]) if i.endswith("*") else bucket == i for i in permission_list
            )
            assert matcher(bucket) is expected, (permission_list, bucket)


def test_may_read(access):
    """may_read filters /list: readable buckets only; unknown callers read nothing."""
    token = access.check(make(access, "r", read=["a*"], write=["b"]), Policy.AUTHENTICATED)
    assert access.may_read(token, "ab") is True
    assert access.may_read(token, "b") is False
    assert access.may_read({}, "ab") is False
    assert access.may_read(access.check(INIT, Policy.AUTHENTICATED), "b") is True


# -- TokenAccess: the token API ---------------------------------------------------


def test_token_api(access):
    """create/get/list/remove go through to the store; a removed token stops working."""
    answer = access.create_token("token-1", {"read": ["b"]})
    assert re.fullmatch(r"token-1-[0-9a-f]{32}", answer["value"])
    header = bearer(answer["value"])
    assert access.check(header, Policy.READ, "b")["name"] == "token-1"
    token = access.get_token("token-1")
    assert token["created_at"] == answer["created_at"] and token["value"] == ""
    assert [t["name"] for t in access.list_tokens()] == ["init-token", "token-1"]
    assert error_message(Conflict, access.create_token, "token-1", None) == "Token 'token-1' already exists"
    access.remove_token("token-1")
    assert error_message(Unauthorized, access.check, header, Policy.AUTHENTICATED) == INVALID
    assert error_message(NotFound, access.get_token, "token-1") == "Token 'token-1' doesn't exist"
    assert error_message(NotFound, access.remove_token, "token-1") == "Token 'token-1' doesn't exist"


def test_bucket_changes_apply_at_once(access):
    """After forget_bucket/rename_bucket the next check sees the new permissions."""
    header = make(access, "t", read=["a", "b"], write=["a"])
    access.check(header, Policy.READ, "a")
    access.forget_bucket("a")
    with pytest.raises(Forbidden):
        access.check(header, Policy.READ, "a")
    with pytest.raises(Forbidden):
        access.check(header, Policy.WRITE, "a")
    access.rename_bucket("b", "c")
    access.check(header, Policy.READ, "c")
    with pytest.raises(Forbidden):
        access.check(header, Policy.READ, "b")


def test_check_is_cheap(access, monkeypatch):
    """Only the first check of a value runs HMACs (one per candidate token); repeats run none."""
    header = make(access, "t", read=["a*"])
    calls = []
    original = StoredToken.verify
    monkeypatch.setattr(StoredToken, "verify", lambda self, v: calls.append(1) or original(self, v))
    for i in range(1000):
        access.check(header, Policy.READ, f"a{i}")
        access.check(INIT, Policy.FULL_ACCESS)
    # each value: its named token (or the decoy) and the one provisioned token
    assert len(calls) <= 4


# -- TokenAccess.open ----------------------------------------------------------------


def test_open_provisioned(tmp_path, clock, log_events):
    """Provisioned tokens are installed, bad ones logged and skipped, init-token wins a clash."""
    provisioned = [
        ("reader", "reader-value", {"full_access": False, "read": ["a", "b"], "write": []}),
        ("bad", "bad-value", {"read": ["no spaces"]}),
        ("empty", "", {"full_access": True}),
        ("init-token", "other-value", {"read": ["a"]}),
    ]
    access = TokenAccess.open(str(tmp_path), clock, "init-secret", provisioned)
    assert [t["name"] for t in access.list_tokens()] == ["init-token", "reader"]
    assert access.check(b"Bearer reader-value", Policy.READ, "b")["is_provisioned"] is True
    assert access.check(INIT, Policy.FULL_ACCESS)["name"] == "init-token"
    with pytest.raises(Unauthorized):
        access.check(b"Bearer other-value", Policy.AUTHENTICATED)
    warnings = [e for e in log_events if "bad" == e.get("name")]
    assert warnings and "no spaces" in warnings[0]["reason"]
    assert error_message(Conflict, access.remove_token, "reader") == "Can't remove provisioned token 'reader'"


class Provisioned:
    """Like ``provision.ProvisionedToken``: attributes, not a tuple."""

    def __init__(self, name, value, permissions):
        self.name, self.value, self.permissions = name, value, permissions


def test_open_accepts_provisioned_objects(tmp_path, clock):
    """Provisioned tokens may be objects with name, value and permissions."""
    access = TokenAccess.open(str(tmp_path), clock, "init-secret", [Provisioned("w", "w-value", {"write": ["b"]})])
    assert access.check(b"Bearer w-value", Policy.WRITE, "b")["name"] == "w"


def test_open_needs_api_token(tmp_path, clock):
    """TokenAccess is for authentication enabled: an empty API token is a mistake."""
    with pytest.raises(ValueError):
        TokenAccess.open(str(tmp_path), clock, "")


def test_restart(tmp_path, clock):
    """Tokens made before a restart still work after it; the init token takes its new value."""
    first = TokenAccess.open(str(tmp_path), clock, "old-init")
    header = make(first, "keeper", write=["w"])
    second = TokenAccess.open(str(tmp_path), clock, "new-init")
    assert second.check(header, Policy.WRITE, "w")["name"] == "keeper"
    assert second.check(b"Bearer new-init", Policy.FULL_ACCESS)["name"] == "init-token"
    assert error_message(Unauthorized, second.check, b"Bearer old-init", Policy.AUTHENTICATED) == INVALID
    assert (tmp_path / AUTH_FILE).exists()


def test_open_corrupt_file(tmp_path, clock):
    """A corrupt token file stops start-up with TokenStoreError naming it."""
    (tmp_path / AUTH_FILE).write_text("{")
    with pytest.raises(TokenStoreError, match=re.escape(str(tmp_path / AUTH_FILE))):
        TokenAccess.open(str(tmp_path), clock, "init-secret")


def test_open_with_thread_runner(tmp_path, clock):
    """With run_in_thread the file is written through the returned writer, off the caller's thread."""
    calls = []

    def run_in_thread(f, *args):
        d = Deferred()
        calls.append((f, args, d))
        return d

    access = TokenAccess.open(str(tmp_path), clock, "init-secret", run_in_thread=run_in_thread)
    header = make(access, "t")
    assert not (tmp_path / AUTH_FILE).exists()
    idle = access.writer.idle()
    saved = access.saved()
    assert not saved.called
    f, args, d = calls.pop()
    f(*args)
    d.callback(None)
    assert idle.called and saved.called
    again = TokenAccess.open(str(tmp_path), clock, "init-secret")
    assert again.check(header, Policy.AUTHENTICATED)["name"] == "t"


def test_no_writer_when_synchronous(access):
    """Without run_in_thread there is no writer: saving is synchronous."""
    assert access.writer is None

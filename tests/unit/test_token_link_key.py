"""``IAccessPolicy.link_key`` (issue #15 contract 5): what query links are bound to."""

from reduct_twisted.auth.policy import OpenAccess, TokenAccess


def test_open_access_link_key_is_constant(clock):
    """With authentication disabled every name gives the same non-empty key."""
    auth = OpenAccess(clock)
    assert auth.link_key("a") == auth.link_key("b") != b""
    assert isinstance(auth.link_key("a"), bytes)


def test_link_key_unknown_token_is_none(tmp_path, clock):
    auth = TokenAccess.open(str(tmp_path), clock, "init-secret")
    assert auth.link_key("nobody") is None


def test_link_key_stable_over_restart_and_never_the_secret(tmp_path, clock):
    """A stored token's key survives a restart and does not contain its secret."""
    auth = TokenAccess.open(str(tmp_path), clock, "init-secret")
    value = auth.create_token("t", {"full_access": True})["value"]
    key = auth.link_key("t")
    assert isinstance(key, bytes) and len(key) >= 32
    assert value.encode() not in key
    again = TokenAccess.open(str(tmp_path), clock, "init-secret")
    assert again.link_key("t") == key


def test_link_key_changes_when_the_token_is_recreated(tmp_path, clock):
    auth = TokenAccess.open(str(tmp_path), clock, "init-secret")
    auth.create_token("t", {})
    key = auth.link_key("t")
    auth.remove_token("t")
    assert auth.link_key("t") is None
    auth.create_token("t", {})
    assert auth.link_key("t") not in (None, key)


def test_provisioned_link_key_stable_over_restart(tmp_path, clock):
    """Provisioned tokens live in memory only, yet their key survives a restart; another secret changes it."""
    first = TokenAccess.open(str(tmp_path), clock, "init-secret", [("p", "p-secret", {})])
    second = TokenAccess.open(str(tmp_path), clock, "init-secret", [("p", "p-secret", {})])
    other = TokenAccess.open(str(tmp_path), clock, "init-secret", [("p", "p-other", {})])
    assert first.link_key("p") == second.link_key("p") is not None
    assert other.link_key("p") != first.link_key("p")
    assert first.link_key("init-token") == second.link_key("init-token")
    assert b"p-secret" not in first.link_key("p")

"""Tests for reduct_twisted.wiring: the parts assemble builds, and how they are joined."""

from reduct_twisted.auth.policy import OpenAccess, TokenAccess
from reduct_twisted.config import Config
from reduct_twisted.http.api import ReductAPI
from reduct_twisted.http.streaming import ReductSite
from reduct_twisted.provision import parse_provisioning
from reduct_twisted.replication import ReplicationManager
from reduct_twisted.sync import GroupSync
from reduct_twisted.wiring import assemble


def test_parts_are_joined(engine, clock):
    """The API serves the policy, replications and group sync built before it;
    the site serves the API."""
    config = Config(data_path=engine.data_path)
    parts = assemble(engine, config, clock, None)
    assert isinstance(parts.auth, OpenAccess)
    assert isinstance(parts.replications, ReplicationManager)
    assert engine.listeners == [parts.replications]
    assert isinstance(parts.syncer, GroupSync)  # sync policy "always", the default
    assert isinstance(parts.api, ReductAPI)
    assert parts.api.auth is parts.auth
    assert parts.api.replications is parts.replications
    assert parts.api.syncer is parts.syncer
    assert isinstance(parts.site, ReductSite)
    assert parts.site.router is parts.api
    assert not hasattr(parts.site, "replications")  # nothing hung on the site
    assert parts.site.drain.on_start == [engine.end_continuous_queries]


def test_no_group_sync_without_sync_policy(engine, clock):
    """With sync policy none there is no group sync."""
    parts = assemble(engine, Config(data_path=engine.data_path, sync="none"), clock, None)
    assert parts.syncer is None and parts.api.syncer is None


def test_provisioning_reaches_the_parts(engine, clock):
    """Provisioned buckets are in the engine and provisioned tokens in the access policy."""
    environ = {
        "RS_BUCKET_A_NAME": "provisioned",
        "RS_TOKEN_A_NAME": "reader",
        "RS_TOKEN_A_VALUE": "secret",
        "RS_TOKEN_A_READ": "provisioned",
    }
    config = Config(data_path=engine.data_path, sync="none", api_token="init")
    parts = assemble(engine, config, clock, None, parse_provisioning(environ))
    assert [b["name"] for b in engine.list_buckets()] == ["provisioned"]
    assert isinstance(parts.auth, TokenAccess)
    assert parts.auth.get_token("reader")["is_provisioned"]

"""The TLS policy of replication destinations (``replication/tls.py``)."""

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.web.client import BrowserLikePolicyForHTTPS

from reduct_twisted import tap
from reduct_twisted.config import Config
from reduct_twisted.replication import make_replications
from reduct_twisted.replication.tls import CaFileError, ReplicationTLS, replication_tls


def test_default_policy_verifies_against_the_system_store():
    policy = replication_tls(Config())
    assert (policy.verify, policy.ca_path) == (True, None)
    creator = policy.creatorForNetloc(b"example.com", 443)
    expected = BrowserLikePolicyForHTTPS().creatorForNetloc(b"example.com", 443)
    assert type(creator) is type(expected)
    assert creator._hostnameASCII == "example.com"


def test_ca_file_is_added_to_the_trust(certificate):
    policy = replication_tls(Config(replication_ca_path=certificate[0]))
    assert policy._trust.path == certificate[0]
    assert policy.creatorForNetloc(b"localhost", 8443)._hostnameASCII == "localhost"


def test_verification_off():
    policy = replication_tls(Config(replication_verify_ssl=False))
    creator = policy.creatorForNetloc(b"example.com", 443)
    assert type(creator).__name__ == "_Unverified"


def test_unusable_ca_file_is_refused(tmp_path):
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(CaFileError) as e:
        replication_tls(Config(replication_ca_path=str(bad)))
    assert str(e.value).startswith(f"RS_REPLICATION_CA_PATH={str(bad)!r} cannot be used")


def test_unusable_ca_file_stops_the_start_in_one_line(tmp_path):
    bad = tmp_path / "ca.pem"
    bad.write_text("garbage")
    options = tap.Options(environ={"RS_REPLICATION_CA_PATH": str(bad)})
    options.parseOptions(["--data-path", str(tmp_path / "d"), "--listen", "tcp:0"])
    with pytest.raises(SystemExit) as e:
        tap.makeService(options, MemoryReactorClock())
    assert str(e.value.code).startswith("reduct: RS_REPLICATION_CA_PATH=")


def test_the_manager_connects_with_the_policy(engine, tmp_path):
    manager = make_replications(engine, Config(replication_verify_ssl=False), None, None)
    assert isinstance(manager._tls, ReplicationTLS) and manager._tls.verify is False


def test_declared_interfaces_are_implemented(certificate):
    from twisted.internet._sslverify import IOpenSSLTrustRoot
    from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
    from twisted.web.iweb import IPolicyForHTTPS
    from zope.interface.verify import verifyObject

    from reduct_twisted.replication.tls import SystemAndFile, _Unverified

    assert verifyObject(IPolicyForHTTPS, ReplicationTLS())
    assert verifyObject(IOpenSSLTrustRoot, SystemAndFile(certificate[0]))
    assert verifyObject(IOpenSSLClientConnectionCreator, _Unverified("localhost"))

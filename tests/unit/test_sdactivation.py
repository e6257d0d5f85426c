"""
``sdactivation.py``: the sockets systemd passes (``LISTEN_*``), with and
without ``LISTEN_FDNAMES``, as ``systemd:`` endpoints adopting real sockets.
"""

import os
import socket

import pytest
from twisted.application.internet import StreamServerEndpointService
from twisted.internet.endpoints import AdoptedStreamServerEndpoint
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage

from reduct_twisted.sdactivation import ListenSockets, systemd_endpoint
from reduct_twisted.tap import AnnouncingEndpoint, Options, makeService
from tests.unit.fakes import FakeEngine
from tests.unit.test_tap import fake_assemble


@pytest.mark.parametrize(
    "environ, expected",
    [
        ({"LISTEN_PID": "42", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "web:admin"},
         ListenSockets((3, 4), ("web", "admin"))),
        ({"LISTEN_PID": "42", "LISTEN_FDS": "2"}, ListenSockets((3, 4), ("unknown", "unknown"))),
        # names that do not match the count are dropped, the descriptors kept
        ({"LISTEN_PID": "42", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "web"},
         ListenSockets((3, 4), ("unknown", "unknown"))),
        ({"LISTEN_PID": "43", "LISTEN_FDS": "2"}, ListenSockets()),  # another process's
        ({"LISTEN_PID": "42", "LISTEN_FDS": "x"}, ListenSockets()),
        ({"LISTEN_FDS": "1"}, ListenSockets()),
        ({}, ListenSockets()),
    ],
)
def test_from_environment(environ, expected):
    assert ListenSockets.from_environment(environ, pid=42) == expected


def test_falls_back_to_the_initial_environment(monkeypatch):
    """Importing twisted.internet.endpoints removed LISTEN_PID/LISTEN_FDS from
    os.environ: they are read from the environment the process started with,
    and LISTEN_FDNAMES, which Twisted leaves, from os.environ."""
    monkeypatch.delenv("LISTEN_PID", raising=False)
    monkeypatch.setenv("LISTEN_FDNAMES", "web")
    initial = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "1", "LISTEN_FDNAMES": "old"}
    found = ListenSockets.from_environment(initial=lambda: initial)
    assert found == ListenSockets((3,), ("web",))
    monkeypatch.delenv("LISTEN_FDNAMES")
    found = ListenSockets.from_environment(initial=lambda: {**initial, "LISTEN_FDNAMES": ""})
    assert found == ListenSockets((3,), ("unknown",))
    assert ListenSockets.from_environment(initial=lambda: {}) == ListenSockets()


@pytest.fixture
def listening(tmp_path):
    """Two listening sockets: TCP on 127.0.0.1 and a UNIX one."""
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(str(tmp_path / "s"))
    unix.listen()
    yield tcp, unix
    tcp.close()
    unix.close()


@pytest.mark.parametrize(
    "description, which",
    [
        ("systemd:index=0", 0),
        ("systemd:index=1", 1),
        ("systemd:domain=INET:index=0", 0),
        ("systemd:name=web", 0),
        ("systemd:domain=UNIX:name=local", 1),
    ],
)
def test_endpoint_adopts_the_named_socket(listening, description, which):
    sockets = ListenSockets(tuple(s.fileno() for s in listening), ("web", "local"))
    endpoint = systemd_endpoint(MemoryReactorClock(), description, sockets)
    assert isinstance(endpoint, AdoptedStreamServerEndpoint)
    assert endpoint.fileno == listening[which].fileno()
    assert endpoint.addressFamily == listening[which].family


@pytest.mark.parametrize(
    "description, message",
    [
        ("systemd:index=2", "index=2: 2 socket(s) were passed"),
        ("systemd:name=admin", "name=admin: 0 socket(s) have that name (passed: local, web)"),
        ("systemd:domain=INET6:index=0", "is AF_INET, not AF_INET6"),
        ("systemd:domain=INET", "give exactly one of index= or name="),
        ("systemd:index=0:name=web", "give exactly one of index= or name="),
        ("systemd:index=0:backlog=5", "unexpected 'backlog=5'"),
        ("systemd:index", "unexpected 'index'"),
    ],
)
def test_endpoint_refusals(listening, description, message):
    sockets = ListenSockets(tuple(s.fileno() for s in listening), ("web", "local"))
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        systemd_endpoint(MemoryReactorClock(), description, sockets)


def test_endpoint_refuses_datagram_and_closed_descriptors():
    datagram = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        with pytest.raises(ValueError, match="is not a stream socket"):
            systemd_endpoint(None, "systemd:index=0", ListenSockets((datagram.fileno(),), ("x",)))
    finally:
        datagram.close()
    r, w = os.pipe()
    os.close(w)
    try:
        with pytest.raises(ValueError, match=f"passed descriptor {r} is not a socket"):
            systemd_endpoint(None, "systemd:index=0", ListenSockets((r,), ("x",)))
    finally:
        os.close(r)
    with pytest.raises(ValueError, match=f"passed descriptor {w} is not open"):
        systemd_endpoint(None, "systemd:index=0", ListenSockets((w,), ("x",)))
    with pytest.raises(ValueError, match="no socket was passed"):
        systemd_endpoint(None, "systemd:index=0", ListenSockets())


def _options(sockets, argv, environ=None):
    options = Options(environ=environ or {})
    options.sockets = sockets
    options.parseOptions(argv)
    return options


def test_default_listeners_are_the_passed_sockets(listening, tmp_path):
    """No listen setting and sockets passed: one listener per socket, in order."""
    sockets = ListenSockets(tuple(s.fileno() for s in listening), ("unknown", "unknown"))
    options = _options(sockets, ["--data-path", str(tmp_path)], {"RS_PORT": "1"})
    top = makeService(options, MemoryReactorClock(), engine_factory=FakeEngine,
                      assemble=fake_assemble)
    listeners = [s for s in top if s.name.startswith("listen:")]
    assert [s.name for s in listeners] == ["listen:systemd:index=0", "listen:systemd:index=1"]
    for listener, sock in zip(listeners, listening):
        assert isinstance(listener, StreamServerEndpointService)
        assert isinstance(listener.endpoint, AnnouncingEndpoint)
        assert listener.endpoint.endpoint.fileno == sock.fileno()


def test_listen_setting_beats_passed_sockets(listening):
    """An explicit listen setting is used as it is, passed sockets or not."""
    sockets = ListenSockets((listening[0].fileno(),), ("web",))
    options = _options(sockets, ["--listen", "tcp:8999", "--listen", "systemd:name=web"])
    top = makeService(options, MemoryReactorClock(), engine_factory=FakeEngine,
                      assemble=fake_assemble)
    names = [s.name for s in top if s.name.startswith("listen:")]
    assert names == ["listen:tcp:8999", "listen:systemd:name=web"]


def test_unknown_name_is_usage_error(listening):
    sockets = ListenSockets((listening[0].fileno(),), ("web",))
    with pytest.raises(usage.UsageError, match="name=api: 0 socket"):
        _options(sockets, ["--listen", "systemd:name=api"])


def test_tls_on_a_passed_socket(listening, certificate):
    """privateKey=/certKey= serve TLS on the adopted socket; ':' escaped as in ssl:."""
    from reduct_twisted.sdactivation import TLSServerEndpoint, is_tls

    cert, key = certificate
    sockets = ListenSockets((listening[0].fileno(),), ("web",))
    escaped = lambda p: p.replace(":", "\\:")  # noqa: E731
    description = f"systemd:name=web:privateKey={escaped(key)}:certKey={escaped(cert)}"
    assert is_tls(description) and not is_tls("systemd:index=0")
    endpoint = systemd_endpoint(MemoryReactorClock(), description, sockets)
    assert isinstance(endpoint, TLSServerEndpoint)
    assert endpoint.endpoint.fileno == listening[0].fileno()
    assert endpoint.options.getContext() is not None
    [default] = sockets.default_endpoints(key, cert)
    assert default == f"systemd:index=0:privateKey={escaped(key)}:certKey={escaped(cert)}"
    with pytest.raises(ValueError, match="give both privateKey= and certKey="):
        systemd_endpoint(None, f"systemd:index=0:certKey={cert}", sockets)
    with pytest.raises(ValueError, match="cannot load certKey=/no:such "):
        systemd_endpoint(None, f"systemd:index=0:certKey=/no\\:such:privateKey={key}", sockets)


def test_default_listeners_serve_tls_with_a_certificate(listening, certificate):
    """Passed sockets and cert_path/cert_key_path: the default listeners serve HTTPS."""
    cert, key = certificate
    sockets = ListenSockets((listening[0].fileno(),), ("unknown",))
    options = _options(sockets, [], {"RS_CERT_PATH": cert, "RS_CERT_KEY_PATH": key})
    top = makeService(options, MemoryReactorClock(), engine_factory=FakeEngine,
                      assemble=fake_assemble)
    [listener] = [s for s in top if s.name.startswith("listen:")]
    assert listener.name.startswith("listen:systemd:index=0:privateKey=")
    assert listener.endpoint.scheme == "https"

"""Tests for reduct_twisted.tap and the log filter: options, service tree, log levels."""

import attrs
import pytest
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import Application, IService, Service
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.endpoints import SSL4ServerEndpoint, TCP4ServerEndpoint
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
)
from twisted.python import usage

from reduct_twisted import logs
from reduct_twisted.config_limits import RateLimit
from reduct_twisted.config import Config
from reduct_twisted.http.drain import ConnectionDrain, DrainService
from reduct_twisted.system import NullSystemEvents
from reduct_twisted.provision import Provisioning
from reduct_twisted.service import StorageService
from reduct_twisted.tap import AnnouncingEndpoint, Options, makeService
from reduct_twisted.wiring import Parts
from tests.unit.fakes import FakeEngine


@attrs.define
class FakeSite:
    """The site of :func:`fake_assemble`: what it was built from, and a drain."""

    engine: object
    config: object
    reactor: object
    threadpool: object
    provisioning: object = None
    drain: ConnectionDrain = attrs.field(
        default=attrs.Factory(lambda self: ConnectionDrain(self.reactor), takes_self=True),
        eq=False,
    )


class FakeReplications(Service):
    """The replication service of :func:`fake_assemble`: does nothing."""

    name = "replication"


def fake_assemble(engine, config, reactor, threadpool, provisioning):
    """``wiring.assemble`` for tests: a ``FakeSite`` and ``FakeReplications``."""
    site = FakeSite(engine, config, reactor, threadpool, provisioning)
    return Parts(
        events=NullSystemEvents(), auth=None, replications=FakeReplications(), syncer=None,
        api=None, site=site,
    )


def parse(argv, environ=None):
    options = Options(environ={} if environ is None else environ)
    options.parseOptions(argv)
    return options


def build(argv, reactor=None, environ=None):
    reactor = reactor or MemoryReactorClock()
    options = parse(argv, environ)
    top = makeService(options, reactor, engine_factory=FakeEngine, assemble=fake_assemble)
    return top, reactor




def test_options_defaults():
    """With no arguments every option is unset and the config is the defaults."""
    options = parse([])
    assert dict(options) == {
        "config": None,
        "data-path": None,
        "api-base-path": None,
        "log-level": None,
        "listen": [],
        "api-token": None,
        "cors-allow-origin": None,
        "io-batch-max-size": None,
        "io-batch-max-records": None,
        "io-batch-max-metadata-size": None,
        "io-batch-timeout": None,
        "io-batch-records-timeout": None,
        "io-operation-timeout": None,
        "io-max-writers-in-flight": None,
        "replication-timeout": None,
        "replication-log-size": None,
        "shutdown-timeout": None,
        "lock-file-timeout": None,
        # limits, role, replication TLS (config_limits.py)
        "engine-max-storage-size": None,
        "rate-limit-api": None,
        "rate-limit-ingress": None,
        "rate-limit-egress": None,
        "instance-role": None,
        "lock-file-ttl": None,
        "lock-file-polling-interval": None,
        "engine-compaction-interval": None,
        "engine-enable-integrity-checks": None,
        "rwlock-timeout": None,
        "rwlock-failure-action": None,
        "replication-verify-ssl": None,
        "replication-ca-path": None,
        # $system events (config_system.py), query links (config_links.py)
        "system-events-enabled": None,
        "system-events-quota-size": None,
        "system-events-remote-verify-ssl": None,
        "system-events-remote-ca-path": None,
        "system-events-remote-timeout": None,
        "instance-name": None,
        "public-url": None,
        "link-signing-key": None,
        # record integrity (config_integrity.py)
        "integrity": None,
        "log-key-path": None,
        # /metrics (config_metrics.py)
        "metrics": None,
        "metrics-auth": None,
        # logs (config_logs.py)
        "access-log": None,
        "log-format": None,
    }
    assert options.config == Config()


def test_options_all_given(tmp_path):
    """Every option is parsed into the expected mapping and into the Config."""
    ini = tmp_path / "r.ini"
    ini.write_text("[reduct]\nport = 1234\n")
    options = parse(
        [
            "--config",
            str(ini),
            "--data-path",
            "/srv/data",
            "--api-base-path",
            "reduct",
            "--log-level",
            "warning",
            "--listen",
            "tcp:1:interface=127.0.0.1",
            "--listen",
            "tcp:2:interface=127.0.0.1",
            "--api-token",
            "tok",
            "--cors-allow-origin",
            "https://a.example, https://b.example",
            "--io-batch-max-size",
            "1 MiB",
            "--io-batch-max-records",
            "10",
            "--io-batch-max-metadata-size",
            "4KB",
            "--io-batch-timeout",
            "2",
            "--io-batch-records-timeout",
            "0.5",
            "--io-operation-timeout",
            "7",
            "--io-max-writers-in-flight",
            "3",
            "--replication-timeout",
            "2.5",
            "--replication-log-size",
            "100",
            "--shutdown-timeout",
            "3",
            "--lock-file-timeout",
            "5",
            # limits, role, replication TLS (config_limits.py)
            "--engine-max-storage-size",
            "1GB",
            "--rate-limit-api",
            "10req/s",
            "--rate-limit-ingress",
            "1MB/m",
            "--rate-limit-egress",
            "2MB",
            "--instance-role",
            "standalone",
            "--lock-file-ttl",
            "5",
            "--lock-file-polling-interval",
            "2",
            "--engine-compaction-interval",
            "0",
            "--engine-enable-integrity-checks",
            "off",
            "--rwlock-timeout",
            "9",
            "--rwlock-failure-action",
            "panic",
            "--replication-verify-ssl",
            "false",
            "--replication-ca-path",
            str(ini),
            # $system events (config_system.py), query links (config_links.py)
            "--system-events-enabled",
            "off",
            "--system-events-quota-size",
            "1MB",
            "--system-events-remote-verify-ssl",
            "no",
            "--system-events-remote-ca-path",
            str(ini),
            "--system-events-remote-timeout",
            "7",
            "--instance-name",
            "edge-1",
            "--public-url",
            "https://reduct.example/api",
            "--link-signing-key",
            "k" * 32,
            "--integrity",
            "digest",
            "--log-key-path",
            str(ini),
            "--metrics",
            "off",
            "--metrics-auth",
            "no",
            "--access-log",
            "off",
            "--log-format",
            "json",
        ]
    )
    assert dict(options) == {
        "config": str(ini),
        "data-path": "/srv/data",
        "api-base-path": "reduct",
        "log-level": "warning",
        "listen": ["tcp:1:interface=127.0.0.1", "tcp:2:interface=127.0.0.1"],
        "api-token": "tok",
        "cors-allow-origin": "https://a.example, https://b.example",
        "io-batch-max-size": "1 MiB",
        "io-batch-max-records": "10",
        "io-batch-max-metadata-size": "4KB",
        "io-batch-timeout": "2",
        "io-batch-records-timeout": "0.5",
        "io-operation-timeout": "7",
        "io-max-writers-in-flight": "3",
        "replication-timeout": "2.5",
        "replication-log-size": "100",
        "shutdown-timeout": "3",
        "lock-file-timeout": "5",
        # limits, role, replication TLS (config_limits.py)
        "engine-max-storage-size": "1GB",
        "rate-limit-api": "10req/s",
        "rate-limit-ingress": "1MB/m",
        "rate-limit-egress": "2MB",
        "instance-role": "standalone",
        "lock-file-ttl": "5",
        "lock-file-polling-interval": "2",
        "engine-compaction-interval": "0",
        "engine-enable-integrity-checks": "off",
        "rwlock-timeout": "9",
        "rwlock-failure-action": "panic",
        "replication-verify-ssl": "false",
        "replication-ca-path": str(ini),
        "system-events-enabled": "off",
        "system-events-quota-size": "1MB",
        "system-events-remote-verify-ssl": "no",
        "system-events-remote-ca-path": str(ini),
        "system-events-remote-timeout": "7",
        "instance-name": "edge-1",
        "public-url": "https://reduct.example/api",
        "link-signing-key": "k" * 32,
        "integrity": "digest",
        "log-key-path": str(ini),
        "metrics": "off",
        "metrics-auth": "no",
        "access-log": "off",
        "log-format": "json",
    }
    assert options.config == Config(
        data_path="/srv/data",
        port=1234,
        api_base_path="/reduct/",
        log_level="WARN",
        listen=("tcp:1:interface=127.0.0.1", "tcp:2:interface=127.0.0.1"),
        api_token="tok",
        cors_allow_origin=("https://a.example", "https://b.example"),
        io_batch_max_size=1024**2,
        io_batch_max_records=10,
        io_batch_max_metadata_size=4000,
        io_batch_timeout=2.0,
        shutdown_timeout=3.0,
        lock_file_timeout=5.0,
        io_batch_records_timeout=0.5,
        io_operation_timeout=7.0,
        io_max_writers_in_flight=3,
        replication_timeout=2.5,
        replication_log_size=100,
        # limits, role, replication TLS (config_limits.py)
        engine_max_storage_size=1_000_000_000,
        rate_limit_api=RateLimit(10, 1),
        rate_limit_ingress=RateLimit(1_000_000, 60),
        rate_limit_egress=RateLimit(2_000_000, 3600),
        instance_role="STANDALONE",
        lock_file_ttl=5.0,
        lock_file_polling_interval=2.0,
        engine_compaction_interval=0.0,
        engine_enable_integrity_checks=False,
        rwlock_timeout=9.0,
        rwlock_failure_action="panic",
        replication_verify_ssl=False,
        replication_ca_path=str(ini),
        system_events_enabled=False,
        system_events_quota_size=1_000_000,
        system_events_remote_verify_ssl=False,
        system_events_remote_ca_path=str(ini),
        system_events_remote_timeout=7.0,
        instance_name="edge-1",
        public_url="https://reduct.example/api/",
        link_signing_key="k" * 32,
        integrity="digest",
        log_key_path=str(ini),
        metrics=False,
        metrics_auth=False,
        access_log=False,
        log_format="json",
    )


def test_short_options():
    """-c and -d are short for --config and --data-path."""
    options = parse(["-d", "x"])
    assert options["data-path"] == "x"
    assert options.config.data_path == "x"


def test_options_read_os_environ(monkeypatch):
    """Without an explicit environment, Options reads os.environ (as under twistd)."""
    monkeypatch.setenv("RS_PORT", "9999")
    options = Options()
    options.parseOptions([])
    assert options.config.port == 9999


def test_command_line_beats_environment():
    """--data-path overrides RS_DATA_PATH."""
    options = parse(["--data-path", "cli"], {"RS_DATA_PATH": "env"})
    assert options.config.data_path == "cli"


@pytest.mark.parametrize(
    "argv, environ, message",
    [
        (
            ["--log-level", "bogus"],
            {},
            "--log-level='bogus' is not a log level; expected one of "
            "TRACE, DEBUG, INFO, WARN, ERROR (command line)",
        ),
        ([], {"RS_PORT": "abc"}, "RS_PORT='abc' is not a port number (environment)"),
        (
            ["--listen", "tcp:abc"],
            {},
            "listen endpoint 'tcp:abc' is not usable: ValueError: "
            "invalid literal for int() with base 10: 'abc'",
        ),
    ],
)
def test_config_error_is_usage_error(argv, environ, message):
    """A ConfigError becomes a one-line UsageError; the usage text shrinks to a hint."""
    options = Options(environ=environ)
    with pytest.raises(usage.UsageError) as e:
        options.parseOptions(argv)
    assert str(e.value) == message
    assert options.getUsage() == "Run 'twistd reduct --help' for the options.\n"


def test_missing_config_file(tmp_path):
    """--config naming a missing file is a UsageError."""
    path = str(tmp_path / "nope.ini")
    with pytest.raises(usage.UsageError, match="cannot read config file"):
        parse(["--config", path])


def test_systemd_endpoint_without_socket(monkeypatch):
    """A systemd: endpoint with no inherited socket is refused with a hint."""
    with pytest.raises(usage.UsageError) as e:
        parse(["--listen", "systemd:domain=INET:index=5"])
    assert "is the daemon started by a systemd .socket unit?" in str(e.value)


def test_usage_lists_options():
    """The normal usage text documents every option with its RS_* name."""
    text = Options(environ={}).getUsage()
    for flag, env in [
        ("--data-path", "RS_DATA_PATH"),
        ("--api-base-path", "RS_API_BASE_PATH"),
        ("--log-level", "RS_LOG_LEVEL"),
        ("--listen", "RS_LISTEN"),
    ]:
        assert flag in text and env in text


def test_version(capsys):
    """--version prints our version and the ReductStore API version, then exits."""
    from reduct_twisted import REDUCT_VERSION, __version__

    with pytest.raises(SystemExit) as e:
        parse(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out == (
        f"reduct-twisted {__version__} (ReductStore API {REDUCT_VERSION})\n"
    )


def test_service_tree(tmp_path):
    """makeService builds the top service, the storage service, the assembled
    replication service, the drain of the assembled site and one listener."""
    top, reactor = build(["--data-path", str(tmp_path)])
    assert IService.providedBy(top)
    assert isinstance(top, logs.LevelFilteredService)
    assert top.name == "reduct"
    names = [(s.name, type(s)) for s in top]
    assert names == [
        ("storage", StorageService),
        ("system-events", NullSystemEvents),
        ("replication", FakeReplications),
        ("drain", DrainService),
        ("listen:tcp:8383:interface=0.0.0.0", StreamServerEndpointService),
    ]
    storage = top.getServiceNamed("storage")
    assert storage.engine.data_path == str(tmp_path)
    assert storage.engine.clock is reactor
    assert storage.engine.opened  # opened while building, not at start
    listener = top.getServiceNamed("listen:tcp:8383:interface=0.0.0.0")
    site = listener.factory
    assert site == FakeSite(
        storage.engine,
        parse(["--data-path", str(tmp_path)]).config,
        reactor,
        storage.threadpool,
        Provisioning(buckets=[], tokens=[]),
    )
    assert top.getServiceNamed("drain").drain is site.drain
    assert isinstance(listener.endpoint, AnnouncingEndpoint)
    inner = listener.endpoint.endpoint
    assert isinstance(inner, TCP4ServerEndpoint)
    assert (inner._port, inner._interface) == (8383, "0.0.0.0")


def test_one_listener_per_endpoint():
    """Each --listen endpoint gets its own listener service, in order."""
    top, _ = build(
        ["--listen", "tcp:1:interface=127.0.0.1", "--listen", "tcp6:2:interface=\\:\\:1"]
    )
    assert [s.name for s in top] == [
        "storage",
        "system-events",
        "replication",
        "drain",
        "listen:tcp:1:interface=127.0.0.1",
        "listen:tcp6:2:interface=\\:\\:1",
    ]


def test_start_listens_and_logs(log_events):
    """Starting the tree listens on each endpoint and logs 'listening on host:port'."""
    top, reactor = build(["--listen", "tcp:8999:interface=127.0.0.1"])
    top.startService()
    try:
        [(port, factory, backlog, interface)] = reactor.tcpServers
        assert (port, interface) == (8999, "127.0.0.1")
        assert isinstance(factory, FakeSite)
        lines = [e for e in log_events if "listening on" in e.get("log_format", "")]
        assert len(lines) == 1
        assert lines[0]["scheme"] == "http"
        assert lines[0]["endpoint"] == "tcp:8999:interface=127.0.0.1"
        assert lines[0]["where"].endswith(":8999")
    finally:
        top.stopService()
    assert reactor.getDelayedCalls() == []
    assert top.getServiceNamed("storage").engine.closed


@pytest.mark.parametrize(
    "argv, warned",
    [
        (["--listen", "tcp:8999:interface=0.0.0.0"], True),
        (["--listen", "tcp6:8999:interface=\\:\\:"], True),
        (["--listen", "tcp:8999:interface=127.0.0.1"], False),
        (["--listen", "tcp6:8999:interface=\\:\\:1"], False),
        (["--listen", "tcp:8999:interface=0.0.0.0", "--api-token", "t"], False),
    ],
)
def test_open_access_beyond_loopback_warns(argv, warned, log_events):
    """Without a token, listening beyond loopback logs a warning (once per port)."""

    class BindingReactor(MemoryReactorClock):
        # MemoryReactor's ports report 0.0.0.0 whatever the interface.
        def listenTCP(self, port, factory, backlog=50, interface=""):
            listening = super().listenTCP(port, factory, backlog, interface)
            kind = IPv6Address if ":" in interface else IPv4Address
            listening.getHost = lambda: kind("TCP", interface, port)
            return listening

    top, reactor = build(argv, BindingReactor())
    top.startService()
    try:
        lines = [e for e in log_events if "Authentication is disabled" in e.get("log_format", "")]
        assert len(lines) == (1 if warned else 0)
        if warned:
            assert lines[0]["log_level"] == LogLevel.warn
    finally:
        top.stopService()


def test_provisioning_read_from_the_options_environment(tmp_path):
    """RS_BUCKET_* / RS_TOKEN_* of the environment twistd was started with reach the site."""
    environ = {
        "RS_DATA_PATH": str(tmp_path),
        "RS_BUCKET_A_NAME": "provisioned",
        "RS_BUCKET_A_QUOTA_TYPE": "FIFO",
        "RS_TOKEN_A_NAME": "reader",
        "RS_TOKEN_A_VALUE": "secret",
        "RS_TOKEN_A_READ": "provisioned",
    }
    top, _ = build([], environ=environ)
    site = top.getServiceNamed("listen:tcp:8383:interface=0.0.0.0").factory
    [bucket] = site.provisioning.buckets
    assert (bucket.name, bucket.settings) == ("provisioned", {"quota_type": "FIFO"})
    [token] = site.provisioning.tokens
    assert (token.name, token.permissions["read"]) == ("reader", ["provisioned"])


def test_corrupt_token_file_is_one_line(tmp_path):
    """An unreadable token file stops start-up with one line, no traceback."""
    (tmp_path / ".auth.json").write_text("{not json")
    options = parse(["--data-path", str(tmp_path)], {"RS_API_TOKEN": "t"})
    with pytest.raises(SystemExit) as caught:
        makeService(options, MemoryReactorClock(), engine_factory=FakeEngine)
    message = str(caught.value.code)
    assert message.startswith("reduct: ") and ".auth.json" in message and "\n" not in message


def test_listen_failure_logged(log_events):
    """A listener that cannot listen logs one critical line and ends start-up
    with SystemExit (no traceback of twistd's own start-up code)."""
    from twisted.internet.defer import fail
    from twisted.internet.error import CannotListenError

    class Refusing:
        def listen(self, factory):
            return fail(CannotListenError("127.0.0.1", 1, OSError("in use")))

    endpoint = AnnouncingEndpoint(Refusing(), "tcp:1", "http")
    failures = []
    endpoint.listen(object()).addErrback(failures.append)
    assert failures[0].check(SystemExit) and failures[0].value.code == 1
    [event] = [e for e in log_events if e.get("endpoint") == "tcp:1"]
    assert event["log_level"] == LogLevel.critical
    assert "Cannot listen on" in event["log_format"]


def test_certificate_gives_ssl_listener(certificate):
    """RS_CERT_PATH and RS_CERT_KEY_PATH turn the derived listener into ssl:."""
    cert, key = certificate
    environ = {"RS_CERT_PATH": cert, "RS_CERT_KEY_PATH": key, "RS_PORT": "8443"}
    top, _ = build([], environ=environ)
    [listener] = [s for s in top if s.name.startswith("listen:")]
    assert listener.name.startswith("listen:ssl:8443:")
    assert isinstance(listener.endpoint.endpoint, SSL4ServerEndpoint)
    assert listener.endpoint.scheme == "https"


def test_bad_certificate_is_usage_error(tmp_path):
    """Certificate files that do not load are refused before anything starts."""
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("not a certificate")
    key.write_text("not a key")
    environ = {"RS_CERT_PATH": str(cert), "RS_CERT_KEY_PATH": str(key)}
    with pytest.raises(usage.UsageError, match=r"^listen endpoint 'ssl:8383:"):
        parse([], environ)


def test_engine_open_failure_stops_start_up(tmp_path):
    """If the engine cannot open its directory, makeService stops at once with one line."""

    class Unopenable(FakeEngine):
        def open(self):
            raise PermissionError(13, "Permission denied")

    options = parse([])
    with pytest.raises(SystemExit) as e:
        makeService(
            options, MemoryReactorClock(), engine_factory=Unopenable, assemble=fake_assemble
        )
    assert e.value.code == "reduct: cannot use data path 'reduct-data': Permission denied"


# Log level filtering


def collecting_factory(seen):
    def factory():
        return seen.append

    return factory


@pytest.mark.parametrize(
    "level, shown",
    [
        ("TRACE", ["debug", "info", "warn", "error", "critical"]),
        ("DEBUG", ["debug", "info", "warn", "error", "critical"]),
        ("INFO", ["info", "warn", "error", "critical"]),
        ("WARN", ["warn", "error", "critical"]),
        ("ERROR", ["error", "critical"]),
    ],
)
def test_application_gets_filtered_observer(level, shown):
    """Attached to a twistd Application, the top service installs a level filter."""
    seen = []
    top = logs.LevelFilteredService(collecting_factory(seen), level)
    application = Application("reduct")
    top.setServiceParent(application)
    observer = application.getComponent(ILogObserver)
    assert isinstance(observer, FilteringLogObserver)
    for name in ["debug", "info", "warn", "error", "critical"]:
        observer({"log_level": LogLevel.levelWithName(name), "log_namespace": "x"})
    assert [e["log_level"].name for e in seen] == shown
    assert list(IService(application)) == [top]


def test_existing_observer_component_kept():
    """An Application that already has an observer keeps it."""
    application = Application("reduct")
    mine = []
    application.setComponent(ILogObserver, mine.append)
    logs.LevelFilteredService(collecting_factory([]), "ERROR").setServiceParent(application)
    assert application.getComponent(ILogObserver) == mine.append


def test_no_factory_no_component():
    """Outside twistd (no observer factory) nothing is installed."""
    application = Application("reduct")
    logs.LevelFilteredService(None, "ERROR").setServiceParent(application)
    assert application.getComponent(ILogObserver, None) is None


def test_events_without_level_pass():
    """Events with no level or namespace are not dropped by the filter."""
    seen = []
    observer = logs.filtered(seen.append, "ERROR")
    observer({"log_format": "no level"})
    observer({"log_level": LogLevel.error, "log_format": "no namespace"})
    observer({"log_level": LogLevel.info, "log_namespace": "x"})
    assert [e["log_format"] for e in seen] == ["no level", "no namespace"]


def test_real_parts_wire_up(tmp_path):
    """With the default factories, the real engine and Site are built and run."""
    from twisted.web.server import Site

    from reduct_twisted.replication import ReplicationManager
    from reduct_twisted.storage import StorageEngine

    reactor = MemoryReactorClock()
    options = parse(["--data-path", str(tmp_path / "data")])
    top = makeService(options, reactor)
    storage = top.getServiceNamed("storage")
    assert isinstance(storage.engine, StorageEngine)
    assert (tmp_path / "data").is_dir()
    [listener] = [s for s in top if s.name.startswith("listen:")]
    assert isinstance(listener.factory, Site)
    # The replication senders stop after the listeners, before the storage.
    assert [s.name for s in top][:3] == ["storage", "system-events", "replication"]
    replications = top.getServiceNamed("replication")
    assert isinstance(replications, ReplicationManager)
    assert replications is listener.factory.router.replications
    assert storage.engine.listeners == [replications]
    top.startService()
    assert reactor.tcpServers[0][1] is listener.factory
    top.stopService()
    assert reactor.getDelayedCalls() == []


def test_unusable_data_path_is_one_line(tmp_path):
    """A data path that cannot be created stops start-up with one message, not a traceback."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    options = Options(environ={})
    options.parseOptions(["--data-path", str(blocker / "data"), "--listen", "tcp:0"])
    with pytest.raises(SystemExit) as e:
        makeService(options, MemoryReactorClock())
    assert e.value.code == f"reduct: cannot use data path {str(blocker / 'data')!r}: Not a directory"

"""Tests for ``reduct_twisted.config``: defaults, precedence, errors, the sample ini."""

import re

import attrs
import pytest

from reduct_twisted.config import (
    ENV_NAMES,
    FIELDS,
    Config,
    ConfigError,
    load_config,
)
from reduct_twisted.config_limits import RateLimit
from reduct_twisted.config_values import normalise_base_path, parse_whole_number
from tests.conftest import REPO_ROOT

SAMPLE_INI = REPO_ROOT / "etc" / "reduct-twisted.ini"


def write_ini(tmp_path, text, name="reduct.ini"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_defaults_are_pinned():
    """Every default is the documented one."""
    assert {f: getattr(Config(), f) for f in FIELDS} == {
        "data_path": "reduct-data",
        "host": "0.0.0.0",
        "port": 8383,
        "listen": (),
        "api_base_path": "/",
        "log_level": "INFO",
        "cert_path": None,
        "cert_key_path": None,
        "quota_interval": 5.0,
        "query_expiry_interval": 1.0,
        "block_index_interval": 30.0,
        "threadpool_size": 4,
        "sync": "always",
        "idle_timeout": 60.0,
        "header_timeout": 10.0,
        "replication_timeout": 5.0,
        "replication_log_size": 1_000_000,
        "api_token": None,
        "cors_allow_origin": (),
        "io_batch_max_size": 8_000_000,
        "io_batch_max_records": 85,
        "io_batch_max_metadata_size": 512_000,
        "io_batch_timeout": 5.0,
        "io_batch_records_timeout": 1.0,
        "io_operation_timeout": 30.0,
        "io_max_writers_in_flight": 0,
        "shutdown_timeout": 10.0,
        "lock_file_timeout": 0.0,
        "table_cache_size": 64 << 20,
        # query links (config_links.py)
        "public_url": None,
        "link_signing_key": None,
        # limits, role, replication TLS (config_limits.py)
        "engine_max_storage_size": 0,
        "rate_limit_api": None,
        "rate_limit_ingress": None,
        "rate_limit_egress": None,
        "instance_role": "STANDALONE",
        "lock_file_ttl": 30.0,
        "lock_file_polling_interval": 0.1,
        "engine_compaction_interval": 60.0,
        "engine_enable_integrity_checks": True,
        "rwlock_timeout": 60.0,
        "rwlock_failure_action": "error",
        "io_max_readers_in_flight": None,
        "replication_verify_ssl": True,
        "replication_ca_path": None,
        # $system events (config_system.py)
        "system_events_enabled": True,
        "system_events_quota_size": None,
        "system_events_remote_verify_ssl": True,
        "system_events_remote_ca_path": None,
        "system_events_remote_timeout": 5.0,
        "instance_name": None,
        "audit_enabled": None,
        "audit_quota_size": None,
        "audit_remote_verify_ssl": None,
        "audit_remote_ca_path": None,
        "audit_remote_timeout": None,
        # record integrity (config_integrity.py)
        "integrity": "log",
        "log_key_path": None,
        # /metrics (config_metrics.py)
        "metrics": True,
        "metrics_auth": True,
        # logs (config_logs.py)
        "access_log": True,
        "log_format": "text",
    }


def test_nothing_given_is_defaults():
    """With no file, no variables and no options, the defaults result."""
    assert load_config({}, {}, None) == Config()


def test_config_is_frozen():
    """A Config cannot be changed after it is built."""
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        Config().port = 1


@pytest.mark.parametrize(
    "given, expected",
    [
        ("/", "/"),
        ("reduct", "/reduct/"),
        ("/reduct", "/reduct/"),
        ("reduct/", "/reduct/"),
        ("/a/b/", "/a/b/"),
    ],
)
def test_base_path_normalised(given, expected):
    """A leading and a trailing slash are added when missing, as upstream 1.15.5."""
    assert normalise_base_path(given) == expected
    assert Config(api_base_path=given).api_base_path == expected
    assert load_config({"api_base_path": given}, {}, None).api_base_path == expected


@pytest.mark.parametrize(
    "given, expected",
    [("warning", "WARN"), ("WARN", "WARN"), ("trace", "TRACE"), ("Debug", "DEBUG")],
)
def test_log_level_spellings(given, expected):
    """Log levels are case-insensitive and WARNING is stored as WARN."""
    assert load_config({}, {"RS_LOG_LEVEL": given}, None).log_level == expected


def test_endpoint_derived_from_host_and_port():
    """Without listen, one tcp: endpoint is built from host and port."""
    assert Config().listen_endpoints() == ("tcp:8383:interface=0.0.0.0",)
    config = Config(host="::1", port=9000)
    assert config.listen_endpoints() == (r"tcp:9000:interface=\:\:1",)


def test_endpoint_ssl_with_certificate():
    """With both certificate files, the derived endpoint is ssl:."""
    config = Config(cert_path="/c/cert.pem", cert_key_path="/c/key.pem", port=8443)
    assert config.tls
    assert config.listen_endpoints() == (
        "ssl:8443:interface=0.0.0.0:privateKey=/c/key.pem:certKey=/c/cert.pem",
    )


def test_listen_replaces_host_and_port():
    """Explicit listen endpoints are used as they are."""
    config = Config(listen=["tcp:1:interface=127.0.0.1", "systemd:domain=INET:index=0"])
    assert config.listen_endpoints() == (
        "tcp:1:interface=127.0.0.1",
        "systemd:domain=INET:index=0",
    )


@pytest.fixture
def certs(tmp_path):
    """Three certificate/key pairs (contents do not matter to the loader)."""
    paths = {}
    for n in "abc":
        for kind in ("cert", "key"):
            p = tmp_path / f"{kind}-{n}.pem"
            p.write_text("x")
            paths[kind, n] = str(p)
    return paths


# field -> (ini value, env value, cli value, expected ini, env, cli)
def precedence_cases(certs):
    return {
        "data_path": ("ini-data", "env-data", "cli-data", "ini-data", "env-data", "cli-data"),
        "host": ("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.1", "10.0.0.2", "10.0.0.3"),
        "port": ("1001", "1002", "1003", 1001, 1002, 1003),
        "listen": (
            "\n tcp:1:interface=127.0.0.1\n tcp:2:interface=127.0.0.1",
            "tcp:3 tcp:4",
            ["tcp:5"],
            ("tcp:1:interface=127.0.0.1", "tcp:2:interface=127.0.0.1"),
            ("tcp:3", "tcp:4"),
            ("tcp:5",),
        ),
        "api_base_path": ("ini", "/env", "cli/", "/ini/", "/env/", "/cli/"),
        "log_level": ("debug", "WARNING", "ERROR", "DEBUG", "WARN", "ERROR"),
        "cert_path": (
            certs["cert", "a"],
            certs["cert", "b"],
            certs["cert", "c"],
            certs["cert", "a"],
            certs["cert", "b"],
            certs["cert", "c"],
        ),
        "cert_key_path": (
            certs["key", "a"],
            certs["key", "b"],
            certs["key", "c"],
            certs["key", "a"],
            certs["key", "b"],
            certs["key", "c"],
        ),
        "quota_interval": ("10", "0.5", "60", 10.0, 0.5, 60.0),
        "query_expiry_interval": ("2", "3.5", "4", 2.0, 3.5, 4.0),
        "block_index_interval": ("20", "0.5", "90", 20.0, 0.5, 90.0),
        "threadpool_size": ("1", "8", "16", 1, 8, 16),
        "sync": ("none", "ALWAYS", "none", "none", "always", "none"),
        "idle_timeout": ("30", "45.5", "90", 30.0, 45.5, 90.0),
        "header_timeout": ("5", "2", "1", 5.0, 2.0, 1.0),
        "replication_timeout": ("2", "7.5", "30", 2.0, 7.5, 30.0),
        "replication_log_size": ("10", "1000", "5", 10, 1000, 5),
        "api_token": ("tok-ini", " tok-env ", "tok-cli", "tok-ini", "tok-env", "tok-cli"),
        "cors_allow_origin": (
            "https://a.example,\n https://b.example",
            " https://c.example , https://d.example:8443 ",
            "*",
            ("https://a.example", "https://b.example"),
            ("https://c.example", "https://d.example:8443"),
            ("*",),
        ),
        "io_batch_max_size": ("1000", "10.4 MB", "1KiB", 1000, 10_400_000, 1024),
        "io_batch_max_records": ("3", " 200 ", "1", 3, 200, 1),
        "io_batch_max_metadata_size": ("6000", "1mb", "64 KiB", 6000, 1_000_000, 65536),
        "io_batch_timeout": ("1", "0.5", "10", 1.0, 0.5, 10.0),
        "io_batch_records_timeout": ("2", "0.25", "3", 2.0, 0.25, 3.0),
        "io_operation_timeout": ("10", "2.5", "120", 10.0, 2.5, 120.0),
        "io_max_writers_in_flight": ("0", " 4 ", "1", 0, 4, 1),
        "shutdown_timeout": ("3", "0.5", "20", 3.0, 0.5, 20.0),
        "lock_file_timeout": ("0", "2.5", "60", 0.0, 2.5, 60.0),
        "table_cache_size": ("1000", "1 MiB", "8MB", 1000, 1 << 20, 8_000_000),
        # query links (config_links.py)
        "public_url": ("http://a.example", "https://b.example:8443/r/", "http://[::1]:1/x",
                       "http://a.example/", "https://b.example:8443/r/", "http://[::1]:1/x/"),
        "link_signing_key": ("k" * 32, " " + "e" * 40 + " ", "c" * 33,
                             "k" * 32, "e" * 40, "c" * 33),
        # limits, role, replication TLS (config_limits.py)
        "engine_max_storage_size": ("1000", "10 GB", "1KiB", 1000, 10_000_000_000, 1024),
        "rate_limit_api": ("100", "100req/m", " 5 req / 30s ",
                           RateLimit(100, 3600), RateLimit(100, 60), RateLimit(5, 30)),
        "rate_limit_ingress": ("10MB/s", "1 GiB/h", "512/1h 30m",
                               RateLimit(10_000_000, 1), RateLimit(1 << 30, 3600),
                               RateLimit(512, 5400)),
        "rate_limit_egress": ("2KB", "10MB/ms", "1000/2d",
                              RateLimit(2000, 3600), RateLimit(10_000_000, 1),
                              RateLimit(1000, 172800)),
        "instance_role": ("standalone", "Standalone", "STANDALONE",
                          "STANDALONE", "STANDALONE", "STANDALONE"),
        "lock_file_ttl": ("10", "20", "30", 10.0, 20.0, 30.0),
        "lock_file_polling_interval": ("1", "0.5", "10", 1.0, 0.5, 10.0),
        "engine_compaction_interval": ("0", "30", "90", 0.0, 30.0, 90.0),
        "engine_enable_integrity_checks": ("false", "Yes", "off", False, True, False),
        "rwlock_timeout": ("1", "2", "3", 1.0, 2.0, 3.0),
        "rwlock_failure_action": ("panic", "ERROR", "panic", "panic", "error", "panic"),
        "io_max_readers_in_flight": ("0", "10", "3", 0, 10, 3),
        "replication_verify_ssl": ("no", "1", "false", False, True, False),
        "replication_ca_path": (
            certs["cert", "a"], certs["cert", "b"], certs["cert", "c"],
            certs["cert", "a"], certs["cert", "b"], certs["cert", "c"],
        ),
        # $system events (config_system.py)
        "system_events_enabled": ("off", "YES", "0", False, True, False),
        "system_events_quota_size": ("1000", "1 MiB", "10GB", 1000, 1 << 20, 10_000_000_000),
        "system_events_remote_verify_ssl": ("false", "on", "no", False, True, False),
        "system_events_remote_ca_path": ("ca1.pem", "ca2.pem", "ca3.pem", "ca1.pem", "ca2.pem", "ca3.pem"),
        "system_events_remote_timeout": ("1", "2.5", "10", 1.0, 2.5, 10.0),
        "instance_name": ("node-a", " node.b ", "node c", "node-a", "node.b", "node c"),
        "audit_enabled": ("true", "false", "1", "true", "false", "1"),
        "audit_quota_size": ("1GB", "2GB", "3GB", "1GB", "2GB", "3GB"),
        "audit_remote_verify_ssl": ("true", "false", "1", "true", "false", "1"),
        "audit_remote_ca_path": ("a", "b", "c", "a", "b", "c"),
        "audit_remote_timeout": ("1", "2", "3", "1", "2", "3"),
        # record integrity (config_integrity.py)
        "integrity": ("off", " Digest ", "LOG", "off", "digest", "log"),
        "log_key_path": ("k1", "k2", "k3", "k1", "k2", "k3"),
        # /metrics (config_metrics.py)
        "metrics": ("off", "on", "false", False, True, False),
        "metrics_auth": ("no", "on", "off", False, True, False),
        # logs (config_logs.py)
        "access_log": ("off", "Yes", "0", False, True, False),
        "log_format": ("json", " Text ", "JSON", "json", "text", "json"),
    }


@pytest.mark.parametrize("field", FIELDS)
def test_precedence(field, tmp_path, certs):
    """For every field: ini beats the default, RS_* beats ini, the command line beats RS_*."""
    ini, env, cli, want_ini, want_env, want_cli = precedence_cases(certs)[field]
    # The certificate pair must stay complete; the other half comes from ini.
    extra = ""
    if field == "cert_path":
        extra = f"cert_key_path = {certs['key', 'a']}\n"
    elif field == "cert_key_path":
        extra = f"cert_path = {certs['cert', 'a']}\n"
    ini_path = write_ini(tmp_path, f"[reduct]\n{extra}{field} = {ini}\n")
    environ = {ENV_NAMES[field]: env}

    assert getattr(load_config({}, {}, ini_path), field) == want_ini
    assert getattr(load_config({}, environ, ini_path), field) == want_env
    assert getattr(load_config({field: cli}, environ, ini_path), field) == want_cli
    if not field.startswith("cert"):  # the certificate pair needs its other half
        assert getattr(load_config({}, environ, None), field) == want_env
        assert getattr(load_config({field: cli}, {}, None), field) == want_cli


def test_precedence_mixes_fields(tmp_path):
    """Layers merge field by field: a field set only in the ini file survives."""
    ini_path = write_ini(tmp_path, "[reduct]\nport = 1\nhost = 127.0.0.1\n")
    config = load_config({"data_path": "d"}, {"RS_PORT": "2"}, ini_path)
    assert (config.host, config.port, config.data_path) == ("127.0.0.1", 2, "d")


def test_empty_values_do_not_override(tmp_path):
    """An empty value at a layer means 'not set here'."""
    ini_path = write_ini(tmp_path, "[reduct]\nport = 1\nlisten =\n")
    config = load_config({"port": None, "listen": []}, {"RS_PORT": "  "}, ini_path)
    assert (config.port, config.listen) == (1, ())


def test_unrelated_environment_ignored():
    """RS_* variables we do not know (upstream's other knobs) are ignored."""
    environ = {"RS_BUCKET_1_NAME": "b", "RS_EXT_PATH": "/ext", "PORT": "1"}
    assert load_config({}, environ, None) == Config()


def test_api_token_masked_in_repr():
    """The configuration is logged at debug level: its repr never shows the token."""
    config = load_config({}, {"RS_API_TOKEN": "s3cret"}, None)
    assert config.api_token == "s3cret"
    assert "s3cret" not in repr(config) and "api_token='***'" in repr(config)
    assert "api_token=None" in repr(Config())


@pytest.mark.parametrize(
    "layer, field, value, message",
    [
        ("env", "port", "abc", "RS_PORT='abc' is not a port number (environment)"),
        (
            "env",
            "sync",
            "sometimes",
            "RS_SYNC='sometimes' is not a sync policy; expected always or none (environment)",
        ),
        (
            "env",
            "header_timeout",
            "0",
            "RS_HEADER_TIMEOUT='0' must be a positive number of seconds (environment)",
        ),
        (
            "env",
            "port",
            "70000",
            "RS_PORT='70000' is not a port number (0 to 65535) (environment)",
        ),
        ("cli", "port", "-1", "--port='-1' is not a port number (0 to 65535) (command line)"),
        (
            "ini",
            "port",
            "8383 ; comment",
            "port='8383 ; comment' is not a port number (config file INI)",
        ),
        (
            "cli",
            "log_level",
            "bogus",
            "--log-level='bogus' is not a log level; expected one of "
            "TRACE, DEBUG, INFO, WARN, ERROR (command line)",
        ),
        (
            "env",
            "quota_interval",
            "-1",
            "RS_QUOTA_INTERVAL='-1' must be a positive number of seconds (environment)",
        ),
        (
            "ini",
            "query_expiry_interval",
            "0",
            "query_expiry_interval='0' must be a positive number of seconds (config file INI)",
        ),
        (
            "env",
            "query_expiry_interval",
            "soon",
            "RS_QUERY_EXPIRY_INTERVAL='soon' is not a number of seconds (environment)",
        ),
        (
            "env",
            "quota_interval",
            "nan",
            "RS_QUOTA_INTERVAL='nan' must be a positive number of seconds (environment)",
        ),
        (
            "env",
            "quota_interval",
            "inf",
            "RS_QUOTA_INTERVAL='inf' must be a positive number of seconds (environment)",
        ),
        ("env", "threadpool_size", "0", "RS_THREADPOOL_SIZE='0' must be at least 1 (environment)"),
        (
            "env",
            "replication_log_size",
            "0",
            "RS_REPLICATION_LOG_SIZE='0' must be at least 1 (environment)",
        ),
        (
            "cli",
            "replication_timeout",
            "0",
            "--replication-timeout='0' must be a positive number of seconds (command line)",
        ),
        (
            "ini",
            "threadpool_size",
            "many",
            "threadpool_size='many' is not a whole number (config file INI)",
        ),
        ("env", "host", "a b", "RS_HOST='a b' must not contain white space (environment)"),
        (
            "cli",
            "api_base_path",
            "/x?y",
            "--api-base-path='/x?y' must be a URL path without '?' or '#' (command line)",
        ),
        (
            "env",
            "listen",
            "tcp:1 tcp:1",
            "RS_LISTEN='tcp:1 tcp:1' names the same endpoint twice (environment)",
        ),
        (
            "cli",
            "listen",
            ["tcp:1", "tcp:1"],
            "--listen='tcp:1 tcp:1' names the same endpoint twice (command line)",
        ),
        (
            "env",
            "cors_allow_origin",
            "https://a.example, https://b .example",
            "RS_CORS_ALLOW_ORIGIN='https://a.example, https://b .example' is not a "
            "comma-separated list of origins: 'https://b .example' has white space or a "
            "character outside printable ASCII (environment)",
        ),
        (
            "ini",
            "cors_allow_origin",
            "https://ü.example",
            "cors_allow_origin='https://ü.example' is not a comma-separated list of origins: "
            "'https://ü.example' has white space or a character outside printable ASCII "
            "(config file INI)",
        ),
        (
            "env",
            "io_batch_max_size",
            "lots",
            "RS_IO_BATCH_MAX_SIZE='lots' is not a byte size (such as 512, 10.4 MB or 1 GiB) "
            "(environment)",
        ),
        (
            "cli",
            "io_batch_max_size",
            "8 XB",
            "--io-batch-max-size='8 XB' is not a byte size: unknown unit; use B, KB, MB, GB, "
            "TB, PB or KiB to PiB (command line)",
        ),
        (
            "env",
            "io_batch_max_metadata_size",
            "0",
            "RS_IO_BATCH_MAX_METADATA_SIZE='0' must be at least 1 byte (environment)",
        ),
        (
            "ini",
            "io_batch_max_metadata_size",
            "1.5",
            "io_batch_max_metadata_size='1.5' is not a whole number of bytes (config file INI)",
        ),
        (
            "env",
            "io_batch_max_records",
            "-3",
            "RS_IO_BATCH_MAX_RECORDS='-3' is not a whole number (environment)",
        ),
        (
            "cli",
            "io_batch_max_records",
            "0",
            "--io-batch-max-records='0' must be at least 1 (command line)",
        ),
        (
            "env",
            "io_batch_timeout",
            "0",
            "RS_IO_BATCH_TIMEOUT='0' must be a positive number of seconds (environment)",
        ),
        (
            "env",
            "io_batch_records_timeout",
            "1s",
            "RS_IO_BATCH_RECORDS_TIMEOUT='1s' is not a number of seconds (environment)",
        ),
        (
            "ini",
            "io_operation_timeout",
            "-5",
            "io_operation_timeout='-5' must be a positive number of seconds (config file INI)",
        ),
    ],
)
def test_invalid_values(tmp_path, layer, field, value, message):
    """Each invalid value is refused with one line naming option, value and source."""
    ini_path = None
    cli, environ = {}, {}
    if layer == "ini":
        ini_path = write_ini(tmp_path, f"[reduct]\n{field} = {value}\n")
        message = message.replace("INI", ini_path)
    elif layer == "env":
        environ = {ENV_NAMES[field]: value}
    else:
        cli = {field: value}
    with pytest.raises(ConfigError) as e:
        load_config(cli, environ, ini_path)
    assert str(e.value) == message
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "value, origins",
    [
        ("https://first-allowed-origin.com, https://second-allowed-origin.com",
         ("https://first-allowed-origin.com", "https://second-allowed-origin.com")),
        ("*", ("*",)),
        ("https://a.example,*", ("https://a.example", "*")),
        ("  https://a.example  ", ("https://a.example",)),
        ("https://a.example,,https://a.example, ,", ("https://a.example",)),
        ("http://localhost:3000", ("http://localhost:3000",)),
        (" , ", ()),
    ],
)
def test_cors_origins_parsed(value, origins):
    """RS_CORS_ALLOW_ORIGIN is split at commas and trimmed; empty items and repeats go."""
    assert load_config({}, {"RS_CORS_ALLOW_ORIGIN": value}, None).cors_allow_origin == origins


def test_records_timeout_old_name():
    """RS_IO_BATCH_RECORDS_TIMEOUT_S (before 1.17) is read; the new name wins over it."""
    old = {"RS_IO_BATCH_RECORDS_TIMEOUT_S": "3"}
    assert load_config({}, old, None).io_batch_records_timeout == 3.0
    both = dict(old, RS_IO_BATCH_RECORDS_TIMEOUT="4")
    assert load_config({}, both, None).io_batch_records_timeout == 4.0
    blank = dict(old, RS_IO_BATCH_RECORDS_TIMEOUT=" ")
    assert load_config({}, blank, None).io_batch_records_timeout == 3.0
    with pytest.raises(ConfigError) as e:
        load_config({}, {"RS_IO_BATCH_RECORDS_TIMEOUT_S": "x"}, None)
    assert str(e.value) == (
        "RS_IO_BATCH_RECORDS_TIMEOUT_S='x' is not a number of seconds (environment)"
    )


@pytest.mark.parametrize("text, number", [("0", 0), (" 85 ", 85), (str(2**64 - 1), 2**64 - 1)])
def test_whole_numbers(text, number):
    """parse_whole_number takes digits only, up to 64 bits."""
    assert parse_whole_number(text) == number


@pytest.mark.parametrize("text", ["", "-1", "+1", "1.0", "1e3", "١٢", str(2**64)])
def test_whole_number_garbage(text):
    with pytest.raises(ValueError):
        parse_whole_number(text)


def test_cert_without_key(tmp_path, certs):
    """A certificate without a key is refused, naming both options."""
    with pytest.raises(ConfigError) as e:
        load_config({}, {"RS_CERT_PATH": certs["cert", "a"]}, None)
    assert str(e.value) == (
        f"RS_CERT_PATH={certs['cert', 'a']!r} is set but cert_key_path "
        "(RS_CERT_KEY_PATH) is not; HTTPS needs both or neither (environment)"
    )


def test_key_without_cert(tmp_path, certs):
    """A key without a certificate is refused too."""
    ini_path = write_ini(tmp_path, f"[reduct]\ncert_key_path = {certs['key', 'a']}\n")
    with pytest.raises(ConfigError) as e:
        load_config({}, {}, ini_path)
    assert str(e.value) == (
        f"cert_key_path={certs['key', 'a']!r} is set but cert_path (RS_CERT_PATH) "
        f"is not; HTTPS needs both or neither (config file {ini_path})"
    )


def test_missing_cert_file(tmp_path, certs):
    """A certificate path that is not a file is refused, naming where it came from."""
    missing = str(tmp_path / "nope.pem")
    environ = {"RS_CERT_PATH": missing, "RS_CERT_KEY_PATH": certs["key", "a"]}
    with pytest.raises(ConfigError) as e:
        load_config({}, environ, None)
    assert str(e.value) == f"RS_CERT_PATH={missing!r} is not a file (environment)"


def test_missing_key_file(tmp_path, certs):
    """A key path that is not a file is refused."""
    cli = {"cert_path": certs["cert", "a"], "cert_key_path": str(tmp_path)}
    with pytest.raises(ConfigError) as e:
        load_config(cli, {}, None)
    assert str(e.value) == f"--cert-key-path={str(tmp_path)!r} is not a file (command line)"


def test_unknown_section(tmp_path):
    """A section other than [reduct] is an error."""
    ini_path = write_ini(tmp_path, "[reduct]\n[server]\nport = 1\n")
    with pytest.raises(ConfigError) as e:
        load_config({}, {}, ini_path)
    assert str(e.value) == (
        f"unknown section [server] (config file {ini_path}); only [reduct] is allowed"
    )


def test_default_section_is_not_special(tmp_path):
    """configparser's [DEFAULT] is just another unknown section here."""
    ini_path = write_ini(tmp_path, "[DEFAULT]\nport = 1\n")
    with pytest.raises(ConfigError, match=r"unknown section \[DEFAULT\]"):
        load_config({}, {}, ini_path)


def test_unknown_key(tmp_path):
    """A misspelt key is an error listing the known ones."""
    ini_path = write_ini(tmp_path, "[reduct]\nprot = 1\n")
    with pytest.raises(ConfigError) as e:
        load_config({}, {}, ini_path)
    assert str(e.value) == (
        f"unknown option 'prot' in [reduct] (config file {ini_path}); "
        f"known options: {', '.join(FIELDS)}"
    )


def test_unknown_cli_key():
    """load_config refuses a command-line key that is not a field."""
    with pytest.raises(ConfigError, match=r"unknown option 'prot' \(command line\)"):
        load_config({"prot": "1"}, {}, None)


def test_missing_ini_file(tmp_path):
    """A --config file that cannot be read is an error."""
    path = str(tmp_path / "absent.ini")
    with pytest.raises(ConfigError) as e:
        load_config({}, {}, path)
    assert str(e.value) == f"cannot read config file {path}: No such file or directory"


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("port = 1\n", "File contains no section headers"),
        ("[reduct]\nport = 1\nport = 2\n", "option 'port' in section 'reduct' already exists"),
        ("[reduct]\n[reduct]\n", "section 'reduct' already exists"),
    ],
)
def test_malformed_ini(tmp_path, text, fragment):
    """A syntactically broken file is reported in one line."""
    ini_path = write_ini(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config({}, {}, ini_path)
    message = str(e.value)
    assert message.startswith(f"cannot parse config file {ini_path}: ")
    assert fragment in message
    assert "\n" not in message


def test_ini_without_reduct_section(tmp_path):
    """An empty file (or one with only comments) gives the defaults."""
    ini_path = write_ini(tmp_path, "# nothing\n")
    assert load_config({}, {}, ini_path) == Config()


def test_shipped_sample_is_defaults():
    """etc/reduct-twisted.ini as shipped parses to exactly the defaults."""
    assert load_config({}, {}, str(SAMPLE_INI)) == Config()


SETTING_LINE = re.compile(r"^#\s*([a-z_]+)\s*=(.*)$")


def test_shipped_sample_uncommented_is_defaults(tmp_path):
    """Uncommenting every setting in the sample still gives the defaults."""
    lines = SAMPLE_INI.read_text().splitlines()
    uncommented, seen = [], []
    for line in lines:
        m = SETTING_LINE.match(line)
        if m and m.group(1) in FIELDS:
            seen.append(m.group(1))
            line = f"{m.group(1)} ={m.group(2)}"
        uncommented.append(line)
    assert sorted(seen) == sorted(FIELDS)  # every field, once
    ini_path = write_ini(tmp_path, "\n".join(uncommented) + "\n")
    assert load_config({}, {}, ini_path) == Config()


def test_shipped_sample_documents_environment_names():
    """Every RS_* name appears in the sample next to its setting."""
    text = SAMPLE_INI.read_text()
    for field, env in ENV_NAMES.items():
        block = text[: text.index(f"# {field} =")].rsplit("\n\n", 1)[-1]
        assert env in block, field

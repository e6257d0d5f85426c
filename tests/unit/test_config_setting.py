"""
Each setting is declared once (issue #13): the tables of ``config.py`` and
the options of ``tap.py`` are derived from the declarations, and equal the
hand-written tables they replaced.
"""

import attrs
import pytest
from twisted.python import usage

from reduct_twisted import config_links
from reduct_twisted import config_system
from reduct_twisted import config_values as values
from reduct_twisted.config import (
    ENV_ALIASES,
    ENV_NAMES,
    FIELDS,
    SETTINGS,
    Config,
    ConfigError,
    _PARSERS,
    load_config,
)
from reduct_twisted.config_setting import Setting, declarations, document, option_name, setting
from reduct_twisted.tap import Options
from tests.unit.test_config import SAMPLE_INI
from tests.unit.test_tap import parse


def test_shipped_sample_documents_older_environment_names():
    """An older RS_* name still read appears in the sample next to its setting."""
    text = SAMPLE_INI.read_text()
    assert ENV_ALIASES
    for field, env in ENV_ALIASES.items():
        block = text[: text.index(f"# {field} =")].rsplit("\n\n", 1)[-1]
        assert env in block, field


# The tables as they were written out by hand before each setting was
# declared once (issue #13); now they are derived from the declarations.
ENV_NAMES_BEFORE = {
    "data_path": "RS_DATA_PATH",
    "host": "RS_HOST",
    "port": "RS_PORT",
    "api_base_path": "RS_API_BASE_PATH",
    "log_level": "RS_LOG_LEVEL",
    "cert_path": "RS_CERT_PATH",
    "cert_key_path": "RS_CERT_KEY_PATH",
    "listen": "RS_LISTEN",
    "quota_interval": "RS_QUOTA_INTERVAL",
    "query_expiry_interval": "RS_QUERY_EXPIRY_INTERVAL",
    "block_index_interval": "RS_BLOCK_INDEX_INTERVAL",
    "threadpool_size": "RS_THREADPOOL_SIZE",
    "sync": "RS_SYNC",
    "idle_timeout": "RS_IDLE_TIMEOUT",
    "header_timeout": "RS_HEADER_TIMEOUT",
    "replication_timeout": "RS_REPLICATION_TIMEOUT",
    "replication_log_size": "RS_REPLICATION_LOG_SIZE",
    "api_token": "RS_API_TOKEN",
    "cors_allow_origin": "RS_CORS_ALLOW_ORIGIN",
    "io_batch_max_size": "RS_IO_BATCH_MAX_SIZE",
    "io_batch_max_records": "RS_IO_BATCH_MAX_RECORDS",
    "io_batch_max_metadata_size": "RS_IO_BATCH_MAX_METADATA_SIZE",
    "io_batch_timeout": "RS_IO_BATCH_TIMEOUT",
    "io_batch_records_timeout": "RS_IO_BATCH_RECORDS_TIMEOUT",
    "io_operation_timeout": "RS_IO_OPERATION_TIMEOUT",
    "io_max_writers_in_flight": "RS_IO_MAX_WRITERS_IN_FLIGHT",
    "shutdown_timeout": "RS_SHUTDOWN_TIMEOUT",
    "lock_file_timeout": "RS_LOCK_FILE_TIMEOUT",
    "table_cache_size": "RS_TABLE_CACHE_SIZE",
    # query links (config_links.py)
    "public_url": "RS_PUBLIC_URL",
    "link_signing_key": "RS_LINK_SIGNING_KEY",
}

# $system events (config_system.py)
SYSTEM_ENV_NAMES = {
    "system_events_enabled": "RS_SYSTEM_EVENTS_ENABLED",
    "system_events_quota_size": "RS_SYSTEM_EVENTS_QUOTA_SIZE",
    "system_events_remote_verify_ssl": "RS_SYSTEM_EVENTS_REMOTE_VERIFY_SSL",
    "system_events_remote_ca_path": "RS_SYSTEM_EVENTS_REMOTE_CA_PATH",
    "system_events_remote_timeout": "RS_SYSTEM_EVENTS_REMOTE_TIMEOUT",
    "instance_name": "RS_INSTANCE_NAME",
    "audit_enabled": "RS_AUDIT_ENABLED",
    "audit_quota_size": "RS_AUDIT_QUOTA_SIZE",
    "audit_remote_verify_ssl": "RS_AUDIT_REMOTE_VERIFY_SSL",
    "audit_remote_ca_path": "RS_AUDIT_REMOTE_CA_PATH",
    "audit_remote_timeout": "RS_AUDIT_REMOTE_TIMEOUT",
}
ENV_NAMES_BEFORE.update(SYSTEM_ENV_NAMES)

PARSERS_BEFORE = {
    "data_path": values._path,
    "host": values._text,
    "port": values._port,
    "listen": values._endpoints,
    "api_base_path": values._base_path,
    "log_level": values._level,
    "cert_path": values._path,
    "cert_key_path": values._path,
    "quota_interval": values._seconds,
    "query_expiry_interval": values._seconds,
    "block_index_interval": values._seconds,
    "threadpool_size": values._positive_count,
    "sync": values._sync_policy,
    "idle_timeout": values._seconds,
    "header_timeout": values._seconds,
    "replication_timeout": values._seconds,
    "replication_log_size": values._positive_count,
    "api_token": values._secret,
    "cors_allow_origin": values._origins,
    "io_batch_max_size": values._bytes,
    "io_batch_max_records": values._positive_count,
    "io_batch_max_metadata_size": values._bytes,
    "io_batch_timeout": values._seconds,
    "io_batch_records_timeout": values._seconds,
    "io_operation_timeout": values._seconds,
    "io_max_writers_in_flight": values._count,
    "shutdown_timeout": values._seconds,
    "lock_file_timeout": values._wait_seconds,
    "table_cache_size": values._bytes,
    # query links (config_links.py)
    "public_url": config_links._public_url,
    "link_signing_key": config_links._signing_key,
}

#: Fields of the hand-written tables; the others come from the settings
#: classes of issue #15's areas (``config_<area>.py``, bases of ``Config``).
CORE_FIELDS = tuple(f for f in FIELDS if f in ENV_NAMES_BEFORE)
# $system events (config_system.py)
PARSERS_BEFORE.update({
    "system_events_enabled": config_system.parse_switch,
    "system_events_quota_size": values._bytes,
    "system_events_remote_verify_ssl": config_system.parse_switch,
    "system_events_remote_ca_path": values._path,
    "system_events_remote_timeout": values._seconds,
    "instance_name": config_system._instance,
    "audit_enabled": values._text,
    "audit_quota_size": values._text,
    "audit_remote_verify_ssl": values._text,
    "audit_remote_ca_path": values._text,
    "audit_remote_timeout": values._text,
})


@pytest.mark.parametrize("field", FIELDS)
def test_tables_derived_from_one_declaration(field):
    """Each field's environment name, older name and parser come from its one
    declaration, and equal what the hand-written tables held."""
    declared = SETTINGS[field]
    assert isinstance(declared, Setting)
    assert ENV_NAMES[field] == declared.env == ENV_NAMES_BEFORE.get(field, declared.env)
    assert _PARSERS[field] is declared.parse is PARSERS_BEFORE.get(field, declared.parse)
    assert ENV_ALIASES.get(field) == declared.env_alias


def test_tables_have_every_field_once():
    """FIELDS is Config's fields in order; every table has exactly those keys."""
    assert FIELDS == tuple(f.name for f in attrs.fields(Config))
    assert len(set(FIELDS)) == len(FIELDS)
    assert len(CORE_FIELDS) == 31 + len(SYSTEM_ENV_NAMES)
    assert tuple(SETTINGS) == tuple(ENV_NAMES) == tuple(_PARSERS) == FIELDS
    assert {f: ENV_NAMES[f] for f in CORE_FIELDS} == ENV_NAMES_BEFORE
    assert ENV_ALIASES == {"io_batch_records_timeout": "RS_IO_BATCH_RECORDS_TIMEOUT_S"}
    assert len(set(ENV_NAMES.values()) | set(ENV_ALIASES.values())) == len(FIELDS) + 1


def test_only_listen_is_repeated_and_only_api_token_secret():
    """listen takes one item per ini line (and per --listen); api_token is masked."""
    assert [f for f, s in SETTINGS.items() if s.repeated] == ["listen"]
    assert [f for f, s in SETTINGS.items() if s.secret] == ["link_signing_key", "api_token"]


def test_config_docstring_lists_every_field():
    """Config's docstring has an :ivar line, with its RS_* name, for each field."""
    doc = " ".join(Config.__doc__.split())
    for field in FIELDS:
        assert f":ivar {field}: {' '.join(SETTINGS[field].doc.split())}" in doc
        assert f"(``{ENV_NAMES[field]}``)" in doc


def test_declaring_a_setting():
    """A class of setting() fields is all the derivation needs: one declaration
    per field gives its default, converter, parser, variable and doc."""

    @attrs.frozen(kw_only=True)
    class Toy:
        """Toy settings."""

        size: int = setting(3, values._bytes, env="RS_TOY_SIZE", doc="how big.")
        names: tuple = setting(
            (), values._endpoints, env="RS_TOY_NAMES", env_alias="RS_TOY_NAME",
            converter=tuple, repeated=True, doc="what.",
        )
        secret: str | None = setting(None, values._secret, env="RS_TOY_KEY", secret=True, doc="k.")

    found = declarations(Toy)
    assert list(found) == ["size", "names", "secret"]
    assert (found["size"].env, found["size"].parse) == ("RS_TOY_SIZE", values._bytes)
    assert found["names"].env_alias == "RS_TOY_NAME" and found["names"].repeated
    assert Toy(names=["a"]) == Toy(names=("a",))
    assert repr(Toy(secret="s")) == "Toy(size=3, names=(), secret='***')"
    document(Toy, found)
    assert ":ivar size: how big. (``RS_TOY_SIZE``)" in Toy.__doc__


def test_undeclared_field_refused():
    """A Config field made without setting() would be missing from every table: refused."""

    @attrs.frozen
    class Toy:
        size: int = setting(3, values._bytes, env="RS_TOY_SIZE", doc="how big.")
        plain: int = 1

    with pytest.raises(TypeError, match=r"Toy.plain is not declared with setting\(\)"):
        declarations(Toy)


def test_environment_name_declared_twice_refused():
    """Two settings cannot read the same variable (an older name counts too)."""

    @attrs.frozen
    class Toy:
        a: int = setting(3, values._bytes, env="RS_TOY", doc="a.")
        b: int = setting(3, values._bytes, env="RS_TOY_B", env_alias="RS_TOY", doc="b.")

    with pytest.raises(TypeError, match="RS_TOY is declared twice"):
        declarations(Toy)


def test_first_invalid_value_in_field_order_reported():
    """With several invalid variables, the first in field order is reported
    (ENV_NAMES follows Config's field order)."""
    environ = {"RS_LOG_LEVEL": "bogus", "RS_LISTEN": "tcp:1 tcp:1", "RS_PORT": "x"}
    with pytest.raises(ConfigError, match="^RS_PORT="):
        load_config({}, environ, None)
    del environ["RS_PORT"]
    with pytest.raises(ConfigError, match="^RS_LISTEN="):
        load_config({}, environ, None)


# The option table as it was written out by hand before each setting was
# declared once (issue #13); now it is made from the declarations.
OPT_PARAMETERS_BEFORE = [
    ["config", "c", None,
        "Read settings from this ini file ([reduct] section)."
    ],
    ["data-path", "d", None,
        "Directory holding the data. [default: reduct-data; env RS_DATA_PATH]"
    ],
    ["api-base-path", None, None,
        "URL prefix of the API. [default: /; env RS_API_BASE_PATH]"
    ],
    ["log-level", None, None,
        "TRACE, DEBUG, INFO, WARN or ERROR. [default: INFO; env RS_LOG_LEVEL]"
    ],
    ["replication-timeout", None, None,
        "Seconds a request to a replication destination may go without progress. "
        "[default: 5.0; env RS_REPLICATION_TIMEOUT]"
    ],
    ["replication-log-size", None, None,
        "Most records waiting in one replication log; when full, the oldest is dropped. "
        "[default: 1000000; env RS_REPLICATION_LOG_SIZE]"
    ],
    ["api-token", None, None,
        "Turn authentication on; the value of the full-access init-token. Visible to "
        "other users in the process list: prefer RS_API_TOKEN or the config file. "
        "[default: none (open access); env RS_API_TOKEN]"
    ],
    ["cors-allow-origin", None, None,
        "Comma-separated origins whose browser pages may use the API; * for any. "
        "[default: none; env RS_CORS_ALLOW_ORIGIN]"
    ],
    ["io-batch-max-size", None, None,
        "Body bytes after which a batched read is closed (512, 8MB, 1GiB). [default: "
        "8000000; env RS_IO_BATCH_MAX_SIZE]"
    ],
    ["io-batch-max-records", None, None,
        "Records per batched read. [default: 85; env RS_IO_BATCH_MAX_RECORDS]"
    ],
    ["io-batch-max-metadata-size", None, None,
        "Record header bytes after which a batched read is closed. [default: 512000; "
        "env RS_IO_BATCH_MAX_METADATA_SIZE]"
    ],
    ["io-batch-timeout", None, None,
        "Seconds a batched read may gather records. [default: 5.0; env "
        "RS_IO_BATCH_TIMEOUT]"
    ],
    ["io-batch-records-timeout", None, None,
        "Seconds a batched read may wait for its next record. [default: 1.0; env "
        "RS_IO_BATCH_RECORDS_TIMEOUT]"
    ],
    ["io-operation-timeout", None, None,
        "Seconds a request body may stall before the connection is closed. [default: "
        "30.0; env RS_IO_OPERATION_TIMEOUT]"
    ],
    ["io-max-writers-in-flight", None, None,
        "Records written at the same time (0: no limit). [default: 0; env "
        "RS_IO_MAX_WRITERS_IN_FLIGHT]"
    ],
    ["shutdown-timeout", None, None,
        "Seconds in-flight requests may take to finish after SIGTERM. [default: 10.0; "
        "env RS_SHUTDOWN_TIMEOUT]"
    ],
    ["lock-file-timeout", None, None,
        "Seconds to wait for the data directory lock held by another daemon. [default: "
        "0; env RS_LOCK_FILE_TIMEOUT]"
    ],
]

LISTEN_HELP_BEFORE = (
    "Listen on this Twisted server endpoint, e.g. tcp:8383:interface=127.0.0.1, "
    "ssl:8443:privateKey=key.pem:certKey=cert.pem or systemd:domain=INET:index=0. "
    "Repeat to listen on several. [default: tcp:<host>:<port> from the host and "
    "port settings, ssl: when a certificate is set; env RS_LISTEN]"
)

FIELD_OPTIONS_BEFORE = {
    "data_path",
    "api_base_path",
    "log_level",
    "api_token",
    "cors_allow_origin",
    "io_batch_max_size",
    "io_batch_max_records",
    "io_batch_max_metadata_size",
    "io_batch_timeout",
    "io_batch_records_timeout",
    "io_operation_timeout",
    "io_max_writers_in_flight",
    "replication_timeout",
    "replication_log_size",
    "shutdown_timeout",
    "lock_file_timeout",
}


#: Core fields that got a command-line option with issue #15 (spec 1.20 §9).
NEW_OPTIONS = {
    "system_events_enabled", "system_events_quota_size", "system_events_remote_verify_ssl",
    "system_events_remote_ca_path", "system_events_remote_timeout", "instance_name",
    "public_url", "link_signing_key",
}


def test_option_table_derived_from_declarations():
    """optParameters, with every --help text, equals the former hand-written table."""
    # (the $system and query-link options came with issue #15: tests/unit/test_tap.py)
    core = {option_name(f) for f in CORE_FIELDS if f in FIELD_OPTIONS_BEFORE} | {"config"}
    assert [p for p in Options.optParameters if p[0] in core] == OPT_PARAMETERS_BEFORE


def test_listen_option_derived_from_declaration():
    """--listen (repeatable) is collected by a generated opt_listen with the former help."""
    assert Options.opt_listen.__doc__ == LISTEN_HELP_BEFORE
    options = parse(["--listen", "tcp:1", "--listen", "tcp:2"])
    assert options["listen"] == ["tcp:1", "tcp:2"]
    assert options.config.listen == ("tcp:1", "tcp:2")


def test_options_are_the_declared_ones():
    """Every setting declared with a command-line option has it, and no other does;
    the field list postOptions reads is the single-value ones, in field order."""
    declared = [f for f in FIELDS if SETTINGS[f].cli is not None]
    options = dict(parse([]))
    assert set(options) == {"config"} | {option_name(f) for f in declared}
    assert set(Options._FIELD_OPTIONS) & set(CORE_FIELDS) == FIELD_OPTIONS_BEFORE | NEW_OPTIONS
    assert list(Options._FIELD_OPTIONS) == [f for f in declared if f != "listen"]
    text = Options(environ={}).getUsage(width=1000)
    for field in declared:
        assert f"--{option_name(field)}=" in text
        assert f"env {SETTINGS[field].env}]" in text


def test_first_invalid_option_in_field_order_reported():
    """With several invalid options, the first in Config's field order is reported."""
    with pytest.raises(usage.UsageError, match="^--replication-timeout="):
        parse(["--io-batch-timeout", "0", "--replication-timeout", "0"])
    with pytest.raises(usage.UsageError, match="^--api-base-path="):
        parse(["--listen", "tcp:1", "--listen", "tcp:1", "--api-base-path", "/x?"])

"""
The settings of spec 1.20 §9 declared in ``config_limits.py``: rate-limit
values, roles, booleans, refusals, and the variables ignored with a warning.
"""

import pytest

from reduct_twisted.config import Config, ConfigError, load_config
from reduct_twisted.config_limits import RateLimit, ignored_variables, parse_duration


@pytest.mark.parametrize("given, expected", [
    ("100", RateLimit(100, 3600)),
    ("100req", RateLimit(100, 3600)),
    ("100req/s", RateLimit(100, 1)),
    ("120req/m", RateLimit(120, 60)),
    ("7/h", RateLimit(7, 3600)),
    ("7/d", RateLimit(7, 86400)),
    ("3/30s", RateLimit(3, 30)),
    ("3 / 1h 30m", RateLimit(3, 5400)),
    ("5/1500ms", RateLimit(5, 1)),   # whole seconds
    ("5/100ms", RateLimit(5, 1)),    # at least one second
    ("0req/m", RateLimit(0, 60)),
])
def test_api_rate_values(given, expected):
    """Upstream's forms: amount alone is per hour, req suffix, unit or duration periods."""
    assert load_config({}, {"RS_RATE_LIMIT_API": given}, None).rate_limit_api == expected


@pytest.mark.parametrize("given, expected", [
    ("10MB/s", RateLimit(10_000_000, 1)),
    ("2KB", RateLimit(2000, 3600)),
    ("4096", RateLimit(4096, 3600)),
    ("1 GiB/m", RateLimit(1 << 30, 60)),
    ("512MB/h", RateLimit(512_000_000, 3600)),
])
def test_byte_rate_values(given, expected):
    config = load_config({}, {"RS_RATE_LIMIT_INGRESS": given, "RS_RATE_LIMIT_EGRESS": given},
                         None)
    assert config.rate_limit_ingress == config.rate_limit_egress == expected


@pytest.mark.parametrize("variable, value, message", [
    ("RS_RATE_LIMIT_API", "lots", "RS_RATE_LIMIT_API='lots' is not a rate limit"),
    ("RS_RATE_LIMIT_API", "10req/", "RS_RATE_LIMIT_API='10req/' has a bad period"),
    ("RS_RATE_LIMIT_API", "10/0s", "has a bad period: not a positive rate period"),
    ("RS_RATE_LIMIT_API", "10/5x", "has a bad period: not a duration: '5x'"),
    ("RS_RATE_LIMIT_INGRESS", "10 parsecs/s", "is not a rate limit"),
    ("RS_RATE_LIMIT_EGRESS", "10MB/-1s", "has a bad period"),
    ("RS_ENGINE_MAX_STORAGE_SIZE", "big", "RS_ENGINE_MAX_STORAGE_SIZE='big' is not a byte size"),
    ("RS_INSTANCE_ROLE", "LEADER", "is not an instance role; expected one of STANDALONE, "
     "PRIMARY, SECONDARY, REPLICA"),
    ("RS_RWLOCK_FAILURE_ACTION", "retry", "is not a lock failure action; expected error or panic"),
    ("RS_REPLICATION_VERIFY_SSL", "maybe", "is not a boolean"),
    ("RS_ENGINE_ENABLE_INTEGRITY_CHECKS", "2", "is not a boolean"),
    ("RS_LOCK_FILE_TTL", "0", "must be a positive number of seconds"),
    ("RS_IO_MAX_READERS_IN_FLIGHT", "-1", "is not a whole number"),
    ("RS_REPLICATION_CA_PATH", "/nonexistent/ca.pem", "is not a file"),
])
def test_invalid_values_stop_the_start(variable, value, message):
    with pytest.raises(ConfigError) as e:
        load_config({}, {variable: value}, None)
    assert message in str(e.value)
    assert str(e.value).endswith("(environment)")


@pytest.mark.parametrize("role", ["PRIMARY", "secondary", "Replica"])
def test_other_roles_refused_as_single_node(role):
    """PRIMARY, SECONDARY and REPLICA are known roles, refused with a clear reason."""
    with pytest.raises(ConfigError) as e:
        load_config({}, {"RS_INSTANCE_ROLE": role}, None)
    assert str(e.value) == (
        f"RS_INSTANCE_ROLE={role!r} is not supported: this daemon is a single node and "
        "runs only as STANDALONE (primary/secondary fail-over and read-only replicas "
        "need upstream ReductStore) (environment)"
    )


def test_role_from_command_line_refused_too():
    with pytest.raises(ConfigError) as e:
        load_config({"instance_role": "PRIMARY"}, {}, None)
    assert str(e.value).startswith("--instance-role='PRIMARY' is not supported")


@pytest.mark.parametrize("text, seconds", [
    ("30s", 30), ("1h 30m", 5400), ("100ms", 0.1), ("2d", 172800), ("500us", 0.0005),
])
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1.5s", "s", "10", "1h,2m", "-1s"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_enterprise_and_removed_variables_named_for_a_warning():
    environ = {
        "RS_LICENSE_PATH": "/lic.key",
        "RS_REMOTE_BACKEND_TYPE": "s3",
        "RS_REMOTE_SESSION_TOKEN": "x",
        "RS_REMOTE_BUCKET": " ",  # blank: not set
        "RS_PORT": "1",
    }
    config = Config(io_max_readers_in_flight=4)
    assert ignored_variables(environ, config) == [
        "RS_LICENSE_PATH is ignored: it belongs to upstream's enterprise build",
        "RS_REMOTE_BACKEND_TYPE is ignored: it belongs to upstream's enterprise build",
        "RS_REMOTE_SESSION_TOKEN is ignored: it belongs to upstream's enterprise build",
        "io_max_readers_in_flight (RS_IO_MAX_READERS_IN_FLIGHT) is ignored: "
        "upstream removed it in 1.19.7",
    ]
    assert ignored_variables({"RS_PORT": "1"}, Config()) == []


def test_twistd_options_refuse_another_role_in_one_line():
    from twisted.python import usage

    from reduct_twisted.tap import Options

    options = Options(environ={"RS_INSTANCE_ROLE": "REPLICA"})
    with pytest.raises(usage.UsageError) as e:
        options.parseOptions([])
    assert str(e.value).startswith("RS_INSTANCE_ROLE='REPLICA' is not supported: this daemon "
                                   "is a single node")
    assert Options(environ={}).getUsage().count("--instance-role=") == 1

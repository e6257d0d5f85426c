"""
Start-up effects of the settings in ``config_limits.py``: the warnings for
variables accepted but ignored, and the stand-by's polling interval.
"""

from twisted.internet.testing import MemoryReactorClock
from twisted.logger import globalLogPublisher

from reduct_twisted import tap
from reduct_twisted.datadir import claim_data_dir
from tests.unit.test_datadir import FakeTime
from tests.unit.test_tap import build


def test_ignored_variables_are_logged_as_warnings():
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        build([], environ={"RS_LICENSE_PATH": "/x.lic", "RS_REMOTE_BUCKET": "b",
                           "RS_IO_MAX_READERS_IN_FLIGHT": "4"})
    finally:
        globalLogPublisher.removeObserver(events.append)
    warned = [e["line"] for e in events if e.get("log_namespace") == "reduct_twisted.tap"
              and e.get("log_level").name == "warn"]
    assert warned == [
        "RS_LICENSE_PATH is ignored: it belongs to upstream's enterprise build",
        "RS_REMOTE_BUCKET is ignored: it belongs to upstream's enterprise build",
        "io_max_readers_in_flight (RS_IO_MAX_READERS_IN_FLIGHT) is ignored: "
        "upstream removed it in 1.19.7",
    ]


def test_standby_polls_at_the_configured_interval(tmp_path):
    holder = claim_data_dir(str(tmp_path))
    time = FakeTime(on_sleep=lambda n: n == 2 and holder.release())
    lock = claim_data_dir(str(tmp_path), 60, poll=7.5, say=[].append, sleep=time.sleep,
                          monotonic=time.monotonic)
    assert lock.held and time.sleeps == 2 and time.now == 115.0


def test_make_service_passes_the_polling_interval(tmp_path, monkeypatch):
    seen = {}

    def claim(path, timeout, **kwargs):
        seen.update(kwargs, timeout=timeout)
        raise SystemExit("stop here")

    monkeypatch.setattr(tap, "claim_data_dir", claim)
    options = tap.Options(environ={"RS_LOCK_FILE_POLLING_INTERVAL": "2.5",
                                   "RS_LOCK_FILE_TIMEOUT": "9"})
    options.parseOptions(["--data-path", str(tmp_path / "d")])
    try:
        tap.makeService(options, MemoryReactorClock())
    except SystemExit:
        pass
    assert seen == {"poll": 2.5, "timeout": 9.0}

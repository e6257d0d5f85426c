"""
``logs_format.py``: the text, JSON and journald line formats, and how
``logs.twistd_observer`` chooses them.
"""

import io
import json
import os
import sys

import pytest
from twisted.logger import (
    LogLevel,
    eventFromJSON,
    formatEvent,
    formatEventAsClassicLogText,
)
from twisted.python.failure import Failure

from reduct_twisted import logs
from reduct_twisted.http.access import ACCESS_FORMAT
from reduct_twisted.logs_format import (
    PRIORITIES,
    classic_text,
    is_journal,
    journal_text,
    make_observer,
)

T0 = 1_700_000_000.25


def event(fmt="hello {who}", level=LogLevel.info, **extra):
    base = {"log_format": fmt, "who": "world", "log_time": T0, "log_namespace": "ns"}
    if level is not None:
        base["log_level"] = level
    base.update(extra)
    return base


def failing():
    try:
        1 / 0
    except ZeroDivisionError:
        return Failure()


def access_event():
    fields = dict(client="127.0.0.1", token="writer", method="GET", path="/x?ts=1",
                  status=200, bytes=5, duration_ms=1.5, cut=False)
    return event(ACCESS_FORMAT, log_namespace="reduct_twisted.access",
                 log_text=ACCESS_FORMAT.format(**fields), **fields)


CASES = [
    event(),
    event(level=None),
    event(log_system="HTTPChannel,3,127.0.0.1"),
    event("a\nb {who}"),
    event("boom", LogLevel.critical, log_failure=failing()),
    event("{missing}"),
]


@pytest.mark.parametrize("case", CASES)
def test_text_is_twistds_own(case):
    """The text format writes exactly what twistd's text observer writes."""
    assert classic_text(dict(case)) == formatEventAsClassicLogText(dict(case))


def test_text_of_a_rendered_event_is_not_formatted_again():
    ev = access_event()
    plain = {k: v for k, v in ev.items() if k != "log_text"}
    assert classic_text(ev) == formatEventAsClassicLogText(plain)
    assert classic_text(dict(ev, log_text="shown as is")).endswith(
        "[reduct_twisted.access#info] shown as is\n"
    )


def test_event_without_text_writes_nothing():
    assert classic_text({"log_time": T0}) is None
    assert journal_text({"log_time": T0}) is None


@pytest.mark.parametrize(
    "level, prefix",
    [(LogLevel.critical, "<2>"), (LogLevel.error, "<3>"), (LogLevel.warn, "<4>"),
     (LogLevel.info, "<6>"), (LogLevel.debug, "<7>"), (None, "<6>")],
)
def test_journal_priority_and_no_timestamp(level, prefix):
    text = journal_text(event(level=level))
    system = f"ns#{level.name}" if level is not None else "ns#-"
    assert text == f"{prefix}[{system}] hello world\n"


def test_every_level_has_a_priority():
    assert set(PRIORITIES) == set(LogLevel.iterconstants())


def test_journal_prefix_on_every_line_of_a_traceback():
    text = journal_text(event("boom", LogLevel.error, log_failure=failing()))
    lines = text.splitlines()
    assert len(lines) > 3 and all(line.startswith("<3>") for line in lines)
    assert lines[0] == "<3>[ns#error] boom"
    assert any("ZeroDivisionError" in line for line in lines)


def test_journal_access_line():
    assert journal_text(access_event()) == (
        '<6>[reduct_twisted.access#info] 127.0.0.1 writer "GET /x?ts=1" 200 5B 1.500ms\n'
    )


def test_json_one_object_per_line_with_the_fields():
    out = io.StringIO()
    observer = make_observer(out, "json")
    observer(access_event())
    observer(event("two\nlines {who}", LogLevel.warn))
    observer(event("boom", LogLevel.error, log_failure=failing()))
    lines = out.getvalue().split("\n")
    assert lines[-1] == "" and len(lines) == 4
    access, warn, error = (json.loads(line) for line in lines[:3])
    assert {k: access[k] for k in ("client", "token", "method", "path", "status", "bytes",
                                   "duration_ms", "cut")} == {
        "client": "127.0.0.1", "token": "writer", "method": "GET", "path": "/x?ts=1",
        "status": 200, "bytes": 5, "duration_ms": 1.5, "cut": False,
    }
    assert access["log_text"] == '127.0.0.1 writer "GET /x?ts=1" 200 5B 1.500ms'
    assert access["log_namespace"] == "reduct_twisted.access"
    assert warn["log_text"] == "two\nlines world"
    # Twisted reads its own format back (levels, failures).
    back = eventFromJSON(lines[2])
    assert back["log_level"] == LogLevel.error and formatEvent(back) == "boom"
    assert "ZeroDivisionError" in back["log_failure"].getTraceback()


def test_json_observer_leaves_other_observers_event_alone():
    ev = event()
    make_observer(io.StringIO(), "json")(ev)
    assert "log_text" not in ev


def test_json_for_the_journal_has_the_priority_in_front():
    out = io.StringIO()
    make_observer(out, "json", journal=True)(event(level=LogLevel.warn))
    line = out.getvalue()
    assert line.startswith("<4>{") and line.endswith("}\n")
    assert json.loads(line[3:])["log_text"] == "hello world"


def test_is_journal_compares_device_and_inode(tmp_path):
    with open(tmp_path / "a", "w") as a, open(tmp_path / "b", "w") as b:
        st = os.fstat(a.fileno())
        names = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert is_journal(a, names)
        assert not is_journal(b, names)
        assert not is_journal(a, {})
        assert not is_journal(a, {"JOURNAL_STREAM": "garbage"})
        assert not is_journal(a, {"JOURNAL_STREAM": "1:x"})
        assert not is_journal(io.StringIO(), names)  # no descriptor


def test_is_journal_reads_the_environment(tmp_path, monkeypatch):
    with open(tmp_path / "a", "w") as a:
        st = os.fstat(a.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert is_journal(a)
        monkeypatch.delenv("JOURNAL_STREAM")
        assert not is_journal(a)


def test_twistd_observer_in_each_format(tmp_path, monkeypatch):
    """``--nodaemon`` to stdout: text, json, and the journal when stdout is it."""
    path = tmp_path / "out"
    with open(path, "w") as out:
        monkeypatch.setattr(sys, "stdout", out)
        monkeypatch.delenv("JOURNAL_STREAM", raising=False)
        logs.twistd_observer({"nodaemon": True})(event())
        logs.twistd_observer({"nodaemon": True}, "json")(event())
        st = os.fstat(out.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        logs.twistd_observer({"nodaemon": True})(event())
        logs.twistd_observer({"nodaemon": True}, "json")(event())
    text, as_json, journal, journal_json = path.read_text().splitlines()
    assert text.endswith(" [ns#info] hello world") and text[:4].isdigit()
    assert json.loads(as_json)["log_text"] == "hello world"
    assert journal == "<6>[ns#info] hello world"
    assert journal_json.startswith("<6>{")


def test_observer_factory_takes_the_configured_format(capsys, monkeypatch):
    """The daemon's observer: its format, and its lines through a ``LogBuffer``."""
    from reduct_twisted.logs_buffer import LogBuffer

    made = []

    def buffer(out):  # one that writes at once, so the test needs no reactor turn
        made.append(LogBuffer(out, in_io_thread=lambda: False))
        return made[-1]

    monkeypatch.setattr(logs, "LogBuffer", buffer)

    class Config:
        log_format = "json"

    class Sub:
        parent = {"logfile": None, "logger": None, "nodaemon": True}
        config = Config()

    logs.observer_factory_for(Sub())()(event())
    assert json.loads(capsys.readouterr().out)["log_text"] == "hello world"
    assert len(made) == 1


@pytest.mark.parametrize("log_format", ["text", "json"])
@pytest.mark.parametrize("journal", [False, True])
def test_observers_provide_ilogobserver(log_format, journal):
    from twisted.logger import ILogObserver
    from zope.interface.verify import verifyObject

    assert verifyObject(ILogObserver, make_observer(io.StringIO(), log_format, journal))

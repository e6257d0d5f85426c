"""
``logs_buffer.LogBuffer``: INFO lines written in batches, never later than
``DELAY``, at once when they must be (reactor not running, another thread,
a warning, the limit, shutdown).
"""

import io

from twisted.internet.task import Clock
from twisted.logger import LogLevel

from reduct_twisted import logs, logs_buffer
from reduct_twisted.logs_buffer import DELAY, LIMIT, LogBuffer


class Out(io.StringIO):
    """Counts the writes and flushes that reach the real output."""

    def __init__(self):
        super().__init__()
        self.writes = 0
        self.flushes = 0

    def write(self, text):
        self.writes += 1
        return super().write(text)

    def flush(self):
        self.flushes += 1


class Reactor(Clock):
    def __init__(self):
        super().__init__()
        self.running = True
        self.triggers = []

    def addSystemEventTrigger(self, phase, event, f, *args):
        self.triggers.append((phase, event, f))

    def shut_down(self):
        for phase, event, f in self.triggers:
            assert (phase, event) == ("after", "shutdown")
            f()


def _line(buffer, text):
    # What ``FileLogObserver`` does with each line.
    buffer.write(text)
    buffer.flush()


def test_lines_of_one_window_are_one_write():
    out, reactor = Out(), Reactor()
    buffer = LogBuffer(out, reactor, in_io_thread=lambda: True)
    for i in range(100):
        _line(buffer, f"line {i}\n")
    assert out.getvalue() == "" and out.writes == 0
    reactor.advance(DELAY / 2)
    assert out.writes == 0
    reactor.advance(DELAY / 2)
    assert out.writes == 1 and out.flushes == 1
    assert out.getvalue() == "".join(f"line {i}\n" for i in range(100))
    # The next line starts a new window; nothing is left scheduled before it.
    assert not reactor.getDelayedCalls()
    _line(buffer, "again\n")
    assert len(reactor.getDelayedCalls()) == 1
    reactor.advance(DELAY)
    assert out.getvalue().endswith("line 99\nagain\n") and out.writes == 2


def test_written_at_once_when_the_reactor_is_not_running_or_from_another_thread():
    out, reactor = Out(), Reactor()
    reactor.running = False
    buffer = LogBuffer(out, reactor, in_io_thread=lambda: True)
    _line(buffer, "starting\n")
    assert out.getvalue() == "starting\n"
    reactor.running = True
    other = LogBuffer(out, reactor, in_io_thread=lambda: False)
    _line(other, "from a thread\n")
    assert out.getvalue() == "starting\nfrom a thread\n"
    assert not reactor.getDelayedCalls()


def test_the_limit_and_an_urgent_line_write_what_was_kept_first():
    out, reactor = Out(), Reactor()
    buffer = LogBuffer(out, reactor, in_io_thread=lambda: True)
    _line(buffer, "a\n")
    buffer.urgent = True
    _line(buffer, "an error\n")
    assert out.getvalue() == "a\nan error\n" and out.writes == 1
    assert not reactor.getDelayedCalls()  # the pending window was cancelled
    buffer.urgent = False
    big = "x" * (LIMIT - 1) + "\n"
    _line(buffer, "b\n")
    _line(buffer, big)
    assert out.getvalue().endswith("b\n" + big) and out.writes == 2


def test_shutdown_writes_what_is_kept_and_a_closed_output_is_no_error():
    out, reactor = Out(), Reactor()
    buffer = LogBuffer(out, reactor, in_io_thread=lambda: True)
    _line(buffer, "last words\n")
    reactor.shut_down()
    assert out.getvalue() == "last words\n"
    _line(buffer, "after close\n")
    out.close()
    reactor.shut_down()  # ValueError from the closed file is not raised


def test_the_daemon_observer_writes_warnings_at_once(monkeypatch):
    out, reactor = Out(), Reactor()
    made = []

    def make(o):
        made.append(LogBuffer(o, reactor, in_io_thread=lambda: True))
        return made[-1]

    monkeypatch.setattr(logs, "LogBuffer", make)
    observer = logs.buffered(out, "text", batched=True)

    def event(level, text):
        return {"log_level": level, "log_namespace": "ns", "log_format": text,
                "log_time": 1_700_000_000.0, "log_text": text}

    observer(event(LogLevel.info, "request one"))
    observer(event(LogLevel.info, "request two"))
    assert out.getvalue() == ""
    observer(event(LogLevel.warn, "disk nearly full"))
    lines = out.getvalue().splitlines()
    assert [line.rsplit("] ", 1)[1] for line in lines] == [
        "request one", "request two", "disk nearly full"]
    assert out.writes == 1
    observer(event(LogLevel.info, "request three"))
    reactor.advance(DELAY)
    assert out.getvalue().endswith("] request three\n")
    # Not batched (what tests and tools use): every line at once.
    plain = Out()
    logs.buffered(plain, "text")(event(LogLevel.info, "now"))
    assert plain.getvalue().endswith("] now\n")
    assert logs_buffer.DELAY <= 0.1

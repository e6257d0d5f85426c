"""
The tally of ``test_hostile`` (issue #12): requests sent and violations
found, per class of hostile input, with one example of each kind of
violation, and the per-class table a human reads.
"""

import re
import subprocess
import sys
import threading

COLUMNS = ["sent", "5xx", "unanswered", "no x-reduct-error", "other", "probe>1s", "tracebacks"]
KIND_COLUMN = {"5xx": "5xx", "unanswered": "unanswered", "contract": "no x-reduct-error",
               "probe": "probe>1s", "traceback": "tracebacks"}
#: Log text that marks an error the daemon did not handle.
ALARMS = ("Traceback", "Unhandled Error", "CRITICAL", "#critical")
#: Seconds a silent connection may take to answer; shorter once a class has hung a few times.
ANSWER_TIMEOUT, SHORT_TIMEOUT, HANGS_BEFORE_SHORT = 5.0, 1.5, 3


def route_of(raw: bytes) -> str:
    """The method and path of a raw request, digits and long names folded, for grouping."""
    line = raw.split(b"\r\n", 1)[0].split(b"?", 1)[0]
    line = re.sub(rb"\d+", b"N", line)
    line = re.sub(rb"[^/ ]{24,}", b"<long>", line)
    return line.decode("latin-1")[:80]


def normalised(text: str) -> str:
    return re.sub(r"\d+", "N", text)[:160]


class Tally:
    """Counts and violations per class (thread-safe)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.rows = {}
        self.examples = {}
        self.hangs = {}
        self.connections = 0
        #: Per class: answers by status, and seconds spent.
        self.statuses = {}
        self.seconds = {}
        self.probe_worst = {}
        #: Per class: the slowest exchanges, ``[(seconds, request head)]``.
        self.slowest = {}

    def row(self, cls):
        return self.rows.setdefault(cls, dict.fromkeys(COLUMNS, 0))

    def sent(self, cls, n):
        with self.lock:
            self.row(cls)["sent"] += n

    def add(self, cls, kind, raw, detail, key=None):
        """
        One violation: ``key`` groups it (by default the text of ``detail``
        before its first colon, digits folded); the first of a group is kept.
        """
        key = normalised(key if key is not None else detail.split(":")[0])
        with self.lock:
            self.row(cls)[KIND_COLUMN.get(kind, "other")] += 1
            found = self.examples.setdefault((cls, kind, key), [0, raw[:200], detail[:700]])
            found[0] += 1
            if kind == "unanswered" and "within" in detail:
                self.hangs[cls] = self.hangs.get(cls, 0) + 1

    def answered(self, cls, statuses):
        with self.lock:
            counts = self.statuses.setdefault(cls, {})
            for status in statuses:
                counts[status] = counts.get(status, 0) + 1

    def took(self, cls, seconds, raw):
        with self.lock:
            slowest = self.slowest.setdefault(cls, [])
            if len(slowest) < 3 or seconds > slowest[-1][0]:
                slowest.append((seconds, raw[:150]))
                slowest.sort(key=lambda x: -x[0])
                del slowest[3:]

    def timeout(self, cls):
        return SHORT_TIMEOUT if self.hangs.get(cls, 0) >= HANGS_BEFORE_SHORT else ANSWER_TIMEOUT

    def violations(self):
        return sum(v[0] for v in self.examples.values())

    def total(self):
        return sum(row["sent"] for row in self.rows.values())

    def table(self):
        width = [10] + [max(6, len(c) + 2) for c in COLUMNS]
        lines = ["class".ljust(width[0]) + "".join(c.rjust(w) for c, w in zip(COLUMNS, width[1:]))]
        total = dict.fromkeys(COLUMNS, 0)
        for cls, row in list(self.rows.items()) + [("total", total)]:
            lines.append(cls.ljust(width[0]) + "".join(
                str(row[c]).rjust(w) for c, w in zip(COLUMNS, width[1:])))
            if cls != "total":
                for c in COLUMNS:
                    total[c] += row[c]
        lines.append("seconds: " + ", ".join(f"{c} {t:.1f}" for c, t in self.seconds.items()))
        lines.append("worst probe: " + ", ".join(
            f"{c} {t:.2f}" for c, t in self.probe_worst.items()))
        for cls, counts in self.statuses.items():
            lines.append(f"statuses {cls}: {dict(sorted(counts.items(), key=str))}")
            lines += [f"    slow {t:.2f}s: {raw!r}" for t, raw in self.slowest.get(cls, ())]
        return "\n".join(lines)

    def report(self):
        out = []
        for (cls, kind, _), (count, raw, detail) in sorted(self.examples.items()):
            out.append(f"[{cls}] {kind} x{count}: {detail}\n    request: {raw!r}")
        return "\n".join(out)


def log_alarms(text: str) -> list:
    """
    ``(event, exception)`` for each unhandled error in a stretch of the
    daemon's log: the log line (time stamp dropped) and the last line of
    its traceback.
    """
    lines = text.splitlines()
    found = []
    for i, line in enumerate(lines):
        if not any(a in line for a in ALARMS):
            continue
        if "Traceback" in line and i and any(a in lines[i - 1] for a in ALARMS):
            continue  # the traceback of the event on the line before
        exc = ""
        for follow in lines[i + 1:i + 200]:
            if not follow.startswith("\t") and not follow.startswith(" "):
                break
            body = follow.strip()
            if body and not follow[1:2].isspace() and not body.startswith(("Traceback", "File ")):
                exc = body
        event = re.sub(r"^\S+ ", "", line.strip())
        found.append((event[:200], exc[:300]))
    return found


#: Seconds between probes, and the longest a probe may wait for its answer.
PROBE_EVERY, PROBE_LIMIT = 0.1, 1.0

#: The probe runs in a process of its own: this one's threads, GIL and garbage
#: collector (the whole suite's heap) must not count as the daemon's delay.
PROBE_SCRIPT = r"""
import socket, sys, time
port, every = int(sys.argv[1]), float(sys.argv[2])
raw = b"GET /api/v1/alive HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
while True:
    started, problem = time.monotonic(), ""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(raw)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    problem = "closed without an answer: %r" % data[:60]
                    break
                data += chunk
            if not problem and not data.startswith(b"HTTP/1.1 200"):
                problem = "answered %r" % data[:60]
    except OSError as e:
        problem = "failed: %r" % e
    took = time.monotonic() - started
    print("%.4f %s" % (took, problem), flush=True)
    time.sleep(max(0.0, every - took))
"""


class Probe(threading.Thread):
    """``GET /api/v1/alive`` on a fresh connection every 100 ms, timed by a child process."""

    def __init__(self, port, tally, phase):
        super().__init__(daemon=True)
        self.port, self.tally, self.phase = port, tally, phase
        self.stop = threading.Event()
        self.worst, self.count = 0.0, 0

    def run(self):
        raw = b"GET /api/v1/alive HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        child = subprocess.Popen([sys.executable, "-c", PROBE_SCRIPT, str(self.port),
                                  str(PROBE_EVERY)], stdout=subprocess.PIPE, text=True)
        try:
            for line in child.stdout:
                if self.stop.is_set():
                    break
                took_text, _, problem = line.rstrip("\n").partition(" ")
                took = float(took_text)
                self.worst, self.count = max(self.worst, took), self.count + 1
                worst = self.tally.probe_worst
                worst[self.phase[0]] = max(worst.get(self.phase[0], 0.0), took)
                if problem or took > PROBE_LIMIT:
                    self.tally.add(self.phase[0], "probe", raw,
                                   f"probe took {took:.2f}s {problem} [{self.phase[1]}]")
        finally:
            child.kill()
            child.wait()
            child.stdout.close()

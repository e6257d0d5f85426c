"""
The tally of ``test_hostile`` (issue #12): requests sent and violations
found, per class of hostile input, with one example of each kind of
violation, and the per-class table a human reads.
"""

import re
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

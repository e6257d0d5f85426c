"""
Bounded measurements and who burned the CPU during them, from Linux /proc.

``Tally`` counts one measurement (records, bytes, latencies, errors) and
hands out record indexes until its record count or its time bound is
reached.  ``Window`` measures, over the same span, the CPU of

- the client: this process plus the children it reaped meanwhile (curl),
- the server: the process trees below the given root PIDs (twistd, the
  nginx master and its workers, the postmaster and its backends), and how
  much of it was spent in the kernel (system time: syscalls, page cache),
- the rest of the box: everything else that was busy (kernel threads,
  other work on the machine),
- steal: time the hypervisor gave the box's virtual CPUs to someone else,

all in percent of one core (a 2-core box has 200 %).
"""

import os
import resource
import time

CLK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1


def _stat(pid: int):
    """Fields of ``/proc/<pid>/stat`` after the command name, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("ascii", "replace")
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()  # [0] state, [1] ppid, [11..14] times


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def tree_pids(roots) -> list:
    """``roots`` and all their live descendants."""
    children = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = _stat(int(name))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(name))
    out, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        if pid not in out:
            out.append(pid)
            todo.extend(children.get(pid, []))
    return out


def tree_cpu_s(roots):
    """(user + system, system) CPU seconds of the live tree, reaped children included."""
    total = system = 0
    for pid in tree_pids(roots):
        fields = _stat(pid)
        if fields is not None:
            total += sum(int(x) for x in fields[11:15])
            system += int(fields[12]) + int(fields[14])
    return total / CLK, system / CLK


def box_s():
    """(busy, steal, total) CPU seconds of the whole box since boot; busy
    leaves out idle, iowait and steal (time the hypervisor gave elsewhere)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return (sum(v) - v[3] - v[4] - v[7]) / CLK, v[7] / CLK, sum(v) / CLK


def background_pct(seconds: float = 0.3) -> float:
    """Busy CPU of the box (steal included) over ``seconds``, in % of one core."""
    b0, s0, t0 = box_s()
    time.sleep(seconds)
    b1, s1, t1 = box_s()
    return 100 * NCPU * (b1 - b0 + s1 - s0) / max(t1 - t0, 1e-9)


def settle(roots, quiet_s: float = 12.0, idle_pct: float = 5.0, limit_s: float = 180.0) -> float:
    """
    Wait until the processes ``roots`` (and their children) have used under
    ``idle_pct`` % of a core in each second of the last ``quiet_s`` seconds
    (longer than the daemon's 10 s sweeps; the entry logs left behind are
    caught up at the second sweep after the writes stop), at most
    ``limit_s`` seconds: work a setup step left behind is not a later
    cell's cost.  :return: seconds waited.
    """
    start = time.perf_counter()
    quiet = 0
    while quiet < quiet_s and time.perf_counter() - start < limit_s:
        c0 = tree_cpu_s(roots)[0]
        time.sleep(1.0)
        quiet = quiet + 1 if 100 * (tree_cpu_s(roots)[0] - c0) < idle_pct else 0
    return time.perf_counter() - start


def _self_cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class Window:
    """``with Window(server_pids) as w: ...`` then ``w.split()``."""

    def __init__(self, server_pids) -> None:
        self.pids = list(server_pids)

    def _sample(self):
        return (time.perf_counter(), _self_cpu_s(),
                tree_cpu_s(self.pids) if self.pids else (0.0, 0.0), box_s())

    def __enter__(self):
        self.before = self._sample()
        return self

    def __exit__(self, *exc) -> None:
        self.after = self._sample()

    def split(self) -> dict:
        (t0, c0, s0, box0), (t1, c1, s1, box1) = self.before, self.after
        wall = max(t1 - t0, 1e-9)
        client, server, kernel = c1 - c0, s1[0] - s0[0], s1[1] - s0[1]
        # /proc/stat counts whole ticks: scale the box's shares to wall time
        scale = NCPU * wall / max(box1[2] - box0[2], 1e-9)
        busy, steal = (box1[0] - box0[0]) * scale, (box1[1] - box0[1]) * scale
        return {
            "client_cpu_pct": round(100 * client / wall),
            "server_cpu_pct": round(100 * server / wall),
            "server_sys_pct": round(100 * kernel / wall),
            "other_cpu_pct": round(100 * max(busy - client - server, 0.0) / wall),
            "steal_pct": round(100 * steal / wall),
            "server_cpu_s": round(server, 3),
        }


class Tally:
    """
    One bounded measurement: stops at ``count`` records or after ``max_s``
    seconds, whichever comes first.  With ``cycle`` (reads), it goes over
    the indexes again until ``min_s`` seconds have passed (at most
    ``max_passes`` times), so that a fast read is timed over a useful span.
    """

    def __init__(self, count: int, max_s: float, min_s: float = 0.0,
                 cycle: bool = False, max_passes: int = 20) -> None:
        self.count, self.max_s, self.min_s = count, max_s, min_s
        self.limit = count * (max_passes if cycle else 1)
        self.issued = self.records = self.bytes = self.errors = 0
        self.first_error = None
        self.latencies = []

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.deadline = self.t0 + max(self.max_s, self.min_s)
        self.t1 = None

    def next_index(self):
        """The next record index, or None when the measurement is over."""
        now = time.perf_counter()
        if now >= self.deadline or self.issued >= self.limit:
            return None
        if self.issued >= self.count and now >= self.t0 + self.min_s:
            return None
        self.issued += 1
        return (self.issued - 1) % self.count

    def ok(self, nbytes: int, started: float, records: int = 1) -> None:
        self.records += records
        self.bytes += nbytes
        self.latencies.append(time.perf_counter() - started)

    def fail(self, message: str, started: float) -> None:
        self.errors += 1
        self.first_error = self.first_error or message[:300]
        self.latencies.append(time.perf_counter() - started)

    def stop(self) -> None:
        self.t1 = time.perf_counter()

    def result(self, window: Window, **extra) -> dict:
        elapsed = max((self.t1 or time.perf_counter()) - self.t0, 1e-9)
        lat = sorted(self.latencies)

        def pct(q):
            return round(lat[min(len(lat) - 1, int(q * (len(lat) - 1)))] * 1000, 3) if lat else None

        return {
            "records": self.records, "bytes": self.bytes, "requests": len(lat),
            "errors": self.errors, "first_error": self.first_error,
            "elapsed_s": round(elapsed, 4),
            "rec_per_s": round(self.records / elapsed, 1),
            "mb_per_s": round(self.bytes / elapsed / 1e6, 2),
            "lat_p50_ms": pct(0.5), "lat_p99_ms": pct(0.99),
            **window.split(), **extra,
        }

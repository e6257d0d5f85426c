#!/usr/bin/env python
"""
Large-record transfer benchmark: throughput, daemon memory, temp files.

    python benchmarks/transfer.py [--size-gib 2] [--keep]

Starts the real daemon (``twistd -n --pidfile= reduct --data-path <dir>
--listen tcp:<port>:interface=127.0.0.1``, the ``twistd`` next to
``sys.executable``) over a fresh directory under ``/var/tmp``, creates a
bucket, writes a random file of ``--size-gib`` GiB outside the data
directory, and with ``curl``:

  a. uploads it with ``Content-Length`` and ``Expect: 100-continue``,
  b. uploads it with ``Transfer-Encoding: chunked`` (no length),
  c. downloads the record written in (a).

Every stored copy (the one data file of that size in the entry directory)
and the downloaded copy are compared with the source by sha256.  During
each transfer the daemon's ``VmRSS`` is sampled every 50 ms (peak growth
over the value just before the transfer; ``VmHWM`` is reported too) and
``/tmp``, ``/var/tmp`` (minus the data directory and the benchmark's own
files) and the daemon's working directory are walked every 2 s (its open files every 250 ms) for new
files of at least half the body size; the daemon's open file descriptors are
checked for such files too (an unlinked temp file would not show up in a
directory scan).  Throughput is ``size / curl's %{time_total}`` in MB/s
(10^6 bytes).

Prints a markdown table and one JSON line, stops the daemon by PID and
removes the whole work directory unless ``--keep``.
"""

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

GIB = 1 << 30
MIB = 1 << 20
RSS_INTERVAL = 0.05
SCAN_INTERVAL = 0.25
#: Walk the directory trees on every n-th scan only (see LargeFileScanner.run).
WALK_EVERY = 8
BUCKET = "bench"
REPO_ROOT = Path(__file__).resolve().parent.parent


# -- helpers -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid: int) -> dict:
    """:return: ``VmRSS`` and ``VmHWM`` of ``pid`` in bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out


def sha256_file(path, chunk: int = 8 * MIB) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                return digest.hexdigest()
            digest.update(block)


def make_random_file(path: Path, size: int) -> str:
    """Write ``size`` random bytes to ``path``; return their sha256."""
    digest = hashlib.sha256()
    left = size
    with open(path, "wb") as f:
        while left:
            block = os.urandom(min(16 * MIB, left))
            f.write(block)
            digest.update(block)
            left -= len(block)
    return digest.hexdigest()


def http(method: str, url: str, body: bytes = None, timeout: float = 10):
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


class RssSampler(threading.Thread):
    """Samples VmRSS of ``pid`` every 50 ms until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.before = proc_status(pid)["VmRSS"]
        self.peak = self.before
        self.samples = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                rss = proc_status(self.pid)["VmRSS"]
            except (OSError, KeyError):
                return
            self.peak = max(self.peak, rss)
            self.samples += 1
            self._halt.wait(RSS_INTERVAL)

    def stop(self) -> dict:
        self._halt.set()
        self.join()
        status = proc_status(self.pid)
        return {
            "rss_before": self.before,
            "rss_peak": self.peak,
            "rss_growth": self.peak - self.before,
            "vm_hwm": status["VmHWM"],
            "rss_samples": self.samples,
        }


class LargeFileScanner(threading.Thread):
    """
    Every 250 ms, looks for files of at least ``threshold`` bytes that were
    not there (or smaller) when the scan started among the open descriptors
    of ``pid`` outside ``data_dir``, and every ``WALK_EVERY``-th time also
    below ``roots`` (except ``excluded``).
    """

    def __init__(self, roots, excluded, threshold: int, pid: int, data_dir: Path) -> None:
        super().__init__(daemon=True)
        self.roots = [str(r) for r in roots]
        self.excluded = {os.path.realpath(e) for e in excluded}
        self.threshold = threshold
        self.pid = pid
        self.data_dir = os.path.realpath(data_dir)
        self.baseline = self._large_files()
        self.found = {}
        self.scans = 0
        self._halt = threading.Event()

    def _walk(self, top: str, out: dict) -> None:
        try:
            entries = list(os.scandir(top))
        except OSError:
            return
        for entry in entries:
            try:
                if entry.is_symlink():
                    continue
                if entry.is_dir():
                    if os.path.realpath(entry.path) not in self.excluded:
                        self._walk(entry.path, out)
                elif entry.is_file():
                    size = entry.stat().st_size
                    if size >= self.threshold:
                        out[entry.path] = size
            except OSError:
                continue

    def _open_files(self, out: dict) -> None:
        fd_dir = f"/proc/{self.pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            return
        for fd in fds:
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
                if not target.startswith("/") or target.startswith(self.data_dir + os.sep):
                    continue
                size = os.stat(os.path.join(fd_dir, fd)).st_size
            except OSError:
                continue
            if size >= self.threshold:
                out[f"fd {fd} -> {target}"] = size

    def _large_files(self, walk: bool = True) -> dict:
        out = {}
        if walk:
            for root in self.roots:
                if os.path.realpath(root) not in self.excluded:
                    self._walk(root, out)
        self._open_files(out)
        return out

    def run(self) -> None:
        while not self._halt.is_set():
            # The daemon's open descriptors (which would show any spool file,
            # deleted or not) are cheap to check every time; walking the temp
            # directories costs a core on a busy /tmp, so it runs every
            # WALK_EVERY-th pass (a spooled 2 GiB body lives for seconds).
            walk = self.scans % WALK_EVERY == 0
            for path, size in self._large_files(walk).items():
                if size > self.baseline.get(path, -1):
                    self.found[path] = max(size, self.found.get(path, 0))
            self.scans += 1
            self._halt.wait(SCAN_INTERVAL)

    def stop(self) -> dict:
        self._halt.set()
        self.join()
        return {"large_files_outside_data": self.found, "scans": self.scans}


def curl(args, timeout: float):
    """Run curl; return (http_code, time_total, bytes_up, bytes_down, stderr)."""
    fmt = "%{http_code} %{time_total} %{size_upload} %{size_download}"
    proc = subprocess.run(
        ["curl", "-sS", "--max-time", str(int(timeout)), "-w", fmt, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    fields = proc.stdout.decode().split()[-4:]
    if proc.returncode != 0 or len(fields) != 4:
        raise RuntimeError(f"curl {args} failed ({proc.returncode}): {proc.stderr.decode()}")
    code, total, up, down = fields
    return int(code), float(total), int(float(up)), int(float(down)), proc.stderr.decode()


def stored_copy(data_dir: Path, entry: str, size: int) -> Path:
    """The one data file of ``size`` bytes in the entry's directory."""
    entry_dir = data_dir / BUCKET / entry
    matches = [p for p in entry_dir.iterdir() if p.is_file() and p.stat().st_size == size]
    if len(matches) != 1:
        raise RuntimeError(f"expected one {size}-byte file in {entry_dir}, found {matches}")
    return matches[0]


# -- the benchmark -----------------------------------------------------------


def start_daemon(work: Path, data_dir: Path, port: int, sync: str = "always", root: Path = None,
                 extra_env: dict = None):
    twistd = Path(sys.executable).parent / "twistd"
    if not twistd.exists():
        raise SystemExit(f"no twistd next to {sys.executable}")
    cwd = work / "cwd"
    cwd.mkdir()
    log = open(work / "twistd.log", "wb")
    argv = [
        str(twistd), "-n", "--pidfile=", "reduct",
        "--data-path", str(data_dir),
        "--listen", f"tcp:{port}:interface=127.0.0.1",
    ]
    # Run the checkout this script belongs to (its twisted/plugins/ holds the
    # "reduct" plugin), also when the package is not installed in the venv.
    env = dict(os.environ)
    env.update(extra_env or {})
    env["RS_SYNC"] = sync
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(root or REPO_ROOT), env.get("PYTHONPATH")) if p
    )
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(
                f"twistd exited with {proc.returncode}:\n" + (work / "twistd.log").read_text()
            )
        try:
            if http("HEAD", base + "/api/v1/alive", timeout=1)[0] == 200:
                return proc, base, argv
        except OSError:
            pass
        time.sleep(0.1)
    stop_daemon(proc)
    raise SystemExit("twistd did not answer /api/v1/alive within 30 s")


def stop_daemon(proc) -> int:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


def measure(name, proc, scanner_args, curl_args, size, timeout):
    sampler = RssSampler(proc.pid)
    roots, excluded, threshold = scanner_args
    scanner = LargeFileScanner(roots, excluded, threshold, proc.pid, excluded[0])
    sampler.start()
    scanner.start()
    try:
        code, total, up, down, _ = curl(curl_args, timeout)
    finally:
        mem = sampler.stop()
        files = scanner.stop()
    return {
        "transfer": name,
        "status": code,
        "bytes": size,
        "bytes_up": up,
        "bytes_down": down,
        "seconds": total,
        "mb_per_s": size / total / 1e6 if total else None,
        **mem,
        **files,
        # a full scan of /tmp and /var/tmp can take longer than the 250 ms
        # interval on a busy machine: report the period actually achieved
        "scan_period_s": total / files["scans"] if files["scans"] else None,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-gib", type=float, default=2.0, help="body size in GiB")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    size = int(args.size_gib * GIB)
    timeout = max(300, size / (20 * MIB))  # generous: 20 MiB/s minimum

    work = Path(tempfile.mkdtemp(prefix="reduct-bench-", dir="/var/tmp"))
    data_dir, files_dir = work / "data", work / "files"
    files_dir.mkdir()
    proc = None
    results = []
    exit_code = 0
    try:
        port = free_port()
        proc, base, daemon_argv = start_daemon(work, data_dir, port)
        code, body = http("POST", f"{base}/api/v1/b/{BUCKET}")
        if code != 200:
            raise SystemExit(f"creating the bucket failed: {code} {body!r}")

        source = files_dir / "source.bin"
        t = time.monotonic()
        source_sha = make_random_file(source, size)
        print(f"# source: {size} bytes, sha256 {source_sha} ({time.monotonic() - t:.1f} s)",
              file=sys.stderr)

        cwd = os.readlink(f"/proc/{proc.pid}/cwd")
        roots = ["/tmp", "/var/tmp", cwd]
        scanner_args = (roots, [data_dir, files_dir], size // 2)
        record = f"{base}/api/v1/b/{BUCKET}"

        runs = [
            ("upload, Content-Length + Expect: 100-continue", "content-length",
             ["-T", str(source), "-X", "POST", "-H", "Expect: 100-continue",
              f"{record}/content-length?ts=1000"]),
            ("upload, Transfer-Encoding: chunked", "chunked",
             ["-T", str(source), "-X", "POST", "-H", "Transfer-Encoding: chunked",
              f"{record}/chunked?ts=1000"]),
        ]
        for name, entry, curl_args in runs:
            res = measure(name, proc, scanner_args, curl_args, size, timeout)
            if res["status"] == 200:
                copy = stored_copy(data_dir, entry, size)
                res["stored_sha256_ok"] = sha256_file(copy) == source_sha
            else:
                res["stored_sha256_ok"] = False
            results.append(res)

        target = files_dir / "download.bin"
        res = measure(
            "download (GET by ts)", proc, scanner_args,
            ["-o", str(target), f"{record}/content-length?ts=1000"], size, timeout,
        )
        res["stored_sha256_ok"] = (
            res["status"] == 200 and target.stat().st_size == size
            and sha256_file(target) == source_sha
        )
        target.unlink()
        results.append(res)
    finally:
        if proc is not None:
            stop_daemon(proc)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    print_table(results, size)
    for res in results:
        if res["status"] != 200 or not res["stored_sha256_ok"]:
            exit_code = 1
        if res["large_files_outside_data"]:
            exit_code = 1
    print(json.dumps({
        "benchmark": "transfer",
        "size_bytes": size,
        "daemon": " ".join(daemon_argv),
        "python": sys.version.split()[0],
        "work_dir": str(work) if args.keep else None,
        "results": results,
        "ok": exit_code == 0,
    }))
    return exit_code


def print_table(results, size) -> None:
    print(f"\nTransfer of one {size / GIB:g} GiB record ({size} bytes)\n")
    print("| transfer | HTTP | time (s) | MB/s | RSS before (MiB) | peak RSS growth (MiB) "
          "| VmHWM after (MiB) | sha256 | large files outside data dir |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        found = r["large_files_outside_data"]
        print(
            f"| {r['transfer']} | {r['status']} | {r['seconds']:.2f} | "
            f"{r['mb_per_s']:.0f} | {r['rss_before'] / MIB:.1f} | "
            f"{r['rss_growth'] / MIB:.1f} | {r['vm_hwm'] / MIB:.1f} | "
            f"{'ok' if r['stored_sha256_ok'] else 'MISMATCH'} | "
            f"{', '.join(found) if found else 'none'} |"
        )
    print()


if __name__ == "__main__":
    sys.exit(main())

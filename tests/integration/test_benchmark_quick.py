"""
``benchmarks/run.py --quick`` end to end, so that the benchmark cannot rot:
it starts the daemon of this checkout, nginx, PostgreSQL and the in-memory
Twisted server, runs every kind of cell once with tiny counts, writes the
report, and stops everything it started.

Needs nginx, PostgreSQL 15, curl, aiohttp and psycopg (``.ci/run`` installs
them); without them the test is skipped, except in CI (``CI`` set), where
it fails.
"""

import json
import os
import re
import signal
import time

import pytest

from tests.conftest import REPO_ROOT
from tests.integration.helpers import alive, run_benchmark

pytestmark = pytest.mark.slow

TIMEOUT = 180
TARGETS = ("reduct-twisted", "reduct-twisted-events-off", "reduct-twisted-integrity-off",
           "twisted-mock", "nginx-webdav", "postgres")
DAEMONS = ("reduct-twisted", "reduct-twisted-events-off", "reduct-twisted-integrity-off")
SIZES = (1 << 10, 10 << 10, 100 << 10, 1 << 20)
STARTED = re.compile(r"^started (\S+) pid (\d+)", re.M)


def stop_leftovers(pids) -> None:
    """Stop, by PID, what a killed benchmark left behind."""
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "report.md"
    returncode, stdout, stderr = run_benchmark(
        "run.py", ["--quick", "--out", str(out)], REPO_ROOT, TIMEOUT)
    started = [int(pid) for _, pid in STARTED.findall(stderr)]
    try:
        if returncode == 2 and "prerequisites missing" in stderr and not os.environ.get("CI"):
            pytest.skip(stderr.strip())
        yield {
            "rc": returncode, "stdout": stdout, "stderr": stderr, "started": started,
            "report": out.read_text() if out.exists() else "",
            "raw": json.loads(out.with_suffix(".json").read_text())
            if out.with_suffix(".json").exists() else None,
        }
    finally:
        stop_leftovers(started)


BATCH_CELLS = [("batch write", 1 << 10, 1), ("batch read", 1 << 10, 1)]
#: The I/O API's batched cells (spec 1.20 §1): the daemon only.
IO_CELLS = [("io write", 1 << 10, 1), ("io read", 1 << 10, 1)]
#: Issue #17: batched writes spread over many entries, and into one.
SPREAD_CELLS = [("spread write", 1 << 10, 1), ("one-entry write", 1 << 10, 1)]
#: Issue #17's memory, start-up and scale cells (``raw["extra"]``), quick sizes.
EXTRA_CELLS = sorted([("memory", "uploads", None), ("memory", "batched read", None),
                      ("startup", "10 entries", "clean"), ("startup", "10 entries", "kill -9"),
                      ("startup", "100 entries", "clean"), ("startup", "100 entries", "kill -9"),
                      ("startup", "10 entries", "first start of the data set"),
                      ("startup", "100 entries", "first start of the data set"),
                      ("scale", "query newest hour", None)], key=str)
VERDICT = re.compile(r"^\| (.+) \| ([\d,.]+)(×| µs| s| ms| MiB)[^|]* \| (met|\*\*missed\*\*) \|$")


def expected_cells(target):
    sizes = SIZES[:1] if target == "reduct-twisted-events-off" else SIZES
    cells = [(op, s, c) for op in ("write", "read") for s in sizes for c in (1, 8)]
    if target == "reduct-twisted-integrity-off":  # issue #16: 1 KiB at 8 connections
        cells = [("write", 1 << 10, 8), ("read", 1 << 10, 8)]
    if target in DAEMONS + ("postgres",):
        cells += BATCH_CELLS
    if target in DAEMONS:
        cells += IO_CELLS
    if target == "reduct-twisted":  # issue #17's scale cell: 200 entries vs one (quick)
        cells += SPREAD_CELLS
    if target in ("reduct-twisted", "reduct-twisted-integrity-off", "nginx-webdav"):
        cells += [("big write", 8 << 20, 1), ("big read", 8 << 20, 1)]
    return cells


def cells_of(raw, target) -> dict:
    return {(r["op"], r["size"], r["conc"]): r for r in raw["rows"] if r["target"] == target}


def test_runs_every_peer_and_writes_the_report(quick):
    """The harness itself: every peer measured, the report written, nothing left running."""
    assert quick["rc"] in (0, 1), quick["stderr"][-3000:]
    raw = quick["raw"]
    assert raw is not None, quick["stderr"][-3000:]
    for target in TARGETS:
        got = cells_of(raw, target)
        assert sorted(got) == sorted(expected_cells(target)), target
        for key, row in got.items():
            assert row["elapsed_s"] > 0 and row["requests"] > 0, (target, key)
            for field in ("client_cpu_pct", "server_cpu_pct", "other_cpu_pct", "steal_pct"):
                assert row[field] >= 0, (target, key, field)
            if target not in DAEMONS:  # the peers must work; the daemons: see below
                assert row["errors"] == 0 and row["records"] > 0, (target, key, row["first_error"])
    assert len(raw["memory"]) == 1 and raw["memory"][0]["rss_growth"] >= 0
    report = quick["report"]
    assert "| operation | size | c | reduct-twisted |" in report
    for heading in ("## Targets", "## `$system` events: on ÷ off", "## Daemon CPU per request",
                    "## Every cell"):
        assert heading in report
    events = report.split("## `$system` events")[1].split("\n## ")[0]
    verdicts = re.findall(r"\| \d+\.\d{3}× \| \d+\.\d{3} – \d+\.\d{3} \| \d+\.\d{3}× "
                          r"\| [\d,.]+ / [\d,.]+ \| (met|\*\*missed\*\*) \|$", events,
                          re.MULTILINE)
    assert len(verdicts) == 8, events  # 4 single cells, v1 batch and I/O API write and read
    integrity = report.split("## integrity=log ÷ integrity=off")[1].split("\n## ")[0]
    verdicts = re.findall(r"\| \d+\.\d{3}× \| \d+\.\d{3} – \d+\.\d{3} \| \d+\.\d{3}× "
                          r"\| [\d,.]+ / [\d,.]+ \| (met|\*\*missed\*\*) \|$", integrity,
                          re.MULTILINE)
    assert len(verdicts) == 8, integrity  # 1 KiB c8, v1 and I/O API batches, the big record
    assert "not implemented" not in report and "not measured" not in report
    for name in ("batched 1 KiB write ≥ 1.0 × PostgreSQL COPY",
                 "batched 1 KiB query read ≥ 1.0 × PostgreSQL time-range SELECT"):
        line = next(x for x in report.splitlines() if x.startswith(f"| {name} |"))
        assert re.search(r"\| \d+\.\d\d× \| (met|\*\*missed\*\*) \|$", line), line
    assert report in quick["stdout"]
    # every process the benchmark started is gone, each tree with its root
    assert sorted(quick["started"]) == sorted(p[0] for p in raw["pids"].values())
    assert raw["leftover_pids"] == []
    every = [pid for pids in raw["pids"].values() for pid in pids]
    assert len(every) > len(TARGETS)  # nginx workers and postgres backends were seen
    assert [pid for pid in every if alive(pid)] == []


def test_daemon_cells_have_no_errors(quick):
    """Every cell of the daemons (default, events off, integrity off) ran without a failed request."""
    raw = quick["raw"]
    assert raw is not None
    bad = {(target, key): row["first_error"] for target in DAEMONS
           for key, row in cells_of(raw, target).items() if row["errors"] or not row["records"]}
    assert bad == {}
    assert quick["rc"] == 0


def test_daemon_batch_cells_move_every_record(quick):
    """The batched write stores every record; each read pass returns all of them, checked."""
    raw = quick["raw"]
    assert raw is not None
    ours = cells_of(raw, "reduct-twisted")
    count = raw["bounds"]["batch_count"]
    write, read = ours[BATCH_CELLS[0]], ours[BATCH_CELLS[1]]
    assert write["records"] == count and write["requests"] == -(-count // 80)
    assert write["bytes"] == count << 10
    assert read["records"] > 0 and read["records"] % count == 0
    assert read["requests"] >= read["records"] // 85
    # the I/O API over 4 entries: every record, checked; the records interleave
    # across entries, so a read batch ends whenever an entry comes back (§1.9)
    write, read = ours[IO_CELLS[0]], ours[IO_CELLS[1]]
    assert write["records"] == count and write["requests"] == -(-count // 80)
    assert write["entries"] == 4 and read["entries"] == 4
    assert read["records"] > 0 and read["records"] % count == 0


def issue17_rows(report: str) -> list:
    section = report.split("## Targets (issue #17)")[1].split("\n## ")[0]
    return [line for line in section.splitlines() if line.startswith("| ")
            and not line.startswith(("| target", "| cell"))][:34]


def test_issue17_cells_run_and_report_a_verdict(quick):
    """Issue #17: every target row has a number and met/missed; every extra cell ran."""
    raw = quick["raw"]
    assert raw is not None, quick["stderr"][-3000:]
    extra = raw["extra"]
    assert sorted(((r["group"], r["cell"], r.get("after")) for r in extra), key=str) == \
        EXTRA_CELLS
    assert [r for r in extra if r["errors"]] == []
    by = {(r["group"], r["cell"], r.get("after")): r for r in extra}
    bounds = raw["bounds"]
    uploads = by[("memory", "uploads", None)]
    assert uploads["count"] == 64 and uploads["rss_growth"] >= 0 and uploads["mb_per_s"] > 0
    read = by[("memory", "batched read", None)]
    assert read["records_read"] == bounds["rss_records"] and read["rss_growth"] >= 0
    for entries in bounds["startup_entries"]:
        for after in ("clean", "kill -9"):
            row = by[("startup", f"{entries} entries", after)]
            assert row["entries"] == entries and row["records"] == bounds["startup_records"]
            assert row["start_s"] > 0 and row["rss_mib"] > 0
            assert row["read_ms"] > 0 and row["query_ms"] > 0
        assert by[("startup", f"{entries} entries", "first start of the data set")][
            "start_s"] > 0
    scale = by[("scale", "query newest hour", None)]
    assert scale["big_records"] == bounds["scale_records"]
    assert min(scale[k] for k in ("cold_big_ms", "cold_small_ms", "warm_big_ms",
                                  "warm_small_ms")) > 0
    ours = cells_of(raw, "reduct-twisted")
    for key in SPREAD_CELLS:
        assert ours[key]["records"] == bounds["spread_count"] and not ours[key]["errors"]
    assert ours[SPREAD_CELLS[0]]["entries"] == bounds["spread_entries"]
    rows = issue17_rows(quick["report"])
    assert len(rows) == 34, rows
    for line in rows:
        assert VERDICT.match(line), line
    # the v2 batched cells have their PostgreSQL ratio in the main table too
    for op in ("io write", "io read"):
        line = next(x for x in quick["report"].splitlines() if x.startswith(f"| {op} (I/O API"))
        assert re.search(r"\| \d+\.\d\d× \| [\d /]+ \|$", line), line


def test_only_runs_the_groups_asked_for(tmp_path):
    """``--only startup``: no peer started, only the start-up cells; the rest not measured."""
    out = tmp_path / "only.md"
    returncode, stdout, stderr = run_benchmark(
        "run.py", ["--quick", "--only", "startup", "--out", str(out)], REPO_ROOT, TIMEOUT)
    started = STARTED.findall(stderr)
    try:
        if returncode == 2 and "prerequisites missing" in stderr and not os.environ.get("CI"):
            pytest.skip(stderr.strip())
        assert returncode == 0, stderr[-3000:]
        raw = json.loads(out.with_suffix(".json").read_text())
        assert raw["groups"] == ["startup"] and raw["rows"] == []
        assert {r["group"] for r in raw["extra"]} == {"startup"}
        assert len(raw["extra"]) == 6 and not any(r["errors"] for r in raw["extra"])
        # only the start-up daemons (the data set's first start, then 3 a round), each stopped
        assert sorted(name.rsplit("-", 1)[0] for name, _ in started) == \
            ["startup-10"] * 4 + ["startup-100"] * 4
        assert raw["leftover_pids"] == []
        rows = issue17_rows(out.read_text())
        measured = [line for line in rows if VERDICT.match(line)]
        assert len(measured) == 14 and all("first" in x or "RSS after start" in x
                                           or "start to" in x for x in measured)
        assert all(line.endswith("| not measured |") for line in rows if line not in measured)
    finally:
        stop_leftovers([int(pid) for _, pid in started])
    assert not [int(pid) for _, pid in started if alive(int(pid))]

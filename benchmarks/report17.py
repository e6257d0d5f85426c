"""
The report's issue #17 section: the targets of the issue with the measured
value and met/missed, then the start-up, memory and scale cells
(``cells17``) as medians of the rounds.  A target whose cells did not run
(``run.py --only``) says "not measured".
"""

import statistics

from matrix import KiB, MiB, MOCK, NGINX, OURS, PG

MEASURED = "not measured"


def _ratio(a, b):
    if not a or not b:
        return None
    if a.get("errors") or b.get("errors"):
        return "errors"
    if not a.get("mb_per_s") or not b.get("mb_per_s"):
        return None
    return a["mb_per_s"] / b["mb_per_s"]


def _verdict(value, goal, below: bool) -> str:
    if value is None:
        return MEASURED
    if value == "errors":
        return "**missed** (the cell had errors)"
    met = value <= goal if below else value >= goal
    return "met" if met else "**missed**"


def _row(name, value, goal, text, below=False) -> str:
    shown = text if value not in (None, "errors") else ("–" if value is None else "errors")
    return f"| {name} | {shown} | {_verdict(value, goal, below)} |"


def extra_medians(extra) -> dict:
    """``(group, cell, after)`` -> the median of each numeric value over the rounds."""
    runs = {}
    for row in extra:
        runs.setdefault((row["group"], row["cell"], row.get("after")), []).append(row)
    out = {}
    for key, rows in runs.items():
        ok = [r for r in rows if not r["errors"]]
        med = {"errors": sum(r["errors"] for r in rows), "rounds": len(rows),
               "first_error": next((r["first_error"] for r in rows if r["first_error"]), None)}
        for name in (ok[0] if ok else {}):
            if isinstance(ok[0][name], (int, float)) and not isinstance(ok[0][name], bool) \
                    and name not in ("round", "errors"):
                med[name] = statistics.median(r[name] for r in ok)
        if not ok:
            med["failed"] = True
        out[key] = med
    return out


def _value(med, name, scale=1.0):
    """A median value of an extra cell, ``"errors"`` when it failed, ``None`` if absent."""
    if med is None:
        return None
    if med.get("failed") or med["errors"]:
        return "errors"
    return med[name] * scale if name in med else None


def targets(cells, memory, extra, bounds) -> list:
    ext = extra_medians(extra)
    out = ["| target (issue #17) | measured | |", "|---|---|---|"]
    for op, v2, goal, peer in (("batch write", "io write", "PostgreSQL COPY", "batch write"),
                               ("batch read", "io read", "PostgreSQL time-range SELECT",
                                "batch read")):
        pg = cells.get((PG, peer, KiB, 1))
        for name, key in (("v1 per-entry batch", op), ("v2 `/io/`, 4 entries", v2)):
            r = _ratio(cells.get((OURS, key, KiB, 1)), pg)
            out.append(_row(f"batched 1 KiB {op.split()[1]}, {name} ≥ 1.0 × {goal}", r, 1.0,
                            f"{r:.2f}×" if isinstance(r, float) else ""))
    for op, goal in (("write", 12), ("read", 5)):
        for name, key in (("v1", f"batch {op}"), ("v2", f"io {op}")):
            cell = cells.get((OURS, key, KiB, 1))
            us = None if cell is None else ("errors" if cell["errors"]
                                            else cell.get("us_per_record"))
            out.append(_row(f"server CPU per batched record {op} ({name}) ≤ {goal} µs", us,
                            goal, f"{us:.1f} µs" if isinstance(us, float) else "", below=True))
    for op in ("write", "read"):
        r = _ratio(cells.get((OURS, op, KiB, 8)), cells.get((MOCK, op, KiB, 8)))
        out.append(_row(f"single 1 KiB {op}, 8 connections ≥ 0.9 × in-memory Twisted", r, 0.9,
                        f"{r:.2f}×" if isinstance(r, float) else ""))
    big = bounds["big"]
    big_name = f"{big / (1 << 30):g} GiB" if big >= 1 << 30 else f"{big / MiB:g} MiB"
    for name, key, goal in (("1 MiB writes, 8 connections", ("write", MiB, 8), 0.8),
                            (f"one {big_name} upload (curl)", ("big write", big, 1), 0.8),
                            ("1 MiB reads, 8 connections", ("read", MiB, 8), 1.0),
                            (f"one {big_name} download (curl)", ("big read", big, 1), 1.0)):
        r = _ratio(cells.get((OURS, *key)), cells.get((NGINX, *key)))
        out.append(_row(f"{name} ≥ {goal} × nginx WebDAV", r, goal,
                        f"{r:.2f}×" if isinstance(r, float) else ""))
    growth = max(m["rss_growth"] for m in memory) / MiB if memory else None
    out.append(_row(f"RSS growth < 32 MiB, one {big_name} upload and download", growth, 32,
                    f"{growth:.1f} MiB (max of the rounds)" if growth is not None else "",
                    below=True))
    up = bounds["up_size"]
    up = f"{up / MiB:g} MiB" if up >= MiB else f"{up / KiB:g} KiB"
    for cell, what in (("uploads", f"{bounds['up_count']} concurrent {up} uploads"),
                       ("batched read", f"a batched read of {bounds['rss_records']:,} records "
                                        f"of {bounds['rss_size']} B")):
        v = _maximum(extra, "memory", cell, "rss_growth", 1 / MiB)
        out.append(_row(f"RSS growth < 32 MiB, {what}", v, 32,
                        f"{v:.1f} MiB (max of the rounds)" if isinstance(v, float) else "",
                        below=True))
    n = bounds["startup_records"]
    for entries in bounds["startup_entries"]:
        cell = f"{entries} entries"
        clean, killed = ext.get(("startup", cell, "clean")), ext.get(("startup", cell, "kill -9"))
        failed = ext.get(("startup", cell, None))
        if failed and not clean:
            clean = killed = failed
        where = f"{n:,} records, {entries:,} entries"
        for name, med, key, goal, unit, scale in (
                ("start to the first answer after a clean stop", clean, "start_s", 2, "s", 1),
                ("start to the first answer after kill -9", killed, "start_s", 5, "s", 1),
                ("first read after a clean stop", clean, "read_ms", 50, "ms", 1),
                ("first query after a clean stop", clean, "query_ms", 50, "ms", 1),
                ("first read after kill -9", killed, "read_ms", 50, "ms", 1),
                ("first query after kill -9", killed, "query_ms", 50, "ms", 1),
                ("RSS after start", clean, "rss_mib", 150, "MiB", 1)):
            v = _value(med, key, scale)
            out.append(_row(f"{name} ({where}) < {goal} {unit}", v, goal,
                            f"{v:.2f} {unit}" if isinstance(v, float) else "", below=True))
    q = ext.get(("scale", "query newest hour", None))
    for temp in ("cold", "warm"):
        big_ms, small_ms = _value(q, f"{temp}_big_ms"), _value(q, f"{temp}_small_ms")
        r = big_ms if big_ms in (None, "errors") else big_ms / small_ms
        out.append(_row(f"first batch of a query over the newest hour ({temp}): "
                        f"{bounds['scale_records']:,}-record entry ≤ 2 × "
                        f"{bounds['scale_small']:,}-record entry", r, 2.0,
                        f"{r:.2f}× ({big_ms:.1f} / {small_ms:.1f} ms)"
                        if isinstance(r, float) else "", below=True))
    r = _ratio(cells.get((OURS, "spread write", KiB, 1)), cells.get((OURS, "one-entry write",
                                                                    KiB, 1)))
    out.append(_row(f"batched writes spread over {bounds['spread_entries']:,} entries ≥ 0.5 × "
                    "into one entry (I/O API)", r, 0.5,
                    f"{r:.2f}×" if isinstance(r, float) else ""))
    return out


def _maximum(extra, group, cell, name, scale):
    rows = [r for r in extra if (r["group"], r["cell"]) == (group, cell)]
    if not rows:
        return None
    if any(r["errors"] for r in rows):
        return "errors"
    return max(r[name] for r in rows) * scale


def details(extra, bounds) -> list:
    """The start-up, memory and scale cells, medians of the rounds."""
    ext = extra_medians(extra)
    out = ["| cell | value (median of the rounds) | errors |", "|---|---|---|"]
    for (group, cell, after), med in sorted(ext.items(), key=lambda kv: str(kv[0])):
        shown = ", ".join(_named(k, v) for k, v in med.items()
                          if k not in ("errors", "rounds", "first_error", "failed"))
        err = f"{med['errors']}: {med['first_error']}" if med["errors"] else "0"
        name = f"{group}: {cell}" + (f", after {after}" if after else "")
        out.append(f"| {name} | {shown or '–'} | {err} |")
    return out


def _named(name: str, v) -> str:
    if name in ("rss_before", "rss_growth") or (name == "size" and v >= MiB):
        return f"{name} {v / MiB:.1f} MiB"
    return f"{name} {_fmt(v)}"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def section(cells, memory, extra, bounds) -> list:
    return [
        "## Targets (issue #17)", "",
        "Ratios from the cells of this run (medians of the rounds); µs = server CPU ÷ "
        "records; start-up, memory and scale cells as listed below. Start-up and scale cells "
        f"ran at {bounds['startup_records']:,} / {bounds['scale_records']:,} records "
        "(the issue's targets are for 10,000,000: `--startup 10000000 --scale 10000000`).", "",
        *targets(cells, memory, extra, bounds), "",
        "Start-up (`startup.measure_round`: launch to the first 200 of `/alive`, RSS then, "
        "first `GET` of the newest record, first query over the newest hour + first batch), "
        "memory (peak RSS − RSS before, sampled every 50 ms) and scale cells:", "",
        *details(extra, bounds),
    ]

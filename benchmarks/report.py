"""
Turns the matrix's rows into the markdown report: the median of the rounds
per cell, each of our cells as a ratio to the peer cell beside it, the
targets of issue #3, the daemon's CPU per request, and every cell's CPU
split (client / server / rest of the box) with what most likely limited it.
"""

import statistics

import report17
from matrix import CONCS, KiB, MiB, MOCK, NGINX, OURS, PG, SIZES, VARIANTS
from measure import NCPU

OP_NAMES = {
    OURS: {"batch write": "POST …/batch, 80 records/request",
           "batch read": "query + GET …/batch, ≤ 85 records/response",
           "io write": "POST /io/…/write, 80 records over 4 entries/request",
           "io read": "multi-entry query + GET /io/…/read, 4 interleaved entries",
           "spread write": "POST /io/…/write, 80 records into 80 of 10,000 entries/request",
           "one-entry write": "POST /io/…/write, 80 records into one entry/request"},
    NGINX: {"write": "PUT", "read": "GET", "big write": "curl PUT", "big read": "curl GET"},
    PG: {"write": "INSERT", "read": "SELECT by ts",
         "batch write": "COPY, 100 rows/txn", "batch read": "time-range SELECT, 100 rows/fetch"},
}
OP_NAMES.update({v.name: OP_NAMES[OURS] for v in VARIANTS})
#: The batched cells every variant daemon runs beside ours.
BATCHED_CELLS = [(op, KiB, 1) for op in ("batch write", "batch read", "io write", "io read")]


def variant_cells(variant, big_size: int) -> list:
    """The ``(op, size, conc)`` cells ``variant`` (a ``matrix.Variant``) ran beside ours."""
    cells = [(op, size, conc) for size, conc in variant.singles for op in ("write", "read")]
    cells += BATCHED_CELLS
    if variant.big:
        cells += [(op, big_size, 1) for op in ("big write", "big read")]
    return cells
METRICS = ("rec_per_s", "mb_per_s", "lat_p50_ms", "lat_p99_ms", "client_cpu_pct",
           "server_cpu_pct", "server_sys_pct", "other_cpu_pct", "steal_pct", "us_per_request",
           "us_per_record", "client_us_per_record")


def size_name(size: int) -> str:
    if size >= 1 << 30:
        return f"{size / (1 << 30):g} GiB"
    if size >= MiB:
        return f"{size / MiB:g} MiB"
    return f"{size / KiB:g} KiB"


def medians(rows) -> dict:
    """(target, op, size, conc) -> the median of every metric over the rounds."""
    cells = {}
    for row in rows:
        row = dict(row)
        if row.get("requests"):
            row["us_per_request"] = row["server_cpu_s"] / row["requests"] * 1e6
        if row.get("records"):
            row["us_per_record"] = row["server_cpu_s"] / row["records"] * 1e6
            row["client_us_per_record"] = (row["client_cpu_pct"] / 100 * row["elapsed_s"]
                                           / row["records"] * 1e6)
        cells.setdefault((row["target"], row["op"], row["size"], row["conc"]), []).append(row)
    out = {}
    for key, runs in cells.items():
        med = {m: statistics.median(r[m] for r in runs) for m in METRICS
               if all(r.get(m) is not None for r in runs)}
        rates = [r["rec_per_s"] for r in runs]
        med.update(rounds=len(runs), errors=sum(r["errors"] for r in runs),
                   first_error=next((r["first_error"] for r in runs if r["first_error"]), None),
                   spread=(min(rates), max(rates)))
        out[key] = med
    return out


def fmt_n(x) -> str:
    if x is None:
        return "–"
    return f"{x:,.0f}" if x >= 100 else f"{x:,.3g}"


def fmt_rate(cell) -> str:
    if cell is None:
        return "–"
    bad = f" ({cell['errors']} errors)" if cell["errors"] else ""
    return f"{fmt_n(cell['rec_per_s'])}/s, {fmt_n(cell['mb_per_s'])} MB/s{bad}"


def ratio(ours, peer):
    """ours / peer in MB/s; "errors" when either cell had errors."""
    if not ours or not peer or not peer.get("mb_per_s"):
        return None
    if ours["errors"] or peer["errors"]:
        return "errors"
    return ours["mb_per_s"] / peer["mb_per_s"]


def fmt_ratio(r) -> str:
    return "–" if r is None else r if isinstance(r, str) else f"{r:.2f}×"


def cpu(cell) -> str:
    if cell is None:
        return "–"
    return " / ".join(f"{cell[k]:.0f}" for k in ("client_cpu_pct", "server_cpu_pct",
                                                "other_cpu_pct", "steal_pct"))


def limiter(cell) -> str:
    client, server = cell["client_cpu_pct"], cell["server_cpu_pct"]
    if client + server + cell["other_cpu_pct"] + cell["steal_pct"] >= 0.9 * 100 * NCPU:
        return "box CPU (all cores busy)"
    if client >= 80 and client >= server:
        return "client CPU"
    if server >= 80:
        return "server CPU" + (" (mostly kernel)" if cell["server_sys_pct"] > server / 2 else "")
    return "latency (no side saturated)"


def main_table(cells, big_size) -> list:
    out = [
        "| operation | size | c | reduct-twisted | twisted-mock (in-memory) | nginx WebDAV "
        "| PostgreSQL | ours ÷ mock | ours ÷ nginx | ours ÷ PostgreSQL "
        "| ours CPU % client / daemon / rest / steal |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for op in ("write", "read"):
        for size in SIZES:
            for conc in CONCS:
                get = {t: cells.get((t, op, size, conc)) for t in (OURS, MOCK, NGINX, PG)}
                ours = get[OURS]
                out.append(
                    f"| single {op} | {size_name(size)} | {conc} | {fmt_rate(ours)} "
                    f"| {fmt_rate(get[MOCK])} | {fmt_rate(get[NGINX])} | {fmt_rate(get[PG])} "
                    f"| {fmt_ratio(ratio(ours, get[MOCK]))} | {fmt_ratio(ratio(ours, get[NGINX]))} "
                    f"| {fmt_ratio(ratio(ours, get[PG]))} | {cpu(ours)} |")
    for op, word in (("batch write", "COPY"), ("batch read", "time-range SELECT")):
        ours, pg = cells.get((OURS, op, KiB, 1)), cells.get((PG, op, KiB, 1))
        out.append(f"| {op} (PostgreSQL: {word}) | 1 KiB | 1 | {fmt_rate(ours)} | – | – "
                   f"| {fmt_rate(pg)} | – | – | {fmt_ratio(ratio(ours, pg))} | {cpu(ours)} |")
    for op, v1 in (("io write", "batch write"), ("io read", "batch read")):
        ours, pg = cells.get((OURS, op, KiB, 1)), cells.get((PG, v1, KiB, 1))
        if ours:
            out.append(f"| {op} (I/O API, 4 entries) | 1 KiB | 1 | {fmt_rate(ours)} | – | – "
                       f"| {fmt_rate(pg)} | – | – | {fmt_ratio(ratio(ours, pg))} | {cpu(ours)} |")
    for op in ("big write", "big read"):
        ours, nginx = cells.get((OURS, op, big_size, 1)), cells.get((NGINX, op, big_size, 1))
        out.append(f"| {op} (curl) | {size_name(big_size)} | 1 | {fmt_rate(ours)} | – "
                   f"| {fmt_rate(nginx)} | – | – | {fmt_ratio(ratio(ours, nginx))} | – "
                   f"| {cpu(ours)} |")
    return out


def targets_table(cells, memory, big_size) -> list:
    def row(name, value, goal, text=None):
        if value is None or value == "errors":
            verdict = "not measured" if value is None else "**missed** (the cell had errors)"
        else:
            verdict = "met" if value >= goal else "**missed**"
        return f"| {name} | {text or fmt_ratio(value)} | {verdict} |"

    out = ["| target (issue #3) | measured | |", "|---|---|---|"]
    for op in ("write", "read"):
        r = ratio(cells.get((OURS, op, KiB, 8)), cells.get((MOCK, op, KiB, 8)))
        out.append(row(f"1 KiB single {op}, 8 connections ≥ 0.8 × in-memory Twisted", r, 0.8))
    for op in ("write", "read"):
        for conc in CONCS:
            r = ratio(cells.get((OURS, op, MiB, conc)), cells.get((NGINX, op, MiB, conc)))
            out.append(row(f"1 MiB single {op}, {conc} connection(s) ≥ 0.8 × nginx WebDAV",
                           r, 0.8))
    for op in ("big write", "big read"):
        r = ratio(cells.get((OURS, op, big_size, 1)), cells.get((NGINX, op, big_size, 1)))
        out.append(row(f"{size_name(big_size)} record {op.split()[1]} (curl) "
                       "≥ 0.8 × nginx WebDAV", r, 0.8))
    for op, name in (("batch write", "batched 1 KiB write ≥ 1.0 × PostgreSQL COPY"),
                     ("batch read", "batched 1 KiB query read ≥ 1.0 × PostgreSQL "
                                    "time-range SELECT")):
        r = ratio(cells.get((OURS, op, KiB, 1)), cells.get((PG, op, KiB, 1)))
        out.append(row(name, r, 1.0))
    if memory:
        growth = max(m["rss_growth"] for m in memory) / MiB
        verdict = "met" if growth < 32 else "**missed**"
        out.append(f"| daemon peak RSS growth < 32 MiB while a {size_name(big_size)} record "
                   f"goes in and comes out | {growth:.1f} MiB (max of {len(memory)} rounds) "
                   f"| {verdict} |")
    return out


def paired_ratios(rows, op, size, conc, other) -> list:
    """Each round's default ÷ ``other`` records/s (the two ran back to back)."""
    by_round = {}
    for row in rows:
        if (row["op"], row["size"], row["conc"]) == (op, size, conc) and \
                row["target"] in (OURS, other) and not row["errors"]:
            by_round.setdefault(row["round"], {})[row["target"]] = row["rec_per_s"]
    return sorted(pair[OURS] / pair[other] for pair in by_round.values()
                  if pair.get(OURS) and pair.get(other))


def variant_table(cells, rows, variant, big_size: int) -> list:
    """Default ÷ ``variant`` per cell, with the bound's verdict."""
    out = [f"| cell | size | c | {variant.on} | {variant.off} | on ÷ off, median of the "
           "rounds' paired ratios | paired ratios min – max | on ÷ off of the medians "
           f"| µs server CPU/request on / off | on ≥ {variant.bound} × off |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for op, size, conc in variant_cells(variant, big_size):
        on, off = cells.get((OURS, op, size, conc)), cells.get((variant.name, op, size, conc))
        pairs = paired_ratios(rows, op, size, conc, variant.name)
        errors = (on or {}).get("errors") or (off or {}).get("errors")
        if not pairs:
            paired, spread = None, "–"
            verdict = "**missed** (the cell had errors)" if errors else "not measured"
        else:
            paired = statistics.median(pairs)
            spread = f"{pairs[0]:.3f} – {pairs[-1]:.3f}"
            verdict = "met" if paired >= variant.bound and not errors else "**missed**"
        r = ratio(on, off)
        shown = f"{r:.3f}×" if isinstance(r, float) else fmt_ratio(r)
        us = " / ".join(fmt_n((c or {}).get("us_per_request")) for c in (on, off))
        out.append(f"| {op} | {size_name(size)} | {conc} | {fmt_rate(on)} | {fmt_rate(off)} "
                   f"| {'–' if paired is None else f'{paired:.3f}×'} | {spread} | {shown} "
                   f"| {us} | {verdict} |")
    return out


def cost_table(cells) -> list:
    out = ["| 1 KiB single | c | reduct-twisted µs CPU/request | twisted-mock µs CPU/request "
           "| daemon's own work µs/request |", "|---|---|---|---|---|"]
    for op in ("write", "read"):
        for conc in CONCS:
            ours = cells.get((OURS, op, KiB, conc), {}).get("us_per_request")
            mock = cells.get((MOCK, op, KiB, conc), {}).get("us_per_request")
            own = ours - mock if ours is not None and mock is not None else None
            out.append(f"| {op} | {conc} | {fmt_n(ours)} | {fmt_n(mock)} | {fmt_n(own)} |")
    return out


def batch_cost_table(cells) -> list:
    out = ["| batched 1 KiB, 1 connection | reduct-twisted µs server CPU/record "
           "| PostgreSQL µs server CPU/record | reduct-twisted µs client CPU/record "
           "| PostgreSQL µs client CPU/record |", "|---|---|---|---|---|"]
    for op in ("batch write", "batch read"):
        ours, pg = cells.get((OURS, op, KiB, 1), {}), cells.get((PG, op, KiB, 1), {})
        out.append(f"| {op.split()[1]} | {fmt_n(ours.get('us_per_record'))} "
                   f"| {fmt_n(pg.get('us_per_record'))} "
                   f"| {fmt_n(ours.get('client_us_per_record'))} "
                   f"| {fmt_n(pg.get('client_us_per_record'))} |")
    for op, v1 in (("io write", "batch write"), ("io read", "batch read")):
        ours = cells.get((OURS, op, KiB, 1), {})
        if ours:  # the I/O API against the v1 batch path (PostgreSQL columns: n/a)
            base = cells.get((OURS, v1, KiB, 1), {}).get("us_per_record")
            mine = ours.get("us_per_record")
            rel = f" ({mine / base:.2f} × v1)" if mine and base else ""
            out.append(f"| {op} (I/O API, 4 entries) | {fmt_n(mine)}{rel} | – "
                       f"| {fmt_n(ours.get('client_us_per_record'))} | – |")
    return out


def detail_table(cells) -> list:
    out = ["| target | operation | size | c | rec/s | MB/s | p50 ms | p99 ms | CPU % client "
           "| CPU % server (kernel) | CPU % rest | steal % | limited by | rec/s min – max "
           "| errors |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (target, op, size, conc), c in cells.items():
        name = OP_NAMES.get(target, {}).get(op, op)
        err = f"{c['errors']}: {c['first_error']}" if c["errors"] else "0"
        out.append(
            f"| {target} | {name} | {size_name(size)} | {conc} | {fmt_n(c['rec_per_s'])} "
            f"| {fmt_n(c['mb_per_s'])} | {fmt_n(c.get('lat_p50_ms'))} "
            f"| {fmt_n(c.get('lat_p99_ms'))} "
            f"| {c['client_cpu_pct']:.0f} | {c['server_cpu_pct']:.0f} ({c['server_sys_pct']:.0f}) "
            f"| {c['other_cpu_pct']:.0f} "
            f"| {c['steal_pct']:.0f} | {limiter(c)} "
            f"| {fmt_n(c['spread'][0])} – {fmt_n(c['spread'][1])} | {err} |")
    return out


def variant_sections(cells, rows, big_size: int) -> list:
    """One section per variant daemon (``matrix.VARIANTS``)."""
    out = []
    for variant in VARIANTS:
        out += [
            f"## {variant.heading}", "",
            "The same cells against two daemons of this checkout, back to back in every "
            f"round (which goes first alternates): {variant.note}. The verdict uses the "
            "median of the rounds' paired ratios (default ÷ variant within one round), "
            "which cancels the drift of the box from round to round; their min – max is "
            "the noise to read it against.", "",
            *variant_table(cells, rows, variant, big_size), "",
        ]
    return out[:-1]


def render(rows, memory, background, waited, meta, extra=()) -> str:
    cells = medians(rows)
    big = meta["bounds"]["big"]
    b = meta["bounds"]
    counts = ", ".join(f"{size_name(s)}: {n}" for s, n in b["counts"].items())
    lines = [
        f"# reduct-twisted benchmark — {meta['date']}",
        "",
        f"`{meta['command']}` on {meta['machine']}; commit {meta['commit']}. "
        f"Median of **{meta['rounds']} round(s)**, rounds interleaved; whole run "
        f"{meta['wall_s']:.0f} s. All traffic on 127.0.0.1; client and servers share the "
        f"same {NCPU} cores.",
        "",
        f"Each measurement stops at its record count ({counts}; batched cells "
        f"{b['batch_count']} records of 1 KiB, or after {b.get('batch_max_s', b['max_s'])} s, "
        "their load generator on the last CPU) or "
        f"after {b['max_s']} s; reads go over the records just written again for at least "
        f"{b['min_read_s']} s (page cache hot). MB = 10^6 bytes of record payload; "
        "c = keep-alive connections. Ratios compare MB/s (the same as records/s for one size).",
        "",
        f"Background CPU (other work, measured for 0.3 s before each target's cells): median "
        f"{statistics.median(background or [0]):.0f} %, max {max(background or [0]):.0f} % "
        "of one core over "
        f"{len(background)} measurements; {waited:.0f} s spent waiting for it to drop below "
        f"{b['quiet_pct']} %. The \"rest\" and \"steal\" columns below show it per cell.",
        "",
        "## Results",
        "",
        *main_table(cells, big),
        "",
        "## Targets",
        "",
        *targets_table(cells, memory, big),
        "",
        *report17.section(cells, memory, list(extra), b),
        "",
        *variant_sections(cells, rows, big),
        "",
        "## Daemon CPU per request (1 KiB)",
        "",
        "Server CPU seconds of the cell ÷ requests, median of the rounds; the in-memory "
        "Twisted server is the framework's floor, the difference is what the daemon adds.",
        "",
        *cost_table(cells),
        "",
        "Batched 1 KiB cells: CPU seconds ÷ records, median of the rounds (server: the "
        "daemon / the postmaster's tree; client: aiohttp / psycopg in this process).",
        "",
        *batch_cost_table(cells),
        "",
        "## Every cell: CPU split and what limited it",
        "",
        "CPU in percent of one core (the box has "
        f"{100 * NCPU} %): client = the load generator (this Python process, or curl), "
        "server = the target's process tree (in brackets: its kernel time — syscalls, "
        "page cache), rest = everything else busy on the box, "
        "steal = time the hypervisor gave our virtual CPUs to someone else. "
        "\"limited by\" is a rule of thumb: a side at ≥ 80 % of a core, or all cores busy "
        "(steal counts as busy).",
        "",
        *detail_table(cells),
        "",
        "## Notes",
        "",
        "- Durability differs: the daemon runs with `RS_SYNC=none` here and, like nginx, "
        "answers once records are in the page cache — a single record and a whole "
        "80-record batched POST alike (its default, `always`, answers after a group-commit "
        "fsync); PostgreSQL INSERT flushes its WAL at every commit (synchronous_commit=on), "
        "COPY once per 100-row transaction.",
        "- Batched cells use 1 connection and the same record count on both sides: the "
        "daemon sends 80 records per POST …/batch and reads them back through one query "
        "and GET …/batch (up to 85 records per response, every record's header and bytes "
        "checked); PostgreSQL runs a binary COPY of 100 rows per transaction and a "
        "time-range SELECT through a server-side cursor, 100 rows per fetch (sizes "
        "checked). Records/s counts records; a batch counts as one request.",
        "- nginx stores neither labels nor content type; the daemon, the in-memory server "
        "and PostgreSQL store both.",
        "- With 1 connection, a request is a ping-pong between two processes that are often "
        "on different cores: those cells mostly measure wake-up latency. Compare c = 8 cells "
        "first, and read the min – max spread before trusting a difference.",
        "- The load generator is one Python process (aiohttp, uvloop when installed): small "
        "records at 8 connections can use its whole core, and then the faster side's number "
        "is a floor, not its ceiling (\"limited by: client CPU\").",
        "- Absolute numbers drift between runs on a shared virtual machine; the ratios, "
        "measured minutes apart in the same run, are what to compare.",
    ]
    if meta.get("quick"):
        lines[2:2] = ["**Quick mode (smoke test): counts and bounds are tiny and the large "
                      "record is small; these numbers mean nothing.**", ""]
    return "\n".join(lines) + "\n"

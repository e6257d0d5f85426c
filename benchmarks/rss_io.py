"""
The I/O API (batch protocol v2, spec 1.20 §1) side of ``batch_rss.py --io``:
which entry a record goes to, the headers of a write, the records of a read
answer.
"""

CONTENT_TYPE = "application/octet-stream"


def io_entry(i: int, run: int, entries: int) -> int:
    """The entry index of the ``i``-th record of an ``--io`` run."""
    return (i // run) % entries


def io_headers(stamps, size: int, run: int, entries: int, entry: str, t0: int) -> dict:
    """A v2 write's headers (spec 1.20 §1.2) for records ``stamps`` (consecutive)."""
    first = stamps[0]
    headers = {"x-reduct-entries": ",".join(f"{entry}-{e}" for e in range(entries)),
               "x-reduct-start-ts": str(first)}
    seen = set()
    for ts in sorted(stamps, key=lambda t: (io_entry(t - t0, run, entries), t)):
        index = io_entry(ts - t0, run, entries)
        headers[f"x-reduct-{index}-{ts - first}"] = (
            str(size) if index in seen else f"{size},{CONTENT_TYPE}")
        seen.add(index)
    return headers


def io_records(headers) -> list:
    """``(ts, entry, size)`` of the records of a v2 read answer, in ts order."""
    lower = {name.lower(): value for name, value in headers}
    names = lower.get("x-reduct-entries", "").split(",")
    start = int(lower.get("x-reduct-start-ts", "0"))
    found = []
    for name, value in lower.items():
        index, _, delta = name[len("x-reduct-"):].rpartition("-")
        if name.startswith("x-reduct-") and index.isdigit() and delta.isdigit():
            found.append((start + int(delta), names[int(index)], int(value.split(",")[0])))
    return sorted(found)

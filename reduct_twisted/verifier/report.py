"""
What a run found: per entry the counts and the failed checks (entry,
record number, timestamp, which check, why), and the summary printed at
the end.  Exit status: 0 when every check held, 1 when one failed (2, for
usage and connection errors, is decided by the command).
"""

import datetime

OK, FAILED, USAGE = 0, 1, 2


def iso_us(timestamp) -> str:
    """A µs timestamp as UTC ISO 8601 (or the raw value when it is not one)."""
    try:
        when = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(
            microseconds=int(timestamp)
        )
    except (TypeError, ValueError, OverflowError):
        return str(timestamp)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Finding:
    """One failed check (or, for ``warning``, one record that could not be checked)."""

    def __init__(self, bucket, entry, check, message, number=None, timestamp=None, warning=False):
        self.bucket = bucket
        self.entry = entry
        self.check = check
        self.message = message
        self.number = number
        self.timestamp = timestamp
        self.warning = warning

    def line(self) -> str:
        where = f"{self.bucket}/{self.entry}" if self.entry is not None else (self.bucket or "server")
        if self.number is not None:
            where += f" #{self.number}"
        if self.timestamp is not None:
            where += f" ts={self.timestamp} ({iso_us(self.timestamp)})"
        kind = "WARNING" if self.warning else "FAILED"
        return f"{kind} {where} [{self.check}] {self.message}"


class EntryResult:
    def __init__(self, bucket: str, entry: str):
        self.bucket = bucket
        self.entry = entry
        self.head = None
        self.findings: list = []
        self.records = 0  # listed records looked at
        self.contents = 0  # contents downloaded and checked
        self.proofs = 0  # inclusion proofs checked
        self.removed = 0  # removed records (inclusion only)
        self.undigested = 0  # no digest: leaf and inclusion checked, content not
        self.skipped_numbers = 0  # numbers no record holds (gap leaves), proven
        self.newer = 0  # numbered after the signed head: next run's work
        self.bytes = 0
        self.consistency = "no saved head"
        self.skipped = None  # why nothing was checked, when that is no failure

    def fail(self, check, message, number=None, timestamp=None, warning=False) -> None:
        self.findings.append(Finding(self.bucket, self.entry, check, message, number, timestamp, warning))

    @property
    def failures(self) -> list:
        return [f for f in self.findings if not f.warning]

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        if self.skipped:
            return f"{'skipped':>9}  {self.bucket}/{self.entry}: {self.skipped}"
        head = self.head
        size = f"head {head['tree_size']} leaves, root {str(head['root_hash'])[:16]}…" if head else "no head"
        parts = [
            f"{self.records} records listed",
            f"{self.contents} contents checked",
            f"{self.proofs} inclusion proofs",
        ]
        if self.removed:
            parts.append(f"{self.removed} removed (inclusion only)")
        if self.undigested:
            parts.append(f"{self.undigested} undigested (content not verified)")
        if self.skipped_numbers:
            parts.append(f"{self.skipped_numbers} skipped numbers (no record)")
        if self.newer:
            parts.append(f"{self.newer} newer than the head (next run)")
        failed = len(self.failures)
        verdict = "OK" if not failed else f"{failed} FAILED"
        return f"{verdict:>9}  {self.bucket}/{self.entry}: {size}; consistency: {self.consistency}; " + ", ".join(parts)


def render(results: list, run_findings: list, out) -> int:
    """Print the failures and the summary to ``out``; return the exit status."""
    findings = list(run_findings) + [f for r in results for f in r.findings]
    for finding in findings:
        out.write(finding.line() + "\n")
    if findings:
        out.write("\n")
    for result in results:
        out.write(result.summary() + "\n")
    failed = sum(1 for f in findings if not f.warning)
    warned = len(findings) - failed
    records = sum(r.records for r in results)
    verdict = "all checks hold" if not failed else f"{failed} check(s) FAILED"
    extra = f", {warned} warning(s)" if warned else ""
    skipped = sum(1 for r in results if r.skipped)
    without = f" ({skipped} without a log)" if skipped else ""
    out.write(f"{len(results)} entries{without}, {records} records: {verdict}{extra}\n")
    out.flush()
    return OK if not failed else FAILED

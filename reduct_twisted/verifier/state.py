"""
The ``--state`` file: per bucket and entry, the last signed tree head a
run verified completely, so the next run can ask for a consistency proof
from it (and notice a changed log key).

    {"version": 1,
     "entries": {"<bucket>": {"<entry>": {"tree_size": 12, "root_hash": "<hex>",
                                          "key_id": "<hex>", "timestamp": <µs>,
                                          "verified_at": "<UTC ISO 8601>"}}}}

Written atomically (a temporary file in the same directory, flushed and
synced, renamed over the old one, the directory synced), so a crash leaves
the old state or the new, never half of one.
"""

import json
import os
import tempfile

VERSION = 1


class StateError(Exception):
    """The state file cannot be read or written (exit 2)."""


class State:
    def __init__(self, path: str | None = None):
        self.path = path
        self.entries: dict = {}
        if path and os.path.exists(path):
            self._load()

    def _load(self) -> None:
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as exc:
            raise StateError(f"cannot read the state file {self.path}: {exc}") from None
        if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("entries"), dict):
            raise StateError(f"{self.path} is not a version {VERSION} verifier state file")
        self.entries = data["entries"]

    def head(self, bucket: str, entry: str):
        """The saved head of ``bucket``/``entry`` or None."""
        saved = self.entries.get(bucket, {}).get(entry)
        return saved if isinstance(saved, dict) else None

    def remember(self, bucket: str, entry: str, head: dict, verified_at: str) -> None:
        """Keep ``head`` as verified and write the file (when there is one)."""
        self.entries.setdefault(bucket, {})[entry] = {
            "tree_size": head["tree_size"],
            "root_hash": head["root_hash"],
            "key_id": head["key_id"],
            "timestamp": head["timestamp"],
            "verified_at": verified_at,
        }
        if self.path:
            self._write()

    def _write(self) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        text = json.dumps({"version": VERSION, "entries": self.entries}, indent=1, sort_keys=True)
        try:
            fd, tmp = tempfile.mkstemp(prefix=".verify-state-", dir=directory)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(text + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
            dirfd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dirfd)
            finally:
                os.close(dirfd)
        except OSError as exc:
            raise StateError(f"cannot write the state file {self.path}: {exc}") from None

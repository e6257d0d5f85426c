"""
The folder format of ``reduct-twisted export`` / ``import`` (version 1)::

    DIR/reduct-export.json          {"format": "reduct-twisted-export", "version": 1,
                                     "bucket": NAME, "settings": {...bucket settings...},
                                     "source": URL}
    DIR/<entry path>/manifest.jsonl one JSON line per record, in timestamp order:
                                    {"ts": 1000, "file": "1000.jpg", "content_type": "image/jpeg",
                                     "labels": {"k": "v"}, "size": 1234, "sha256": "<hex>"}
    DIR/<entry path>/<ts>.<ext>     the record's content, byte for byte
    DIR/<entry path>/<ts>.<ext>.part  a record being written (an interrupted export)

An entry ``a/b`` is the directory ``DIR/a/b/``; its parent ``a``'s records
sit in ``DIR/a/`` beside it (entry names hold no dots, so no entry is named
like a file here).  ``<ext>`` comes from the content type (``.bin`` when it
names none).  A record's manifest line is appended only once its file is
complete under its final name, so the manifest is exactly what an export
finished; a torn last line (no newline) is cut when the export resumes.
"""

import json
import mimetypes
import os

FORMAT = "reduct-twisted-export"
VERSION = 1
HEADER_FILE = "reduct-export.json"
MANIFEST = "manifest.jsonl"
PART = ".part"


class FolderError(Exception):
    """The folder is not an export of this format."""


def extension(content_type: str) -> str:
    base = content_type.split(";", 1)[0].strip().lower()
    ext = {"image/jpeg": ".jpg", "text/plain": ".txt"}.get(base) or mimetypes.guess_extension(base) or ".bin"
    return ext if ext[1:].isalnum() else ".bin"


def entry_dir(root: str, entry: str) -> str:
    parts = entry.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise FolderError(f"entry name {entry!r} cannot be a folder")
    return os.path.join(root, *parts)


def write_header(root: str, bucket: str, settings: dict, source: str) -> None:
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, HEADER_FILE)
    data = {"format": FORMAT, "version": VERSION, "bucket": bucket, "settings": settings, "source": source}
    with open(path + ".tmp", "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    os.replace(path + ".tmp", path)


def read_header(root: str) -> dict:
    try:
        with open(os.path.join(root, HEADER_FILE)) as f:
            header = json.load(f)
    except FileNotFoundError:
        raise FolderError(f"{root} holds no {HEADER_FILE}: not an export folder") from None
    except (OSError, ValueError) as exc:
        raise FolderError(f"{root}/{HEADER_FILE} cannot be read: {exc}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise FolderError(f"{root}/{HEADER_FILE} is not a {FORMAT} header")
    if header.get("version") != VERSION:
        raise FolderError(f"{root} is an export of version {header.get('version')!r}; this build reads {VERSION}")
    return header


def entries(root: str) -> list:
    """The entry names of an export folder (those with a manifest), sorted."""
    found = []
    for directory, dirs, files in os.walk(root):
        dirs.sort()
        if MANIFEST in files and directory != root:
            found.append(os.path.relpath(directory, root).replace(os.sep, "/"))
    return sorted(found)


def read_manifest(directory: str):
    """Yield the manifest's records (dicts) one at a time; a torn last line is left out."""
    try:
        f = open(os.path.join(directory, MANIFEST), "rb")
    except FileNotFoundError:
        return
    with f:
        for number, line in enumerate(f, 1):
            if not line.endswith(b"\n"):
                return
            try:
                item = json.loads(line)
                ok = (isinstance(item, dict) and type(item.get("ts")) is int and type(item.get("size")) is int
                      and isinstance(item.get("file"), str) and "/" not in item["file"]
                      and isinstance(item.get("content_type"), str) and isinstance(item.get("labels"), dict))
            except ValueError:
                ok = False
            if not ok:
                raise FolderError(f"{directory}/{MANIFEST} line {number} is not a record line")
            yield item


def _with_ends(items, path: str):
    """``(item, end offset of its line)`` for the manifest's whole lines."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    with f:
        end = 0
        for item, line in zip(items, f):
            end += len(line)
            yield item, end


class Manifest:
    """An entry's manifest opened for appending (resuming an export)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.path = os.path.join(directory, MANIFEST)
        self.last_ts = None
        self.count = 0
        self._file = None
        whole = 0
        for item, end in _with_ends(read_manifest(directory), self.path):
            self.last_ts, self.count, whole = item["ts"], self.count + 1, end
        if os.path.exists(self.path) and os.path.getsize(self.path) != whole:
            with open(self.path, "r+b") as f:
                f.truncate(whole)  # a torn last line
        if os.path.isdir(directory):
            for name in os.listdir(directory):
                if name.endswith(PART):
                    os.unlink(os.path.join(directory, name))  # our own unfinished record file

    def open(self) -> None:
        """Create the entry's folder and manifest (at its first record: no empty entries)."""
        if self._file is None:
            os.makedirs(self.directory, exist_ok=True)
            self._file = open(self.path, "ab")

    def add(self, ts: int, file: str, content_type: str, labels: dict, size: int, sha256: str) -> None:
        line = json.dumps({"ts": ts, "file": file, "content_type": content_type, "labels": labels,
                           "size": size, "sha256": sha256}, ensure_ascii=False)
        self.open()
        self._file.write(line.encode() + b"\n")
        self._file.flush()
        self.last_ts, self.count = ts, self.count + 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

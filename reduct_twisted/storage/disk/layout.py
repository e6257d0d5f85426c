"""
Which files are ours: the names this daemon writes below a data directory,
the format marker, and the read-only classification of a directory at start.

The daemon deletes or moves only files it can prove it wrote.  The proof is
the name: every file and directory the engine, the token store and the
replication registry create has a name listed here, and a data directory
holding anything else is not opened (top level) or the odd file is left in
place and reported (inside buckets and entries).

**Format marker.**  ``<data_path>/.reduct-twisted`` holds one JSON line
``{"format": "reduct-twisted", "version": 3}``.  Version 3 (issue #16):
``.meta`` record lines may carry an entry number ``"n"`` and a SHA-256
``"sha256"`` and an entry directory may hold its number counter
``.numbers`` (``storage/numbers.py``); a build that reads only up to
version 2 would drop both silently when it rewrites a ``.meta``, so it is
refused.  A version-2 (or 1) directory is upgraded in place at start: the
marker is rewritten (crash-safely, below) before anything else; each
entry's un-numbered records get their numbers set aside when it is first
loaded (``numbers.py``) and their digests and numbers from the background
backfill; a crash anywhere in it leaves a state the next start finishes.
Version 2 (API 1.19
hierarchical entries): an entry directory may hold child entry directories
(``<bucket>/a/b/c/`` is entry ``a/b/c``; an attachment entry ``a/$meta`` is
the directory ``$meta`` in ``a``'s, a top-level ``$meta`` is in the bucket)
besides its block files.  Version 1 directories (flat entries) are a
subset and are opened and re-marked 2; a build that reads only version 1
refuses a version-2 directory, whose nesting it would take for foreign names.  It is written when a
directory is first initialised (empty, or laid out by an earlier version
without the marker): ``.reduct-twisted.tmp`` is written and flushed, renamed
over the marker and the directory flushed, so a crash leaves either no
marker (the directory is still recognised by its layout and the marker
written at the next start) or the whole one.  A marker of another format,
a newer version or that does not parse is refused.

Classification (:func:`classify`) reads only; it returns :data:`EMPTY`
(missing or empty), :data:`MARKED`, :data:`OUTDATED` (an older marker)
or :data:`LEGACY` (our layout, no marker), and raises :class:`DataDirRefused` for anything else.
"""

import json
import os
import re

from reduct_twisted.storage.disk.blockfile import classify as classify_block_file
from reduct_twisted.storage.settings import META_SEGMENT, is_bucket_name, is_valid_name

#: The format marker, below ``data_path``.
MARKER_FILE = ".reduct-twisted"
#: The ``format`` value of the marker.
MARKER_FORMAT = "reduct-twisted"
#: The marker version written by this code (and the newest it opens);
#: 2: entry directories may hold child entry directories; 3: entry numbers
#: and SHA-256 digests in ``.meta`` lines, ``.numbers`` counters.
MARKER_VERSION = 3
#: The marker versions this code opens (an older one is rewritten).
MARKER_VERSIONS = (1, 2, 3)
#: The run marker (``recovery.py``).
RUN_MARKER = ".running"
#: Removed files wait here (``trash.py``).
TRASH_DIR = ".trash"
#: Damaged blocks are moved here (``recovery.py``).
QUARANTINE_DIR = ".quarantine"
#: The data directory lock (``reduct_twisted/datadir.py``).
LOCK_FILE = ".lock"
#: A space-reserve file.
RESERVE_FILE = ".reserve"
#: The token file (``reduct_twisted/auth/tokens.py``).
AUTH_FILE = ".auth.json"
#: The replication registry and its log directory (``replication/manager.py``).
REGISTRY_FILE = ".replications.json"
REPLICATION_LOG_DIR = ".replications"
#: The lifecycle policies (``reduct_twisted/lifecycle/manager.py``).
LIFECYCLES_FILE = ".lifecycles"
#: The query links' signing key and the file a new one is written to
#: before its rename (``reduct_twisted/links/key.py``).
LINK_KEY_FILE = ".link-key"
LINK_KEY_TMP_FILE = LINK_KEY_FILE + ".tmp"
#: The integrity log's tree-head signing key and its temporary file
#: (``reduct_twisted/integrity/signing.py``, which names them itself: the
#: integrity package does not import storage).
LOG_KEY_FILE = ".log-key"
LOG_KEY_TMP_FILE = LOG_KEY_FILE + ".tmp"
#: The settings file inside a bucket directory (``bucket.py``).
SETTINGS_FILE = "settings.json"
#: Suffix of a file being replaced (written, then renamed over its target).
TMP_SUFFIX = ".tmp"
#: An entry's number counter (``storage/numbers.py``; a dot: never an entry name).
NUMBERS_FILE = ".numbers"
#: An entry's integrity log directory (``storage/entry_log.py``; moves and goes with it).
LOG_DIR = ".log"
#: An entry's block index (``blockindex.py``, issue #17: a cache, safe to delete).
BLOCK_INDEX_FILE = ".blocks"

#: Every name this daemon creates directly below ``data_path``, but buckets.
TOP_LEVEL_NAMES = frozenset({
    MARKER_FILE, RUN_MARKER, TRASH_DIR, QUARANTINE_DIR, LOCK_FILE, RESERVE_FILE,
    AUTH_FILE, REGISTRY_FILE, REPLICATION_LOG_DIR, LIFECYCLES_FILE,
    LINK_KEY_FILE, LINK_KEY_TMP_FILE, LOG_KEY_FILE, LOG_KEY_TMP_FILE,
})

#: The token file and the registry are written to ``<name>.<random>.tmp``.
_SNAPSHOT_TMP = re.compile(
    "(?:%s)\\.[^/]*\\.tmp" % "|".join(re.escape(n) for n in (AUTH_FILE, REGISTRY_FILE, LIFECYCLES_FILE))
)

#: :func:`classify` results.
EMPTY, MARKED, LEGACY, OUTDATED = "empty", "marked", "legacy", "outdated"


class DataDirRefused(Exception):
    """
    The data directory is not ours (or of a newer version): it is not opened
    and nothing in it is changed.  ``str()`` is one line naming the reason.
    """


def is_top_level_name(name: str) -> bool:
    """:return: whether ``name`` directly below ``data_path`` is one of ours (buckets aside)."""
    return (name in TOP_LEVEL_NAMES or name == MARKER_FILE + TMP_SUFFIX
            or _SNAPSHOT_TMP.fullmatch(name) is not None)


def is_bucket_file(name: str) -> bool:
    """:return: whether file ``name`` in a bucket directory is one of ours."""
    return name in (SETTINGS_FILE, SETTINGS_FILE + TMP_SUFFIX)


def is_entry_file(name: str) -> bool:
    """
    :return: whether file ``name`` in an entry directory is one of ours: a
        block file (``<id>.meta``, ``<id>.blk``, ``<id>-<ts>.blk``, the packed
        segment ``<id>-<gen>.zst`` of a compressed block), the number
        counter ``.numbers``, the block index ``.blocks``, or one being
        replaced (the same with ``.tmp``).
    """
    if name.endswith(TMP_SUFFIX):
        name = name[: -len(TMP_SUFFIX)]
    return name in (NUMBERS_FILE, BLOCK_INDEX_FILE) or classify_block_file(name) is not None


def is_child_entry_dir(name: str, meta: bool = False) -> bool:
    """
    :param name: a directory name in a bucket or entry directory.
    :param meta: the directory it is in is an attachment (``$meta``) entry,
        which has no children.
    :return: whether it is one of our entry directories (a valid segment or
        ``$meta``).
    """
    return not meta and (name == META_SEGMENT or is_valid_name(name))


def unknown_in_entry(directory: str, meta: bool = False) -> list:
    """
    :param meta: ``directory`` is an attachment (``$meta``) entry.
    :return: the sorted paths, relative to entry ``directory``, of what is
        not ours in it and in its child entry directories.
    """
    unknown = []
    with os.scandir(directory) as items:
        for item in sorted(items, key=lambda i: i.name):
            if item.is_dir(follow_symlinks=False):
                if item.name == LOG_DIR:
                    continue  # the entry's log: ours, files and all
                if is_child_entry_dir(item.name, meta):
                    child = unknown_in_entry(item.path, item.name == META_SEGMENT)
                    unknown += [f"{item.name}/{n}" for n in child]
                else:
                    unknown.append(item.name)
            elif not is_entry_file(item.name):
                unknown.append(item.name)
    return unknown


def unknown_in_bucket(directory: str) -> list:
    """
    :return: the sorted paths, relative to bucket ``directory``, of what is
        not ours in it and in its entry directories (at any depth).
    """
    unknown = []
    with os.scandir(directory) as items:
        for item in sorted(items, key=lambda i: i.name):
            if item.is_dir(follow_symlinks=False) and is_child_entry_dir(item.name):
                child = unknown_in_entry(item.path, item.name == META_SEGMENT)
                unknown += [f"{item.name}/{n}" for n in child]
            elif item.is_dir(follow_symlinks=False) or not is_bucket_file(item.name):
                unknown.append(item.name)
    return unknown


def own_files(directory: str, bucket: bool, meta: bool = False) -> list:
    """
    :param bucket: ``directory`` is a bucket (else an entry).
    :param meta: ``directory`` is an attachment entry (no children).
    :return: the paths of our files in it (and its entries, at any depth):
        block metadata first, then the other block files, then bucket settings.
    """
    files, settings = [], []
    with os.scandir(directory) as items:
        for item in sorted(items, key=lambda i: i.name):
            if item.is_dir(follow_symlinks=False):
                if is_child_entry_dir(item.name, meta and not bucket):
                    files += own_files(item.path, False, item.name == META_SEGMENT)
            elif bucket and is_bucket_file(item.name):
                settings.append(item.path)
            elif not bucket and is_entry_file(item.name):
                files.append(item.path)
    return sorted(files, key=lambda p: (not p.endswith(".meta"), p)) + settings


def read_marker(data_path: str) -> int:
    """
    :return: the version of ``data_path``'s marker (``0`` if none).
    :raises DataDirRefused: the marker is not ours, unreadable or too new.
    """
    path = os.path.join(data_path, MARKER_FILE)
    try:
        with open(path, "rb") as f:
            data = f.read(4096)
    except FileNotFoundError:
        return 0
    except OSError as exc:
        raise DataDirRefused(f"cannot read the format marker {path}: {exc.strerror}") from None
    try:
        marker = json.loads(data)
        fmt, version = marker["format"], marker["version"]
    except (ValueError, TypeError, KeyError):
        raise DataDirRefused(f"the format marker {path} is not valid: refusing to open") from None
    if (fmt != MARKER_FORMAT or not isinstance(version, int) or isinstance(version, bool)
            or version < 1):
        raise DataDirRefused(f"the format marker {path} names format {fmt!r} version "
                             f"{version!r}, not {MARKER_FORMAT!r}: refusing to open")
    if version > MARKER_VERSION:
        raise DataDirRefused(f"{data_path} was written by a newer reduct-twisted (format "
                             f"version {version}, this one reads up to {MARKER_VERSION}): "
                             f"refusing to open")
    return version


def classify(data_path: str) -> str:
    """
    Decide, reading only, whether ``data_path`` may be opened.

    :return: :data:`EMPTY` (missing or empty), :data:`MARKED` (our marker),
        :data:`OUTDATED` (our marker of an older version, to be rewritten)
        or :data:`LEGACY` (no marker but only our names: what an earlier
        version, or a first start killed before its marker, leaves).
    :raises DataDirRefused: anything else, with the first foreign path.
    :raises OSError: ``data_path`` cannot be read.
    """
    try:
        names = sorted(os.listdir(data_path))
    except FileNotFoundError:
        return EMPTY
    if not names:
        return EMPTY
    version = read_marker(data_path)
    if version:
        return MARKED if version == MARKER_VERSION else OUTDATED
    for name in names:
        path = os.path.join(data_path, name)
        if is_top_level_name(name):
            continue
        if is_bucket_name(name) and os.path.isdir(path) and not os.path.islink(path):
            if not unknown_in_bucket(path):
                continue
        raise DataDirRefused(
            f"{data_path} is not a reduct-twisted data directory (no {MARKER_FILE} marker, "
            f"and {path} is not ours): refusing to open it so nothing in it is changed; "
            f"point --data-path/RS_DATA_PATH at an empty or new directory"
        )
    return LEGACY


def write_marker(data_path: str, sync, dirty) -> None:
    """
    Write the marker crash-safely (see the module docstring).

    :param sync: ``sync(files, directories)``, or ``None`` (then the marker
        and the directory are left in ``dirty`` for a later flush).
    :param dirty: the engine's :class:`~reduct_twisted.storage.disk.durability.DirtySet`.
    """
    path = os.path.join(data_path, MARKER_FILE)
    tmp = path + TMP_SUFFIX
    data = json.dumps({"format": MARKER_FORMAT, "version": MARKER_VERSION}) + "\n"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data.encode("ascii"))
    finally:
        os.close(fd)
    if sync is not None:
        sync([tmp], [])
    os.rename(tmp, path)
    if sync is not None:
        sync([], [data_path])
    else:
        dirty.created(path)

"""
The web console's files (issue #18 item 1): plain ES modules, one style
sheet and an HTML shell in ``static/``, shipped as package data and served
by the daemon at ``{base}ui/`` (``http/routes_console.py``).

This module is the only code that reads them: once per process, when the
first API is built (before the daemon listens), through
``importlib.resources``, so that a request never waits on the disk.
"""

import functools
import hashlib
from importlib import resources
from typing import Dict, NamedTuple, Optional

#: Content types by file suffix; a file of any other kind is not served.
CONTENT_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".svg": b"image/svg+xml",
    ".png": b"image/png",
}

#: The page every console path without a file name answers with.
INDEX = "index.html"


class Asset(NamedTuple):
    """One console file: its bytes, content type and strong ETag."""

    body: bytes
    content_type: bytes
    etag: bytes


def _walk(folder, prefix: str = ""):
    for item in sorted(folder.iterdir(), key=lambda i: i.name):
        name = prefix + item.name
        if item.is_dir():
            yield from _walk(item, name + "/")
        elif item.is_file():
            yield name, item


@functools.lru_cache(maxsize=1)
def assets() -> Dict[str, Asset]:
    """
    ``{relative path: Asset}`` of every servable file under ``static/``
    (read once per process; the files are a few tens of KiB).
    """
    found = {}
    for name, item in _walk(resources.files(__name__).joinpath("static")):
        suffix = name[name.rfind("."):] if "." in name else ""
        content_type = CONTENT_TYPES.get(suffix)
        if content_type is None:
            continue
        body = item.read_bytes()
        etag = b'"%s"' % hashlib.sha256(body).hexdigest()[:32].encode("ascii")
        found[name] = Asset(body, content_type, etag)
    return found


class Console:
    """
    The console as the daemon serves it.

    :param base_path: ``RS_API_BASE_PATH``, normalised (``/`` or ``/x/``).
    """

    def __init__(self, base_path: str = "/") -> None:
        self.base_path = base_path
        self.files = assets()

    @property
    def location(self) -> bytes:
        """Where ``GET {base}`` sends a browser: ``{base}ui/``."""
        return (self.base_path + "ui/").encode("utf-8")

    def find(self, name: str) -> Optional[Asset]:
        """
        The file at ``name`` below ``{base}ui/`` (``""`` is the index page),
        or None.  Only names of files shipped in ``static/`` match: there
        is no path to resolve, so ``..`` cannot escape it.
        """
        return self.files.get(name or INDEX)

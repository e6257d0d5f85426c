# -*- test-case-name: tests.unit.test_registry_file -*-
"""
The file of named settings behind a registry of the API (replications,
lifecycle policies): one JSON object, replaced atomically::

    {"format": <n>, "<key>": [{"name": …, "settings": {…}}, …],
     "provisioned_modes": {"<name>": "<mode>", …}}

A file of a newer format than the registry's is left alone: nothing is
loaded from it and nothing is written over it (saving fails with a 500
``InternalError``) until it is moved away.  What each item means is the
registry's business; this module only reads and writes the file.
"""

from __future__ import annotations

import json
from typing import Callable, Optional

from twisted.internet.defer import fail, maybeDeferred
from twisted.logger import Logger

from reduct_twisted.errors import InternalError
from reduct_twisted.persist import write_atomically

log = Logger()


class RegistryFile:
    """
    :param path: the file.
    :param key: the name of the list of items (``"replications"``).
    :param version: the format this daemon writes (and the newest it reads).
    :param modes: the valid modes; others in ``provisioned_modes`` are dropped.
    :param noun: what one item is called in the log (``"replication"``).
    :param persist: ``persist(path, data) -> Deferred|None``; at once by default.
    :param missing_format: the format of a file without ``"format"``.
    :param bare_list: the format of a file that is a bare JSON list of
        items (upstream's), or ``None`` when such a file is unreadable.
    """

    def __init__(self, path: str, key: str, version: int, modes, noun: str, *,
                 persist: Optional[Callable] = None, missing_format: Optional[int] = None,
                 bare_list: Optional[int] = None) -> None:
        self.path, self.key, self.version, self.modes = path, key, version, modes
        self.noun = noun
        self._persist = persist or write_atomically
        self._missing_format, self._bare_list = missing_format, bare_list
        #: Why the file must not be written (a newer format), or None.
        self.frozen: Optional[str] = None

    def load(self) -> tuple:
        """
        :return: ``(items, provisioned_modes)``: the stored items (a list,
            each still to be checked by the caller) and the valid modes of
            provisioned items; empty when the file is missing, unreadable
            (logged) or newer (logged, and :attr:`frozen` set).
        """
        try:
            with open(self.path, "rb") as f:
                stored = json.loads(f.read())
            if isinstance(stored, list) and self._bare_list is not None:
                version, items, modes = self._bare_list, stored, {}
            else:
                version = stored.get("format", self._missing_format)
                items, modes = stored[self.key], stored.get("provisioned_modes") or {}
        except FileNotFoundError:
            return [], {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.error("Cannot read {path}: {reason}; no {noun} loaded",
                      path=self.path, reason=str(exc), noun=self.noun)
            return [], {}
        if not isinstance(version, int) or version > self.version:
            self.frozen = f"{self.path} has format {version!r}, newer than {self.version}"
            log.error("Cannot read {path}: format {version!r} is newer than {ours}; no "
                      "{noun} loaded, and the file is left as it is",
                      path=self.path, version=version, ours=self.version, noun=self.noun)
            return [], {}
        if not isinstance(modes, dict):
            modes = {}
        return (items if isinstance(items, list) else [],
                {name: mode for name, mode in modes.items() if mode in self.modes})

    def save(self, items: dict, modes: dict):
        """
        Write ``items`` (name -> settings JSON) and ``modes``, sorted by name.

        :return: a Deferred firing once the file is on disk, failing with an
            ``InternalError`` ("Failed to save <key>: <reason>").
        """
        if self.frozen is not None:
            log.error("Not saving {key}: {reason}", key=self.key, reason=self.frozen)
            return fail(InternalError(f"Failed to save {self.key}: {self.frozen}"))
        data = json.dumps({"format": self.version,
                           self.key: [{"name": n, "settings": items[n]} for n in sorted(items)],
                           "provisioned_modes": dict(sorted(modes.items()))},
                          indent=1).encode("utf-8")
        d = maybeDeferred(self._persist, self.path, data)

        def failed(failure):
            reason = getattr(failure.value, "strerror", None) or failure.getErrorMessage()
            log.error("Cannot save {path}: {reason}", path=self.path, reason=reason)
            raise InternalError(f"Failed to save {self.key}: {reason}")

        return d.addErrback(failed)

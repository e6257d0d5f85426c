"""
What the storage core tells a sync policy, and how disk errors reach clients.

The core never flushes anything to stable storage itself (a sync policy
outside it decides, e.g. ``reduct_twisted.sync.GroupSync``).  It records
instead, in a :class:`DirtySet`, every file whose content it changed and
every directory whose entries it changed (a file or subdirectory created,
renamed or removed), until ``StorageEngine.take_dirty`` hands them over.
Flushing each file, then each directory, of one hand-over makes every
change the core made before it durable: a committed record's data file and
``.meta``, and the directory entries of every file created for it.

:func:`storage_error` turns an ``OSError`` of a write into the error a
client sees (507 for a full disk or quota, 500 with the reason otherwise).
"""

import errno
import os

from reduct_twisted.errors import InsufficientStorage, InternalError, ReductError, UnprocessableEntity

#: ``errno`` values that mean "no space": answered with 507.
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


def storage_error(exc: OSError, doing: str) -> ReductError:
    """
    :param exc: the error of a disk operation.
    :param doing: what failed, e.g. ``"write record"``.
    :return: ``InsufficientStorage`` (507) for ``ENOSPC``/``EDQUOT``,
        ``UnprocessableEntity`` (422) for ``ENAMETOOLONG`` (a name the file
        system cannot hold under this data path), else ``InternalError``
        (500); the message is ``"Failed to <doing>: <reason>"``.
    """
    reason = exc.strerror or (os.strerror(exc.errno) if exc.errno else str(exc))
    if exc.errno in NO_SPACE:
        kind = InsufficientStorage
    elif exc.errno == errno.ENAMETOOLONG:
        kind = UnprocessableEntity
    else:
        kind = InternalError
    return kind(f"Failed to {doing}: {reason}")


#: A dirty set never taken stops tracking beyond this many files (nobody
#: consumes it: it would only grow).
UNTAKEN_LIMIT = 100_000


class DirtySet:
    """
    Files and directories changed since the last :meth:`take`.

    :ivar enabled: when false nothing is recorded (nobody takes the sets);
        switched off by itself if never taken while :data:`UNTAKEN_LIMIT`
        files pile up.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.taken = False
        self.files: set = set()
        self.dirs: set = set()

    def file(self, path: str) -> None:
        """The content of file ``path`` changed."""
        if self.enabled:
            self.files.add(path)
            if len(self.files) > UNTAKEN_LIMIT and not self.taken:
                self.disable()

    def disable(self) -> None:
        """Stop tracking and forget what was recorded."""
        self.enabled = False
        self.files, self.dirs = set(), set()

    def dir(self, path: str) -> None:
        """An entry of directory ``path`` was created, renamed or removed."""
        if self.enabled:
            self.dirs.add(path)

    def created(self, path: str) -> None:
        """File ``path`` is new: it and its parent directory changed."""
        if self.enabled:
            self.dirs.add(os.path.dirname(path))
            self.file(path)

    def new_dir(self, path: str) -> None:
        """Directory ``path`` is new: it and its parent changed."""
        if self.enabled:
            self.dirs.add(path)
            self.dirs.add(os.path.dirname(path))

    def moved(self, source: str, target: str) -> None:
        """``source`` was renamed to ``target``: both parent directories changed."""
        if self.enabled:
            self.dirs.add(os.path.dirname(source))
            self.dirs.add(os.path.dirname(target))

    def take(self) -> tuple:
        """:return: ``(files, directories)`` recorded so far; both sets start empty again."""
        taken = self.files, self.dirs
        self.files, self.dirs, self.taken = set(), set(), True
        return taken

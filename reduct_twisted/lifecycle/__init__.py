"""
Lifecycle policies (spec 1.20 §7, issue #15 item 2): scheduled jobs that
delete or compress the old records of one bucket.

* ``duration.py``: duration literals (``"7d"``, ``"1h 30m"``);
* ``settings.py``: a policy's settings: shape, validation, echo;
* ``actions.py``: what one run does (window, delete, compress);
* ``policy.py``: one policy and its loop, the run's ``$system`` event;
* ``manager.py``: all policies: the API's registry, ``.lifecycles``,
  provisioning, the service.
"""

from __future__ import annotations

import os
from functools import partial

from twisted.internet.threads import deferToThreadPool

from reduct_twisted.lifecycle.manager import LifecycleManager
from reduct_twisted.persist import SnapshotWriter
from reduct_twisted.storage.disk.layout import LIFECYCLES_FILE

__all__ = ["LifecycleManager", "make_lifecycles"]


def make_lifecycles(engine, reactor, threadpool, events) -> LifecycleManager:
    """
    The daemon's :class:`LifecycleManager`: runs scheduled on ``reactor``,
    the file written in ``threadpool``, runs reported to ``events``.
    """
    run_in_thread = partial(deferToThreadPool, reactor, threadpool)
    writer = SnapshotWriter(os.path.join(engine.data_path, LIFECYCLES_FILE), run_in_thread)
    return LifecycleManager(engine, reactor, engine.data_path, events,
                            persist=lambda path, data: writer.write(data))

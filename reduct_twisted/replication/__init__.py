"""
Replication (issue #7, spec §3.13, §3.14): records written to a bucket, and
their label updates, flow to a bucket of another ReductStore instance.

* ``settings.py``: a replication's settings, checks and masked form;
* ``filters.py``: which records a replication takes;
* ``txlog.py``: the persistent transaction log of what is still to send;
* ``remote.py``: the destination, over HTTP with treq (v1 batch protocol);
* ``task.py``: one replication: logging and sending, retries, diagnostics;
* ``shipping.py``: one request to the destination, from the front of a log;
* ``diagnostics.py``: the hourly ok/errored counts;
* ``manager.py``: all replications: the API's registry, the storage
  engine's listener, the service.
"""

from __future__ import annotations

import os
import shutil
from functools import partial

from twisted.internet.threads import deferToThreadPool

from reduct_twisted.replication.manager import REGISTRY_FILE, ReplicationManager
from reduct_twisted.persist import SnapshotWriter
from reduct_twisted.replication.tls import replication_tls

__all__ = ["ReplicationManager", "make_replications"]


def make_replications(engine, config, reactor, threadpool) -> ReplicationManager:
    """
    The daemon's :class:`ReplicationManager`: the registry written and
    removed logs deleted in ``threadpool``, limits from ``config``.
    """
    run_in_thread = partial(deferToThreadPool, reactor, threadpool)
    writer = SnapshotWriter(os.path.join(engine.data_path, REGISTRY_FILE), run_in_thread)
    return ReplicationManager(
        engine,
        reactor,
        engine.data_path,
        capacity=config.replication_log_size,
        timeout=config.replication_timeout,
        persist=lambda path, data: writer.write(data),
        discard=lambda path: run_in_thread(shutil.rmtree, path, ignore_errors=True),
        ports=(config.port,),
        track_dirty=config.sync == "always",
        tls=replication_tls(config),
    )

"""
Every implementation of a declared seam (``reduct_twisted/interfaces.py``)
provides it: ``verifyObject`` checks the methods (and their signatures) and
the attributes, on objects built as the code and the other tests build them,
the test fakes included, so neither side of a seam can drift.
"""

import os
import re

import pytest
from twisted.internet.task import Clock
from zope.interface.verify import verifyClass, verifyObject

from reduct_twisted import interfaces
from reduct_twisted.auth.policy import OpenAccess, TokenAccess
from reduct_twisted.config import Config
from reduct_twisted.http.batch import BatchWriteSink
from reduct_twisted.http.sinks import DiscardSink, PrivateSegmentSink, SharedSegmentSink
from reduct_twisted.interfaces import (
    IAccessPolicy,
    IEngineLifecycle,
    IEngineListener,
    ISystemEvents,
    IRecordSink,
    IStorageEngine,
    IUploadSink,
)
from reduct_twisted.replication import ReplicationManager
from reduct_twisted.service import StorageService
from reduct_twisted.storage import SMALL_RECORD_MAX, StorageEngine
from tests.unit.fakes import FakeEngine


class _Pool:
    """A thread pool that runs each job at once (for closing a segment)."""

    def callInThreadWithCallback(self, on_result, f, *args, **kwargs):
        on_result(True, f(*args, **kwargs))


class _Reactor:
    def callFromThread(self, f, *args, **kwargs):
        f(*args, **kwargs)


class _Transport:
    def pauseProducing(self):
        pass

    def resumeProducing(self):
        pass


@pytest.fixture
def bucket(engine):
    """The name of an empty bucket of ``engine``."""
    engine.create_bucket("b", None)
    return "b"


def test_interfaces_import_nothing_of_the_daemon():
    """
    The interfaces modules depend on zope.interface alone, so any module may
    import them (``interfaces`` re-exports ``interfaces_events``,
    ``interfaces_integrity`` and ``interfaces_reads``, nothing else).
    """
    from reduct_twisted import interfaces_events, interfaces_integrity, interfaces_reads

    with open(interfaces.__file__) as f:
        source = f.read()
    assert "import reduct_twisted" not in source
    assert [line for line in source.splitlines() if "from reduct_twisted" in line] == [
        "from reduct_twisted.interfaces_events import ISystemEvents",
        "from reduct_twisted.interfaces_integrity import IEntryLogs",
        "from reduct_twisted.interfaces_reads import IMultiQueries",
    ]
    for module in (interfaces_events, interfaces_integrity, interfaces_reads):
        with open(module.__file__) as f:
            assert "reduct_twisted" not in f.read().replace("``reduct_twisted.interfaces``", "")


def test_every_interface_method_is_declared_without_self():
    """No declared method takes ``self`` (verifyObject would refuse every implementation)."""
    for name in interfaces.__all__:
        iface = getattr(interfaces, name)
        for attr_name in iface.names(all=True):
            description = iface[attr_name]
            positional = getattr(description, "positional", ())
            assert "self" not in positional, f"{name}.{attr_name}"


def test_engine_seam_declares_everything_http_and_replication_use():
    """Every ``engine.<name>`` the HTTP layer and replication use is declared in IStorageEngine."""
    root = os.path.dirname(interfaces.__file__)
    used = set()
    for package in ("http", "replication"):
        for name in os.listdir(os.path.join(root, package)):
            if name.endswith(".py"):
                with open(os.path.join(root, package, name)) as f:
                    used.update(re.findall(r"\b_?engine\.([A-Za-z_]\w*)", f.read()))
    assert "upload" in used and "listeners" in used
    assert sorted(used - set(IStorageEngine.names(all=True))) == []


def test_access_seam_declares_everything_the_routes_use():
    """Every ``auth.<name>`` the HTTP layer (the API and its route modules) uses is declared."""
    root = os.path.join(os.path.dirname(interfaces.__file__), "http")
    used = set()
    for name in os.listdir(root):
        if name.endswith(".py"):
            with open(os.path.join(root, name)) as f:
                used.update(re.findall(r"\b(?:self|api)\.auth\.([A-Za-z_]\w*)", f.read()))
    assert "check" in used
    assert sorted(used - set(IAccessPolicy.names(all=True))) == []


def test_storage_engine_provides_both_engine_seams(engine):
    """The real engine is what the HTTP layer, replication and the storage service expect."""
    assert verifyObject(IStorageEngine, engine)
    assert verifyObject(IEngineLifecycle, engine)
    assert verifyClass(IStorageEngine, StorageEngine)


def test_fake_engine_provides_the_lifecycle():
    """The service tests' FakeEngine, built by StorageService as they build it, is one."""
    svc = StorageService(Config(), Clock(), engine_factory=FakeEngine)
    assert isinstance(svc.engine, FakeEngine)
    assert verifyObject(IEngineLifecycle, svc.engine)


def test_replication_manager_is_an_engine_listener(engine, clock):
    """The replication manager provides what the engine calls on its listeners."""
    manager = ReplicationManager(engine, clock, engine.data_path)
    assert verifyObject(IEngineListener, manager)
    assert engine.listeners == [manager]


def test_shared_segment_sink_is_a_record_sink(engine, bucket):
    """The small-record sink provides IRecordSink (and so IUploadSink)."""
    upload = engine.upload(bucket, "e", 1, 3, "text/plain", {})
    assert not upload.private
    sink = SharedSegmentSink(upload)
    assert verifyObject(IRecordSink, sink)
    assert verifyObject(IUploadSink, sink)
    sink.abort()


def test_private_segment_sink_is_a_record_sink(engine, bucket):
    """The large-record sink provides IRecordSink (and so IUploadSink)."""
    upload = engine.upload(bucket, "e", 1, SMALL_RECORD_MAX + 1, "text/plain", {})
    assert upload.private
    sink = PrivateSegmentSink(upload, _Transport())
    assert verifyObject(IRecordSink, sink)
    assert verifyObject(IUploadSink, sink)
    sink.abort()


def test_batch_write_sink_is_a_record_sink(engine, bucket):
    """The batched-write sink provides IRecordSink (and so IUploadSink)."""
    sink = BatchWriteSink(engine, _Reactor(), _Pool(), _Transport(), bucket, "e", [])
    assert verifyObject(IRecordSink, sink)
    assert verifyObject(IUploadSink, sink)


def test_discard_sink_is_an_upload_sink():
    """The sink of refused bodies provides IUploadSink only: nobody finishes it."""
    sink = DiscardSink()
    assert verifyObject(IUploadSink, sink)
    assert not IRecordSink.providedBy(sink)


# auth.py is not this change's to edit (issue #13): the lead adds
# ``@implementer(IAccessPolicy)`` to OpenAccess and TokenAccess.  Until then
# the two declared checks are skipped and the shape is checked tentatively
# (methods and attributes, no declaration); once the declarations exist the
# declared checks run by themselves.
def _until_declared(cls):
    return pytest.mark.skipif(
        not IAccessPolicy.implementedBy(cls),
        reason=f"auth.{cls.__name__} lacks @implementer(IAccessPolicy) (issue #13, lead)",
    )


@pytest.fixture
def open_access(clock):
    """The policy with authentication disabled, as ``make_auth`` builds it."""
    return OpenAccess(clock)


@pytest.fixture
def token_access(tmp_path, clock):
    """The bearer-token policy, opened as ``make_auth`` opens it."""
    return TokenAccess.open(str(tmp_path), clock, "init-secret")


def test_open_access_has_the_access_policy_shape(open_access):
    """OpenAccess has every method (compatible signature) and attribute of IAccessPolicy."""
    assert verifyObject(IAccessPolicy, open_access, tentative=True)


def test_token_access_has_the_access_policy_shape(token_access):
    """TokenAccess has every method (compatible signature) and attribute of IAccessPolicy."""
    assert verifyObject(IAccessPolicy, token_access, tentative=True)


@_until_declared(OpenAccess)
def test_open_access_is_an_access_policy(open_access):
    """The policy with authentication disabled declares and provides IAccessPolicy."""
    assert verifyObject(IAccessPolicy, open_access)


@_until_declared(TokenAccess)
def test_token_access_is_an_access_policy(token_access):
    """The bearer-token policy declares and provides IAccessPolicy."""
    assert verifyObject(IAccessPolicy, token_access)


def test_null_system_events_provide_the_events_seam():
    """What the parts hold with system events off drops events and knows no access."""
    from reduct_twisted.system import NullSystemEvents

    events = NullSystemEvents()
    assert verifyObject(ISystemEvents, events)
    assert events.enabled is False
    events.emit("audit", "init-token", 1, 200, "", {"call_count": 1})
    assert events.last_access("init-token") is None

"""
What a replication reports while it sends nothing (issue #12), with a real
storage engine, fake time and the fake destination of
``test_replication_task``: a new replication asks nothing of its
destination until a record is logged; a record whose ``when`` fails is
counted in the diagnostics and logged once.
"""

import pytest
from twisted.logger import globalLogPublisher

from reduct_twisted.replication.remote import RemoteError
from reduct_twisted.replication.task import MAX_BACKOFF
from tests.unit.test_replication_task import (  # noqa: F401 (fixtures)
    BODY,
    _hourly,
    _info,
    _write,
    destination,
    setup,
)


@pytest.mark.parametrize("down", [RemoteError(-3, "Connection refused", retry=True),
                                  RemoteError(401, "No bearer token in request header",
                                              retry=True)])
def test_new_replication_asks_nothing_of_its_destination(setup, engine, clock, destination,
                                                         down):
    """
    A new replication with nothing to send makes no request, not even a
    probe, so an unreachable destination or one wanting a token (no
    ``dst_token``) does not show: active (1.15+), no errors, nothing
    scheduled.  The first write is what contacts the destination.
    """
    destination.down = down
    manager = setup()
    clock.advance(60)
    assert destination.requests == []
    assert clock.getDelayedCalls() == []
    assert _info(manager) == {"name": "r", "mode": "enabled", "is_active": True, "is_provisioned": False,
                              "pending_records": 0}
    assert _hourly(manager) == {"ok": 0, "errored": 0, "errors": {}}
    # A restart of the service, or a PUT, does not probe either.
    manager.stopService()
    manager.startService()
    manager.update("r", dict(BODY, dst_bucket="other"))
    clock.advance(60)
    assert destination.requests == [] and _info(manager)["is_active"] is True
    _write(engine, 1)
    clock.advance(0)
    assert destination.requests == [("HEAD", None, [])]
    assert _info(manager)["is_active"] is False
    assert _hourly(manager)["errors"][str(down.status)]["count"] == 1
    destination.down = None
    clock.advance(MAX_BACKOFF)
    assert sorted(destination.store["e"]) == [1]
    assert _info(manager)["is_active"] is True


def test_when_failure_is_counted_and_logged_once(setup, engine, clock, destination):
    """
    A record whose ``when`` fails (a missing label, a type error) is not
    replicated, and is counted as errored with the condition's status and
    text; the log says so once, not per record.
    """
    seen = []
    globalLogPublisher.addObserver(seen.append)
    try:
        manager = setup(when={"&n": {"$gt": 2}})
        _write(engine, 1, labels={"n": "5"})
        _write(engine, 2, labels={"other": "x"})
        _write(engine, 3, labels={"other": "y"})
        _write(engine, 4, labels={"n": "1"})
        _write(engine, 5, labels={"n": "1" * 5000})  # a float (+inf): fine
        clock.advance(0)
    finally:
        globalLogPublisher.removeObserver(seen.append)
    assert sorted(destination.store["e"]) == [1, 5]
    hourly = _hourly(manager)
    assert hourly["errored"] == 120  # 2 in the first minute, scaled to the hour
    assert hourly["errors"] == {"404": {
        "count": 2,
        "last_message": "Condition failed on record 3 of entry 'e': Reference 'n' not found",
    }}
    warnings = [e for e in seen if "Condition failed" in str(e.get("message", ""))]
    assert len(warnings) == 1
    assert warnings[0]["message"] == \
        "Condition failed on record 2 of entry 'e': Reference 'n' not found"
    # A type error is a 422, counted the same way.
    manager.update("r", dict(BODY, when={"$gt": [{"$sub": ["&n", 1]}, 0]}))
    _write(engine, 7, labels={"n": "x"})
    assert _hourly(manager)["errors"]["422"] == {
        "count": 1,
        "last_message": "Condition failed on record 7 of entry 'e': "
                        "Cannot subtract string from integer",
    }

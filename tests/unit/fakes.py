"""Stand-ins shared by the unit tests of the service tree (service, tap, plugin)."""

import attrs
from zope.interface import implementer

from reduct_twisted.interfaces import IEngineLifecycle


@implementer(IEngineLifecycle)
@attrs.define
class FakeEngine:
    """Records when each periodic step ran; can be told to fail."""

    data_path: str
    clock: object
    discard: object = None
    sync: object = None
    track_dirty: bool = True
    table_cache_size: int = None
    reserve_size: int = None
    calls: list = attrs.Factory(list)
    fail_quota_at: set = attrs.Factory(set)
    fail_expiry_at: set = attrs.Factory(set)
    on_close: object = None
    report: dict = attrs.Factory(lambda: {"unclean": False, "problems": []})

    def open(self):
        self.calls.append(("open", None))

    def recovery_report(self):
        return self.report

    def close(self):
        self.calls.append(("close", None))
        if self.on_close:
            self.on_close()

    def enforce_quotas(self):
        now = self.clock.seconds()
        self.calls.append(("quota", now))
        if now in self.fail_quota_at:
            raise RuntimeError(f"quota failed at {now}")
        return 2

    def expire_queries(self):
        now = self.clock.seconds()
        self.calls.append(("expiry", now))
        if now in self.fail_expiry_at:
            raise ValueError(f"expiry failed at {now}")
        return 0

    @property
    def opened(self) -> bool:
        return ("open", None) in self.calls

    @property
    def closed(self) -> bool:
        return ("close", None) in self.calls

    def times(self, kind):
        return [t for k, t in self.calls if k == kind]

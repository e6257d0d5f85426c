"""
Process-wide settings (reduct_twisted/tuning.py): the open-file limit is
raised to the hard limit (at most MAX_OPEN_FILES), never lowered, and a
refusal is logged and lived with.
"""

import resource

from reduct_twisted import tuning


class FakeLimits:
    RLIMIT_NOFILE = resource.RLIMIT_NOFILE
    RLIM_INFINITY = resource.RLIM_INFINITY

    def __init__(self, soft, hard, refuse=False):
        self.limits, self.refuse, self.calls = (soft, hard), refuse, []

    def getrlimit(self, which):
        assert which == self.RLIMIT_NOFILE
        return self.limits

    def setrlimit(self, which, limits):
        self.calls.append(limits)
        if self.refuse:
            raise ValueError("not allowed")
        self.limits = limits


def test_the_soft_limit_goes_up_to_the_hard_one():
    fake = FakeLimits(1024, 524288)
    assert tuning.raise_open_files(fake) == 524288
    assert fake.calls == [(524288, 524288)]


def test_at_most_max_open_files_and_never_down():
    fake = FakeLimits(1024, resource.RLIM_INFINITY)
    assert tuning.raise_open_files(fake) == tuning.MAX_OPEN_FILES
    assert fake.calls == [(tuning.MAX_OPEN_FILES, resource.RLIM_INFINITY)]
    high = FakeLimits(4 << 20, resource.RLIM_INFINITY)
    assert tuning.raise_open_files(high) == 4 << 20 and high.calls == []
    same = FakeLimits(8192, 8192)
    assert tuning.raise_open_files(same) == 8192 and same.calls == []


def test_a_refusal_keeps_the_limit():
    fake = FakeLimits(1024, 4096, refuse=True)
    assert tuning.raise_open_files(fake) == 1024
    assert fake.calls == [(4096, 4096)]


def test_this_process_can_be_raised():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert tuning.raise_open_files() >= soft


class FakeLibc:
    def __init__(self, answer=1):
        self.calls, self.answer = [], answer

    def mallopt(self, param, value):
        self.calls.append((param, value))
        return self.answer


def test_malloc_keeps_large_blocks_on_the_heap_and_the_heap_untrimmed():
    """M_MMAP_THRESHOLD (-3) to 4 MiB, so a 1 MiB read is no mmap of its own;
    M_TRIM_THRESHOLD (-1) to 64 MiB, so freed heap is not handed back at once."""
    libc = FakeLibc()
    assert tuning.tune_malloc(libc) is True
    assert libc.calls == [(-3, 4 << 20), (-1, 64 << 20)]


def test_malloc_refused_or_missing_is_lived_with():
    refused = FakeLibc(answer=0)
    assert tuning.tune_malloc(refused) is False
    assert len(refused.calls) == 2  # the second is tried after the first is refused
    assert tuning.tune_malloc(object()) is False  # no mallopt (musl)


def test_the_real_c_library_takes_them():
    import platform

    if platform.libc_ver()[0] != "glibc":
        import pytest

        pytest.skip("mallopt's parameters are glibc's")
    assert tuning.tune_malloc() is True

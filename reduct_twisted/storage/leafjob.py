# -*- test-case-name: tests.unit.test_leafjob -*-
"""
An entry log's leaves and tree hashes made in a worker process (issue #16:
the log must cost the request path little).  The storage core sends a job
(``encode_job``): the log's size, its peaks (``TreeLog.frontier``), where
its leaves end (``TreeLog.leaves_end``) and the leaf fields of the records
that follow (``entry_pending.py``: fields rows and the ``.meta`` lines of
write runs, decoded here); the worker answers what ``TreeLog.append_built``
writes (``run_job`` is ``treelog_build.build`` over
``entry_leaves.parts_leaves``).  The worker only
computes: every byte of the log is written by the daemon, which keeps the
leaves pending until the answer is appended (``entry_log_offload.py``).

The worker is a Python process running :func:`serve` (``leafworker.py``): it reads frames on its standard input and writes one answer frame per job,
in order, on its standard output, and ends when its input ends (the daemon
closed it, or died).  A frame is a 12-byte header (payload length and job
id, big-endian ``>IQ``) and a ``marshal`` payload; an answer whose payload
decodes to ``("error", text)`` says the job failed.  ``marshal`` is safe
here: both ends are this build.
"""

import marshal
import os
import struct

from reduct_twisted.storage.disk.treelog_build import build
from reduct_twisted.storage.entry_leaves import parts_leaves

__all__ = ["HEADER", "encode_job", "run_job", "decode_answer", "frame", "frame_header",
           "FrameReader", "serve"]

HEADER = struct.Struct(">IQ")
#: The largest payload either end accepts.
MAX_PAYLOAD = 1 << 30


class JobFailed(Exception):
    """The worker could not do a job (its text says why)."""


def encode_job(size: int, peaks, leaves_end: int, first: int, last: int, parts: list) -> bytes:
    """
    The payload of a job: leaves ``first … last`` after leaf ``size`` (the
    log's ``frontier`` ``peaks`` and ``leaves_end``), from ``parts``
    (``PendingLeaves.parts``: fields rows and ``.meta`` lines).
    """
    return marshal.dumps((size, peaks, leaves_end, first, last, parts))


def run_job(payload: bytes) -> bytes:
    """Do a job: the answer's payload (see the module docstring)."""
    try:
        size, peaks, leaves_end, first, last, parts = marshal.loads(payload)
        leaves = parts_leaves(parts, first, last)
        return marshal.dumps(build(leaves, size, peaks, leaves_end))
    except Exception as exc:  # the daemon builds these leaves itself
        return marshal.dumps(("error", f"{type(exc).__name__}: {exc}"))


def decode_answer(payload: bytes) -> tuple:
    """
    :return: ``(joined, offsets, hashes, peaks)`` for ``TreeLog.append_built``.
    :raises JobFailed: the worker failed, or the answer is not one.
    """
    try:
        answer = marshal.loads(payload)
    except (ValueError, EOFError, TypeError) as exc:
        raise JobFailed(f"unreadable answer: {exc}") from None
    if not isinstance(answer, tuple) or len(answer) != 4:
        raise JobFailed(answer[1] if isinstance(answer, tuple) and len(answer) == 2 else "bad answer")
    return answer


def frame_header(job: int, payload: bytes) -> bytes:
    """The 12 bytes that go before ``payload`` in job ``job``'s frame (both ways)."""
    return HEADER.pack(len(payload), job)


def frame(job: int, payload: bytes) -> bytes:
    return frame_header(job, payload) + payload


class FrameReader:
    """Cuts frames out of a byte stream fed in pieces."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list:
        """:return: the ``(job, payload)`` pairs completed by ``data``.
        :raises ValueError: a frame announces more than :data:`MAX_PAYLOAD`."""
        buffer = self._buffer
        buffer += data
        out, start = [], 0
        while len(buffer) - start >= HEADER.size:
            length, job = HEADER.unpack_from(buffer, start)
            if length > MAX_PAYLOAD:
                raise ValueError(f"frame of {length} bytes")
            end = start + HEADER.size + length
            if len(buffer) < end:
                break
            out.append((job, bytes(buffer[start + HEADER.size:end])))
            start = end
        del buffer[:start]
        return out


def _write_frame(fd: int, job: int, payload: bytes) -> None:
    # The header and the payload in one ``writev`` (the payload is not copied).
    parts = [memoryview(frame_header(job, payload)), memoryview(payload)]
    while parts:
        done = os.writev(fd, parts)
        while parts and done >= len(parts[0]):
            done -= len(parts.pop(0))
        if parts:
            parts[0] = parts[0][done:]


#: The worker's niceness: its work may lag (the daemon keeps the leaves
#: pending, and appends them itself past ``entry_log_offload.MAX_BEHIND``),
#: request handling may not.  On a 2-core box a worker at the daemon's own
#: priority took a tenth of the batched write rate; at 19 it costs less and
#: varies less (issue #16 notes).  It also asks for ``SCHED_IDLE`` (see
#: :func:`serve`).
NICE = 19


def serve(infd: int = 0, outfd: int = 1, nice: int = 0, idle: bool = False) -> int:
    """
    The worker's loop: answer every job read from ``infd`` until it ends
    (or the daemon's end of the channel is gone: the answers are not needed).
    ``nice``: lower the process's priority by that much first; ``idle``:
    then run under ``SCHED_IDLE``, only when no other process wants the CPU,
    which a process may always ask for itself.  At nice 19 the worker still
    took turns with the daemon's clients, and batched writes ran at 0.88×
    of ``integrity=off``; under ``SCHED_IDLE`` at 0.95× (issue #16 notes).
    Where the system refuses either, it runs as it is.
    """
    if nice:
        try:
            os.nice(nice)
        except OSError:
            pass
    if idle:
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except (OSError, AttributeError):  # (not Linux, or a seccomp filter)
            pass
    reader = FrameReader()
    try:
        while True:
            data = os.read(infd, 1 << 20)
            if not data:
                return 0
            for job, payload in reader.feed(data):
                _write_frame(outfd, job, run_job(payload))
    except (BrokenPipeError, ConnectionResetError):
        return 0

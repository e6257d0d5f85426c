"""
The error vocabulary shared by the storage core and the HTTP layer.

The core raises these; ``reduct_twisted.http.errors`` maps them to a status
code, an ``x-reduct-error`` header and a JSON ``{"detail": ...}`` body, which
is ReductStore's error contract.  Nothing here imports HTTP code.
"""


class ReductError(Exception):
    """
    An error with an HTTP-like status and a client-visible message.

    :ivar status: the status code the HTTP layer answers with.
    :ivar message: the text sent in ``x-reduct-error`` and ``detail``.
    """

    status = 500

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.message = message
        if status:
            self.status = status

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.message!r})"


def _status_error(name: str, status: int, doc: str) -> type:
    """
    :return: a :class:`ReductError` subclass called ``name`` whose instances
        are answered with ``status``.
    """
    namespace = {"__doc__": doc, "__module__": __name__, "__qualname__": name, "status": status}
    return type(name, (ReductError,), namespace)


# The core raises a subclass per status, so callers can catch one kind
# (``except NotFound``); the table below is all that tells them apart.
NoContent = _status_error("NoContent", 204, "Nothing to return (a query with no more records).")
BadRequest = _status_error("BadRequest", 400, "Malformed request or upload, or a HARD quota hit.")
Unauthorized = _status_error("Unauthorized", 401, "No valid API token was given.")
Forbidden = _status_error("Forbidden", 403, "The token lacks the permission required.")
NotFound = _status_error("NotFound", 404, "No such bucket, entry, record or query.")
Conflict = _status_error("Conflict", 409, "The bucket or the record already exists.")
PayloadTooLarge = _status_error("PayloadTooLarge", 413, "The request body is over the limit.")
UnprocessableEntity = _status_error("UnprocessableEntity", 422, "A bad name, parameter or header.")
TooEarly = _status_error("TooEarly", 425, "The record is still being written.")
InternalError = _status_error("InternalError", 500, "Corrupt metadata, or a FIFO quota not kept.")
ServiceUnavailable = _status_error("ServiceUnavailable", 503, "The daemon is shutting down.")
InsufficientStorage = _status_error("InsufficientStorage", 507, "Writing to the disk failed.")

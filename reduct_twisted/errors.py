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


class NoContent(ReductError):
    """Nothing to return (a query with no more records); answered as 204."""

    status = 204


class BadRequest(ReductError):
    status = 400


class Unauthorized(ReductError):
    status = 401


class Forbidden(ReductError):
    status = 403


class NotFound(ReductError):
    status = 404


class Conflict(ReductError):
    status = 409


class PayloadTooLarge(ReductError):
    status = 413


class UnprocessableEntity(ReductError):
    status = 422


class TooEarly(ReductError):
    status = 425


class InternalError(ReductError):
    status = 500


class InsufficientStorage(ReductError):
    status = 507

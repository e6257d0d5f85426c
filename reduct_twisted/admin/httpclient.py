"""
The blocking HTTP client of ``export`` and ``import``: the verifier's client
(one keep-alive ``http.client`` connection, TLS, the bearer token, one-line
errors) with any method, a body streamed from an iterable of chunks (sent
with its ``Content-Length``, never joined) and the status returned instead
of raised for the codes a caller handles itself.
"""

import http.client
import json
import ssl

from reduct_twisted.verifier.client import USER_AGENT, Client, ClientError, Response

__all__ = ["AdminClient", "ClientError", "Response", "raw_headers"]


def raw_headers(response: Response) -> list:
    """The response's headers as ``(name bytes, [value bytes])`` (what ``reduct_twisted.wire`` parses)."""
    return [(k.encode("latin-1"), [v.encode("latin-1")]) for k, v in response.raw.getheaders()]


class AdminClient(Client):
    def request(self, method: str, target: str, body=None, headers=None, length: int | None = None,
                ok=(), retry: bool = True) -> Response:
        """
        ``method target``; a 2xx response or one whose status is in ``ok`` is
        returned with its body unread (read or :meth:`drain` it before the
        next request); any other raises :class:`ClientError`.

        :param body: ``bytes`` or an iterable of ``bytes`` chunks (streamed).
        :param length: the body's length when ``body`` is an iterable.
        :param retry: try once more on a fresh connection if the kept-alive
            one was closed (only for bodies that can be sent again).
        """
        all_headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        if self.token:
            all_headers["Authorization"] = f"Bearer {self.token}"
        all_headers.update(headers or {})
        if body is None:
            body = b""
        if isinstance(body, (bytes, bytearray)):
            length = len(body)
        if method in ("POST", "PUT", "PATCH") or length:
            all_headers["Content-Length"] = str(length or 0)
        for attempt in (1, 2):
            conn = self._connect()
            try:
                conn.request(method, target, body=body, headers=all_headers)
                raw = conn.getresponse()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self.close()
                if attempt == 2 or not retry:
                    raise ClientError(f"{self.host}:{self.port} closed the connection: {exc}") from None
            except TimeoutError:
                self.close()
                raise ClientError(f"{self.host}:{self.port} did not answer within {self.timeout:g} s") from None
            except ssl.SSLError as exc:
                self.close()
                raise ClientError(f"TLS with {self.host}:{self.port} failed: {exc.reason or exc}") from None
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise ClientError(f"cannot reach {self.host}:{self.port}: {getattr(exc, 'strerror', None) or exc}") from None
        response = Response(raw.status, {k.lower(): v for k, v in raw.getheaders()}, raw)
        if 200 <= raw.status < 300 or raw.status in ok:
            return response
        detail = response.headers.get("x-reduct-error") or raw.reason
        self.drain(response)
        message = f"{method} {target}: HTTP {raw.status} {detail}".rstrip()
        if raw.status in (401, 403):
            message += " (is the token right?)" if self.token else " (no token given: --token or RS_API_TOKEN)"
        raise ClientError(message)

    def drain(self, response: Response) -> None:
        """Read and drop the rest of a body (keeps the connection usable)."""
        try:
            response.raw.read()
        except (OSError, http.client.HTTPException):
            self.close()

    def json(self, method: str, target: str, body=None, ok=(), limit: int = 64 << 20):
        """``(json body or None for an empty body, response)``."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        response = self.request(method, target, data, headers, ok=ok)
        return self.read_json(response, f"{method} {target}", limit, empty=None), response

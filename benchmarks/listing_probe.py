"""
``listing.py``'s connections and its probe of the reactor: ``HEAD
/api/v1/alive`` back to back on a connection of its own while a listing
request runs, the longest answer being how long other clients waited.
"""

import http.client
import threading
import time


def connect(port: int) -> http.client.HTTPConnection:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.connect()
    return conn


class Pinger(threading.Thread):
    """``HEAD /api/v1/alive`` back to back; the longest answer time."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.conn = connect(port)
        self.longest = 0.0
        self.count = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            started = time.perf_counter()
            self.conn.request("HEAD", "/api/v1/alive")
            self.conn.getresponse().read()
            self.longest = max(self.longest, time.perf_counter() - started)
            self.count += 1
            self._halt.wait(0.002)

    def stop(self) -> float:
        self._halt.set()
        self.join()
        self.conn.close()
        return self.longest

"""A steady, bounded request load through a sidecar's forward-proxy port, recording every
request: when it started and ended, and what came back. The fault tests run it while they push
configuration, rotate certificates, replace Secrets and kill processes.

The client is what a workload's HTTP client does: keep-alive connections (one per worker), and a
request that fails on a *reused* connection before any byte of the answer arrives is sent again
once on a new connection. curl, browsers and urllib3 do the same, because a server may close an
idle keep-alive connection at any moment (RFC 9112 section 9.3.1); every other failure counts.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Result:
    start: float  # time.time() when the request was sent
    end: float
    status: int  # 0: no HTTP answer
    error: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""  # kept for answers other than 200 (they say why)

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass
class SteadyLoad:
    """``rps`` requests per second in total, over ``workers`` connections to ``proxy``."""

    proxy: tuple[str, int]
    url: str  # absolute URL, sent to the proxy in absolute form
    rps: float = 300.0
    workers: int = 2
    timeout: float = 5.0
    results: list[Result] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> SteadyLoad:
        for i in range(self.workers):
            t = threading.Thread(target=self._run, args=(i,), daemon=True, name=f"load-{i}")
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> list[Result]:
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout + 5)
        return self.snapshot()

    def __enter__(self) -> SteadyLoad:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def snapshot(self) -> list[Result]:
        with self._lock:
            return list(self.results)

    def failures(self) -> list[Result]:
        return [r for r in self.snapshot() if not r.ok]

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        """Until ``count`` more requests have completed."""
        target = len(self.snapshot()) + count
        deadline = time.monotonic() + timeout
        while len(self.snapshot()) < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"load stalled: {len(self.snapshot())} of {target} requests done")
            time.sleep(0.05)

    def _run(self, worker: int) -> None:
        interval = self.workers / self.rps
        conn: http.client.HTTPConnection | None = None
        reused = False
        next_at = time.monotonic() + worker * interval / self.workers
        while not self._stop.is_set():
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            next_at = max(next_at + interval, time.monotonic() - interval)
            start = time.time()
            for attempt in (0, 1):
                if conn is None:
                    conn = http.client.HTTPConnection(*self.proxy, timeout=self.timeout)
                    reused = False
                current = conn
                try:
                    conn.request("GET", self.url)
                    resp = conn.getresponse()
                    body = resp.read()
                    result = Result(start, time.time(), resp.status, headers=tuple(resp.getheaders()),
                                    body=body if resp.status != 200 else b"")
                    if resp.will_close:
                        conn.close()
                        conn = None
                    else:
                        reused = True
                    break
                except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                    current.close()
                    conn = None
                    if reused and attempt == 0:
                        continue  # the keep-alive race: nothing was answered, send it again
                    result = Result(start, time.time(), 0, f"{type(e).__name__}: {e}")
                    break
                except (OSError, http.client.HTTPException, socket.timeout) as e:
                    current.close()
                    conn = None
                    result = Result(start, time.time(), 0, f"{type(e).__name__}: {e}")
                    break
            with self._lock:
                self.results.append(result)
        if conn is not None:
            conn.close()

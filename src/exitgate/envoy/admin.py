"""Calls to an Envoy's admin port, and retiring an Envoy through it without dropping requests.

Retiring is for Envoys this control plane did not start: the ones a killed control plane left
serving (``StateDir.orphans``). The new proxies already listen on the same ports (Envoy's
``reuse_port``), so the old ones can go once their connections are finished:

1. ``POST /drain_listeners?graceful``: Envoy's drain sequence. Responses carry
   ``Connection: close`` (HTTP/1.1) or a GOAWAY (HTTP/2), so clients move their next request
   to a new connection, which the kernel gives to a listener still open; after the drain time
   the old listeners close.
2. Wait until the old Envoy holds no downstream connection (``downstream_cx_active``, the stat
   Istio keeps for exactly this), or a deadline.
3. SIGTERM, then SIGKILL if it is still there.
"""

from __future__ import annotations

import os
import re
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from exitgate.pids import alive


def admin_call(base_url: str, method: str, path: str, timeout: float = 2.0) -> str:
    """``method`` ``path`` on the admin server at ``base_url``; raises URLError/OSError when it
    does not answer and HTTPError for a non-2xx answer."""
    if not path.startswith("/"):
        path = "/" + path
    request = urllib.request.Request(base_url + path, method=method)
    # No proxies: an http_proxy variable in the environment must not capture loopback calls.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=timeout) as response:
        body: bytes = response.read()
    return body.decode("utf-8", errors="replace")


_ACTIVE = re.compile(r"^listener\.[^:]*\.downstream_cx_active: (\d+)$", re.M)


def active_downstream_connections(stats: str) -> int:
    """Open downstream connections over all of an Envoy's listeners but the admin one, from
    its ``/stats`` text."""
    return sum(int(n) for line, n in ((m.group(0), m.group(1)) for m in _ACTIVE.finditer(stats))
               if not line.startswith("listener.admin."))


@dataclass(frozen=True)
class Retiree:
    pid: int
    admin_port: int
    admin_host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        host = f"[{self.admin_host}]" if ":" in self.admin_host else self.admin_host
        return f"http://{host}:{self.admin_port}"


def retire(envoys: Sequence[Retiree], drain_s: float, idle_timeout_s: float = 10.0,
           sleep: Callable[[float], None] = time.sleep) -> list[str]:
    """Drain ``envoys`` together, wait for their connections to end, stop them. Returns what
    did not go as planned (an admin port that did not answer, connections still open at the
    deadline, a process that needed SIGKILL), for the caller to report."""
    notes: list[str] = []
    draining = []
    for e in envoys:
        try:
            admin_call(e.url, "POST", "/drain_listeners?graceful")
            draining.append(e)
        except (urllib.error.URLError, OSError) as err:
            notes.append(f"pid {e.pid}: could not drain ({err}); stopped at once")
    if draining:
        sleep(drain_s)
    deadline = time.monotonic() + idle_timeout_s
    for e in draining:
        while time.monotonic() < deadline and alive(e.pid):
            try:
                if active_downstream_connections(admin_call(e.url, "GET", "/stats?filter=downstream_cx_active")) == 0:
                    break
            except (urllib.error.URLError, OSError):
                break
            sleep(0.05)
        else:
            if alive(e.pid):
                notes.append(f"pid {e.pid}: connections still open after {idle_timeout_s:.0f} s; closed")
    for e in envoys:
        try:
            os.kill(e.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    stop_deadline = time.monotonic() + 5
    for e in envoys:
        while time.monotonic() < stop_deadline and alive(e.pid):
            sleep(0.05)
        if alive(e.pid):
            notes.append(f"pid {e.pid}: ignored SIGTERM; killed")
            try:
                os.kill(e.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return notes

"""Retiring Envoys through their admin port: the connection count read from /stats, and what
happens when an admin port does not answer (the process is stopped anyway, and it is said)."""

from __future__ import annotations

import subprocess

from exitgate.envoy.admin import Retiree, active_downstream_connections, retire
from exitgate.envoy.ports import free_port

STATS = """\
listener.127.0.0.1_15001.downstream_cx_active: 3
listener.127.0.0.1_8443.downstream_cx_active: 2
listener.admin.downstream_cx_active: 1
http.outbound_0.0.0.0_80.downstream_cx_active: 7
"""


def test_counts_listener_connections_but_not_the_admin_ones() -> None:
    assert active_downstream_connections(STATS) == 5
    assert active_downstream_connections("listener.admin.downstream_cx_active: 1\n") == 0


def test_an_envoy_whose_admin_port_is_gone_is_stopped_and_it_is_said() -> None:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        slept: list[float] = []
        notes = retire([Retiree(proc.pid, free_port())], drain_s=1, sleep=lambda s: (slept.append(s), proc.poll()) and None)
        assert proc.wait(5) == -15  # SIGTERM
        assert len(notes) == 1 and "could not drain" in notes[0] and str(proc.pid) in notes[0]
        assert 1 not in slept  # nothing was draining: no drain wait
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

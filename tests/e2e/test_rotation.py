"""Workload certificates are rotated before expiry and reach the running Envoys by SDS,
without a restart. The control plane's clock is set 50 minutes back at start (certificates of
one hour then have under half their life left once the clock is put right), so rotation happens
within the test while every certificate stays valid in real time."""

from __future__ import annotations

import json
import threading
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from exitgate.ca import certs
from exitgate.controlplane import ControlPlane
from exitgate.runtime import StateDir

from tests.e2e.harness import EXAMPLES, Exitgate, make_mesh, until

pytestmark = pytest.mark.e2e


def cert_serials(admin_port: int) -> set[str]:
    data = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/certs", timeout=5).read())
    return {c["serial_number"] for entry in data.get("certificates", []) for c in entry.get("cert_chain", [])}


def test_workload_certificates_rotate_live(tmp_path: Path) -> None:
    offset = [timedelta(minutes=-50)]
    trust = tmp_path / "trust.pem"
    trust.write_bytes(certs.make_root("unused", "tests", key_type="ec256")[0])
    mesh = make_mesh(trust, 53, {}).model_copy(update={"workload_cert_ttl_seconds": 3600})
    cp = ControlPlane(StateDir(tmp_path / "state"), mesh, lambda m: None,
                      clock=lambda: datetime.now(timezone.utc) + offset[0])
    eg = Exitgate(tmp_path / "state", cp)
    cp.emit = eg.events.append
    try:
        cp.start()
        assert cp.wait_ready(30), eg.events
        threading.Thread(target=cp.run, kwargs={"poll_s": 0.1}, daemon=True).start()
        eg.apply(EXAMPLES / "tls-origination")  # the gateway listener and the sidecar's cluster use "default"
        gw, sidecar = cp.proxies[0].record, cp.proxies[1].record
        before = {gw.name: cert_serials(gw.admin_port), sidecar.name: cert_serials(sidecar.admin_port)}
        assert all(before.values()), before
        pids = (gw.pid, sidecar.pid)
        translated = dict(cp._translated)
        offset[0] = timedelta(0)
        for rec in (gw, sidecar):
            after = until(lambda rec=rec: ",".join(sorted(cert_serials(rec.admin_port))),
                          lambda out, rec=rec: bool(out) and set(out.split(",")).isdisjoint(before[rec.name]))
            assert set(after.split(",")).isdisjoint(before[rec.name]), f"{rec.name} still has its old certificate"
        assert (gw.pid, sidecar.pid) == pids, "rotation must not restart proxies"
        # Nor translate again: the same configuration gives the same translation, only new secrets.
        assert all(cp._translated[k][0] is pc for k, (pc, _) in translated.items())
    finally:
        cp.stop()

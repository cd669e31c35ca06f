"""Plain TCP egress through the egress gateway, captured (the golden case
``tcp-through-gateway``): the workload connects to the database's address, its sidecar sends
the connection to the gateway's TCP server by the ``mesh`` tcp route, and the gateway to the
database by its own. An echo server stands in for the database; a server-first protocol is
checked too (the gateway's greeting arrives before the client says anything)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from exitgate.capture import support
from exitgate.demo.standins import DnsStandIn
from exitgate.envoy.ports import free_port
from exitgate.mesh import ServicePortMap

from tests.e2e.harness import Exitgate, make_gateway, make_mesh, start_exitgate, until

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not support().available, reason=f"capture unavailable: {support().reason}")]

CASE = Path(__file__).parents[1] / "golden" / "cases" / "tcp-through-gateway.in.yaml"
# The ServiceEntry's address, rewritten from the documentation range to a loopback one of ours.
DB_ADDRESS = "127.0.0.88"

CLIENT = f"""
import socket
s = socket.create_connection(("mysql.external.example", 3306), timeout=5)
print(s.recv(100).decode().strip())
s.sendall(b"ping\\n")
print(s.recv(100).decode().strip())
"""


class EchoServer:
    """Greets first (as MySQL does), then echoes one line back."""

    def __init__(self, host: str) -> None:
        self.sock = socket.create_server((host, 0))
        self.port = self.sock.getsockname()[1]
        self.peers: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            with conn:
                self.peers.append(f"{peer[0]}:{peer[1]}")
                conn.sendall(b"hello from the database\n")
                conn.sendall(b"echo: " + conn.recv(100))

    def stop(self) -> None:
        self.sock.close()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Exitgate, EchoServer]]:
    db = EchoServer(DB_ADDRESS)
    dns = DnsStandIn({"mysql.external.example": DB_ADDRESS}).start()
    try:
        trust = tmp_path / "trust.pem"
        trust.write_text("")
        gw = make_gateway()
        gw = gw.model_copy(update={"ports": [*gw.ports, ServicePortMap(port=3306, target_port=free_port(),
                                                                        name="tcp-mysql", protocol="TCP")]})
        mesh = make_mesh(trust, dns.port, {3306: db.port}).model_copy(update={"gateways": [gw]})
        eg = start_exitgate(tmp_path / "state", mesh)
        try:
            yield eg, db
        finally:
            eg.cp.stop()
    finally:
        dns.stop()
        db.stop()


def test_tcp_through_the_egress_gateway(world: tuple[Exitgate, EchoServer], tmp_path: Path) -> None:
    eg, db = world
    assert eg.cp.proxies[-1].record.netns
    config = tmp_path / "tcp.yaml"
    config.write_text(CASE.read_text().replace("192.0.2.10", DB_ADDRESS))
    eg.apply(config)
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    out = until(lambda: eg.cli("exec", "sleep", "--", "python3", str(script)).stdout,
                lambda o: "echo: ping" in o)
    assert out.splitlines() == ["hello from the database", "echo: ping"], out
    # The database saw the gateway, not the workload: the connection came out of the gateway's
    # cluster, and the sidecar sent it to the gateway's subset.
    gw = until(eg.gateway_log, lambda t: "outbound|3306||mysql.external.example" in t)
    line = [ln for ln in gw.splitlines() if "outbound|3306||mysql.external.example" in ln][-1]
    assert f'"127.0.0.88:{db.port}"' in line, line
    side = Path(eg.cp.proxies[-1].record.log_path).read_text()
    assert "outbound|3306|mysql|istio-egressgateway.istio-system.svc.cluster.local" in side

    # Istio's TCP metrics at both proxies: one connection opened and closed, the bytes each
    # way (the greeting and the echo one way, "ping" the other), named as Istio names them.
    from tests.e2e.test_metrics import _scrape, _value, dashboard_metric_names

    def gateway_metrics() -> dict[str, list[tuple[dict[str, str], float]]]:
        return _scrape(eg, "/proxies/istio-egressgateway.istio-system/stats/prometheus")

    until(lambda: str(_value(gateway_metrics().get("istio_tcp_connections_closed_total", []))), lambda o: o != "0.0")
    m = gateway_metrics()
    to_db = dict(reporter="source", source_workload="istio-egressgateway", request_protocol="tcp",
                 destination_service="mysql.external.example", destination_service_name="mysql.external.example",
                 connection_security_policy="unknown")
    assert _value(m["istio_tcp_connections_opened_total"], **to_db) == 1, m["istio_tcp_connections_opened_total"]
    assert _value(m["istio_tcp_connections_closed_total"], **to_db) == 1
    # Downstream wire bytes at the gateway: what went back to the sidecar and what came from it.
    assert _value(m["istio_tcp_sent_bytes_total"], **to_db) == len(b"hello from the database\necho: ping\n")
    assert _value(m["istio_tcp_received_bytes_total"], **to_db) == len(b"ping\n")
    sidecar = _scrape(eg, "/proxies/sleep.default/stats/prometheus")
    assert _value(sidecar["istio_tcp_connections_opened_total"], source_workload="sleep",
                  destination_service="istio-egressgateway.istio-system.svc.cluster.local",
                  destination_workload="istio-egressgateway") == 1
    merged = _scrape(eg, "/stats/prometheus")
    tcp = {n for n in dashboard_metric_names() if n.startswith("istio_tcp_")}
    assert tcp and tcp <= set(merged), sorted(tcp - set(merged))

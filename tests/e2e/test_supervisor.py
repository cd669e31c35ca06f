"""Real Envoy processes: the supervisor's restart loop, and what the bootstrap's DNS resolver and
stats rules do in a running Envoy 1.40."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from exitgate.demo.standins import DnsStandIn, RedirectServer
from exitgate.envoy.bootstrap import BootstrapOptions, StatsInclusion, build_bootstrap
from exitgate.envoy.ports import free_ports
from exitgate.envoy.supervisor import EnvoyProcess, EnvoySpec, RestartPolicy, Supervisor

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")]

HOST = "edition.cnn.com"
HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
STDOUT_LOG = "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--noproxy", "*", "--max-time", "5", *args], capture_output=True, text=True, timeout=30
    )


def eventually(check: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def assert_gone(pid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def http_listener(port: int, route: dict[str, Any], access_log: bool = False) -> dict[str, Any]:
    hcm: dict[str, Any] = {
        "@type": HCM,
        "stat_prefix": f"listener_{port}",
        "route_config": {
            "name": "local",
            "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, **route}]}],
        },
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
    }
    if access_log:
        hcm["access_log"] = [{
            "name": "envoy.access_loggers.stdout",
            "typed_config": {"@type": STDOUT_LOG, "log_format": {"text_format": "ACCESS %REQ(:PATH)% %RESPONSE_CODE%\n"}},
        }]  # fmt: skip
    return {
        "name": f"listener_{port}",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}],
    }


class Events:
    """Collects on_event calls from the supervisor's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: list[tuple[str, str, str]] = []

    def __call__(self, name: str, kind: str, detail: str) -> None:
        with self._lock:
            self.items.append((name, kind, detail))

    def kinds(self) -> list[str]:
        with self._lock:
            return [kind for _, kind, _ in self.items]


@pytest.fixture
def supervisor() -> Iterator[tuple[Supervisor, Events]]:
    events = Events()
    sup = Supervisor(on_event=events, policy=RestartPolicy(initial_delay_s=0.5))
    try:
        yield sup, events
    finally:
        sup.stop_all()


def test_supervisor_restarts_a_killed_envoy(tmp_path: Path, supervisor: tuple[Supervisor, Events]) -> None:
    sup, events = supervisor
    admin_port, listen_port = free_ports(2)
    bootstrap = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [
                http_listener(listen_port, {"direct_response": {"status": 200, "body": {"inline_string": "hello"}}},
                              access_log=True)
            ]
        },
    }
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(bootstrap))
    log_path = tmp_path / "logs" / "edge.log"
    proc = sup.add(EnvoySpec(name="edge", bootstrap_path=path, log_path=log_path, admin_port=admin_port))

    assert sup.start_all(ready_timeout=15)
    first = proc.pid
    assert first is not None and proc.running and sup.pid("edge") == first
    assert events.kinds() == ["started", "ready"]
    result = curl("-w", " %{http_code}", f"http://127.0.0.1:{listen_port}/one")
    assert result.stdout == "hello 200", result.stderr
    # The access log reaches the log file within the 500 ms flush interval, not Envoy's 10 s.
    eventually(lambda: "ACCESS /one 200" in log_path.read_text(), timeout=3, what="access log line")
    assert "LIVE" in proc.admin_get("/ready")

    sup.watch(interval=0.1)
    os.kill(first, signal.SIGKILL)
    eventually(lambda: events.kinds()[-1:] == ["ready"] and len(events.kinds()) >= 5, timeout=15, what="restart")
    assert events.kinds() == ["started", "ready", "exited", "restarted", "ready"]
    assert "signal=SIGKILL" in events.items[2][2]
    second = proc.pid
    assert second is not None and second != first and proc.running
    assert_gone(first)
    result = curl("-w", " %{http_code}", f"http://127.0.0.1:{listen_port}/two")
    assert result.stdout == "hello 200", result.stderr

    sup.stop_all()
    assert not proc.running
    assert_gone(second)
    assert events.kinds()[-1] == "stopped"
    assert not sup.watching
    time.sleep(0.7)  # longer than the restart delay: a stopped proxy stays stopped
    assert not proc.running and sup.pid("edge") is None
    sup.stop_all()  # idempotent


def test_backoff_doubles_up_to_the_cap() -> None:
    policy = RestartPolicy()
    assert [policy.delay(n) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert policy.delay(1000) == 30


def test_crash_looping_envoy_backs_off(tmp_path: Path, supervisor: tuple[Supervisor, Events]) -> None:
    sup, events = supervisor
    (admin_port,) = free_ports(1)
    path = tmp_path / "broken.json"
    path.write_text('{"static_resources": {"no_such_field": 1}}')  # Envoy exits at once with status 1
    sup.add(EnvoySpec(name="broken", bootstrap_path=path, log_path=tmp_path / "broken.log", admin_port=admin_port))
    sup.start_all()
    sup.watch(interval=0.05)
    eventually(lambda: events.kinds().count("exited") >= 3, timeout=15, what="three exits")
    exits = [detail for _, kind, detail in events.items if kind == "exited"]
    assert "returncode=1" in exits[0]
    delays = [float(re.search(r"restart_in=([\d.]+)s", d).group(1)) for d in exits[:3]]  # type: ignore[union-attr]
    assert delays == [0.5, 1.0, 2.0]
    assert "ready" not in events.kinds()


def static_envoy(tmp_path: Path, bootstrap: dict[str, Any], name: str) -> EnvoyProcess:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(bootstrap))
    admin_port = bootstrap["admin"]["address"]["socket_address"]["port_value"]
    return EnvoyProcess(EnvoySpec(name=name, bootstrap_path=path, log_path=tmp_path / f"{name}.log",
                                  admin_port=admin_port, log_level="info"))


def test_cares_resolver_honors_a_non_53_port(tmp_path: Path) -> None:
    """Envoy 1.40's c-ares resolver sends queries to the port given in ``resolvers``.

    The bootstrap comes from build_bootstrap (its ADS part removed: no control plane here). The
    stand-in DNS on a free port is the only way to resolve edition.cnn.com to 127.0.0.1, where
    the redirect stand-in answers; anything reaching it proves the port was used.
    """
    admin_port, listen_port = free_ports(2)
    with DnsStandIn({HOST: "127.0.0.1"}) as dns, RedirectServer("127.0.0.1") as upstream:
        assert dns.port != 53
        bootstrap = build_bootstrap(BootstrapOptions(
            node_id="router~127.0.0.1~gw.istio-system~istio-system.svc.cluster.local",
            cluster="istio-egressgateway.istio-system", xds_host="127.0.0.1", xds_port=1, xds_token="",
            admin_port=admin_port, dns_resolvers=(("127.0.0.1", dns.port),),
            # Per-cluster stats are trimmed unless asked for, as in Istio.
            stats_inclusion=StatsInclusion(prefixes=("cluster.outbound",)),
        ))  # fmt: skip
        del bootstrap["dynamic_resources"]
        cluster = f"outbound|80||{HOST}"
        bootstrap["static_resources"]["clusters"].append({
            "name": cluster, "type": "STRICT_DNS", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": cluster, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": HOST, "port_value": upstream.port}}}}]}]},
        })  # fmt: skip
        bootstrap["static_resources"]["listeners"] = [http_listener(listen_port, {"route": {"cluster": cluster}})]
        envoy = static_envoy(tmp_path, bootstrap, "dns")
        pid = envoy.start()
        try:
            assert envoy.wait_ready(15)
            # STRICT_DNS resolves in the background, but before the cluster is initialized and
            # Envoy LIVE: the first request already has the answer.
            result = curl("-i", "-H", f"Host: {HOST}", f"http://127.0.0.1:{listen_port}/politics")
            assert result.stdout.startswith("HTTP/1.1 301"), result.stdout + result.stderr
            assert f"location: https://{HOST}/politics" in result.stdout.lower()
            assert (HOST, "A") in dns.queries
            assert [r.path for r in upstream.requests] == ["/politics"]

            # The same Envoy shows the stats rule at work on an Istio cluster name.
            metrics = envoy.admin_get("/stats/prometheus")
            assert re.search(
                r'^envoy_cluster_upstream_rq_total\{envoy_cluster_name="outbound\|80\|\|edition\.cnn\.com"\} 1$',
                metrics, re.M,
            ), metrics
            assert "cnn_com" not in metrics
            # ... and the listener's HTTP stats, not asked for, are not kept.
            assert "envoy_http_downstream_rq_total" not in metrics and "envoy_server_live" in metrics
            envoy_log = (tmp_path / "dns.log").read_text()
            assert "Skipping duplicate tag" not in envoy_log
            assert "no configured limit to the number of allowed active downstream connections" not in envoy_log
        finally:
            envoy.stop()
        assert_gone(pid)

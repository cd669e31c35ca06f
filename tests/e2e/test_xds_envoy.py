"""A real Envoy against the ADS server: it takes a listener, answers on it, and a listener it
rejects is reported as a NACK with Envoy's message while the previous one keeps answering."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2

from exitgate.xds.cache import LISTENER_TYPE, SnapshotCache
from exitgate.xds.server import TOKEN_METADATA_KEY, AdsServer, EventKind, XdsEvent

NODE = "router~127.0.0.1~gw.istio-system~istio-system.svc.cluster.local"
TOKEN = "e2e-token"
LISTENER = "gw_http"


def envoy_binary() -> str:
    found = shutil.which("envoy") or os.path.join(os.path.dirname(sys.executable), "envoy")
    if not os.access(found, os.X_OK):
        pytest.skip("envoy is not installed")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def bootstrap(ads_port: int, admin_port: int) -> dict[str, object]:
    ads_address = {"socket_address": {"address": "127.0.0.1", "port_value": ads_port}}
    http2_only = {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": {"http2_protocol_options": {}},
    }
    return {
        "node": {"id": NODE, "cluster": "istio-egressgateway.istio-system"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "set_node_on_first_message_only": True,
                "grpc_services": [
                    {
                        "envoy_grpc": {"cluster_name": "xds-grpc"},
                        "initial_metadata": [{"key": TOKEN_METADATA_KEY, "value": TOKEN}],
                    }
                ],
            },
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "static_resources": {
            "clusters": [
                {
                    "name": "xds-grpc",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": "xds-grpc",
                        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": ads_address}}]}],
                    },
                    # ADS is gRPC: the cluster must speak HTTP/2.
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": http2_only
                    },
                }
            ]
        },
    }


def direct_response_listener(port: int, body: str, domains: tuple[str, ...] = ("*",)) -> listener_pb2.Listener:
    route = route_components_pb2.Route(
        match=route_components_pb2.RouteMatch(prefix="/"),
        direct_response=route_components_pb2.DirectResponseAction(status=200),
    )
    route.direct_response.body.inline_string = body
    hcm = hcm_pb2.HttpConnectionManager(stat_prefix="gw_http")
    hcm.route_config.name = "inline"
    hcm.route_config.virtual_hosts.add(name="all", domains=domains, routes=[route])
    router = hcm.http_filters.add(name="envoy.filters.http.router")
    router.typed_config.Pack(router_pb2.Router())
    net_filter = listener_components_pb2.Filter(name="envoy.filters.network.http_connection_manager")
    net_filter.typed_config.Pack(hcm)
    listener = listener_pb2.Listener(name=LISTENER)
    listener.filter_chains.add(filters=[net_filter])
    listener.address.socket_address.address = "127.0.0.1"
    listener.address.socket_address.port_value = port
    return listener


def curl(port: int) -> str:
    done = subprocess.run(
        ["curl", "-s", "--max-time", "2", f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout if done.returncode == 0 else f"curl exit {done.returncode}"


@pytest.fixture
def envoy_run(tmp_path: Path) -> Iterator[tuple[AdsServer, SnapshotCache, list[XdsEvent]]]:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    binary = envoy_binary()
    cache = SnapshotCache()
    events: list[XdsEvent] = []
    server = AdsServer(cache, lambda node, token: token == TOKEN, events.append)
    ads_port = server.start()
    config = tmp_path / "envoy.json"
    config.write_text(json.dumps(bootstrap(ads_port, free_port())))
    log = (tmp_path / "envoy.log").open("wb")
    proc = subprocess.Popen(
        [binary, "-c", str(config), "--disable-hot-restart", "--concurrency", "1", "-l", "warning"],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        yield server, cache, events
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()
        server.stop(grace=0.5)
        if proc.returncode not in (0, -15):
            print((tmp_path / "envoy.log").read_text(errors="replace"))


@pytest.mark.e2e
def test_envoy_takes_listener_and_nack_keeps_old(
    envoy_run: tuple[AdsServer, SnapshotCache, list[XdsEvent]],
) -> None:
    server, cache, events = envoy_run
    port = free_port()

    def acked(version: str) -> bool:
        status = server.status(NODE)
        lds = status.types.get(LISTENER_TYPE) if status is not None else None
        return lds is not None and lds.acked_version == version

    cache.set_snapshot(NODE, {LISTENER_TYPE: {LISTENER: direct_response_listener(port, "hello from exitgate")}})
    good = cache.version(NODE, LISTENER_TYPE)
    wait_until(lambda: acked(good), 10, "Envoy to ACK the listener")
    assert any(e.kind == EventKind.CONNECT and e.node_id == NODE for e in events)
    wait_until(lambda: curl(port) == "hello from exitgate", 5, "the listener to answer")

    # Duplicate domains in a virtual host: Envoy rejects the whole LDS update.
    bad_listener = direct_response_listener(port, "never served", domains=("a.example", "a.example"))
    cache.set_snapshot(NODE, {LISTENER_TYPE: {LISTENER: bad_listener}})
    bad = cache.version(NODE, LISTENER_TYPE)
    wait_until(lambda: any(e.kind == EventKind.NACK for e in events), 10, "Envoy to NACK the listener")
    nack = next(e for e in events if e.kind == EventKind.NACK)
    assert nack.node_id == NODE and nack.type_url == LISTENER_TYPE and nack.version == bad
    assert nack.error is not None and "Only unique values for domains are permitted" in nack.error
    status = server.statuses()[NODE]
    lds = status.types[LISTENER_TYPE]
    assert status.connected and lds.rejected and lds.acked_version == good and lds.nack_error == nack.error
    assert curl(port) == "hello from exitgate"

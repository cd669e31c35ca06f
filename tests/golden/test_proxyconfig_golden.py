"""Goldens for ``proxy-config``: istioctl's tables, rendered from config dumps captured from
real Envoys running Istio's TLS origination task (``proxyconfig/capture.py`` captures them
again). Each view is one ``<proxy>/<view>.txt``; regenerate with ``--update-golden``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from exitgate import proxyconfig as pc

HERE = Path(__file__).parent / "proxyconfig"
PROXIES = ("istio-egressgateway", "sleep")

View = Callable[[dict[str, Any], dict[str, Any]], str]
VIEWS: dict[str, View] = {
    "cluster": lambda d, c: pc.tabwrite(pc.CLUSTER_HEADERS, pc.cluster_rows(d)),
    "cluster-fqdn-port": lambda d, c: pc.tabwrite(pc.CLUSTER_HEADERS,
                                                  pc.cluster_rows(d, pc.ClusterFilter(fqdn="istio-egressgateway", port=80))),
    "cluster-subset": lambda d, c: pc.tabwrite(pc.CLUSTER_HEADERS, pc.cluster_rows(d, pc.ClusterFilter(subset="cnn"))),
    "listener": lambda d, c: pc.tabwrite(pc.LISTENER_HEADERS, pc.listener_rows(d), padding=1),
    "listener-short": lambda d, c: pc.tabwrite(pc.LISTENER_SHORT_HEADERS, pc.listener_rows(d, verbose=False), padding=1),
    "route": lambda d, c: pc.tabwrite(pc.ROUTE_HEADERS, pc.route_rows(d)),
    "route-short": lambda d, c: pc.tabwrite(pc.ROUTE_SHORT_HEADERS, pc.route_rows(d, verbose=False)),
    "endpoint": lambda d, c: pc.tabwrite(pc.ENDPOINT_HEADERS, pc.endpoint_rows(c)),
    "endpoint-cluster": lambda d, c: pc.tabwrite(pc.ENDPOINT_HEADERS, pc.endpoint_rows(
        c, pc.EndpointFilter(cluster="outbound|443||edition.cnn.com"))),
}


@pytest.mark.parametrize("view", sorted(VIEWS))
@pytest.mark.parametrize("proxy", PROXIES)
def test_proxy_config_golden(proxy: str, view: str, update_golden: bool) -> None:
    dump = json.loads((HERE / proxy / "config_dump.json").read_text())
    clusters = json.loads((HERE / proxy / "clusters.json").read_text())
    got = VIEWS[view](dump, clusters)
    golden = HERE / proxy / f"{view}.txt"
    if update_golden or not golden.exists():
        golden.write_text(got)
        if not update_golden:
            pytest.fail(f"{golden} did not exist; written, review it")
    assert got == golden.read_text(), f"proxy-config output changed; review and run with --update-golden: {golden}"


def test_tabwriter_pads_every_column_but_the_last() -> None:
    assert pc.tabwrite(("A", "LONGER", "C"), [["xxxxxx", "y", "z"]]) == "A          LONGER     C\nxxxxxx     y          z\n"


def test_management_names_as_istioctl() -> None:
    meta = {"filter_metadata": {"istio": {"config": "/apis/networking.istio.io/v1/namespaces/ns1/destination-rule/dr1"}}}
    assert pc.describe_management(meta) == "dr1.ns1"
    assert pc.describe_management({"filter_metadata": {"istio": {"config": "/other/x"}}}) == "<unknown>"
    assert pc.describe_management(None) == ""

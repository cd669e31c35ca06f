"""The bootstrap: its shape, that Envoy 1.40 accepts it, and the cluster-name stats rule."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.extensions.network.dns_resolver.cares.v3 import cares_dns_resolver_pb2  # noqa: F401 (Any type)
from envoy.extensions.resource_monitors.downstream_connections.v3 import downstream_connections_pb2  # noqa: F401
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2  # noqa: F401 (Any type)
from google.protobuf import json_format

from exitgate.envoy import bootstrap as bs
from exitgate.envoy.bootstrap import BootstrapOptions, StatsInclusion, build_bootstrap, render_bootstrap
from exitgate.envoy.supervisor import find_envoy

NODE = "router~127.0.0.1~istio-egressgateway-0.istio-system~istio-system.svc.cluster.local"


def options(**overrides: Any) -> BootstrapOptions:
    values: dict[str, Any] = dict(
        node_id=NODE,
        cluster="istio-egressgateway.istio-system",
        xds_host="127.0.0.1",
        xds_port=15010,
        xds_token="s3cret-token",
        admin_port=15000,
        metadata={"ISTIO_VERSION": "exitgate", "LABELS": {"istio": "egressgateway"}},
    )
    values.update(overrides)
    return BootstrapOptions(**values)


def envoy_validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [find_envoy(), "--mode", "validate", "-c", str(path), "-l", "error"],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "resolvers", [(), (("127.0.0.1", 5353),), (("127.0.0.1", 5353), ("127.0.0.2", 53))], ids=["system", "one", "two"]
)
def test_envoy_accepts_the_bootstrap(tmp_path: Path, resolvers: tuple[tuple[str, int], ...]) -> None:
    path = tmp_path / "bootstrap.json"
    path.write_text(render_bootstrap(options(dns_resolvers=resolvers)))
    result = envoy_validate(path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout


def test_every_field_exists_in_the_protos() -> None:
    # Parsing with xds-protos rejects unknown fields and wrong types, independently of Envoy.
    message = json_format.ParseDict(build_bootstrap(options(dns_resolvers=(("127.0.0.1", 5353),))), bootstrap_pb2.Bootstrap())
    assert message.node.id == NODE
    assert message.dynamic_resources.ads_config.set_node_on_first_message_only


def test_ads_as_envoy_notes_say() -> None:
    b = build_bootstrap(options())
    ads = b["dynamic_resources"]["ads_config"]
    assert ads["api_type"] == "DELTA_GRPC" and ads["transport_api_version"] == "V3"
    assert build_bootstrap(options(delta_xds=False))["dynamic_resources"]["ads_config"]["api_type"] == "GRPC"
    assert ads["set_node_on_first_message_only"] is True
    [service] = ads["grpc_services"]
    assert service["envoy_grpc"] == {"cluster_name": "xds-grpc"}
    assert service["initial_metadata"] == [{"key": "x-exitgate-token", "value": "s3cret-token"}]
    for kind in ("cds_config", "lds_config"):
        assert b["dynamic_resources"][kind] == {"ads": {}, "resource_api_version": "V3"}

    [xds] = b["static_resources"]["clusters"]
    assert xds["name"] == "xds-grpc" and xds["type"] == "STATIC" and xds["connect_timeout"] == "1s"
    [endpoint] = xds["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert endpoint["endpoint"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 15010}
    options_ = xds["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "http2_protocol_options" in options_["explicit_http_config"]

    assert b["node"] == {
        "id": NODE,
        "cluster": "istio-egressgateway.istio-system",
        "metadata": {"ISTIO_VERSION": "exitgate", "LABELS": {"istio": "egressgateway"}},
    }
    assert b["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 15000}
    assert "typed_dns_resolver_config" not in b


def test_no_token_no_metadata() -> None:
    [service] = build_bootstrap(options(xds_token=""))["dynamic_resources"]["ads_config"]["grpc_services"]
    assert "initial_metadata" not in service


def test_dns_resolvers_with_ports_and_no_fallback() -> None:
    b = build_bootstrap(options(dns_resolvers=(("127.0.0.1", 5353), ("127.0.0.2", 53))))
    resolver = b["typed_dns_resolver_config"]
    assert resolver["name"] == "envoy.network.dns_resolver.cares"
    config = resolver["typed_config"]
    assert config["@type"].endswith("envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig")
    assert config["resolvers"] == [
        {"socket_address": {"address": "127.0.0.1", "port_value": 5353}},
        {"socket_address": {"address": "127.0.0.2", "port_value": 53}},
    ]
    assert config["use_resolvers_as_fallback"] is False


def test_render_is_stable_json() -> None:
    text = render_bootstrap(options())
    assert json.loads(text) == build_bootstrap(options())
    assert text == render_bootstrap(options())


@pytest.mark.parametrize(
    "bad",
    [
        dict(xds_host="localhost"),
        dict(admin_host="envoy.local"),
        dict(xds_port=0),
        dict(admin_port=70000),
        dict(dns_resolvers=(("dns.example", 53),)),
        dict(dns_resolvers=(("127.0.0.1", 0),)),
        dict(node_id=""),
    ],
)
def test_rejects_bad_options(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        build_bootstrap(options(**bad))


def test_replaces_only_the_default_cluster_name_rule() -> None:
    stats = build_bootstrap(options())["stats_config"]
    assert stats["use_all_default_tags"] is False
    names = [tag["tag_name"] for tag in stats["stats_tags"]]
    assert len(names) == len(set(names))
    assert names[0] == "envoy.cluster_name" and "regex" in stats["stats_tags"][0]
    assert all("regex" not in tag for tag in stats["stats_tags"][1:])


# The rule is ECMAScript (Envoy's std::regex); Python's re agrees on everything it uses.
@pytest.mark.parametrize(
    ("stat", "cluster", "rest"),
    [
        ("cluster.outbound|443||edition.cnn.com.upstream_rq_total", "outbound|443||edition.cnn.com", "upstream_rq_total"),
        ("cluster.outbound|443||edition.cnn.com.ssl.handshake", "outbound|443||edition.cnn.com", "ssl.handshake"),
        ("cluster.outbound|443||edition.cnn.com.ssl.ciphers.ECDHE-RSA-AES128-GCM-SHA256", "outbound|443||edition.cnn.com",
         "ssl.ciphers.ECDHE-RSA-AES128-GCM-SHA256"),
        ("cluster.outbound|443||edition.cnn.com.version", "outbound|443||edition.cnn.com", "version"),
        ("cluster.outbound|443||edition.cnn.com.circuit_breakers.default.cx_open", "outbound|443||edition.cnn.com",
         "circuit_breakers.default.cx_open"),
        ("cluster.outbound|443||edition.cnn.com.http2.trailers", "outbound|443||edition.cnn.com", "http2.trailers"),
        ("cluster.outbound|443||edition.cnn.com.internal.upstream_rq_200", "outbound|443||edition.cnn.com",
         "internal.upstream_rq_200"),
        ("cluster.outbound|80|v1|reviews.default.svc.cluster.local.default.total_match_count",
         "outbound|80|v1|reviews.default.svc.cluster.local", "default.total_match_count"),
        ("cluster.outbound|443||api.internal.ssl.example.com.upstream_cx_total", "outbound|443||api.internal.ssl.example.com",
         "upstream_cx_total"),
        ("cluster.inbound|8443||.upstream_cx_total", "inbound|8443||", "upstream_cx_total"),  # Istio's inbound
        ("cluster.xds-grpc.upstream_cx_total", "xds-grpc", "upstream_cx_total"),
        ("cluster.PassthroughCluster.version", "PassthroughCluster", "version"),
    ],
)
def test_cluster_name_rule(stat: str, cluster: str, rest: str) -> None:
    match = re.search(bs._CLUSTER_NAME_RE, stat)
    assert match is not None
    assert match.group(2) == cluster
    assert stat.replace(match.group(1), "", 1) == "cluster." + rest


def test_validate_gate_catches_a_bad_field(tmp_path: Path) -> None:
    # Guards the gate above: a wrong field must fail validation, not pass silently.
    bad = build_bootstrap(options(dns_resolvers=(("127.0.0.1", 5353),)))
    bad["typed_dns_resolver_config"]["typed_config"]["resolver"] = []
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    result = envoy_validate(path)
    assert result.returncode != 0
    assert "resolver" in result.stdout + result.stderr


def test_stats_are_trimmed_to_istios_inclusion_list_plus_the_proxy_configs() -> None:
    default = build_bootstrap(options())["stats_config"]["stats_matcher"]["inclusion_list"]["patterns"]
    assert {"prefix": "cluster.xds-grpc"} in default and {"suffix": "rbac.allowed"} in default
    assert {"prefix": "istio"} in default and {"safe_regex": {"regex": r"vhost\..*\.route\..*"}} in default
    assert not any("outbound" in str(p) for p in default)
    extra = StatsInclusion(prefixes=("cluster.outbound", "server"), suffixes=("ssl.handshake",), regexps=(".*upstream_rq_.*",))
    patterns = build_bootstrap(options(stats_inclusion=extra))["stats_config"]["stats_matcher"]["inclusion_list"]["patterns"]
    assert [p for p in patterns if p in default] == default  # the required entries all stay, in order
    assert patterns.count({"prefix": "server"}) == 1  # a repeated prefix is listed once
    assert {"prefix": "cluster.outbound"} in patterns and {"suffix": "ssl.handshake"} in patterns
    assert {"safe_regex": {"regex": ".*upstream_rq_.*"}} in patterns


def test_envoy_accepts_the_trimmed_stats(tmp_path: Path) -> None:
    path = tmp_path / "bootstrap.json"
    extra = StatsInclusion(prefixes=("cluster.outbound",), suffixes=("ssl.handshake",), regexps=(r"http\..*",))
    path.write_text(render_bootstrap(options(stats_inclusion=extra)))
    result = envoy_validate(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mesh_file_proxy_stats_matcher_as_istios(tmp_path: Path) -> None:
    from exitgate.mesh import load_mesh

    good = tmp_path / "mesh.yaml"
    good.write_text("proxyStatsMatcher:\n  inclusionPrefixes: [cluster.outbound]\n  inclusionRegexps: ['.*ssl.*']\n")
    mesh, diags = load_mesh(good)
    assert mesh is not None, diags
    assert mesh.proxy_stats_matcher.inclusion_prefixes == ["cluster.outbound"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("proxyStatsMatcher:\n  inclusionRegexps: ['(unclosed']\n")
    mesh, diags = load_mesh(bad)
    assert mesh is None
    assert any("inclusionRegexps" in str(d) and "bad.yaml" in str(d) and "bad.yaml:2:" in str(d) for d in diags), [str(d) for d in diags]

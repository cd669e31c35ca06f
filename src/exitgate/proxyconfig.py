"""What a running proxy holds, as ``istioctl proxy-config`` shows it: pure functions from an
Envoy config dump (``/config_dump``) or cluster status (``/clusters?format=json``) to istioctl's
rows, its filters and its sort orders, and the tables in istioctl's layout (Go's tabwriter:
columns padded with spaces, the last one not). The CLI (``cli/debug.py``) fetches and prints.

Read from istioctl's ``pkg/writer/envoy/configdump`` (cluster.go, listener.go, route.go) and
``pkg/writer/envoy/clusters`` (endpoints)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

HTTP_ALPN = ["http/1.0", "http/1.1", "h2c"]
T_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
T_TCP = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"


def tabwrite(headers: Sequence[str], rows: Iterable[Sequence[str]], padding: int = 5) -> str:
    """Go's ``tabwriter.NewWriter(w, 0, 8, padding, ' ', 0)`` over tab-separated lines: every
    column but the last as wide as its widest cell plus ``padding``. Whole names, whatever the
    terminal's width (scripts and ``grep`` read them)."""
    lines = [list(headers), *(list(r) for r in rows)]
    widths = [max(len(line[i]) for line in lines if i < len(line)) for i in range(len(headers))]
    out = []
    for line in lines:
        cells = [cell.ljust(widths[i] + padding) for i, cell in enumerate(line[:-1])]
        out.append("".join(cells) + line[-1])
    return "\n".join(out) + "\n"


def _configs(dump: dict[str, Any], kind: str) -> dict[str, Any]:
    """The config dump's section of ``kind`` (``ClustersConfigDump``, ...)."""
    for c in dump.get("configs", []):
        if c.get("@type", "") == f"type.googleapis.com/envoy.admin.v3.{kind}":
            return dict(c)
    return {}


# -- names Istio gives -----------------------------------------------------------------------------

def describe_management(metadata: dict[str, Any] | None) -> str:
    """istioctl's ``name.namespace`` of the Istio resource behind a cluster or route, from the
    ``istio.config`` metadata Istio writes (``/apis/networking.istio.io/v1/namespaces/NS/KIND/NAME``)."""
    config = ((metadata or {}).get("filter_metadata", {}).get("istio", {}) or {}).get("config")
    if not config:
        return ""
    if not config.startswith("/apis/networking.istio.io/"):
        return "<unknown>"
    pieces = config.split("/")
    return f"{pieces[7]}.{pieces[5]}" if len(pieces) == 8 else ""


def parse_cluster_name(name: str) -> tuple[str, str, str, str] | None:
    """``direction|port|subset|fqdn`` -> (direction, port, subset, fqdn); None for others."""
    parts = name.split("|")
    if len(parts) != 4:
        return None
    return parts[0], parts[1], parts[2], parts[3]


# -- clusters --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClusterFilter:
    fqdn: str = ""
    port: int = 0
    subset: str = ""
    direction: str = ""

    def verify(self, name: str) -> bool:
        # istioctl: substring matches on the raw name ("|PORT|" for the port).
        if self.fqdn and self.fqdn not in name:
            return False
        if self.direction and self.direction not in name:
            return False
        if self.subset and self.subset not in name:
            return False
        return not self.port or f"|{self.port}|" in name


def clusters(dump: dict[str, Any], f: ClusterFilter = ClusterFilter()) -> list[dict[str, Any]]:
    section = _configs(dump, "ClustersConfigDump")
    found = [c["cluster"] for c in section.get("dynamic_active_clusters", [])]
    found += [c["cluster"] for c in section.get("static_clusters", [])]
    return [c for c in found if f.verify(c.get("name", ""))]


def cluster_rows(dump: dict[str, Any], f: ClusterFilter = ClusterFilter()) -> list[list[str]]:
    rows = []
    for c in clusters(dump, f):
        name = c.get("name", "")
        parsed = parse_cluster_name(name)
        # A custom cluster type (the dynamic forward proxy's) reads STATIC, as in istioctl.
        kind = c.get("type", "STATIC") if "cluster_type" not in c else "STATIC"
        if parsed is None:
            rows.append((name, "", "", "", ["-", "-", "-"], kind, describe_management(c.get("metadata"))))
            continue
        direction, port, subset, fqdn = parsed
        rows.append((fqdn, subset, port, direction, [port, subset or "-", direction], kind,
                     describe_management(c.get("metadata"))))
    rows.sort(key=lambda r: (r[0], r[1], r[2], r[3]))
    return [[r[0], *r[4], r[5], r[6]] for r in rows]


CLUSTER_HEADERS = ("SERVICE FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE", "DESTINATION RULE")


# -- listeners -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ListenerFilter:
    address: str = ""
    port: int = 0
    type: str = ""


def listeners(dump: dict[str, Any]) -> list[dict[str, Any]]:
    section = _configs(dump, "ListenersConfigDump")
    found = [x["active_state"]["listener"] for x in section.get("dynamic_listeners", []) if "active_state" in x]
    found += [x["listener"] for x in section.get("static_listeners", [])]
    return found


def _address(lst: dict[str, Any]) -> tuple[str, int]:
    sock = lst.get("address", {}).get("socket_address", {})
    return sock.get("address", ""), int(sock.get("port_value", 0))


def _chains(lst: dict[str, Any]) -> list[dict[str, Any]]:
    chains = list(lst.get("filter_chains", []))
    if "default_filter_chain" in lst:
        chains.append(lst["default_filter_chain"])
    return chains


def _filter_types(lst: dict[str, Any]) -> str:
    kinds = set()
    for chain in _chains(lst):
        for flt in chain.get("filters", []):
            t = flt.get("typed_config", {}).get("@type", "")
            kinds.add("HTTP" if t == T_HCM else "TCP" if t == T_TCP else "")
    has_http, has_tcp = "HTTP" in kinds, "TCP" in kinds
    return "HTTP+TCP" if has_http and has_tcp else "HTTP" if has_http else "TCP" if has_tcp else "UNKNOWN"


def _matches(match: dict[str, Any]) -> str:
    parts = []
    if match.get("server_names"):
        parts.append("SNI: " + ",".join(match["server_names"]))
    if match.get("transport_protocol"):
        parts.append("Trans: " + match["transport_protocol"])
    alpn = match.get("application_protocols") or []
    if alpn:
        parts.append("App: HTTP" if alpn == HTTP_ALPN else "App: " + ",".join(alpn))
    port = match.get("destination_port")
    ranges = match.get("prefix_ranges") or []
    if ranges:
        addr = ",".join(f"{r.get('address_prefix', '')}/{r.get('prefix_len', 0)}" for r in ranges)
        parts.append(f"Addr: {addr}" + (f":{port}" if port else ""))
    elif port:
        parts.append(f"Addr: *:{port}")
    return "; ".join(parts) or "ALL"


def _destination(chain: dict[str, Any]) -> str:
    for flt in chain.get("filters", []):
        cfg = flt.get("typed_config", {})
        t = cfg.get("@type", "")
        if t == T_HCM:
            if "rds" in cfg:
                return "Route: " + str(cfg["rds"].get("route_config_name", ""))
            if "route_config" in cfg:
                vhosts = cfg["route_config"].get("virtual_hosts", [])
                if len(vhosts) == 1 and vhosts[0].get("domains") == ["*"] and len(vhosts[0].get("routes", [])) == 1:
                    cluster = str(vhosts[0]["routes"][0].get("route", {}).get("cluster", ""))
                    if cluster:
                        return cluster if "Cluster" in cluster else f"Cluster: {cluster}"
                return "Inline Route: " + "; ".join(
                    "/".join(v.get("domains", [])) + " " + " ".join(_route_match(r) for r in v.get("routes", []))
                    for v in vhosts)
            return "HTTP"
        if t == T_TCP:
            cluster = str(cfg.get("cluster", ""))
            if not cluster and "weighted_clusters" in cfg:
                cluster = ",".join(w.get("name", "") for w in cfg["weighted_clusters"].get("clusters", []))
            if "BlackHoleCluster" not in cluster:
                return cluster if "Cluster" in cluster else f"Cluster: {cluster}"
    return "Non-HTTP/Non-TCP"


def listener_rows(dump: dict[str, Any], f: ListenerFilter = ListenerFilter(), verbose: bool = True) -> list[list[str]]:
    chosen: list[tuple[int, str, str, str, dict[str, Any]]] = []
    for lst in listeners(dump):
        address, port = _address(lst)
        addresses = [address] + [a.get("address", {}).get("socket_address", {}).get("address", "")
                                 for a in lst.get("additional_addresses", [])]
        kind = _filter_types(lst)
        if f.address and not any(a.lower() == f.address.lower() for a in addresses):
            continue
        if f.port and port != f.port:
            continue
        if f.type and kind.lower() != f.type.lower():
            continue
        chosen.append((port, address, kind, ",".join(addresses), lst))
    chosen.sort(key=lambda x: (x[0], x[1], x[2]))
    rows: list[list[str]] = []
    for port, _, kind, shown, lst in chosen:
        if not verbose:
            rows.append([shown, str(port), kind])
            continue
        per_chain = [[shown, str(port), _matches(c.get("filter_chain_match", {})), _destination(c)] for c in _chains(lst)]
        rows += sorted(per_chain, key=lambda r: r[3], reverse=True)
    return rows


LISTENER_HEADERS = ("ADDRESSES", "PORT", "MATCH", "DESTINATION")
LISTENER_SHORT_HEADERS = ("ADDRESSES", "PORT", "TYPE")


# -- routes ----------------------------------------------------------------------------------------

def routes(dump: dict[str, Any], name: str = "") -> list[dict[str, Any]]:
    section = _configs(dump, "RoutesConfigDump")
    found = [r["route_config"] for r in section.get("dynamic_route_configs", [])]
    found += [r["route_config"] for r in section.get("static_route_configs", [])]
    return [r for r in found if not name or r.get("name") == name]


def _route_match(r: dict[str, Any]) -> str:
    m = r.get("match", {})
    parts = []
    if "prefix" in m:
        parts.append(m["prefix"] + "*")
    if "path_separated_prefix" in m:
        parts.append("PathPrefix:" + m["path_separated_prefix"])
    if "path" in m:
        parts.append(m["path"])
    if "safe_regex" in m:
        parts.append("regex " + m["safe_regex"].get("regex", ""))
    if "connect_matcher" in m:
        parts.append("CONNECT")  # a forward proxy's tunnels (istioctl never meets one)
    return " ".join(parts)


def _domains(domains: list[str]) -> str:
    if len(domains) == 1:
        return domains[0]
    kept = [d for d in domains if ":" not in d or d.endswith("]")]
    unique = []
    for d in kept:
        short = re.sub(r"\.svc(\.cluster\.local)?$", "", d)
        if short != d and short in kept:
            continue
        unique.append(d)
    if len(unique) > 2:
        return f"{unique[0]}, {unique[1]} + {len(unique) - 2} more..."
    return ", ".join(unique)


def route_rows(dump: dict[str, Any], name: str = "", verbose: bool = True) -> list[list[str]]:
    configs = routes(dump, name)
    configs.sort(key=lambda r: (0, int(r["name"]), "") if str(r.get("name", "")).isdigit() else (1, 0, r.get("name", "")))
    rows = []
    for rc in configs:
        vhosts = rc.get("virtual_hosts", [])
        if not verbose:
            rows.append([rc.get("name", ""), str(len(vhosts))])
            continue
        for v in vhosts:
            routes_ = v.get("routes", [])
            if not routes_:
                rows.append([rc.get("name", ""), v.get("name", ""), _domains(v.get("domains", [])), "/*", "404"])
            for r in routes_:
                if r.get("route", {}).get("cluster") == "PassthroughCluster":
                    continue
                rows.append([rc.get("name", ""), v.get("name", ""), _domains(v.get("domains", [])), _route_match(r),
                             describe_management(r.get("metadata"))])
    return rows


ROUTE_HEADERS = ("NAME", "VHOST NAME", "DOMAINS", "MATCH", "VIRTUAL SERVICE")
ROUTE_SHORT_HEADERS = ("NAME", "VIRTUAL HOSTS")


# -- endpoints -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EndpointFilter:
    address: str = ""
    port: int = 0
    cluster: str = ""
    status: str = ""


def endpoint_rows(status: dict[str, Any], f: EndpointFilter = EndpointFilter()) -> list[list[str]]:
    found = []
    for cs in status.get("cluster_statuses", []):
        cluster = cs.get("name", "")
        if f.cluster and cluster.lower() != f.cluster.lower():
            continue
        for h in cs.get("host_statuses", []):
            sock = h.get("address", {}).get("socket_address")
            pipe = h.get("address", {}).get("pipe")
            if sock is not None:
                address, port = sock.get("address", ""), int(sock.get("port_value", 0))
                shown = f"{address}:{port}" if port else address
            elif pipe is not None:
                address, port, shown = pipe.get("path", ""), 0, "unix://" + pipe.get("path", "")
            else:
                address, port, shown = "", 0, "unknown"
            health = h.get("health_status", {})
            state = health.get("eds_health_status", "HEALTHY")
            if f.address and address.lower() != f.address.lower():
                continue
            if f.port and port != f.port:
                continue
            if f.status and state.lower() != f.status.lower():
                continue
            outlier = "FAILED" if health.get("failed_outlier_check") else "OK"
            found.append((address, port, cluster, [shown, state, outlier, cluster]))
    found.sort(key=lambda x: (x[0], x[1], x[2]))
    return [x[3] for x in found]


ENDPOINT_HEADERS = ("ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER")


def bootstrap(dump: dict[str, Any]) -> dict[str, Any]:
    return _configs(dump, "BootstrapConfigDump")

"""Transparent capture: each workload in its own network namespace, its outbound traffic sent to
its sidecar the way ``istio-iptables`` sets up a pod.

In Istio the sidecar shares the pod's namespace and its own traffic is told apart by its uid
(1337). Here the sidecar's Envoy stays in the machine's namespace and only its capture
listeners are bound inside the workload's (Envoy's ``network_namespace_filepath``), so the
proxy's own connections — to the gateway, to the control plane, passed through — never pass
the workload's rules at all: they are excluded by construction, not by a match that could be
wrong. Inside the namespace, with nftables:

* every TCP connection is redirected to ``127.0.0.1:15001`` (Istio's ``virtualOutbound``), but
  those to the capture port itself; the original destination stays readable
  (``SO_ORIGINAL_DST``), and Envoy hands the connection to the listener for its port;
* DNS (UDP port 53, whatever resolver the workload uses) is redirected to ``127.0.0.1:15053``,
  Istio's DNS-capture port, where the sidecar answers the hosts it knows (Istio's DNS proxy);
* the only route is via loopback: whatever is not captured (other UDP, IPv6) does not leave.
  127.0.0.0/8 inside the namespace other than the sidecar's ports is the machine's loopback
  as far as TCP goes, so the gateway and the local stand-ins are reachable at their addresses —
  through the sidecar.

``ruleset()`` is pure (nft's JSON, tested without root); ``NetnsCapture`` does the IO with
pyroute2 (namespaces, links, routes) and ``nft -j`` (rules, as a JSON document, no shell).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exitgate.names import CAPTURE_PORT, DNS_CAPTURE_PORT

NETNS_DIR = Path("/run/netns")
TABLE = "exitgate"


def netns_prefix(state_root: Path) -> str:
    """Namespaces of one state directory share a prefix, so a later start finds and removes
    what a crashed one left behind, and two state directories never touch each other's."""
    digest = hashlib.sha256(str(state_root.resolve()).encode()).hexdigest()[:8]
    return f"eg-{digest}-"


def netns_name(state_root: Path, workload: str, namespace: str) -> str:
    return f"{netns_prefix(state_root)}{workload}.{namespace}"[:200]


def netns_path(name: str) -> str:
    return str(NETNS_DIR / name)


def _match(left: dict[str, Any], right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def _payload(protocol: str, field: str) -> dict[str, Any]:
    return {"payload": {"protocol": protocol, "field": field}}


def ruleset(capture_port: int = CAPTURE_PORT, dns_port: int = DNS_CAPTURE_PORT) -> dict[str, Any]:
    """The workload namespace's rules as nft's JSON document: one table, one NAT output chain,
    in istio-iptables' order (what must not be captured returns first)."""
    table = {"family": "ip", "name": TABLE}
    where = {"family": "ip", "table": TABLE}
    chain = {**where, "name": "output", "type": "nat", "hook": "output", "prio": -100, "policy": "accept"}
    rules = [
        # The capture listener itself (a connection to it is already at the sidecar).
        [_match(_payload("ip", "daddr"), "127.0.0.1"), _match(_payload("tcp", "dport"), capture_port),
         {"return": None}],
        # ISTIO_REDIRECT: all other outbound TCP.
        [_match({"meta": {"key": "l4proto"}}, "tcp"), {"redirect": {"port": capture_port}}],
        # DNS capture (Istio's ISTIO_META_DNS_CAPTURE), the proxy answering at 15053.
        [_match(_payload("udp", "dport"), 53), {"redirect": {"port": dns_port}}],
    ]
    commands: list[dict[str, Any]] = [{"add": {"table": table}}, {"add": {"chain": chain}}]
    commands += [{"add": {"rule": {**where, "chain": "output", "expr": expr}}} for expr in rules]
    return {"nftables": commands}


@dataclass(frozen=True)
class CaptureSupport:
    """Whether capture can run here, and if not, why (said to the user, never silent)."""

    available: bool
    reason: str = ""


def support() -> CaptureSupport:
    if not sys.platform.startswith("linux"):
        return CaptureSupport(False, "capture needs Linux network namespaces")
    if os.geteuid() != 0:
        return CaptureSupport(False, "capture needs root (network namespaces and nftables)")
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return CaptureSupport(False, f"capture needs the {tool!r} command (iproute2, nftables)")
    try:
        import pyroute2  # noqa: F401
    except ImportError:
        return CaptureSupport(False, "capture needs the pyroute2 package")
    return CaptureSupport(True)


class CaptureError(RuntimeError):
    pass


class NetnsCapture:
    """Creates, lists and removes the workload namespaces of one state directory."""

    def __init__(self, state_root: Path) -> None:
        self.prefix = netns_prefix(state_root)
        self.state_root = state_root

    def name(self, workload: str, namespace: str) -> str:
        return netns_name(self.state_root, workload, namespace)

    def existing(self) -> list[str]:
        from pyroute2 import netns

        return sorted(n for n in netns.listnetns() if n.startswith(self.prefix))

    def setup(self, name: str) -> str:
        """A fresh namespace ``name`` with loopback up, a default route through it and the
        capture rules; its path, for Envoy's ``network_namespace_filepath``."""
        from pyroute2 import NetNS, netns

        if name in netns.listnetns():
            self.teardown(name)
        netns.create(name)
        try:
            with NetNS(name) as ns:
                lo = ns.link_lookup(ifname="lo")[0]
                ns.link("set", index=lo, state="up")
                # Every destination is "reachable" so that connect() gets as far as the NAT
                # hook (without a route it fails with ENETUNREACH before capture sees it).
                ns.route("add", dst="0.0.0.0/0", oif=lo, prefsrc="127.0.0.1")
            proc = subprocess.run(["ip", "netns", "exec", name, "nft", "-j", "-f", "-"],
                                  input=json.dumps(ruleset()), capture_output=True, text=True, timeout=30)
            if proc.returncode != 0:
                raise CaptureError(f"nft refused the capture rules: {proc.stderr.strip()}")
        except Exception:
            self.teardown(name)
            raise
        return netns_path(name)

    def teardown(self, name: str) -> None:
        """Remove the namespace; its rules go with it. Envoy's sockets in it close when Envoy stops."""
        from pyroute2 import netns

        try:
            netns.remove(name)
        except (FileNotFoundError, OSError):
            pass

    def cleanup(self) -> list[str]:
        """Remove every namespace of this state directory (left by a crash, or at stop)."""
        gone = self.existing()
        for name in gone:
            self.teardown(name)
        return gone

    @staticmethod
    def exec_argv(name: str, cmd: list[str]) -> list[str]:
        """``cmd`` run inside the workload's namespace."""
        return ["ip", "netns", "exec", name, *cmd]

"""The control plane's reporting and secret checks, without processes."""

from __future__ import annotations

from pathlib import Path

from exitgate.controlplane import ControlPlane
from exitgate.secretdata import pem_problem
from exitgate.ca import certs
from exitgate.mesh import MeshConfig
from exitgate.runtime import StateDir
from exitgate.xds.cache import SECRET_TYPE
from exitgate.xds.server import EventKind, XdsEvent


def test_a_nack_is_reported_with_envoys_message(tmp_path: Path) -> None:
    events: list[str] = []
    cp = ControlPlane(StateDir(tmp_path), MeshConfig(), events.append)
    cp._plan()
    gw = cp.proxies[0].record
    cp._on_xds(XdsEvent(kind=EventKind.NACK, node_id=gw.node_id, type_url=SECRET_TYPE, version="abc",
                        error="Failed to load trusted CA certificates from <inline>"))
    assert len(events) == 1
    assert "NACK" in events[0] and "istio-egressgateway.istio-system rejected Secret version abc" in events[0]
    assert "Envoy said: Failed to load trusted CA certificates from <inline>" in events[0]
    assert "keeps its last good configuration" in events[0]


def test_pem_checks() -> None:
    root, root_key = certs.make_root("r", "o", key_type="ec256")
    assert pem_problem(root, "certs") is None
    assert pem_problem(root_key, "key") is None
    assert pem_problem(certs.make_crl(root, root_key, [1]), "crl") is None
    assert pem_problem(b"garbage", "certs") is not None
    assert pem_problem(root, "key") is not None
    assert pem_problem(root, "crl") is not None


def test_a_key_that_does_not_match_its_certificate_is_caught() -> None:
    from exitgate.secretdata import key_mismatch

    root, root_key = certs.make_root("r", "o", key_type="ec256")
    leaf, leaf_key = certs.make_leaf(root, root_key, "c", [], client=True, key_type="ec256")
    assert key_mismatch(leaf, leaf_key) is None
    assert key_mismatch(leaf, root_key) == "the private key does not match the certificate"
    assert key_mismatch(b"junk", leaf_key) is not None

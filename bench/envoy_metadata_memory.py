"""What the telemetry metadata costs each Envoy: the gateway's translation of N services
(translate_bench's documents: two ports each) as a static bootstrap (TLS left out of both, there
are no secrets here), run by a real Envoy with and without every ``metadata`` field, its RSS
read once it is ready. Static bootstraps keep every per-cluster stat (no stats matcher), so the
base is higher than under ``exitgate up``; the difference is the metadata's.

Run: .venv/bin/python bench/envoy_metadata_memory.py 10000
"""
import copy, json, os, subprocess, sys, tempfile, time
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE); sys.path.insert(0, os.path.join(HERE, "..", "src"))
from translate_bench import documents
from exitgate.api.loader import load_document
from exitgate.envoy.snapshot import static_bootstrap
from exitgate.envoy.supervisor import find_envoy
from exitgate.envoy.ports import free_port
from exitgate.mesh import MeshConfig
from exitgate.translate.gateway import translate_gateway
from exitgate.translate.snapshot import Snapshot
n = int(sys.argv[1])
rs = [load_document(d, "b")[0] for d in documents(n)]
mesh = MeshConfig()
pc = translate_gateway(Snapshot(rs, mesh), mesh.gateways[0])[0]
boot = static_bootstrap(pc, {}, admin_port=free_port())
def strip(node, keys=("metadata",)):
    if isinstance(node, dict):
        return {k: strip(v, keys) for k, v in node.items() if k not in keys}
    if isinstance(node, list):
        return [strip(v, keys) for v in node]
    return node
# No secrets here: TLS left out of both variants alike.
boot = strip(boot, ("transport_socket",))
def rss(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"): return int(line.split()[1]) // 1024
for name, b in (("with metadata", boot), ("without metadata", strip(boot))):
    b = copy.deepcopy(b); b["admin"]["address"]["socket_address"]["port_value"] = port = free_port()
    # listeners need free ports
    for l in b["static_resources"].get("listeners", []):
        l["address"]["socket_address"]["port_value"] = free_port()
    path = os.path.join(tempfile.mkdtemp(), "bootstrap.json"); open(path, "w").write(json.dumps(b))
    p = subprocess.Popen([find_envoy(), "-c", path, "--concurrency", "2", "-l", "error", "--base-id", str(free_port())],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import urllib.request
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1).read().strip() == b"LIVE": break
            except Exception: pass
            time.sleep(0.5)
        time.sleep(2)
        print(name, rss(p.pid), "MiB", "clusters", len(b["static_resources"]["clusters"]))
    finally:
        p.terminate(); p.wait(10)

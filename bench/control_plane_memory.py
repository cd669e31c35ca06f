"""What the control plane's memory is made of at N services, without its processes: the pure
layers as a push runs them (the store, the translation snapshot, both proxies' translations,
their protos, the xDS cache), the first push and one more service. Prints the RSS after each,
and with ``--trace`` the largest holders by file and line (tracemalloc; slower, more memory).

Run: .venv/bin/python bench/control_plane_memory.py [--trace] [N]   (default 10000)
"""

from __future__ import annotations

import ctypes
import gc
import sys
import tempfile
import tracemalloc
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import yaml  # noqa: E402
from scale_bench import GATEWAY, service  # noqa: E402

from exitgate.cli.applying import answer_request  # noqa: E402
from exitgate.envoy.snapshot import ProtoMemo, xds_resources  # noqa: E402
from exitgate.handoff import apply_request  # noqa: E402
from exitgate.mesh import MeshConfig  # noqa: E402
from exitgate.store import Store  # noqa: E402
from exitgate.translate.gateway import translate_gateway  # noqa: E402
from exitgate.translate.memo import TranslationMemo  # noqa: E402
from exitgate.translate.sidecar import translate_sidecar  # noqa: E402
from exitgate.translate.snapshot import Snapshot  # noqa: E402
from exitgate.xds.cache import SnapshotCache  # noqa: E402


def rss_mib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    return 0


def main() -> None:
    trace = "--trace" in sys.argv
    sizes = [int(a) for a in sys.argv[1:] if a.isdigit()]
    n = sizes[0] if sizes else 10000
    root = Path(tempfile.mkdtemp()) / "state"
    root.mkdir(mode=0o700)
    # Applied by the command (a batch this large is not handed over), in this process first.
    text = yaml.safe_dump_all([GATEWAY, *[d for i in range(n) for d in service(i)]])
    answer_request(Store(root), apply_request([("all.yaml", text)], "default"))
    del text
    gc.collect()
    trim = ctypes.CDLL("libc.so.6").malloc_trim
    trim(0)
    if trace:
        tracemalloc.start(1)
    print(f"before the first push: {rss_mib()} MiB")
    store = Store(root, keep_documents=False, resident=True)
    mesh, memo, protos, cache = MeshConfig(), TranslationMemo(), ProtoMemo(), SnapshotCache()

    def push() -> None:
        snap = Snapshot(store.load().resources, mesh, memo)
        gateway, _ = translate_gateway(snap, mesh.gateways[0])
        cache.set_snapshot("gateway", xds_resources(gateway, {}, protos))
        sidecar, _ = translate_sidecar(snap, mesh.workloads[0], 15001)
        cache.set_snapshot("sidecar", xds_resources(sidecar, {}, protos))
        protos.next_push()
        memo.next_push()

    push()
    print(f"after the first push: {rss_mib()} MiB")
    # One more, handed over as `exitgate apply` hands it to a running control plane.
    answer_request(store, apply_request([("one.yaml", yaml.safe_dump_all(service(n)))], "default"))
    push()
    gc.collect()
    trim(0)
    print(f"after one more: {rss_mib()} MiB")
    if trace:
        snapshot = tracemalloc.take_snapshot()
        stats = snapshot.statistics("lineno")
        print(f"traced: {sum(s.size for s in stats) / 2**20:.0f} MiB")
        for st in stats[:25]:
            frame = st.traceback[0]
            print(f"{st.size / 2**20:8.1f} MiB {st.count:9d}  {frame.filename.split('/site-packages/')[-1]}:{frame.lineno}")


if __name__ == "__main__":
    main()

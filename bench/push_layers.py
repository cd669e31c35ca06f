"""Where a push's time goes in the pure layers, without processes: N services of
scale_bench.py stored, a first push, then one more service at a time, each push as the control
plane runs it (the translation snapshot, the gateway's translation and protos, the sidecar's),
with the garbage collector paused as during a push. Prints seconds per phase per push.

Side by side: run it from each checkout (``cd /tmp/base && .venv/bin/python
bench/push_layers.py``): it imports the ``src`` next to it.

Run: .venv/bin/python bench/push_layers.py [N] [pushes]   (default 10000, 3 more)
"""

from __future__ import annotations

import gc
import sys
import tempfile
import time
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


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    more = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    root = Path(tempfile.mkdtemp()) / "state"
    root.mkdir(mode=0o700)
    text = yaml.safe_dump_all([GATEWAY, *[d for i in range(n) for d in service(i)]])
    answer_request(Store(root), apply_request([("all.yaml", text)], "default"))
    del text
    store = Store(root, keep_documents=False, resident=True)
    mesh, memo, protos, cache = MeshConfig(), TranslationMemo(), ProtoMemo(), SnapshotCache()
    gc.disable()
    print("| push | snapshot s | gateway s | its protos s | sidecar s | its protos s |")
    print("|---|---|---|---|---|---|")
    for k in range(more + 1):
        if k:
            answer_request(store, apply_request([("one.yaml", yaml.safe_dump_all(service(n + k)))], "default"))
        t0 = time.perf_counter()
        snap = Snapshot(store.load().resources, mesh, memo)
        t1 = time.perf_counter()
        gateway, _ = translate_gateway(snap, mesh.gateways[0])
        t2 = time.perf_counter()
        cache.set_snapshot("gateway", xds_resources(gateway, {}, protos))
        t3 = time.perf_counter()
        sidecar, _ = translate_sidecar(snap, mesh.workloads[0], 15001)
        t4 = time.perf_counter()
        cache.set_snapshot("sidecar", xds_resources(sidecar, {}, protos))
        t5 = time.perf_counter()
        protos.next_push()
        memo.next_push()
        label = "first" if not k else f"one more ({k})"
        print(f"| {label} | {t1 - t0:.3f} | {t2 - t1:.3f} | {t3 - t2:.3f} | {t4 - t3:.3f} | {t5 - t4:.3f} |", flush=True)


if __name__ == "__main__":
    main()

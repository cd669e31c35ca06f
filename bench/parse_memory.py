"""What parsing a batch in the process that keeps its resources costs that process's memory:
why ``exitgate apply`` hands the running control plane a batch of at most 256 KiB
(``handoff.HANDOFF_MAX_BYTES``). N services of scale_bench.py (3N documents) are applied, in
two ways, each in a fresh process, and the RSS is read:

- ``here``: parsed and validated by the process that then keeps the resources (as the control
  plane does with a batch handed to it), and after that parse's garbage is freed and trimmed;
- ``loaded``: parsed by another process (as ``apply`` does with a large batch), this one loading
  the validated documents from the store (as the control plane does then).

Run: .venv/bin/python bench/parse_memory.py [N ...]   (default 600 10000)
"""

from __future__ import annotations

import ctypes
import gc
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"


def rss_mib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    return 0


def worker(n: int, mode: str) -> dict[str, object]:
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(SRC))
    import yaml
    from scale_bench import service

    from exitgate.cli.applying import answer_request
    from exitgate.handoff import apply_request
    from exitgate.store import Store

    root = Path(tempfile.mkdtemp()) / "state"
    root.mkdir(mode=0o700)
    text = yaml.safe_dump_all([d for i in range(n) for d in service(i)])
    out: dict[str, object] = {"n": n, "documents": 3 * n, "yaml_mib": round(len(text) / 2**20, 2), "mode": mode,
                              "start_mib": rss_mib()}
    trim = ctypes.CDLL("libc.so.6").malloc_trim
    if mode == "here":
        store = Store(root, keep_documents=False, resident=True)
        store.load()
        leftovers: list[object] = []
        answer = answer_request(store, apply_request([("all.yaml", text)], "default"), keep=leftovers.append)
        out["after_apply_mib"] = rss_mib()
        leftovers.clear()
        del answer
        trim(0)
        out["after_free_mib"] = rss_mib()
        snapshot = store.load()
    else:
        subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                        "from exitgate.cli.applying import answer_request; from exitgate.handoff import apply_request; "
                        "from exitgate.store import Store; from pathlib import Path; "
                        "answer_request(Store(Path(sys.argv[2])), apply_request([('all.yaml', sys.stdin.read())], 'default'))",
                        str(SRC), str(root)], input=text, text=True, check=True)
        del text
        gc.collect()
        snapshot = Store(root, keep_documents=False, resident=True).load()
    trim(0)
    out["resources"] = len(snapshot.resources)
    out["final_mib"] = rss_mib()
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        print(json.dumps(worker(int(sys.argv[2]), sys.argv[3])))
        return
    for n in [int(a) for a in sys.argv[1:]] or [600, 10000]:
        for mode in ("here", "loaded"):
            proc = subprocess.run([sys.executable, __file__, "--worker", str(n), mode], capture_output=True, text=True,
                                  check=True)
            print(proc.stdout.strip(), flush=True)


if __name__ == "__main__":
    main()

"""``exitgate apply`` of N services of scale_bench.py (3N + 1 documents in one file) into a new
state directory with no control plane running: the command alone, as a user runs it (the
installed entry point, ``exitgate.cli.fast``), wall-clock seconds. With ``--baseline SRC``
another checkout's command runs too, alternating with this one, round after round; each
run's store is compared byte for byte with the first's, so a faster command that stored
something else would be seen.

Run: .venv/bin/python bench/apply_cli.py [--baseline /tmp/base/src] [--rounds 3] [N]   (default 10000)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from scale_bench import GATEWAY, service  # noqa: E402


def run(src: Path, file: Path, work: Path) -> tuple[float, str]:
    state = work / "state"
    subprocess.run(["rm", "-rf", str(state)], check=True)
    env = {**os.environ, "PYTHONPATH": str(src), "EXITGATE_HOME": str(state)}
    entry = "exitgate.cli.fast" if (src / "exitgate" / "cli" / "fast.py").exists() else "exitgate.cli.main"
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", entry, "apply", "-f", str(file)], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - t
    stored = b"".join(p.read_bytes() for p in sorted(state.glob("config*")))
    return seconds, hashlib.sha256(stored).hexdigest()[:12]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("n", nargs="?", type=int, default=10000)
    ap.add_argument("--baseline", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    codes = {"this": HERE.parent / "src", **({"baseline": args.baseline} if args.baseline else {})}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        file = work / "all.yaml"
        file.write_text(yaml.safe_dump_all([GATEWAY, *[d for i in range(args.n) for d in service(i)]]))
        stores: set[str] = set()
        for r in range(args.rounds):
            for label, src in (codes.items() if r % 2 == 0 else reversed(codes.items())):
                seconds, digest = run(src, file, work)
                stores.add(digest)
                print(json.dumps({"code": label, "round": r, "n": args.n, "documents": 3 * args.n + 1,
                                  "apply_cli_s": round(seconds, 2), "store": digest}), flush=True)
        print(json.dumps({"same_store_bytes": len(stores) == 1}))


if __name__ == "__main__":
    main()

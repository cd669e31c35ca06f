"""What a running control plane's memory is made of at N services: ``exitgate up`` itself (its
gRPC server, proxies, monitoring, everything ``control_plane_memory.py`` leaves out), traced
from its first import with tracemalloc, Istio's task of scale_bench.py applied N times. Once the
push is done (the process idle), prints its RSS and its largest holders by file and line.
tracemalloc slows the process and adds its own memory to the RSS: compare the traced totals.

Run: .venv/bin/python bench/up_memory.py [N] [--frames K]   (default 10000, 1 frame)
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
sys.path.insert(0, str(HERE))

from scale_bench import GATEWAY, rss_mib, service, stop_up  # noqa: E402

# Run as `python -c`: tracing starts before exitgate's first import; SIGUSR1 writes the holders.
TRACED_UP = """
import gc, os, signal, sys, tracemalloc
frames = int(os.environ["TRACE_FRAMES"])
tracemalloc.start(frames)
def dump(*_):
    gc.collect()
    stats = tracemalloc.take_snapshot().statistics("lineno" if frames == 1 else "traceback")
    lines = [f"traced: {sum(s.size for s in stats) / 2**20:.0f} MiB"]
    for st in stats[:30]:
        for i, fr in enumerate(st.traceback):
            where = f"{fr.filename.split('/site-packages/')[-1]}:{fr.lineno}"
            lines.append(f"{st.size / 2**20:8.1f} MiB {st.count:9d}  {where}" if i == 0 else f"{'':29}{where}")
    with open(os.environ["TRACE_OUT"] + ".part", "w") as f:
        f.write("\\n".join(lines) + "\\n")
    os.replace(os.environ["TRACE_OUT"] + ".part", os.environ["TRACE_OUT"])
signal.signal(signal.SIGUSR1, dump)
from exitgate.cli.main import app
app(sys.argv[1:])
"""


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def wait_idle(pid: int, quiet_s: int = 5, busy_ticks: int = 30) -> None:
    """Until the process used under ``busy_ticks`` of 100 a second for ``quiet_s`` seconds in a
    row (its poll loop, traced, takes about 10)."""
    last, quiet = cpu_ticks(pid), 0
    while quiet < quiet_s:
        time.sleep(1)
        now = cpu_ticks(pid)
        quiet = quiet + 1 if now - last < busy_ticks else 0
        last = now


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("n", nargs="?", type=int, default=10000)
    ap.add_argument("--frames", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        out = work / "holders.txt"
        env = {**os.environ, "PYTHONPATH": str(SRC), "EXITGATE_HOME": str(work / "state"),
               "TRACE_FRAMES": str(args.frames), "TRACE_OUT": str(out)}
        (work / "state").mkdir(mode=0o700)
        # Nothing answers on the external port: the push, not the data path, is measured.
        (work / "mesh.yaml").write_text(yaml.safe_dump({"externalPortMap": {80: 9}, "capture": "off"}))
        config = work / "config.yaml"
        config.write_text(yaml.safe_dump_all([GATEWAY, *[d for i in range(args.n) for d in service(i)]]))
        up = subprocess.Popen([sys.executable, "-c", TRACED_UP, "up", "--mesh", str(work / "mesh.yaml")], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            runtime = work / "state" / "run" / "runtime.json"
            deadline = time.monotonic() + 120
            while not runtime.exists():
                if time.monotonic() > deadline or up.poll() is not None:
                    raise SystemExit("exitgate up did not start")
                time.sleep(0.2)
            wait_idle(up.pid)
            print(f"idle, no services: RSS {rss_mib(up.pid):.0f} MiB", flush=True)
            subprocess.run([sys.executable, "-m", "exitgate.cli.fast", "apply", "-f", str(config)], env=env,
                           check=True, capture_output=True)
            wait_idle(up.pid)
            print(f"idle after the push of {args.n:,} services: RSS {rss_mib(up.pid):.0f} MiB", flush=True)
            os.kill(up.pid, signal.SIGUSR1)
            deadline = time.monotonic() + 300
            while not out.exists() and time.monotonic() < deadline:
                time.sleep(0.5)
            print(out.read_text() if out.exists() else "no snapshot of the holders within 300 s")
        finally:
            stop_up(up)


if __name__ == "__main__":
    main()

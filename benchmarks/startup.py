"""Start-up time and resident memory of a govc server holding the benchmark corpus.

    python benchmarks/startup.py [--corpus PATH] [--rounds 5]

Imports the corpus into a fresh data directory (``govc import``), then starts ``govc serve`` on
it several times, timing process start to the first ``200`` from ``/healthz``, and reads the
server's resident memory (VmRSS) once loaded, next to the same server started on an empty data
directory. Reports medians, the memory the repository adds per stored object, and that memory as
a multiple of the packed size on disk.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYTHON = HERE.parent / ".venv" / "bin" / "python"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def start(data: Path) -> tuple[float, int]:
    """Seconds from exec to ready, and RSS (KiB) once ready."""
    port = free_port()
    began = time.monotonic()
    proc = subprocess.Popen(
        [str(PYTHON), "-m", "govc", "serve", "--data", str(data), "--port", str(port), "-q"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError("govc exited during start-up") from None
                time.sleep(0.01)
        ready = time.monotonic() - began
        time.sleep(0.2)
        return ready, rss_kib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    corpus = args.corpus
    if corpus is None:
        corpus = HERE / ".work" / "corpus-c3000-s1-py3.11.git"
        if not corpus.exists():
            subprocess.run([str(PYTHON), str(HERE / "corpus.py"), str(corpus)], check=True)
    work = Path(tempfile.mkdtemp(prefix="govc-startup-"))
    try:
        empty, loaded = work / "empty", work / "loaded"
        subprocess.run([str(PYTHON), "-m", "govc", "import", str(corpus), "--data", str(loaded),
                        "--name", "corpus"], check=True, stdout=subprocess.DEVNULL)
        packed = sum(p.stat().st_size for p in (loaded / "repos").rglob("*.pack"))
        objects = int(subprocess.run(["git", "-C", str(corpus), "count-objects", "-v"], capture_output=True,
                                     text=True, check=True).stdout.split("in-pack: ")[1].split()[0])
        samples = {"empty": [start(empty) for _ in range(args.rounds)],
                   "loaded": [start(loaded) for _ in range(args.rounds)]}
        t_empty = statistics.median(s[0] for s in samples["empty"])
        t_loaded = statistics.median(s[0] for s in samples["loaded"])
        rss_empty = statistics.median(s[1] for s in samples["empty"])
        rss_loaded = statistics.median(s[1] for s in samples["loaded"])
        added = (rss_loaded - rss_empty) * 1024
        result = {
            "corpus": str(corpus), "objects": objects, "packed_bytes": packed,
            "startup_empty_s": round(t_empty, 3), "startup_loaded_s": round(t_loaded, 3),
            "load_s": round(t_loaded - t_empty, 3),
            "rss_empty_mib": round(rss_empty / 1024, 1), "rss_loaded_mib": round(rss_loaded / 1024, 1),
            "rss_added_bytes_per_object": round(added / objects, 1),
            "rss_added_over_packed": round(added / packed, 2),
        }
        print(json.dumps(result, indent=2))
        out = HERE / "results"
        out.mkdir(exist_ok=True)
        (out / "startup.json").write_text(json.dumps(result, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("GIT_CONFIG_NOSYSTEM", "1")
    sys.exit(main())

"""Side-by-side benchmark: govc vs. git http-backend (lighttpd) vs. dulwich, interleaved.

Usage::

    python benchmarks/run.py [--rounds 5] [--corpora default,big] [--only clone,fetch,push] [--quick]

Builds (and caches under ``benchmarks/.work/``) the deterministic corpora if needed, and for each
corpus starts the three servers on free local ports, runs every workload against every server in
each round with the server order rotated between rounds, and writes
``benchmarks/results/latest.md`` and ``latest.json``.  A server that fails is reported as
'failed' with the tail of its error; the run itself never stops because of it.  See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import atexit
import json
import shutil
import signal
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling modules when run as a script

import corpus as corpus_mod
from report import Results, machine_info, markdown, server_info, summarize
from servers import (
    REPO_ROOT,
    SERVER_NAMES,
    Server,
    default_govc_python,
    make_servers,
)
from workloads import Context, Sample, Workload, select

BENCH_DIR = Path(__file__).resolve().parent
WORK_DIR = BENCH_DIR / ".work"
RESULTS_DIR = BENCH_DIR / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; defaults give the standard 5-round comparison."""
    p = argparse.ArgumentParser(description="govc vs git http-backend vs dulwich")
    p.add_argument("--rounds", type=int, default=None,
                   help="timed rounds (default 5; 3 on the big corpus; 2 with --quick)")  # fmt: skip
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed rounds first (default 1; 0 with --quick)")  # fmt: skip
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: 2 rounds, no warm-up, 8 concurrent clones, default corpus")  # fmt: skip
    p.add_argument("--corpora", default=None,
                   help="default, big or both: default,big (unless --quick, --corpus or --big)")  # fmt: skip
    p.add_argument("--dulwich-concurrency", action="store_true",
                   help="also run concurrent clones against dulwich (slow: it packs each anew)")  # fmt: skip
    p.add_argument("--corpus", type=Path, help="bare repo to serve (built there if missing)")
    p.add_argument("--commits", type=int, default=corpus_mod.DEFAULT_COMMITS,
                   help="corpus size when building the default cached corpus")  # fmt: skip
    p.add_argument("--seed", type=int, default=corpus_mod.DEFAULT_SEED)
    p.add_argument("--big", action="store_true",
                   help=f"only the {corpus_mod.BIG_COMMITS}-commit corpus (>100k objects)")  # fmt: skip
    p.add_argument("--only", help="workloads by name or prefix, e.g. clone,fetch,push-small")
    p.add_argument("--servers", default=",".join(SERVER_NAMES), help="subset of servers")
    p.add_argument("--timeout", type=float, default=300.0, help="per git command, seconds")
    p.add_argument("--govc-python", default=default_govc_python(), help="venv python with govc")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="where latest.md/json go")
    p.add_argument("--keep", action="store_true", help="keep the scratch dir (debugging)")
    return p.parse_args(argv)


def log(message: str) -> None:
    """Progress goes to stderr so stdout carries only the final Markdown table."""
    print(message, file=sys.stderr, flush=True)


def ensure_corpus(path: Path | None, commits: int, seed: int) -> Path:
    """Use ``path`` (or the cached default), building it deterministically if missing."""
    if path is None:
        version = sysconfig.get_python_version()
        path = WORK_DIR / f"corpus-c{commits}-s{seed}-py{version}.git"
    path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    if not (path / "HEAD").exists():
        log(f"building corpus {path} ({commits} commits, seed {seed}) ...")
        started = time.monotonic()
        objects, size = corpus_mod.build(path, commits, seed)
        log(f"  {objects} objects, {size / 2**20:.1f} MiB pack in {time.monotonic() - started:.1f}s")
    return path


def rotated(servers: list[Server], rnd: int) -> list[Server]:
    """Server order for a round: rotate so no server always runs first (cache effects)."""
    k = rnd % len(servers)
    return servers[k:] + servers[:k]


def describe(sample: Sample) -> str:
    """One progress word per measurement."""
    if sample.seconds is not None:
        return f"{sample.seconds:.3f}s"
    return "FAILED: " + (sample.error or "").strip().splitlines()[0][:160]


def measure_all(
    workloads: list[Workload], servers: list[Server], ctx: Context, rounds: int, warmup: int,
    skip: set[tuple[str, str]],
) -> Results:
    """Run every workload on every server, round by round; warm-up rounds are discarded.
    ``skip`` holds (workload, server) pairs not to run at all."""
    results: Results = {w.name: {s.name: [] for s in servers} for w in workloads}
    for rnd in range(1 - warmup, rounds + 1):
        label = f"round {rnd}/{rounds}" if rnd > 0 else "warm-up"
        for workload in workloads:
            for server in rotated(servers, rnd):
                if (workload.name, server.name) in skip:
                    continue
                sample = workload.execute(ctx, server, rnd + warmup)
                log(f"[{label}] {workload.name:<11} {server.name:<13} {describe(sample)}")
                if rnd > 0:
                    results[workload.name][server.name].append(sample)
    return results


def stop_all(servers: list[Server]) -> None:
    """Stop every server we started (idempotent; also registered with atexit)."""
    for server in servers:
        server.stop()


def start_all(servers: list[Server]) -> None:
    """Start and seed servers one by one, logging failures without aborting."""
    for server in servers:
        started = time.monotonic()
        server.start()
        status = "ok" if server.error is None else "FAILED: " + server.error.splitlines()[0]
        log(f"started {server.name} at {server.url('corpus')} in "
            f"{time.monotonic() - started:.1f}s: {status}")  # fmt: skip


def corpus_facts(path: Path, ctx: Context) -> dict[str, Any]:
    """Corpus identity for the report: objects, pack size, main's id."""
    objects, size = corpus_mod.describe(path)
    return {"corpus": str(path), "corpus_objects": objects, "corpus_pack_bytes": size,
            "corpus_main": ctx.main}  # fmt: skip


def write_outputs(report: dict[str, Any], out: Path) -> str:
    """Write latest.md and latest.json; return the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(report)
    (out / "latest.md").write_text(text)
    (out / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    return text


def benchmark(
    args: argparse.Namespace, corpus: Path, scratch: Path, rounds: int, warmup: int
) -> dict[str, Any]:
    """Prepare clients, start servers, measure, and summarise one corpus."""
    names = [n.strip() for n in args.servers.split(",") if n.strip()]
    servers = make_servers(names, scratch / "servers", corpus, args.timeout, args.govc_python)
    atexit.register(stop_all, servers)
    try:
        ctx = Context(corpus, scratch / "client", args.timeout)
        ctx.scratch.mkdir(parents=True)
        ctx.load()
        workloads = select(args.only, concurrency_levels(args))
        for workload in workloads:
            workload.prepare(ctx)
        start_all(servers)
        skip = set()
        if not args.dulwich_concurrency:
            skip = {(w.name, "dulwich") for w in workloads if w.name in ("clone-8", "clone-32")}
        results = measure_all(workloads, servers, ctx, rounds, warmup, skip)
        return {
            "run": {"rounds": rounds, "warmup": warmup,
                    "servers": [s.name for s in servers], **corpus_facts(corpus, ctx)},
            "servers": server_info(servers),
            "workloads": summarize(workloads, results),
        }  # fmt: skip
    finally:
        stop_all(servers)


def concurrency_levels(args: argparse.Namespace) -> tuple[int, ...]:
    """How many simultaneous clones the concurrency workloads start."""
    return (8,) if args.quick else (8, 32)


def corpora(args: argparse.Namespace) -> list[tuple[Path | None, int]]:
    """(path or None for the cached default, commits) of each corpus to measure."""
    if args.corpus is not None:
        return [(args.corpus, args.commits)]
    if args.big:
        return [(None, corpus_mod.BIG_COMMITS)]
    chosen = args.corpora or ("default" if args.quick else "default,big")
    out: list[tuple[Path | None, int]] = []
    for name in (c.strip() for c in chosen.split(",")):
        if name == "default":
            out.append((None, args.commits))
        elif name == "big":
            out.append((None, corpus_mod.BIG_COMMITS))
        elif name:
            raise SystemExit(f"unknown corpus {name!r}: choose default and/or big")
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point: everything we start is stopped on exit, error, Ctrl-C or SIGTERM."""
    args = parse_args(argv)
    names = [n.strip() for n in args.servers.split(",") if n.strip()]
    unknown = set(names) - set(SERVER_NAMES)
    if unknown or not names:
        raise SystemExit(f"unknown servers {sorted(unknown)}; choose from {SERVER_NAMES}")
    select(args.only, concurrency_levels(args))  # reject a bad --only before building corpora
    plan = [(ensure_corpus(path, commits, args.seed), commits) for path, commits in corpora(args)]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parts = []
    for corpus_path, commits in plan:
        default_rounds = 2 if args.quick else (3 if commits >= corpus_mod.BIG_COMMITS else 5)
        rounds = args.rounds if args.rounds is not None else default_rounds
        warmup = args.warmup if args.warmup is not None else (0 if args.quick else 1)
        log(f"== corpus {corpus_path.name}: {rounds} rounds + {warmup} warm-up")
        scratch = Path(tempfile.mkdtemp(prefix="run-", dir=WORK_DIR))
        try:
            parts.append(benchmark(args, corpus_path, scratch, rounds, warmup))
        finally:
            if args.keep:
                log(f"scratch kept at {scratch}")
            else:
                shutil.rmtree(scratch, ignore_errors=True)
    report = {
        "machine": machine_info(REPO_ROOT),
        "command": " ".join(["make bench" if argv is None and len(sys.argv) == 1 else
                             "python benchmarks/run.py", *(sys.argv[1:] if argv is None else argv)]),
        "corpora": parts,
    }  # fmt: skip
    print(write_outputs(report, args.out), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

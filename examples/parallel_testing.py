"""Parallel testing in isolated realities, and promotion of the winner.

Eight candidate service configurations are tried at once. Each gets its own reality — a ref under
``refs/realities/`` created, all eight, in one atomic update — and its own thread, which applies
the candidate, reads it back and runs the "tests" against what *its* reality holds. Realities are
isolated: every thread writes the same path, yet none sees another's change and ``main`` is
untouched until the best passing candidate is promoted with ``set_main``.

The repository here is durable (a data directory in a temporary folder) while the realities are
*ephemeral*: they live in memory only, so trying eight (or eight thousand) candidates writes
nothing to disk; promotion persists exactly the winner's objects. Reopening the directory shows
it: main has the winning configuration, and no reality survived.

    .venv/bin/python examples/parallel_testing.py
"""

from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import govc

BASE = {"workers": 4, "cache_mb": 256, "db_pool": 10, "timeout_s": 30}

# Each candidate overrides a few settings of BASE.
CANDIDATES: dict[str, dict[str, int]] = {
    "more-workers": {"workers": 8},
    "big-cache": {"cache_mb": 2048},
    "big-pool": {"db_pool": 40},
    "aggressive": {"workers": 16, "db_pool": 32, "timeout_s": 5},
    "balanced": {"workers": 6, "cache_mb": 768, "db_pool": 16},
    "lean": {"workers": 2, "cache_mb": 128},
    "wide": {"workers": 12, "cache_mb": 512, "db_pool": 12},
    "patient": {"timeout_s": 120},
}

HOST_MEMORY_MB = 4096  # the machine the service runs on
DB_MAX_CONNECTIONS = 200  # what the database accepts


def render(settings: dict[str, int], name: str) -> str:
    lines = [f"{key} = {value}" for key, value in sorted(settings.items())]
    lines.append(f"database = test-db-{name}")  # each candidate tests against its own database
    return "\n".join(lines) + "\n"


def parse(text: bytes) -> dict[str, str]:
    return dict(line.split(" = ", 1) for line in text.decode().splitlines())


@dataclass
class Result:
    name: str
    failures: list[str]
    score: float
    isolated: bool


def run_tests(reality: govc.Reality, name: str) -> Result:
    """Apply the candidate to its own reality, then test what that reality now holds.

    This runs on a worker thread; the commit goes through the repository's one write path with a
    compare-and-swap on this reality's ref only, so the threads never contend for the same ref."""
    settings = {**BASE, **CANDIDATES[name]}
    reality.apply({"service.conf": render(settings, name)}, f"try {name}",
                  author=f"ci <ci+{name}@example.com>")

    seen = parse(reality.read("service.conf"))  # read back from the reality, not from `settings`
    conf = {k: int(v) for k, v in seen.items() if k != "database"}
    failures = []
    if conf["workers"] * 150 + conf["cache_mb"] > HOST_MEMORY_MB:
        failures.append("out of memory")
    if conf["workers"] * conf["db_pool"] > DB_MAX_CONNECTIONS:
        failures.append("too many db connections")
    if conf["timeout_s"] < 10:
        failures.append("timeouts under load")
    # A deterministic stand-in for a load test: requests/s from workers, cache hits and pool size.
    cache_boost = 1 + min(conf["cache_mb"], 1024) / 2048
    score = min(conf["workers"], 8) * 110 * cache_boost + min(conf["db_pool"], 20) * 3
    return Result(name, failures, round(score, 1), isolated=seen["database"] == f"test-db-{name}")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="govc-example-") as data:
        repo = govc.Repository.open(data, "service")  # durable: main survives a restart
        with repo.transaction("main", author="ops <ops@example.com>") as tx:
            tx.write("service.conf", render(BASE, "shared"))
            tx.commit("Baseline configuration")
        print(f"main: {parse(repo.reality('main').read('service.conf'))}")

        names = sorted(CANDIDATES)
        realities = repo.parallel_realities(names, base="main", ephemeral=True)
        print(f"\ncreated {len(realities)} ephemeral realities in one ref update: "
              f"{', '.join(r.name for r in realities)}")
        print(f"each starts at main: {all(r.head == repo.reality('main').head for r in realities)}")

        # One thread per reality, all applying and testing at the same time.
        with ThreadPoolExecutor(max_workers=len(realities)) as pool:
            results = list(pool.map(run_tests, realities, names))

        print("\nresults:")
        for r in results:
            verdict = "PASS" if not r.failures else "FAIL (" + ", ".join(r.failures) + ")"
            print(f"  {r.name:<13} score {r.score:7.1f}  {verdict}")

        print("\nisolation:")
        print(f"  every reality saw only its own config: {all(r.isolated for r in results)}")
        contents = {reality.read("service.conf") for reality in realities}
        print(f"  distinct service.conf across realities: {len(contents)} of {len(realities)}")
        baseline = render(BASE, "shared").encode()
        print(f"  main still has the baseline: {repo.reality('main').read('service.conf') == baseline}")

        passing = [r for r in results if not r.failures]
        winner = max(passing, key=lambda r: r.score)
        promoted = repo.set_main(winner.name)  # main moves to the winner's tip (compare-and-swap)
        print(f"\npromoted {winner.name!r} (score {winner.score}): main is now {promoted.message.strip()!r}")
        print(f"main: {parse(repo.reality('main').read('service.conf'))}")

        # Reopen the data directory, as a restarted server would.
        reopened = govc.Repository.open(data, "service")
        print("\nafter reopening the data directory:")
        print(f"  main: {reopened.log('main')[0].message.strip()!r} by {reopened.log('main')[0].author}")
        print(f"  realities on disk: {len(reopened.realities())} (they were ephemeral)")


if __name__ == "__main__":
    main()

"""A/B realities: run two configurations side by side, promote the winner, merge, see conflicts.

1. Two realities branch off ``main``: ``config-a`` turns on compression, ``config-b`` grows the cache.
2. "Traffic" is split between them (a deterministic stand-in for real measurements).
3. The winner becomes the new main with ``set_main`` — promotion is a compare-and-swap of main
   onto the winner's tip, nothing is copied.
4. The loser's change is still worth having, so it is merged with ``repo.merge``: a real three-way
   merge, here a clean one, recorded as a commit with two parents.
5. A third reality changed the same line the winner did: ``repo.merge`` returns the conflicts as
   data (path, kind, the three versions, the text with conflict markers) and writes nothing.
6. A hotfix reality made from the current main merges as a fast-forward.

The realities are ordinary (not ephemeral) refs under ``refs/realities/``, so any git client could
fetch them to look at a candidate.

    .venv/bin/python examples/ab_realities.py
"""

from __future__ import annotations

import govc

BASELINE = """\
# app.conf
workers = 4

cache = lru:256mb

compression = off

timeout = 30s

log_level = info
"""


def setting(reality: govc.Reality, key: str) -> str:
    for line in reality.read("app.conf").decode().splitlines():
        if line.startswith(f"{key} = "):
            return line.split(" = ", 1)[1]
    raise KeyError(key)


def edit(reality: govc.Reality, key: str, value: str, author: str) -> govc.Commit:
    """Change one line of app.conf in this reality only."""
    lines = reality.read("app.conf").decode().splitlines(keepends=True)
    new = [f"{key} = {value}\n" if line.startswith(f"{key} = ") else line for line in lines]
    return reality.apply({"app.conf": "".join(new)}, f"{key} = {value}", author=author)


def megabytes(size: str) -> int:
    """``256mb`` -> 256, ``1gb`` -> 1024."""
    return int(size[:-2]) * 1024 if size.endswith("gb") else int(size.removesuffix("mb"))


def measure(reality: govc.Reality) -> dict[str, float]:
    """Pretend to route half the traffic to this reality and measure it: p99 latency falls with a
    bigger cache and with compression (less to send), errors grow when the cache is tiny."""
    cache_mb = megabytes(setting(reality, "cache").removeprefix("lru:"))
    p99 = 180.0 - min(cache_mb, 1024) / 1024 * 70 - (25 if setting(reality, "compression") != "off" else 0)
    errors = 0.4 if cache_mb < 512 else 0.1
    return {"p99_ms": round(p99, 1), "error_pct": errors}


def show(label: str, reality: govc.Reality) -> None:
    keys = ("workers", "cache", "compression", "log_level")
    print(f"  {label:<9} " + "  ".join(f"{k}={setting(reality, k)}" for k in keys))


def main() -> None:
    repo = govc.Repository("app")
    with repo.transaction("main", author="ops <ops@example.com>") as tx:
        tx.write("app.conf", BASELINE)
        tx.commit("Baseline")
    main_reality = repo.reality("main")

    print("== 1. Two realities from main")
    a, b = repo.parallel_realities(["config-a", "config-b"])
    edit(a, "compression", "gzip", "alice <alice@example.com>")
    edit(b, "cache", "lru:1gb", "bob <bob@example.com>")
    print(f"  refs: {a.ref}, {b.ref}")
    show("main", main_reality)
    show("config-a", a)
    show("config-b", b)

    print("\n== 2. 50/50 traffic split")
    metrics = {r.name: measure(r) for r in (a, b)}
    for name, m in metrics.items():
        print(f"  {name:<9} p99 {m['p99_ms']:6.1f} ms   errors {m['error_pct']:.1f}%")
    winner_name = min(metrics, key=lambda n: (metrics[n]["error_pct"], metrics[n]["p99_ms"]))
    winner, loser = (a, b) if winner_name == a.name else (b, a)
    print(f"  winner: {winner.name}")

    print("\n== 3. Promote the winner with set_main")
    promoted = repo.set_main(winner)
    print(f"  main -> {winner.name}'s tip ({promoted.message.strip()!r} by {promoted.author})")
    print(f"  main is at the winner's commit: {main_reality.head == winner.head}")
    show("main", main_reality)

    print(f"\n== 4. Merge the loser ({loser.name}) too: its change touches another line")
    outcome = repo.merge(loser, author="ops <ops@example.com>")
    assert outcome.clean and outcome.commit is not None
    print(f"  clean: {outcome.clean}, fast-forward: {outcome.fast_forward}, "
          f"parents: {len(outcome.commit.parents)}, message: {outcome.commit.message.strip()!r}")
    show("main", main_reality)

    print("\n== 5. A conflicting change: config-c also changed the cache line, from the old baseline")
    (c,) = repo.parallel_realities(["config-c"], base=a.name)  # a's tip still is the baseline + gzip
    edit(c, "cache", "lru:512mb", "carol <carol@example.com>")
    before = main_reality.head
    outcome = repo.merge(c)
    print(f"  clean: {outcome.clean}, commit: {outcome.commit}")
    for conflict in outcome.conflicts:
        print(f"  conflict in {conflict.path} ({conflict.kind})")
        print(f"    base:   {line_of(conflict.base, 'cache')}")
        print(f"    ours:   {line_of(conflict.ours, 'cache')}   (main)")
        print(f"    theirs: {line_of(conflict.theirs, 'cache')}   ({c.name})")
        print("    merged text with markers:")
        for line in (conflict.merged or b"").decode().splitlines():
            print(f"      | {line}".rstrip())
    print(f"  main unchanged: {main_reality.head == before}")

    print("\n== 6. A hotfix from the current main merges as a fast-forward")
    (hotfix,) = repo.parallel_realities(["hotfix"])
    edit(hotfix, "log_level", "warn", "ops <ops@example.com>")
    outcome = repo.merge(hotfix)
    print(f"  clean: {outcome.clean}, fast-forward: {outcome.fast_forward}, "
          f"main at hotfix: {main_reality.head == hotfix.head}")
    show("main", main_reality)

    print("\n== History of main")
    for commit in repo.log("main"):
        print(f"  {commit.message.strip():<34} {commit.author}  ({len(commit.parents)} parent(s))")


def line_of(content: bytes | None, key: str) -> str:
    if content is None:
        return "(no file)"
    return next((line for line in content.decode().splitlines() if line.startswith(key)), "(no line)")


if __name__ == "__main__":
    main()

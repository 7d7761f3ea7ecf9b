"""Distributed reality sync: node B keeps node A's "experiment" reality in step, and sends its own
work back.

Two govc servers run in this process, each serving its own repository: node A, where the
experiment happens, and node B, a second site that follows it. ``repo_b.subscribe(url, reality)``
fetches the reality with Git's own protocol and then fetches again whenever node A's event stream
(``/infra.git/events``) announces a change, so node B, its watchers and its Git clients see each
change within moments. ``repo_b.publish(url, reality)`` is the other direction: a fast-forward push
with compare-and-swap on node A's current value.

Nothing is ever overwritten silently: local commits node A lacks make the follower report a
conflict (and keep following), and a publish to a node A that moved on is refused until node B
has merged what node A has (the follower keeps it at ``refs/remotes/<node>/experiment``).

The output has no object ids, ports or times, so it is the same on every run.

    .venv/bin/python examples/distributed/follow_reality.py
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import govc
from govc.follow import FollowConflict, Follower, PublishConflict, Remote, ls_remote


def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for something another thread (the follower, a server) does."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the nodes did not get in step")
        time.sleep(0.01)


def conf(reality: govc.Reality) -> str:
    return reality.read("app.conf").decode().strip().replace("\n", ", ")


def main() -> None:
    # The follower also logs each conflict as a warning; here the script prints its own account.
    logging.getLogger("govc.follow").setLevel(logging.ERROR)
    print("== 1. Node A: a baseline on main and a reality 'experiment' from it")
    repo_a = govc.Repository("infra")
    with repo_a.transaction("main", author="ops <ops@example.com>") as tx:
        tx.write("app.conf", "workers = 4\n")
        tx.commit("Baseline")
    repo_a.set_head("refs/heads/main")
    experiment_a = repo_a.parallel_reality("experiment")
    experiment_a.apply({"app.conf": "workers = 8\n"}, "Try eight workers", author="alice <alice@example.com>")
    node_a = govc.Server({"infra": repo_a})
    url_a = f"{node_a.serve_in_thread()}/infra.git"
    repo_b = govc.Repository("infra")
    node_b = govc.Server({"infra": repo_b})
    url_b = f"{node_b.serve_in_thread()}/infra.git"
    print(f"  node A's experiment: {conf(experiment_a)}")

    print("\n== 2. Node B subscribes to node A's experiment")
    changes: list[str] = []
    watcher = repo_b.watch(lambda e: changes.append(f"{e.branch}: {', '.join(e.paths)} ({e.source})"),
                           branches="experiment")
    conflicts: list[FollowConflict] = []
    follower: Follower = repo_b.subscribe(url_a, "experiment", on_conflict=conflicts.append)
    with follower:
        follower.wait_synced()
        experiment_b = repo_b.reality("experiment")
        print(f"  node B's experiment: {conf(experiment_b)} (same commit as node A: "
              f"{experiment_b.head == experiment_a.head})")
        tracking = (follower.tracking_ref or "").replace(follower.remote_name, "<node A>")
        print(f"  following {follower.remote_ref} into {follower.local_ref}; node A's tip is also "
              f"kept at {tracking}")
        advertised = ls_remote(Remote.parse(url_b), ["refs/realities/"])
        print(f"  node B's server now advertises: {sorted(advertised)}")

        print("\n== 3. Alice changes the experiment on node A; node B hears of it from the event stream")
        experiment_a.apply({"app.conf": "workers = 8\ncache = 1g\n"}, "Add a cache",
                           author="alice <alice@example.com>")
        until(lambda: experiment_b.head == experiment_a.head)
        watcher.drain()
        print(f"  node B's experiment: {conf(experiment_b)}")
        print(f"  node B's watcher saw: {changes[-1]}")

        print("\n== 4. Bob commits on node B; the follower reports it and overwrites nothing")
        experiment_b.apply({"limits.conf": "max_conn = 200\n"}, "Connection limit",
                           author="bob <bob@example.com>")
        bobs = experiment_b.head
        until(lambda: follower.state == "conflict")
        print(f"  follower state: {follower.state}; node B ahead of node A: {conflicts[-1].ahead}")
        try:
            follower.wait_synced()
        except FollowConflict:
            print("  wait_synced() raises FollowConflict; Bob's commit is still there: "
                  f"{experiment_b.head == bobs}")

        print("\n== 5. Bob publishes to node A: a fast-forward there, and the conflict is resolved")
        result = repo_b.publish(url_a, "experiment")
        print(f"  publish: {result.status} {result.ref}")
        follower.wait_synced()
        print(f"  node A's experiment: {conf(experiment_a)}; limits.conf there: "
              f"{experiment_a.exists('limits.conf')}")
        print(f"  follower state: {follower.state}")

        print("\n== 6. Bob stops following; both nodes move on: his publish is refused, not forced")
        follower.close()
        experiment_a.apply({"app.conf": "workers = 6\ncache = 1g\n"}, "Six workers after all",
                           author="alice <alice@example.com>")
        experiment_b.apply({"limits.conf": "max_conn = 300\n"}, "Higher limit",
                           author="bob <bob@example.com>")
        try:
            repo_b.publish(url_a, "experiment")
        except PublishConflict as e:
            print("  publish refused: PublishConflict (node A has commits node B has not fetched: "
                  f"{e.remote == experiment_a.head})")

    print("\n== 7. Bob follows again, merges node A's tip (the tracking ref) and publishes the merge")
    with repo_b.subscribe(url_a, "experiment", on_conflict=conflicts.append) as follower:
        until(lambda: follower.state == "conflict")
        print(f"  follower state: {follower.state}; diverged: {not conflicts[-1].ahead}")
        merged = repo_b.merge(follower.tracking_ref or "", into="experiment", author="bob <bob@example.com>")
        print(f"  merge: clean={merged.clean}, parents={len(merged.commit.parents) if merged.commit else 0}")
        print(f"  publish: {repo_b.publish(url_a, 'experiment').status}")
        follower.wait_synced()
        print(f"  node A: {conf(experiment_a)}; limits: "
              f"{experiment_a.read('limits.conf').decode().strip()}")
        print(f"  same commit on both nodes: {experiment_a.head == repo_b.reality('experiment').head}")
    repo_b.unwatch(watcher)
    node_b.stop()
    node_a.stop()


if __name__ == "__main__":
    main()

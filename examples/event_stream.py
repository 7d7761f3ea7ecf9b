"""Git as an event stream: react to Terraform changes, whoever makes them and however.

Two watchers hang off the repository's one write path:

* ``plan`` only hears about updates that touch ``*.tf`` files (``repo.watch(paths="*.tf")``) and
  would trigger ``terraform plan`` for the branch;
* ``audit`` hears about every ref update and keeps a log.

Changes arrive through the Python API and through a real ``git push`` to an in-process
``govc.Server`` — both produce the same kind of event; ``event.source`` tells them apart and
``event.pusher`` says who moved the ref. A validator (git's pre-receive, in Python) refuses a push
that opens a security group to the world: the client sees the reason and no event is produced.

Watchers run on their own threads (a slow one never delays a push); the script calls
``watcher.drain()`` after each step only so that its output comes out in a stable order.
The git part is skipped when git is not installed.

    .venv/bin/python examples/event_stream.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import govc

audit_log: list[str] = []


def describe(changes: list[govc.FileChange]) -> str:
    return ", ".join(f"{c.kind} {c.path}" for c in changes)


def plan(event: govc.Event) -> None:
    """What a CI hook would do: plan the branch whose Terraform changed."""
    print(f"  [plan] terraform plan on {event.branch!r}: source={event.source} pusher={event.pusher}"
          f" author={event.author}")
    print(f"         .tf changes: {describe(event.changes('*.tf'))}")


def audit(event: govc.Event) -> None:
    """Every ref update, .tf or not, with who made it and how."""
    new = "deleted" if event.new is None else f"{len(event.commits)} new commit(s)"
    audit_log.append(f"{event.source:<5} {event.branch:<12} by {event.pusher:<28} {new}: "
                     f"{describe(event.changes())}")


def world_open_ingress(change: govc.Change) -> None:
    """Refuse Terraform that opens ingress to 0.0.0.0/0 on main (other branches may experiment)."""
    for path, content in change.files.items():
        if path.endswith(".tf") and content is not None and b'"0.0.0.0/0"' in content:
            raise govc.ValidationError(f"{path} opens ingress to 0.0.0.0/0")


def git(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the stock git client with a clean, fixed identity and no user or system config (and no
    HTTP proxy: the server is on this machine)."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GIT_") and "proxy" not in k.lower()},
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "dev", "GIT_AUTHOR_EMAIL": "dev@example.com",
        "GIT_COMMITTER_NAME": "dev", "GIT_COMMITTER_EMAIL": "dev@example.com",
    }
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=check, capture_output=True, text=True,
                           timeout=60)


def push_with_git(repo: govc.Repository, watchers: list[govc.Watcher]) -> None:
    server = govc.Server({"infra": repo})
    url = server.serve_in_thread()  # port 0: a free port; the server runs on a background thread
    try:
        with tempfile.TemporaryDirectory(prefix="govc-example-") as tmp:
            work = Path(tmp) / "infra"
            git("clone", "-q", f"{url}/infra.git", str(work), cwd=Path(tmp))
            print(f"cloned with git: {sorted(p.name for p in work.iterdir() if p.name != '.git')}")

            print("\n-- git push: edit main.tf and add dns.tf on main")
            (work / "main.tf").write_text('resource "aws_instance" "web" { instance_type = "t3.large" }\n')
            (work / "dns.tf").write_text('resource "aws_route53_record" "www" { name = "www" }\n')
            git("add", "-A", cwd=work)
            git("commit", "-q", "-m", "Bigger web instance, DNS record", cwd=work)
            git("push", "-q", "origin", "main", cwd=work)
            drain(watchers)

            print("\n-- git push: a new branch feature/cdn with cdn.tf")
            git("checkout", "-q", "-b", "feature/cdn", cwd=work)
            (work / "cdn.tf").write_text('resource "aws_cloudfront_distribution" "cdn" {}\n')
            git("add", "-A", cwd=work)
            git("commit", "-q", "-m", "CDN in front of web", cwd=work)
            git("push", "-q", "origin", "feature/cdn", cwd=work)
            drain(watchers)

            print("\n-- git push refused by the validator: ingress from 0.0.0.0/0 on main")
            git("checkout", "-q", "main", cwd=work)
            (work / "sg.tf").write_text(
                'resource "aws_security_group" "web" {\n  ingress { cidr_blocks = ["0.0.0.0/0"] }\n}\n')
            git("add", "-A", cwd=work)
            git("commit", "-q", "-m", "Open the web security group", cwd=work)
            refused = git("push", "origin", "main", cwd=work, check=False)
            drain(watchers)
            for line in refused.stderr.splitlines():
                if "[remote rejected]" in line:
                    print(f"  git says: {line.strip()}")
            tip = repo.reality("main").commit
            assert tip is not None
            print(f"  git exit status: {refused.returncode}; main still at {tip.message.strip()!r}")
    finally:
        server.stop()


def drain(watchers: list[govc.Watcher]) -> None:
    for watcher in watchers:
        watcher.drain()


def main() -> None:
    repo = govc.Repository("infra")
    watchers = [repo.watch(plan, paths="*.tf"), repo.watch(audit)]
    repo.validator(world_open_ingress, branches="main")

    print("-- API: the first commit (main.tf, README.md)")
    with repo.transaction("main", author="ops <ops@example.com>") as tx:
        tx.write("main.tf", 'resource "aws_instance" "web" { instance_type = "t3.small" }\n')
        tx.write("README.md", "# infra\n")
        tx.commit("Web server")
    drain(watchers)

    print("\n-- API: README.md only (the plan watcher stays quiet)")
    repo.reality("main").apply({"README.md": "# infra\n\nTerraform for app.example.com\n"}, "Docs",
                               author="ops <ops@example.com>")
    drain(watchers)

    print("\n-- API: automation adds network/vpc.tf")
    vpc = 'resource "aws_vpc" "main" { cidr_block = "10.0.0.0/16" }\n'
    repo.reality("main").apply({"network/vpc.tf": vpc}, "VPC", author="automation <bot@example.com>")
    drain(watchers)

    if shutil.which("git") is None:
        print("\n(git is not installed: skipping the git push part)")
    else:
        print()
        push_with_git(repo, watchers)

    for watcher in watchers:
        repo.unwatch(watcher)  # waits for queued events, then stops the watcher's thread
    print("\naudit log (every ref update, in commit order):")
    for line in audit_log:
        print(f"  {line}")


if __name__ == "__main__":
    main()

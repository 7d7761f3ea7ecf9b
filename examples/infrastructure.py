"""Infrastructure configuration with validation: transactions, a secrets policy, time travel.

An nginx + TLS change is staged in a transaction. A validator — the same kind that vets
``git push`` — refuses any change that puts a plaintext secret into the repository, so the first
attempt is rejected and leaves nothing behind. The corrected change commits atomically. Time
travel then shows the configuration as it was before the change, which is what you want at
3 a.m. when asking "what was deployed when the incident began?".

    .venv/bin/python examples/infrastructure.py
"""

from __future__ import annotations

import re
import time

import govc

OPS = "ops <ops@example.com>"

NGINX_HTTP = """\
server {
    listen 80;
    server_name app.example.com;
    location / { proxy_pass http://127.0.0.1:8000; }
}
"""

NGINX_TLS = """\
server {
    listen 443 ssl;
    server_name app.example.com;
    ssl_certificate     /etc/nginx/ssl/cert.pem;
    ssl_certificate_key /run/secrets/tls.key;
    location / { proxy_pass http://127.0.0.1:8000; }
}
"""

CERT = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUexample\n-----END CERTIFICATE-----\n"
PRIVATE_KEY = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49example\n-----END PRIVATE KEY-----\n"

# Secrets belong in a secret store; the repository may only *refer* to them. A value is a reference
# when it names a vault path, a file under /run/secrets or an environment variable.
SECRET_ASSIGNMENT = re.compile(rb"(?im)^\s*\w*(password|secret|token|api_key)\w*\s*[=:]\s*(?P<value>\S+)")
REFERENCE = re.compile(rb"^(vault:|/run/secrets/|\$\{)")
PRIVATE_KEY_BLOCK = re.compile(rb"-----BEGIN (?:RSA |EC |OPENSSH )?PRIVATE KEY-----")


def no_plaintext_secrets(change: govc.Change) -> None:
    """Veto the change if any file it adds or modifies holds a secret in clear.

    Validators see only what the change touches (``change.files``), so the check costs the size of
    the change, not of the repository; raising :class:`govc.ValidationError` refuses it, and the
    message is what a ``git push`` user would read on their ``remote:`` line."""
    problems: list[str] = []
    for path, content in sorted(change.files.items()):
        if content is None:  # a removed file cannot leak anything
            continue
        if PRIVATE_KEY_BLOCK.search(content):
            problems.append(f"{path}: private key in plaintext")
        for match in SECRET_ASSIGNMENT.finditer(content):
            if not REFERENCE.match(match["value"]):
                problems.append(f"{path}: plaintext {match[1].decode().lower()}")
    if problems:
        raise govc.ValidationError("; ".join(problems))


def settings(workers: int, password: str = "vault:secret/app/db#password") -> str:
    """The application's environment file; the password is a secret-store reference by default."""
    return f"WORKERS={workers}\nDB_HOST=db.internal\nDB_PASSWORD={password}\n"


def listen_line(conf: bytes) -> str:
    return next(line.strip() for line in conf.decode().splitlines() if "listen" in line)


def show_main(repo: govc.Repository, label: str) -> None:
    main = repo.reality("main")
    commit = main.commit
    assert commit is not None  # main has commits from step 1 on
    print(f"{label}: main has {sorted(main.files())}, last commit {commit.message.strip()!r}")


def main() -> None:
    repo = govc.Repository("infra")  # pure memory: nothing here touches the disk

    print("== 1. The starting configuration")
    with repo.transaction("main", author=OPS) as tx:
        tx.write("nginx/app.conf", NGINX_HTTP)
        tx.write("app/settings.env", "WORKERS=4\nDB_HOST=db.internal\n")
        tx.commit("Serve app.example.com over HTTP")
    show_main(repo, "initial")

    # The moment before the TLS change: what time travel will return to later. (Reflog times are
    # sub-second; the short sleep only makes "before" unambiguous on coarse clocks.)
    before_change = time.time()
    time.sleep(0.01)

    print("\n== 2. A policy: no plaintext secrets (registered as a validator)")
    repo.validator(no_plaintext_secrets)  # applies to API commits, merges and git pushes alike

    print("\n== 3. The TLS change, first attempt: the key and a DB password committed in clear")
    try:
        with repo.transaction("main", author=OPS) as tx:
            tx.write("nginx/app.conf", NGINX_TLS)
            tx.write("nginx/ssl/cert.pem", CERT)
            tx.write("nginx/ssl/key.pem", PRIVATE_KEY)
            tx.write("app/settings.env", settings(4, password="hunter2"))
            print(f"staged: {sorted(tx.changes['refs/heads/main'])}")
            tx.validate()  # optional: commit() runs the validators again anyway
            tx.commit("Enable TLS")
    except govc.ValidationError as refusal:
        print(f"rejected: {refusal}")
    # The rejected transaction wrote nothing: no ref moved, no new file is visible.
    show_main(repo, "after the rejection")

    print("\n== 4. Second attempt: the key and the password are references to the secret store")
    with repo.transaction("main", author=OPS) as tx:
        tx.write("nginx/app.conf", NGINX_TLS)
        tx.write("nginx/ssl/cert.pem", CERT)
        tx.write("app/settings.env", settings(4))
        tx.validate()
        print("validate(): ok")
        commit = tx.commit("Enable TLS (secrets from vault)")
    print(f"committed {commit.message.strip()!r} by {commit.author}, {len(commit.parents)} parent")
    show_main(repo, "after the commit")

    print("\n== 5. Compare-and-swap: two transactions that began from the same main")
    first = repo.transaction("main", author="alice <alice@example.com>")
    second = repo.transaction("main", author="bob <bob@example.com>")
    first.write("app/settings.env", settings(8))
    second.write("app/settings.env", settings(2))
    first.commit("alice: 8 workers")
    try:
        second.commit("bob: 2 workers")
    except govc.ConflictError as conflict:
        print(f"bob's commit refused: {conflict}")
    second.rollback()
    # With rebase=True a transaction whose ref moved is replayed on the new tip, provided none of
    # its paths changed there: carol's edit touches another file, so it goes through.
    carol = repo.transaction("main", author="carol <carol@example.com>", rebase=True)
    carol.write("nginx/ssl/cert.pem", CERT.replace("example", "renewed"))
    with repo.transaction("main", author="dave <dave@example.com>") as dave:
        dave.write("app/settings.env", settings(6))
        dave.commit("dave: 6 workers")
    rebased = carol.commit("carol: renew the certificate")
    parent = repo.log("main")[1]
    assert rebased.parents == (parent.oid,)
    print(f"carol's commit (rebase=True) was replayed on top of {parent.message.strip()!r}")
    print(f"WORKERS on main: {repo.reality('main').read('app/settings.env').splitlines()[0].decode()}")

    print("\n== 6. Time travel to before the TLS change")
    then = repo.time_travel(before_change)
    print(f"then: files {then.files()}")
    print(f"then: last commit {then.last_commit().message.strip()!r} by {then.last_commit().author}")
    print(f"then: nginx/app.conf has {listen_line(then.read('nginx/app.conf'))!r}")
    print(f"now:  nginx/app.conf has {listen_line(repo.reality('main').read('nginx/app.conf'))!r}")
    try:
        then.read("nginx/ssl/cert.pem")
    except KeyError:
        print("then: nginx/ssl/cert.pem did not exist yet")

    print("\n== 7. History of main, newest first")
    for entry in repo.log("main"):
        print(f"  {entry.author:<28} {entry.message.strip()}")


if __name__ == "__main__":
    main()

"""Turning samples into medians, paired ratios and a Markdown/JSON report.

Absolute times on shared machines drift by tens of percent between minutes, so the headline
numbers are *ratios*: within a round the servers run back to back on the same workload, we divide
govc's time by each baseline's time of that same round, and report the median of those per-round
ratios.  Medians of the times themselves are shown for context.
"""

from __future__ import annotations

import os
import platform
import re
import statistics
import time
from pathlib import Path
from typing import Any

from gitcmd import CommandError, git, run
from servers import LOG_MARKER, Server, lighttpd_version
from workloads import Sample, Workload

SUBJECT = "govc"
BASELINES = ("http-backend", "dulwich")
MAX_ERRORS_SHOWN = 2

Results = dict[str, dict[str, list[Sample]]]  # workload -> server -> one sample per round


#: The issue's targets for govc ÷ http-backend (median ratio must be at most this).
TARGETS: dict[str, float] = {
    "clone-cold": 1.0,
    "clone-warm": 0.8,
    "clone-8": 1.0,
    "clone-32": 1.0,
    "fetch-noop": 1.0,
    "fetch-1": 1.0,
    "fetch-100": 1.0,
    "push-full": 1.2,
    "push-small": 1.0,
}
BYTES_TARGET = 1.1  # pack bytes of a full clone, govc ÷ http-backend
MEMORY_TARGET = 2.0  # RSS a loaded repository adds ÷ its packed size


def median_or_none(values: list[float]) -> float | None:
    """Median, or ``None`` when nothing succeeded."""
    return statistics.median(values) if values else None


def per_round_ratios(subject: list[Sample], baseline: list[Sample]) -> list[float]:
    """subject/baseline for each round where both succeeded (none if one side never ran)."""
    if len(subject) != len(baseline):
        return []
    return [
        a.seconds / b.seconds
        for a, b in zip(subject, baseline, strict=True)
        if a.seconds is not None and b.seconds is not None and b.seconds > 0
    ]


def paired_ratio(subject: list[Sample], baseline: list[Sample]) -> float | None:
    """Median over rounds of subject/baseline, using only rounds where both succeeded."""
    return median_or_none(per_round_ratios(subject, baseline))


def error_key(error: str) -> str:
    """What makes two errors 'the same': the message without round numbers or the log tail."""
    return re.sub(r"-r\d+\b", "-rN", error.split(LOG_MARKER, 1)[0])


def distinct_errors(samples: list[Sample]) -> list[str]:
    """The different errors seen (one representative each), first occurrence first."""
    seen: dict[str, str] = {}
    for sample in samples:
        if sample.error is not None:
            seen.setdefault(error_key(sample.error), sample.error)
    return list(seen.values())


def summarize_server(samples: list[Sample]) -> dict[str, Any]:
    """Per-server statistics of one workload."""
    times = [s.seconds for s in samples if s.seconds is not None]
    sizes = [s.bytes_received for s in samples if s.bytes_received is not None]
    cpus = [s.cpu_seconds for s in samples if s.seconds is not None and s.cpu_seconds is not None]
    extras: dict[str, list[Any]] = {}
    for sample in samples:
        for key, value in sample.extra.items():
            extras.setdefault(key, []).append(value)
    return {
        "median_s": median_or_none(times),
        "min_s": min(times) if times else None,
        "max_s": max(times) if times else None,
        "samples_s": [s.seconds for s in samples],
        "cpu_median_s": median_or_none(cpus),
        "cpu_samples_s": [s.cpu_seconds for s in samples],
        "failed": sum(1 for s in samples if s.seconds is None),
        "errors": distinct_errors(samples),
        "bytes_received": int(statistics.median(sizes)) if sizes else None,
        "extra": extras,
    }


def summarize(workloads: list[Workload], results: Results) -> list[dict[str, Any]]:
    """JSON-ready statistics for every workload, including govc's paired ratios."""
    summary = []
    for workload in workloads:
        per_server = results[workload.name]
        ratios: dict[str, dict[str, float | None]] = {}
        if SUBJECT in per_server:
            for base in BASELINES:
                if base in per_server:
                    values = per_round_ratios(per_server[SUBJECT], per_server[base])
                    ratios[f"{SUBJECT}/{base}"] = {
                        "median": median_or_none(values),
                        "min": min(values) if values else None,
                        "max": max(values) if values else None,
                    }
        summary.append(
            {
                "name": workload.name,
                "description": workload.description,
                "target": TARGETS.get(workload.name),
                "servers": {name: summarize_server(s) for name, s in per_server.items()},
                "ratios": ratios,
            }
        )
    return summary


def first_line(cmd: list[str]) -> str:
    """First output line of a version command, or 'unknown'."""
    try:
        return run(cmd, timeout=30).stdout.strip().splitlines()[0]
    except (CommandError, OSError, IndexError):
        return "unknown"


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (Linux), for reading results from other machines."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def govc_revision(repo: Path) -> str:
    """Commit of the govc checkout being measured (plus '+dirty' for uncommitted changes)."""
    try:
        head = git("rev-parse", "--short", "HEAD", cwd=repo).strip()
    except CommandError:
        return "no commits yet"
    dirty = git("status", "--porcelain", "--untracked-files=no", cwd=repo).strip()
    return head + ("+dirty" if dirty else "")


def machine_info(repo: Path) -> dict[str, Any]:
    """Everything needed to judge whether two result files are comparable."""
    import dulwich

    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "kernel": platform.release(),
        "git": first_line(["git", "--version"]),
        "python": platform.python_version(),
        "dulwich": ".".join(str(p) for p in dulwich.__version__),
        "lighttpd": lighttpd_version(),
        "govc_revision": govc_revision(repo),
    }


def server_info(servers: list[Server]) -> dict[str, dict[str, Any]]:
    """Start-up outcome, corpus load time and peak memory of each server."""
    return {
        s.name: {
            "url": s.url("corpus"),
            "setup_error": s.error,
            "seed_seconds": s.seed_seconds,
            "peak_rss_kib": s.memory_kib("VmHWM"),
            "final_rss_kib": s.memory_kib("VmRSS"),
            "rss_note": s.rss_note,
            "protocol": s.protocol(),
            "create_repo": getattr(s, "api_create", None),
        }
        for s in servers
    }


def fmt_time(stats: dict[str, Any], rounds: int) -> str:
    """A table cell: median seconds, 'failed', or median with the number of failed rounds."""
    med = stats["median_s"]
    if med is None:
        return "failed" if stats["samples_s"] else "not run"
    cell = f"{med:.3f} s" if med < 10 else f"{med:.1f} s"
    return cell + (f" ({stats['failed']}/{rounds} failed)" if stats["failed"] else "")


def fmt_ratio(ratio: dict[str, float | None] | None) -> str:
    """A ratio cell, median and min-max over rounds; '-' when it could not be computed."""
    if not ratio or ratio.get("median") is None:
        return "-"
    return f"**{ratio['median']:.2f}** ({ratio['min']:.2f}-{ratio['max']:.2f})"


def verdict(value: float | None, target: float | None) -> str:
    """'yes'/'NO' against a target, '' when there is none."""
    if target is None:
        return ""
    if value is None:
        return "?"
    return f"≤ {target:g}: " + ("yes" if value <= target else "NO")


def table(summary: list[dict[str, Any]], names: list[str], rounds: int) -> list[str]:
    """The main Markdown table: medians per server and govc's ratios to each baseline."""
    ratio_cols = [f"{SUBJECT}/{b}" for b in BASELINES if SUBJECT in names and b in names]
    head = ["workload", *names, *(c.replace("/", " ÷ ") for c in ratio_cols)]
    if "http-backend" in names and SUBJECT in names:
        head.append("target (÷ http-backend)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for item in summary:
        cells = [f"`{item['name']}`"]
        cells += [fmt_time(item["servers"][n], rounds) for n in names]
        cells += [fmt_ratio(item["ratios"].get(c)) for c in ratio_cols]
        if "http-backend" in names and SUBJECT in names:
            main = item["ratios"].get(f"{SUBJECT}/http-backend") or {}
            cells.append(verdict(main.get("median"), item.get("target")))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def cpu_table(summary: list[dict[str, Any]], names: list[str]) -> list[str]:
    """Server CPU seconds per operation (median), next to the wall time of the main table."""
    rows = [item for item in summary if any(item["servers"][n]["cpu_median_s"] is not None for n in names)]
    if not rows:
        return []
    lines = ["", "Server CPU seconds per operation (user + system of the server process and the "
             "children it reaped; median):", "", "| workload | " + " | ".join(names) + " |",
             "|" + "---|" * (len(names) + 1)]  # fmt: skip
    for item in rows:
        cells = []
        for n in names:
            cpu = item["servers"][n]["cpu_median_s"]
            cells.append("-" if cpu is None else f"{cpu:.2f}")
        lines.append(f"| `{item['name']}` | " + " | ".join(cells) + " |")
    return lines


def clone_bytes(summary: list[dict[str, Any]], names: list[str]) -> list[str]:
    """Pack bytes received by a full clone, per server (a wire-efficiency check)."""
    clone = next((item for item in summary if item["name"].startswith("clone-")
                  and any(item["servers"][n]["bytes_received"] for n in names)), None)  # fmt: skip
    if clone is None:
        return []
    cells = []
    for name in names:
        size = clone["servers"][name]["bytes_received"]
        cells.append(f"{name}: {size / 2**20:.2f} MiB" if size else f"{name}: -")
    line = "Pack bytes received by a full clone: " + "; ".join(cells)
    ours = clone["servers"].get(SUBJECT, {}).get("bytes_received")
    theirs = clone["servers"].get("http-backend", {}).get("bytes_received")
    if ours and theirs:
        line += f"; govc ÷ http-backend **{ours / theirs:.3f}** ({verdict(ours / theirs, BYTES_TARGET)})"
    return ["", line + "."]


def memory_lines(summary: list[dict[str, Any]], packed: int) -> list[str]:
    """RSS a loaded repository adds to govc, as a multiple of the corpus' packed size."""
    cold = next((item for item in summary if item["name"] == "clone-cold"), None)
    if cold is None or SUBJECT not in cold["servers"]:
        return []
    extra = cold["servers"][SUBJECT]["extra"]
    empty = [e for e in extra.get("rss_empty_kib", []) if e]
    loaded = [e for e in extra.get("rss_loaded_kib", []) if e]
    after = [e for e in extra.get("rss_after_clone_kib", []) if e]
    if not empty or not loaded:
        return []
    base = statistics.median(empty)
    added = (statistics.median(loaded) - base) * 1024
    line = (f"govc resident memory: {base / 1024:.0f} MiB with no repository, "
            f"{statistics.median(loaded) / 1024:.0f} MiB with the corpus loaded: the repository adds "
            f"{added / 2**20:.1f} MiB = **{added / packed:.2f}x** its packed size "
            f"({verdict(added / packed, MEMORY_TARGET)})")  # fmt: skip
    if after:
        grown = (statistics.median(after) - base) * 1024
        line += f"; after one cold clone it adds {grown / 2**20:.1f} MiB = {grown / packed:.2f}x"
    return ["", line + "."]


def failures(summary: list[dict[str, Any]], servers: dict[str, dict[str, Any]]) -> list[str]:
    """A section quoting the tail of each distinct error, so failures are actionable.

    A server that failed to start fails every workload with the same text; it is quoted once.
    """
    lines: list[str] = []
    for name, info in servers.items():
        if info["setup_error"]:
            lines += ["", f"### {name} · setup (all workloads failed)", "", "```"]
            lines += [info["setup_error"], "```"]
    for item in summary:
        for name, stats in item["servers"].items():
            errors = [e for e in stats["errors"] if e != servers[name]["setup_error"]]
            for err in errors[:MAX_ERRORS_SHOWN]:
                count = f"{stats['failed']}/{len(stats['samples_s'])} rounds failed"
                lines += ["", f"### {name} · `{item['name']}` ({count})", "", "```", err, "```"]
    return ["", "#### Failures", *lines] if lines else []


def corpus_section(part: dict[str, Any]) -> list[str]:
    """The tables and notes of one corpus."""
    run_info = part["run"]
    names = run_info["servers"]
    rounds = run_info["rounds"]
    return [
        f"### Corpus `{Path(run_info['corpus']).name}` — {run_info['corpus_objects']} objects, "
        f"{run_info['corpus_pack_bytes'] / 2**20:.1f} MiB pack",
        "",
        f"Rounds: {rounds} (+{run_info['warmup']} warm-up), servers interleaved and rotated per round; "
        f"main `{run_info['corpus_main'][:12]}`.",
        "",
        *table(part["workloads"], names, rounds),
        *cpu_table(part["workloads"], names),
        *clone_bytes(part["workloads"], names),
        *memory_lines(part["workloads"], run_info["corpus_pack_bytes"]),
        *server_notes(part["servers"]),
        *failures(part["workloads"], part["servers"]),
        "",
    ]


def markdown(report: dict[str, Any]) -> str:
    """Render the whole report as Markdown."""
    meta = report["machine"]
    lines = [
        f"## govc benchmark — {meta['date']}",
        "",
        f"Machine: {meta['nproc']} CPUs ({meta['cpu']}), Linux {meta['kernel']}; "
        f"{meta['git']}; Python {meta['python']}; dulwich {meta['dulwich']}; {meta['lighttpd']}; "
        f"govc {meta['govc_revision']}. Command: `{report.get('command', 'make bench')}`.",
        "",
        "Times are medians of wall-clock seconds of the git client command (for `ttfb-*`: seconds "
        "to the first byte of pack data). Ratios are the median of per-round ratios govc ÷ "
        "baseline, with their min-max (< 1 means govc is faster). `not run`: skipped by choice.",
        "",
    ]
    for part in report["corpora"]:
        lines += corpus_section(part)
    return "\n".join(lines).rstrip("\n") + "\n"


def server_notes(servers: dict[str, dict[str, Any]]) -> list[str]:
    """One line per server: corpus load time and peak RSS where known."""
    lines = ["", "Servers:"]
    for name, info in servers.items():
        parts = [f"- {name}: protocol {info['protocol']} when v2 is requested"]
        if info["seed_seconds"] is not None:
            parts.append(f"corpus loaded by 2 pushes in {info['seed_seconds']:.1f} s")
        if info["peak_rss_kib"]:
            note = f" ({info['rss_note']})" if info["rss_note"] else ""
            final = info["final_rss_kib"] or 0
            parts.append(
                f"RSS peak {info['peak_rss_kib'] / 1024:.0f} MiB, at end {final / 1024:.0f} MiB{note}"
            )
        if info["setup_error"]:
            parts.append("SETUP FAILED (see Failures)")
        lines.append(", ".join(parts))
    return lines

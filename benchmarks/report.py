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


def median_or_none(values: list[float]) -> float | None:
    """Median, or ``None`` when nothing succeeded."""
    return statistics.median(values) if values else None


def paired_ratio(subject: list[Sample], baseline: list[Sample]) -> float | None:
    """Median over rounds of subject/baseline, using only rounds where both succeeded."""
    ratios = [
        a.seconds / b.seconds
        for a, b in zip(subject, baseline, strict=True)
        if a.seconds is not None and b.seconds is not None and b.seconds > 0
    ]
    return median_or_none(ratios)


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
    return {
        "median_s": median_or_none(times),
        "samples_s": [s.seconds for s in samples],
        "failed": sum(1 for s in samples if s.seconds is None),
        "errors": distinct_errors(samples),
        "bytes_received": int(statistics.median(sizes)) if sizes else None,
    }


def summarize(workloads: list[Workload], results: Results) -> list[dict[str, Any]]:
    """JSON-ready statistics for every workload, including govc's paired ratios."""
    summary = []
    for workload in workloads:
        per_server = results[workload.name]
        ratios: dict[str, float | None] = {}
        if SUBJECT in per_server:
            for base in BASELINES:
                if base in per_server:
                    ratios[f"{SUBJECT}/{base}"] = paired_ratio(per_server[SUBJECT], per_server[base])
        summary.append(
            {
                "name": workload.name,
                "description": workload.description,
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
        return "failed"
    cell = f"{med:.3f} s" if med < 10 else f"{med:.1f} s"
    return cell + (f" ({stats['failed']}/{rounds} failed)" if stats["failed"] else "")


def fmt_ratio(value: float | None) -> str:
    """A ratio cell; '-' when it could not be computed (a side failed every round)."""
    return "-" if value is None else f"{value:.2f}"


def table(summary: list[dict[str, Any]], names: list[str], rounds: int) -> list[str]:
    """The main Markdown table: medians per server and govc's ratios to each baseline."""
    ratio_cols = [f"{SUBJECT}/{b}" for b in BASELINES if SUBJECT in names and b in names]
    head = ["workload", *names, *(c.replace("/", " ÷ ") for c in ratio_cols)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for item in summary:
        cells = [f"`{item['name']}`"]
        cells += [fmt_time(item["servers"][n], rounds) for n in names]
        cells += [fmt_ratio(item["ratios"].get(c)) for c in ratio_cols]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def clone_bytes(summary: list[dict[str, Any]], names: list[str]) -> list[str]:
    """Pack bytes received by a full clone, per server (a wire-efficiency check)."""
    clone = next((item for item in summary if item["name"] == "clone"), None)
    if clone is None:
        return []
    cells = []
    for name in names:
        size = clone["servers"][name]["bytes_received"]
        cells.append(f"{name}: {size / 2**20:.2f} MiB" if size else f"{name}: -")
    return ["", "Pack bytes received by a full clone: " + "; ".join(cells) + "."]


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
    return ["", "## Failures", *lines] if lines else []


def markdown(report: dict[str, Any]) -> str:
    """Render the whole report as Markdown."""
    meta, run_info = report["machine"], report["run"]
    names = run_info["servers"]
    rounds = run_info["rounds"]
    lines = [
        f"# govc benchmark — {meta['date']}",
        "",
        f"Machine: {meta['nproc']} CPUs ({meta['cpu']}), Linux {meta['kernel']}; "
        f"{meta['git']}; Python {meta['python']}; dulwich {meta['dulwich']}; {meta['lighttpd']}; "
        f"govc {meta['govc_revision']}.",
        f"Corpus: `{run_info['corpus']}` — {run_info['corpus_objects']} objects, "
        f"{run_info['corpus_pack_bytes'] / 2**20:.1f} MiB pack, main `{run_info['corpus_main'][:12]}`. "
        f"Rounds: {rounds} (+{run_info['warmup']} warm-up), servers interleaved and rotated per round.",
        "",
        *table(report["workloads"], names, rounds),
        "",
        "Times are medians of wall-clock seconds of the git client command. Ratios are the median "
        "of per-round ratios govc ÷ baseline (< 1 means govc is faster).",
        *clone_bytes(report["workloads"], names),
        *server_notes(report["servers"]),
        *failures(report["workloads"], report["servers"]),
    ]
    return "\n".join(lines) + "\n"


def server_notes(servers: dict[str, dict[str, Any]]) -> list[str]:
    """One line per server: corpus load time and peak RSS where known."""
    lines = ["", "Servers:"]
    for name, info in servers.items():
        parts = [f"- {name}: {info['url']}, protocol {info['protocol']} when v2 is requested"]
        if info["seed_seconds"] is not None:
            parts.append(f"corpus loaded by 2 pushes in {info['seed_seconds']:.1f} s")
        if info["create_repo"]:
            parts.append(f"POST /api/v1/repos answered {info['create_repo']}")
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

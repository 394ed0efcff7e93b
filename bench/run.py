"""Run every benchmark and write the report to docs/performance.md.

    python bench/run.py            # full suite (~15 min on 2 cores)
    python bench/run.py --quick    # smoke mode for CI: small N, one repetition;
                                   # figures are printed, the report is not written

Each benchmark module offers ``section(quick: bool) -> str``, a Markdown
section with its figures, the baseline measured in the same run, and
PASS/MISS against its target. A MISS does not fail the run.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import re
import subprocess
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from common import ROOT

# benchmarks with a section() function, run in this process
MODULES = ["spawn", "spawn_floor", "responsiveness", "swarm_spawn"]


@dataclass
class Script:
    """A benchmark script run as a subprocess; ``judge`` reads PASS/MISS from its output."""

    name: str
    title: str
    full: list[str]
    quick: list[str]
    judge: Callable[[str], list[str]]


def _num(pattern: str, text: str) -> float:
    m = re.search(pattern, text, re.M)
    if not m:
        raise ValueError(f"no match for {pattern!r} in the output")
    return float(m.group(1))


def _verdict(ok: bool, what: str) -> str:
    return f"{'PASS' if ok else 'MISS'}: {what}"


def judge_restart(out: str) -> list[str]:
    data = json.loads(out[out.index("{") :])
    ratio = data["restart"]["median"] / data["stop+start"]["median"]
    return [_verdict(ratio <= 1.1, f"restart / (stop + start) = {ratio:.2f} (target <= 1.1)")]


def judge_rename(out: str) -> list[str]:
    times = _num(r"rename copy takes ([\d.]+)x the time of host cp -a", out)
    throughput = 1 / times
    check = _num(r"rename check takes ([\d.]+)x the time of reading both trees once", out)
    return [
        _verdict(throughput >= 0.8, f"copy throughput / cp -a = {throughput:.2f} (target >= 0.8)"),
        _verdict(check <= 1.0, f"check time / reading both trees once = {check:.2f} (target <= 1)"),
    ]


def judge_rename_pool(out: str) -> list[str]:
    # the script judges itself against the idle figures of the same run
    return [line for line in out.splitlines() if line.startswith(("PASS: ", "MISS: "))]


def judge_broadcast(out: str) -> list[str]:
    t200 = _num(r"^\s+200\s+no\s+([\d.]+)", out)
    extra = _num(r"N=\s*200: .*total \+([\d.]+) s for a ([\d.]+) s timeout", out)
    timeout = _num(r"N=\s*200: .*total \+[\d.]+ s for a ([\d.]+) s timeout", out)
    return [
        _verdict(t200 < 1.0, f"200 endpoints in {t200:.3f} s (target < 1 s)"),
        _verdict(
            extra <= timeout + 0.1,
            f"a hung endpoint adds {extra:.2f} s with a {timeout:.0f} s timeout",
        ),
    ]


def judge_usage(out: str) -> list[str]:
    # the script judges itself against the idle hub of the same run
    return [line for line in out.splitlines() if line.startswith(("PASS: ", "MISS: "))]


def judge_gpu(out: str) -> list[str]:
    ms = _num(r"^engine report\s+\d+\s+([\d.]+)", out)
    return [_verdict(ms < 50, f"auto-detection {ms:.1f} ms, no pull (target < 50 ms)")]


def judge_placement(out: str) -> list[str]:
    ms = _num(r"^placement decision\s+\d+\s+([\d.]+)", out)
    return [_verdict(ms < 20, f"GPU placement decision {ms:.1f} ms per spawn (target < 20 ms)")]


SCRIPTS = [
    Script(
        "restart",
        "Restart: request to ready vs stop + start through the REST API",
        ["--reps", "5"],
        ["--reps", "1"],
        judge_restart,
    ),
    Script(
        "rename_copy",
        "Rename copy throughput vs `cp -a` on the host",
        ["--size-mb", "1024", "--large-files", "4", "--small-files", "20000", "--repeat", "5"],
        ["--size-mb", "20", "--small-files", "200", "--repeat", "1"],
        judge_rename,
    ),
    Script(
        "rename_pool",
        "Listing and spawn while two big renames copy (shared Docker pool of 2 threads)",
        ["--size-mb", "1024"],
        ["--size-mb", "200"],
        judge_rename_pool,
    ),
    Script(
        "broadcast",
        "Broadcast fan-out to N endpoints, with and without one that never answers",
        ["--sizes", "10,50,200", "--repeat", "5"],
        ["--sizes", "10,200", "--repeat", "1", "--timeout", "1"],
        judge_broadcast,
    ),
    Script(
        "usage",
        "Servers page API and the usage scan's cost with 100 running servers",
        ["--servers", "100", "--seconds", "20"],
        ["--servers", "10", "--seconds", "3"],
        judge_usage,
    ),
    Script(
        "gpu_detect",
        "GPU auto-detection vs a probe container",
        ["--rounds", "15"],
        ["--rounds", "3"],
        judge_gpu,
    ),
    Script(
        "gpu_placement",
        "GPU placement decision (profiles) with 50 live servers",
        ["--servers", "50", "--rounds", "30"],
        ["--servers", "10", "--rounds", "5"],
        judge_placement,
    ),
]


def run_script(script: Script, quick: bool) -> str:
    argv = [sys.executable, str(ROOT / "bench" / f"{script.name}.py")]
    argv += script.quick if quick else script.full
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"{script.name} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    verdicts = script.judge(out.stdout)
    return (
        f"## {script.title}\n\n`python bench/{script.name}.py {' '.join(argv[2:])}`\n\n"
        f"```text\n{out.stdout.strip()}\n```\n\n" + "\n".join(f"- {v}" for v in verdicts)
    )


# What bounds the figures that miss their targets, from profiling on the
# 2-core machine the report was written on (see docs/performance.md).
NOTES = """## Notes on the targets

- **8 concurrent spawns (target 0.6x plain DockerSpawner).** Bounded by CPU,
  not by Docker calls. `top` during the round shows each
  `jupyterhub-singleuser` at 100% of one core for about 2 CPU-seconds while it
  starts (Python imports and JupyterLab's extension discovery), so 8 servers
  need about 16 CPU-seconds: at least 8 s on 2 cores for any spawner. The
  Docker calls that plain DockerSpawner serialises through its single thread
  (create and start, about 0.1 s per server here) can add at most about 1 s to
  its 8-server round; that is the most a pool can win back, so a ratio near
  0.9 is what this machine allows. On a host with more cores than
  simultaneous starts the serialised calls, and a slow one such as a pull
  or a big volume removal, weigh more.
- **8 concurrent spawns against the CPU floor (target 1.15x).** The floor
  is the servers' own boot CPU (container cgroups, about 1.7 CPU-s each) over
  the cores; `bench/spawn_floor.py` also splits each burst into phases and the
  machine's CPU into containers, hub, proxy, engine, client, other tasks and
  idle. On 2 cores (2026-12-02) the burst was 1.32x its floor: about 0.5 s of
  create and start calls before the first server boots (CPU partly idle),
  0.1 s after the last one answers, and during the boot the hub (0.6 CPU-s of
  its own plus 0.8 CPU-s serving the benchmark's ready poll), the engine
  (0.3 CPU-s) and about 1.7 CPU-s of kernel and other work not attributed to
  a process. Since 2026-12-07 the benchmark waits for each server by the
  POST's answer or its progress stream (no poll; hub done to ready fell from
  0.07-0.09 s to 0.006 s); before the first create call the hub's own spawn
  preparation takes about 50 ms per server and the first container inspect
  of 8 at once 0.26 s.
- **Hub responsiveness (target p99 < 20 ms, max < 100 ms).**
  `bench/responsiveness.py --watch-loop FILE` finds each loop stall with its
  stacks (`bench/loopwatch.py`). The largest source was the benchmark's own
  polling of `GET /users/{name}` (now gone from the load); the rest is
  JupyterHub's synchronous SQLite work on its loop (commits blocked in fsync
  while the disk writes a copy: up to 425 ms) and waiting for a CPU on 2
  busy cores. Ours was 0.05-0.17 s of 0.4-2.9 s of stalls per run (small
  journal and group queries). SQLite in WAL mode without an fsync per commit
  removed the fsync waits (commented block in `jupyterhub_config.example.py`).
- **Rename copy vs `cp -a` (target 0.8x) and check vs reading both trees.**
  On 1.4 GB the copy is bounded by the disk's sustained write rate: the same
  host `cp -a` took 2.3 s first and 17-20 s in the rounds after, and `cp -a`
  in the helper matched it at the same point of the sequence. Ours on top:
  the progress poll (`du -sb` of the copy through `docker exec` once a
  second), now held to a tenth of the copy's time. The check makes both
  manifests at once (0.94-0.99x of reading both trees once).
- **Single spawn.** ExtDockerSpawner notices a ready server within
  `ready_poll_interval` (0.1 s); the hub's own wait backs off up to 5 s
  between checks, which is most of the baseline's extra time and its spread.
- **Big renames next to spawns.** Before the fix a rename's helper held a
  thread of the shared Docker pool for its whole copy and check (and the
  pool silently grew past `docker_pool_size`); with the pool really at 2
  threads a spawn during two 1 GB copies took 16 s and finished only after
  both copies had. The helpers also ran at full CPU weight: even with the
  pool free, the new server's start competed with `cp` and the check
  (15.8 s against 4.3 s idle). Now the long waits run in the rename's own
  pool and the helpers at `cpu_shares` 128.
- **Swarm vs one engine (target 1.3x).** The Swarm figure includes the
  manager creating the service, the scheduler placing its task (on the
  user's pinned node), that node's agent and engine creating and starting
  the container, the spawner seeing the task running (it polls the manager
  every 0.25 s) and looking up the node's address, then the same readiness
  poll and single-user boot as on one engine. The one steady difference in
  the split is created to started: about 0.25 s on Swarm against 0.1 s on
  one engine (scheduler and node agent); the task poll adds up to 0.25 s
  more before the readiness poll begins. The rest is the server booting,
  about 1.7 s on either, so a single spawn pays about 0.1-0.3 s (1.05x to
  1.17x over two runs). The three nodes are dockerd in network namespaces
  of the same 2-core machine, so 3 concurrent spawns share the same CPU
  either way and the row shows Swarm's overhead, not the speed-up of
  separate hosts. It can lean towards Swarm on a busy machine: each node's
  containers sit in a cgroup of their own (`/jhx-swarm-nodeN`, 1024 CPU
  shares each) while the one engine's share `/docker` (1024 in all), so
  three servers on three nodes get more CPU against the rest of the machine
  than three on one engine (started to ready 3.7-3.9 s against 4.3-4.5 s
  in both full runs; a one-repetition quick run had it the other way round).
- **Earlier misses, fixed.** Before the readiness poll a single spawn was
  1.4x the baseline (the extra work of volume sets, groups and the GPU
  decision costs about 40 ms per spawn; the rest was back-off luck), and
  restart was 1.27x stop + start. The rename copy polled its helper
  container with growing sleeps; it now waits for the container's exit
  (copy throughput went from 0.74x to above 0.9x of `cp -a`).
"""


def machine() -> str:
    cpus = os.cpu_count()
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    pkgs = ", ".join(
        f"{p} {version(p)}" for p in ("jupyterhub", "dockerspawner", "docker", "tornado")
    )
    return (
        f"- Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC\n"
        f"- Machine: {platform.machine()}, {cpus} cores{mem}, {platform.platform()}\n"
        f"- Python {platform.python_version()}; {pkgs}\n"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", nargs="*", help="run only these modules")
    args = ap.parse_args()
    sections = []
    failed = []
    scripts = {s.name: s for s in SCRIPTS}
    for name in args.only or [*MODULES, *scripts]:
        print(f"== {name}", flush=True)
        try:
            if name in scripts:
                text = run_script(scripts[name], args.quick)
            else:
                text = importlib.import_module(name).section(args.quick)
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        print(text, flush=True)
        sections.append(text)
    if not args.quick and not failed:
        report = ROOT / "docs" / "performance.md"
        report.write_text(
            "# Performance\n\n"
            "Generated by `python bench/run.py`; every figure is the median over "
            "repetitions with its min and max, and every ratio is against a baseline "
            "measured in the same run on the same machine.\n\n"
            + machine()
            + "\n"
            + "\n\n".join(sections)
            + "\n\n"
            + NOTES
        )
        print(f"wrote {report}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

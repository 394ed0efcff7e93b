"""A burst of concurrent spawns against its CPU floor, and where the rest of the time goes.

N users start at once (ExtDockerSpawner on the private engine, through the REST
API). The wall time runs from the first POST to the last server seen ready in
the hub (the POST's own answer when the spawn finished within the hub's
slow_spawn_timeout, else the server's progress event stream: no polling, so
the benchmark adds no load to the hub while it waits). The floor is measured in the same burst:
each container's own cgroup CPU accounting (cgroup v1
``cpuacct/docker/<id>/cpuacct.usage``, sampled every 50 ms) up to the moment
its server answered, summed over the burst and divided by the number of cores.
No spawner, however good, can bring N servers up faster than that on this
machine; ratio = wall / floor.

Each server is also split into phases from timestamps already there: the
engine's ``Created`` and ``State.StartedAt``; the spawner's debug line
"Server of <user> answered after" (its readiness poll saw the server answer);
the hub's "User <user> took N seconds to start" (the hub's own check of the
server done, proxy update next); and the hub's answer that it is ready
(proxy updated).
Host CPU over the burst (``/proc/stat``) is split into the containers, the
hub process, the proxy, and the rest (Docker engine, runc, this client).

    python bench/spawn_floor.py            # N = 8, 3 repetitions after a warm-up
    python bench/spawn_floor.py --quick    # N = 2, 1 repetition (CI smoke)
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import secrets
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import docker
from common import TABLE_HEAD, Comparison, Figure, spawn_and_wait
from swarm_spawn import loadavg, parse_ts

from hubctl import Hub, HubError, build_images, cleanup_prefix, docker_host

TARGET = 1.15
CGROUP_ROOTS = ("/sys/fs/cgroup/cpuacct/docker", "/sys/fs/cgroup/cpu,cpuacct/docker")
PHASES = (
    "POST to created",
    "created to started",
    "started to answering",
    "answering to hub done",
    "hub done to ready",
)
LOG_LINE = re.compile(r"^\[\w (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) ")
ANSWERED = re.compile(r"Server of (\S+) answered after")
TOOK = re.compile(r"User (\S+) took [\d.]+ seconds to start")


def cgroup_root() -> Path:
    for root in CGROUP_ROOTS:
        if Path(root, "cpuacct.usage").exists():
            return Path(root)
    raise SystemExit(f"no cgroup v1 cpuacct for Docker under {' or '.join(CGROUP_ROOTS)}")


class CpuSampler:
    """Every ``interval`` s, each container cgroup's cpuacct.usage (ns): id -> [(t, s)]."""

    def __init__(self, root: Path, interval: float = 0.05) -> None:
        self.root = root
        self.interval = interval
        self.samples: dict[str, list[tuple[float, float]]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.time()
            for d in self.root.iterdir():
                if not d.is_dir():
                    continue
                try:
                    ns = int((d / "cpuacct.usage").read_text())
                except (OSError, ValueError):
                    continue  # gone between listing and reading
                self.samples.setdefault(d.name, []).append((now, ns / 1e9))
            time.sleep(self.interval)

    def upto(self, cid: str, t: float) -> float:
        """CPU-seconds of container ``cid`` at its last sample not after ``t``."""
        before = [s for ts, s in self.samples.get(cid, []) if ts <= t]
        if not before:
            raise HubError(f"no cgroup sample of {cid[:12]} before {t}")
        return before[-1]

    def last(self, cid: str) -> float:
        return self.samples[cid][-1][1]

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def proc_cpu(pid: int, children: bool = False) -> float:
    """utime + stime of a process (and of its reaped children), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


ENGINE_PIDFILE = Path("/run/jupyterhub-ext-docker/dockerd.pid")


def engine_cpu() -> dict[int, float]:
    """pid -> CPU-s (with reaped children: runc) of the private engine's processes:
    its dockerd, the containerd it runs, and their containerd-shim processes."""
    try:
        dockerd = int(ENGINE_PIDFILE.read_text())
    except (OSError, ValueError):
        return {}
    run_dir = str(ENGINE_PIDFILE.parent)
    out: dict[int, float] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        pid = int(d.name)
        ours = (
            pid == dockerd
            or ppid == dockerd
            or (comm.startswith(("containerd-shim", "runc")) and run_dir in cmd)
        )
        if ours:
            try:
                out[pid] = proc_cpu(pid, children=True)
            except OSError:
                continue
    return out


def host_stat() -> dict[str, float]:
    """The machine's CPU-seconds (all cores) by kind, from /proc/stat's first line."""
    v = [int(x) / os.sysconf("SC_CLK_TCK") for x in Path("/proc/stat").read_text().split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = v
    return {
        "tasks": user + nice + system,
        "irq": irq + softirq,
        "steal": steal,
        "idle": idle + iowait,
    }


def log_marks(text: str, pattern: re.Pattern, since: float) -> dict[str, float]:
    """user -> epoch seconds of the first matching hub log line at or after ``since``."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        m, w = LOG_LINE.match(line), pattern.search(line)
        if not (m and w):
            continue
        t = datetime.datetime.fromisoformat(m.group(1)).replace(tzinfo=datetime.UTC).timestamp()
        if t >= since - 0.001 and w.group(1) not in out:
            out[w.group(1)] = t
    return out


@dataclass
class Burst:
    wall: float
    floor: float
    cpu: dict[str, float]  # user -> container CPU-s up to answering
    cpu_end: float  # all containers' CPU-s up to the end of the burst
    phases: dict[str, dict[str, float]]  # user -> phase -> s
    critical: dict[str, float]  # the last-ready server's phases
    host: dict[str, float] = field(default_factory=dict)  # where the machine's CPU went


def burst(hub: Hub, users: list[str], root: Path) -> Burst:
    cores = os.cpu_count() or 1
    for u in users:
        hub.create_user(u)
    ready: dict[str, float] = {}

    def post(user: str) -> None:
        ready[user] = spawn_and_wait(hub, user)

    proxy_pid = int((hub.workdir / "proxy.pid").read_text())
    hub0, proxy0, stat0 = proc_cpu(hub.proc.pid), proc_cpu(proxy_pid), host_stat()
    engine0, me0 = engine_cpu(), proc_cpu(os.getpid())
    with CpuSampler(root) as cpu:
        time.sleep(0.1)
        t0 = time.time()
        with ThreadPoolExecutor(len(users)) as pool:
            list(pool.map(post, users))
        if len(ready) < len(users):
            raise HubError(f"not ready: {sorted(set(users) - set(ready))}\n{hub.log_tail()}")
        t_end = max(ready.values())
        time.sleep(0.1)  # one more sample past the end
        engine1 = engine_cpu()  # before the stops: the shims are still there
    hub_cpu, proxy_cpu = proc_cpu(hub.proc.pid) - hub0, proc_cpu(proxy_pid) - proxy0
    stat1 = host_stat()  # the window includes 0.2 s of margin around the burst
    stat = {k: stat1[k] - stat0[k] for k in stat0}
    engine = sum(v - engine0.get(pid, 0.0) for pid, v in engine1.items())
    client = proc_cpu(os.getpid()) - me0
    log = hub.log_text()
    answered = log_marks(log, ANSWERED, t0)
    took = log_marks(log, TOOK, t0)
    api = docker.APIClient(base_url=docker_host(), version="auto")
    phases: dict[str, dict[str, float]] = {}
    used: dict[str, float] = {}
    end_total = 0.0
    try:
        for u in users:
            c = api.inspect_container(f"{hub.prefix}-{u}")
            created, started = parse_ts(c["Created"]), parse_ts(c["State"]["StartedAt"])
            marks = (t0, created, started, answered[u], took[u], ready[u])
            phases[u] = {p: b - a for p, a, b in zip(PHASES, marks, marks[1:], strict=False)}
            used[u] = cpu.upto(c["Id"], answered[u])
            end_total += cpu.last(c["Id"])
    finally:
        api.close()
    with ThreadPoolExecutor(len(users)) as pool:
        list(pool.map(hub.stop_server, users))
    wall = t_end - t0
    last = max(users, key=lambda u: ready[u])
    containers = sum(used.values())
    return Burst(
        wall=wall,
        floor=containers / cores,
        cpu=used,
        cpu_end=end_total,
        phases=phases,
        critical=phases[last],
        host={
            "containers (to the end)": end_total,
            "hub": hub_cpu,
            "proxy": proxy_cpu,
            "Docker engine (dockerd, containerd, shims, runc)": engine,
            "benchmark client (this process)": client,
            "other tasks on the machine (kernel threads, other processes)": stat["tasks"]
            - end_total
            - hub_cpu
            - proxy_cpu
            - engine
            - client,
            "interrupts (irq + softirq)": stat["irq"],
            "steal (taken by the VM's host)": stat["steal"],
            "idle": stat["idle"],
        },
    )


def measure(n: int, reps: int, keep_log: Path | None = None) -> tuple[list[Burst], str]:
    if docker_host() is None:
        raise SystemExit("no Docker engine")
    root = cgroup_root()
    lab, _ = build_images()
    prefix = f"jhext-bench-fl-{secrets.token_hex(3)}"
    users = [f"f{i}" for i in range(n)]
    bursts: list[Burst] = []
    started = datetime.datetime.now(datetime.UTC)
    load_before = loadavg()
    with tempfile.TemporaryDirectory() as tmp:
        hub = Hub(Path(tmp) / "hub", image=lab, prefix=prefix)
        try:
            hub.start()
            burst(hub, users, root)  # warm-up: volumes made, image cached
            for _ in range(reps):
                bursts.append(burst(hub, users, root))
        finally:
            hub.stop()
            if keep_log:
                keep_log.write_text(hub.log_text())
            cleanup_prefix(prefix)
    note = (
        f"started {started:%Y-%m-%d %H:%M} UTC; {reps} repetition(s) after a warm-up burst; "
        f"{os.cpu_count()} cores; load average (1/5/15 min) {load_before} before, "
        f"{loadavg()} after; CPU from {root}/<id>/cpuacct.usage"
    )
    return bursts, note


def med(xs: list[float]) -> str:
    return f"{statistics.median(xs):.3f}"


def report(n: int, bursts: list[Burst], note: str) -> str:
    wall = Figure(f"wall N={n}", "s", [b.wall for b in bursts])
    floor = Figure(f"floor N={n}", "s", [b.floor for b in bursts])
    row = Comparison(
        f"{n} concurrent spawns: wall vs CPU floor (sum of boot CPU-s / cores)", wall, floor, TARGET
    )
    per_server = [b.phases[u] for b in bursts for u in b.phases]
    lines = [
        f"{TABLE_HEAD}\n{row.markdown_row()}",
        "",
        f"Ratio per burst: {', '.join(f'{b.wall / b.floor:.2f}' for b in bursts)}. "
        f"Boot CPU-seconds per server (container cgroup, to answering): median "
        f"{med([c for b in bursts for c in b.cpu.values()])} "
        f"(min {min(c for b in bursts for c in b.cpu.values()):.3f}, "
        f"max {max(c for b in bursts for c in b.cpu.values()):.3f}); "
        f"all containers to the end of the burst: {med([b.cpu_end for b in bursts])} CPU-s "
        f"per burst (median).",
        "",
        f"Where the time goes (seconds; {note}). Per server: median over "
        f"{len(per_server)} servers; critical path: the phases of the last server "
        "ready in each burst, median over bursts.",
        "",
        "| phase | per server (median) | critical path (median) |",
        "|---|---|---|",
    ]
    for p in PHASES:
        lines.append(
            f"| {p} | {med([s[p] for s in per_server])} | {med([b.critical[p] for b in bursts])} |"
        )
    lines.append(
        f"| **POST to ready** | {med([sum(s.values()) for s in per_server])} | "
        f"{med([sum(b.critical.values()) for b in bursts])} |"
    )
    lines += [
        "",
        f"Machine CPU over the burst (CPU-seconds on {os.cpu_count()} cores, median "
        "over bursts, from /proc/stat and the processes' own accounting):",
        "",
        "| where | CPU-s |",
        "|---|---|",
    ]
    for k in bursts[0].host:
        lines.append(f"| {k} | {med([b.host[k] for b in bursts])} |")
    return "\n".join(lines)


def section(quick: bool) -> str:
    n, reps = (2, 1) if quick else (8, 3)
    bursts, note = measure(n, reps)
    return (
        "## Concurrent spawns against the CPU floor\n\n"
        f"{n} users start at once (ExtDockerSpawner, REST API); wall time from the first "
        "POST to the last server ready, against the floor measured in the same burst: "
        "the containers' own cgroup CPU-seconds up to each server answering, summed, "
        "divided by the cores (`bench/spawn_floor.py`).\n\n" + report(n, bursts, note)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("-n", type=int, help="servers per burst")
    ap.add_argument("--reps", type=int)
    ap.add_argument("--keep-log", type=Path, metavar="FILE", help="copy the hub's log here")
    args = ap.parse_args()
    n, reps = (2, 1) if args.quick else (8, 3)
    n, reps = args.n or n, args.reps or reps
    bursts, note = measure(n, reps, args.keep_log)
    print(report(n, bursts, note))


if __name__ == "__main__":
    main()

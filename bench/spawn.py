"""Concurrent spawns: ExtDockerSpawner against plain DockerSpawner, same image, same run.

Each round starts N users at once through the REST API and measures the wall
time until every server is ready; then stops them. Both hubs use host
networking, the same image and one home volume per user.

    python bench/spawn.py            # N = 1, 4, 8; 3 repetitions
    python bench/spawn.py --quick    # N = 1, 2; 1 repetition (CI smoke)
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import ROOT, TABLE_HEAD, Comparison, Figure  # noqa: F401 (sets sys.path)

from hubctl import Hub, build_images, cleanup_prefix, docker_host

PLAIN_CONFIG = """
import sys
sys.path.insert(0, "{bench}")
c.JupyterHub.spawner_class = "baseline.HostNetDockerSpawner"
c.DockerSpawner.volumes = {{"{prefix}-{{username}}-home": "/home/jovyan"}}
"""


def spawn_round(hub: Hub, users: list[str]) -> float:
    for u in users:
        hub.create_user(u)
    elapsed = hub.spawn_many(users)
    with ThreadPoolExecutor(len(users)) as pool:
        list(pool.map(hub.stop_server, users))
    return elapsed


def sequential_round(hub: Hub, users: list[str]) -> float:
    t0 = time.perf_counter()
    for u in users:
        hub.spawn(u)
    elapsed = time.perf_counter() - t0
    for u in users:
        hub.stop_server(u)
    return elapsed


def run(ns: list[int], reps: int) -> list[Comparison]:
    if docker_host() is None:
        raise SystemExit("no Docker engine")
    lab, _ = build_images()
    prefix = f"jhext-bench-{secrets.token_hex(3)}"
    out: list[Comparison] = []
    with tempfile.TemporaryDirectory() as tmp:
        ours = Hub(Path(tmp) / "ours", image=lab, prefix=f"{prefix}-o")
        plain = Hub(
            Path(tmp) / "plain",
            image=lab,
            prefix=f"{prefix}-p",
            setup=False,
            config=PLAIN_CONFIG.format(bench=ROOT / "bench", prefix=f"{prefix}-p"),
        )
        try:
            ours.start()
            plain.start()
            # warm both (first spawn creates volumes)
            for hub in (ours, plain):
                spawn_round(hub, [f"warm{i}" for i in range(max(ns))])
            for n in ns:
                users = [f"u{n}x{i}" for i in range(n)]
                f_ours = Figure(f"ours N={n}", "s")
                f_plain = Figure(f"plain N={n}", "s")
                for _ in range(reps):
                    # alternate the order so drift hits both alike
                    f_plain.samples.append(spawn_round(plain, users))
                    f_ours.samples.append(spawn_round(ours, users))
                target = 0.6 if n == 8 else (1.05 if n == 1 else None)
                out.append(
                    Comparison(f"{n} concurrent spawn(s) to all ready", f_ours, f_plain, target)
                )
            pair = ["pair0", "pair1"]
            f_at_once = Figure("2 at once", "s")
            f_in_row = Figure("2 in a row", "s")
            for _ in range(reps):
                f_in_row.samples.append(sequential_round(ours, pair))
                f_at_once.samples.append(spawn_round(ours, pair))
            out.append(Comparison("ours: 2 spawns at once vs 2 in a row", f_at_once, f_in_row, 0.8))
        finally:
            ours.stop()
            plain.stop()
            cleanup_prefix(prefix)
    return out


def section(quick: bool) -> str:
    ns, reps = ([1, 2], 1) if quick else ([1, 4, 8], 3)
    rows = "\n".join(c.markdown_row() for c in run(ns, reps))
    return (
        "## Spawns: ExtDockerSpawner vs plain DockerSpawner\n\n"
        "N users start at once through the REST API; wall time until all are ready. "
        "Baseline: DockerSpawner 14 with only host-network support added "
        "(`bench/baseline.py`), same image, same hub settings.\n\n"
        f"{TABLE_HEAD}\n{rows}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    ns, reps = ([1, 2], 1) if args.quick else ([1, 4, 8], 3)
    results = run(ns, reps)
    print(TABLE_HEAD)
    for c in results:
        print(c.markdown_row())


if __name__ == "__main__":
    main()

"""Hub responsiveness: latency of a cheap hub API call while the hub works.

A sampler sends ``GET /hub/api/`` every 20 ms and records each latency, first
on an idle hub (the baseline), then while the hub runs a mixed load (8
concurrent spawns, plus a volume reset and a rename copy when those features
are available). p50 / p99 / max for both, same run.

    python bench/responsiveness.py [--quick]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from common import Figure

from hubctl import Hub, build_images, cleanup_prefix, docker_host


class Sampler:
    def __init__(self, url: str, interval: float = 0.02) -> None:
        self.url = url
        self.interval = interval
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.session = requests.Session()

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.perf_counter()
            self.session.get(self.url, timeout=30).raise_for_status()
            dt = time.perf_counter() - t0
            self.latencies.append(dt * 1000)
            time.sleep(max(0.0, self.interval - dt))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def percentiles(ms: list[float]) -> dict[str, float]:
    qs = statistics.quantiles(ms, n=100, method="inclusive")
    return {"p50": statistics.median(ms), "p99": qs[98], "max": max(ms), "n": len(ms)}


def spawn_load(hub: Hub, n: int) -> Callable[[], None]:
    users = [f"load{i}" for i in range(n)]
    for u in users:
        hub.create_user(u)

    def load() -> None:
        for u in users:
            hub.api("POST", f"/users/{u}/server")
        with ThreadPoolExecutor(n) as pool:
            list(pool.map(lambda u: hub.wait_ready(u, timeout=300), users))
        with ThreadPoolExecutor(n) as pool:
            list(pool.map(hub.stop_server, users))

    return load


def run(n_spawns: int, idle_seconds: float) -> dict[str, dict[str, float]]:
    if docker_host() is None:
        raise SystemExit("no Docker engine")
    lab, _ = build_images()
    prefix = f"jhext-bench-{secrets.token_hex(3)}"
    with tempfile.TemporaryDirectory() as tmp:
        hub = Hub(Path(tmp) / "hub", image=lab, prefix=prefix)
        try:
            hub.start()
            load = spawn_load(hub, n_spawns)
            with Sampler(hub.url + "/hub/api/") as idle:
                time.sleep(idle_seconds)
            with Sampler(hub.url + "/hub/api/") as busy:
                load()
        finally:
            hub.stop()
            cleanup_prefix(prefix)
    return {"idle": percentiles(idle.latencies), "busy": percentiles(busy.latencies)}


def figures(result: dict[str, dict[str, float]]) -> list[Figure]:
    return [Figure(f"{phase} {k}", "ms", [v]) for phase, d in result.items() for k, v in d.items()]


def section(quick: bool) -> str:
    result = run(2 if quick else 8, 3 if quick else 10)
    rows = "\n".join(
        f"| {phase} | {d['p50']:.1f} | {d['p99']:.1f} | {d['max']:.1f} | {d['n']:.0f} |"
        for phase, d in result.items()
    )
    p99 = result["busy"]["p99"]
    verdict = "PASS" if p99 < 50 else "MISS"
    return (
        "## Hub responsiveness\n\n"
        "`GET /hub/api/` every 20 ms; idle hub (baseline) vs during the load.\n\n"
        "| phase | p50 ms | p99 ms | max ms | samples |\n|---|---|---|---|---|\n"
        f"{rows}\n\nTarget p99 < 50 ms under load: {verdict}."
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    result = run(2 if args.quick else 8, 3 if args.quick else 10)
    for phase, d in result.items():
        print(
            f"{phase}: p50 {d['p50']:.1f} ms, p99 {d['p99']:.1f} ms, "
            f"max {d['max']:.1f} ms, samples {d['n']:.0f}"
        )
    p99 = result["busy"]["p99"]
    print(f"target p99 < 50 ms under load: {'PASS' if p99 < 50 else 'MISS'} ({p99:.1f} ms)")


if __name__ == "__main__":
    main()

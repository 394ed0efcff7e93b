"""Shared helpers for the benchmarks: repetition statistics and report rows."""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the real-hub harness lives with the tests
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))


@dataclass
class Figure:
    name: str
    unit: str
    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> tuple[float, float]:
        return min(self.samples), max(self.samples)

    def fmt(self) -> str:
        lo, hi = self.spread
        return f"{self.median:.3f} {self.unit} (min {lo:.3f}, max {hi:.3f}, n={len(self.samples)})"


@dataclass
class Comparison:
    """Ours against a baseline measured in the same run; ``target`` bounds the ratio."""

    title: str
    ours: Figure
    baseline: Figure
    target: float | None = None
    higher_is_better: bool = False

    @property
    def ratio(self) -> float:
        return self.ours.median / self.baseline.median

    def verdict(self) -> str:
        if self.target is None:
            return ""
        ok = self.ratio >= self.target if self.higher_is_better else self.ratio <= self.target
        sign = ">=" if self.higher_is_better else "<="
        return f"{'PASS' if ok else 'MISS'} (target ratio {sign} {self.target})"

    def markdown_row(self) -> str:
        return (
            f"| {self.title} | {self.ours.fmt()} | {self.baseline.fmt()} | "
            f"{self.ratio:.2f} | {self.verdict()} |"
        )


TABLE_HEAD = "| benchmark | ours | baseline | ratio | target |\n|---|---|---|---|---|"


class Sampler:
    """Time one cheap GET every ``interval`` s in a thread, while the caller makes the hub work.

    Used as a context manager; ``latencies`` holds milliseconds.
    """

    def __init__(self, url: str, headers: dict | None = None, interval: float = 0.02) -> None:
        import requests  # only the samplers need it

        self.url = url
        self.interval = interval
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.session = requests.Session()
        self.session.headers.update(headers or {})

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


def spawn_and_wait(hub, user: str, timeout: float = 300) -> float:
    """Start ``user``'s server; epoch seconds when the hub says it is ready.

    The hub answers the POST when the spawn has finished (proxy route added)
    if that takes less than its slow_spawn_timeout (201), else at once (202):
    then the server's progress event stream says when, as on the spawn page.
    No polling: the benchmark costs the hub two requests per server.
    """
    r = hub.api("POST", f"/users/{user}/server", timeout=timeout)
    if r.status_code == 201:
        return time.time()
    if r.status_code != 202:
        raise RuntimeError(f"spawn {user}: {r.status_code} {r.text}")
    with hub.api("GET", f"/users/{user}/server/progress", stream=True, timeout=timeout) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith(b"data:"):
                continue  # keep-alive blank lines
            event = json.loads(line[5:])
            if event.get("ready"):
                return time.time()
            if event.get("failed"):
                raise RuntimeError(f"spawn {user} failed: {event.get('message')}")
    raise RuntimeError(f"progress stream of {user} ended before the server was ready")


def percentiles(ms: list[float]) -> dict[str, float]:
    """p50, p99, max and count of latencies in ms."""
    qs = statistics.quantiles(ms, n=100, method="inclusive")
    return {"p50": statistics.median(ms), "p99": qs[98], "max": max(ms), "n": len(ms)}

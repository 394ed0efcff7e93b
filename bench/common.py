"""Shared helpers for the benchmarks: repetition statistics and report rows."""

from __future__ import annotations

import statistics
import sys
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

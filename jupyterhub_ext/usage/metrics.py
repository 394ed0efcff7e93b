"""Prometheus metrics of jupyterhub_ext, on JupyterHub's own ``/hub/metrics``.

Everything is registered in prometheus_client's default registry, which is
the one JupyterHub's metrics handler serves, so our series appear next to
``jupyterhub_*`` with the same authentication (scope ``read:metrics``).

Two kinds:

- usage gauges (server memory, CPU seconds, GPU devices; volume bytes) come
  from the last background scan (:mod:`jupyterhub_ext.usage.scan`) through a
  collector: a scrape never calls Docker, and a stopped server's series
  disappear with it;
- action counters and durations, counted where the action happens (an audit
  line, or a refused spawn).

Label values are bounded: ``user`` and ``server`` are this hub's own names,
``volume`` a key of the volume set, ``reason``/``action``/``result`` come
from fixed lists here (anything else is counted as ``other``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from jupyterhub_ext import audit
from jupyterhub_ext.usage import scan

PREFIX = "jupyterhub_ext_"

# spawn refusal reasons (SpawnRefused.reason and our other refusals)
REFUSAL_REASONS = (
    "invalid-user-name",
    "node-unavailable",
    "node-ambiguous",
    "swarm-unsupported",
    "volume-conflict",
    "gpu-unavailable",
    "forbidden-option",
    "not-owned",
    "quota",
    "profile",
)
# audit actions counted, by their audit name -> metric label
ACTIONS = {
    "restart-server": "restart",
    "reset-volumes": "reset",
    "rename-user": "rename",
    "broadcast": "broadcast",
    # idle culling (jupyterhub_ext.culler, handlers.culling)
    "cull-server": "cull",
    "cull-warning": "cull-warning",
    "keep-running": "keep-running",
}
RESULTS = ("ok", "failed", "refused", "started", "rolled-back")
# the results each action can have (series made at start so rate() sees zeros)
ACTION_RESULTS = {
    "restart": ("ok", "failed", "refused"),
    "reset": ("ok", "failed", "refused"),
    "rename": ("started", "ok", "failed", "refused", "rolled-back"),
    "broadcast": ("ok", "failed"),
    "cull": ("ok", "failed"),
    "cull-warning": ("ok", "failed"),
    "keep-running": ("ok", "refused"),
}

SPAWNS_REFUSED = Counter(
    PREFIX + "spawns_refused",
    "Server starts refused by jupyterhub_ext, by reason",
    ["reason"],
)
ACTIONS_TOTAL = Counter(
    PREFIX + "actions",
    "Restarts, volume resets, renames and broadcasts, by result",
    ["action", "result"],
)
ACTION_DURATION = Histogram(
    PREFIX + "action_duration_seconds",
    "How long restarts, resets, renames and broadcasts took",
    ["action"],
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, float("inf")),
)
BROADCAST_DELIVERIES = Counter(
    PREFIX + "broadcast_deliveries",
    "Notifications delivered to single-user servers by broadcasts, by result",
    ["result"],
)
for _reason in REFUSAL_REASONS:
    SPAWNS_REFUSED.labels(_reason)  # every series from the start: rate() needs a zero
for _action, _results in ACTION_RESULTS.items():
    ACTION_DURATION.labels(_action)
    for _result in _results:
        ACTIONS_TOTAL.labels(_action, _result)
for _result in ("ok", "failed"):
    BROADCAST_DELIVERIES.labels(_result)


def _bounded(value: str, allowed: tuple[str, ...] | Any) -> str:
    return value if value in allowed else "other"


def count_refused_spawn(reason: str) -> None:
    """A start refused with ``reason`` (called where the refusal is raised)."""
    SPAWNS_REFUSED.labels(_bounded(reason, REFUSAL_REASONS)).inc()


def _result_label(action: str, result: str, details: Mapping[str, Any]) -> str:
    if action == "broadcast":
        # "k/n delivered"
        try:
            k, n = result.split()[0].split("/")
            return "ok" if int(k) == int(n) else "failed"
        except (ValueError, IndexError):
            return "other"
    if result == "incomplete":
        return "failed"
    return _bounded(result, RESULTS)


def observe_audit(action: str, result: str, details: Mapping[str, Any]) -> None:
    """Count an audited action (called by :func:`jupyterhub_ext.audit.audit`)."""
    label = ACTIONS.get(action)
    if label is None:
        return
    ACTIONS_TOTAL.labels(label, _result_label(action, result, details)).inc()
    seconds = details.get("seconds")
    if isinstance(seconds, (int, float)) and seconds >= 0:
        ACTION_DURATION.labels(label).observe(seconds)
    if action == "broadcast":
        try:
            k, n = (int(x) for x in result.split()[0].split("/"))
        except (ValueError, IndexError):
            return
        BROADCAST_DELIVERIES.labels("ok").inc(k)
        BROADCAST_DELIVERIES.labels("failed").inc(max(0, n - k))


class UsageCollector:
    """Gauges from the last usage scan, built at each scrape from the cached snapshot."""

    def collect(self) -> Iterator[Any]:
        snap = scan.snapshot()
        labels = ["user", "server"]
        mem = GaugeMetricFamily(
            PREFIX + "server_memory_bytes", "Memory used by a running server", labels=labels
        )
        limit = GaugeMetricFamily(
            PREFIX + "server_memory_limit_bytes",
            "Memory limit of a running server (absent: unlimited)",
            labels=labels,
        )
        cpu = CounterMetricFamily(
            PREFIX + "server_cpu_seconds", "CPU time used by a running server", labels=labels
        )
        gpus = GaugeMetricFamily(
            PREFIX + "server_gpu_devices", "GPU devices held by a running server", labels=labels
        )
        for s in snap.servers:
            key = [s.user, s.server]
            if s.memory_bytes is not None:
                mem.add_metric(key, s.memory_bytes)
            if s.memory_limit_bytes is not None:
                limit.add_metric(key, s.memory_limit_bytes)
            if s.cpu_seconds is not None:
                cpu.add_metric(key, s.cpu_seconds)
            gpus.add_metric(key, len(s.gpu_devices))
        vols = GaugeMetricFamily(
            PREFIX + "user_volume_bytes",
            "Size of a user's volume, by volume-set key (measured periodically)",
            labels=["user", "volume"],
        )
        for user, by_key in sorted(snap.user_volumes.items()):
            for key, size in sorted(by_key.items()):
                vols.add_metric([user, key], size)
        shared = GaugeMetricFamily(
            PREFIX + "shared_volume_bytes",
            "Size of a shared volume, by volume-set key",
            labels=["volume"],
        )
        for key, size in sorted(snap.shared_volumes.items()):
            shared.add_metric([key], size)
        running = GaugeMetricFamily(
            PREFIX + "running_servers", "Running servers seen by the last usage scan"
        )
        running.add_metric([], len(snap.servers))
        yield from (mem, limit, cpu, gpus, vols, shared, running)
        if snap.scanned_at is not None:
            yield GaugeMetricFamily(
                PREFIX + "usage_scan_timestamp_seconds",
                "When the last usage scan finished (Unix time)",
                value=snap.scanned_at,
            )
            yield GaugeMetricFamily(
                PREFIX + "usage_scan_duration_seconds",
                "How long the last usage scan took",
                value=snap.scan_seconds or 0.0,
            )

    def describe(self) -> list:
        # no describe-time collect: registering must not read the snapshot
        return []


_collector: UsageCollector | None = None


def register() -> None:
    """Add the usage collector to the default registry (once per process)."""
    global _collector
    if _collector is None:
        _collector = UsageCollector()
        REGISTRY.register(_collector)


audit.subscribe(observe_audit)

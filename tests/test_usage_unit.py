"""Pure parts of the usage scan and the metrics: engine answers in, numbers out."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from jupyterhub_ext.usage import metrics
from jupyterhub_ext.usage import scan as usage
from jupyterhub_ext.usage.scan import ServerUsage, Snapshot

ROOT = Path(__file__).resolve().parent.parent


def test_memory_used_subtracts_reclaimable_cache_v1_and_v2():
    v2 = {"memory_stats": {"usage": 300, "stats": {"inactive_file": 100}}}
    v1 = {"memory_stats": {"usage": 300, "stats": {"total_inactive_file": 50}}}
    assert usage.memory_used(v2) == 200
    assert usage.memory_used(v1) == 250
    assert usage.memory_used({"memory_stats": {"usage": 10}}) == 10
    assert usage.memory_used({"memory_stats": {}}) is None  # a stopped container


def test_cpu_seconds_and_percent_between_scans():
    stats = {"cpu_stats": {"cpu_usage": {"total_usage": 2_500_000_000}}}
    assert usage.cpu_seconds(stats) == 2.5
    assert usage.cpu_percent(None, (10.0, 2.5)) is None  # first sample: no rate yet
    assert usage.cpu_percent((10.0, 2.5), (12.0, 3.5)) == 50.0
    assert usage.cpu_percent((10.0, 3.5), (12.0, 2.5)) is None  # restarted container


def test_gpu_devices_from_requests_or_the_runtime_env():
    ids = {"HostConfig": {"DeviceRequests": [{"DeviceIDs": ["2", "3"], "Capabilities": [["gpu"]]}]}}
    assert usage.gpu_devices(ids) == ["2", "3"]
    all_gpus = {
        "HostConfig": {"DeviceRequests": [{"Count": -1, "Capabilities": [["gpu"]]}]},
        "Config": {"Env": ["A=1", "NVIDIA_VISIBLE_DEVICES=0,1"]},
    }
    assert usage.gpu_devices(all_gpus) == ["0", "1"]
    # the env alone (no GPU request) proves nothing: a user can set it
    assert usage.gpu_devices({"Config": {"Env": ["NVIDIA_VISIBLE_DEVICES=all"]}}) == []
    assert usage.gpu_devices({}) == []


def test_memory_limit_none_when_unlimited():
    assert usage.memory_limit({"HostConfig": {"Memory": 0}}) is None
    assert usage.memory_limit({"HostConfig": {"Memory": 2**30}}) == 2**30


def test_volume_sizes_count_only_the_users_own_volume():
    df = {
        "Volumes": [
            {
                "Name": "jh-alice-home",
                "Labels": {"jupyterhub-ext.managed": "true", "jupyterhub-ext.owner-id": "1"},
                "UsageData": {"Size": 5000},
            },
            # same name pattern, but another user's id: another hub, or a namesake
            {
                "Name": "jh-bob-home",
                "Labels": {"jupyterhub-ext.managed": "true", "jupyterhub-ext.owner-id": "99"},
                "UsageData": {"Size": 7000},
            },
            {"Name": "jh-carol-home", "Labels": None, "UsageData": {"Size": -1}},
        ]
    }
    sizes = usage.volume_sizes(df)
    assert set(sizes) == {"jh-alice-home", "jh-bob-home"}
    expected = [
        ("alice", 1, "home", "jh-alice-home"),
        ("bob", 2, "home", "jh-bob-home"),
        ("carol", 3, "home", "jh-carol-home"),
    ]
    assert usage.user_volume_bytes(sizes, expected) == {"alice": {"home": 5000}}


def test_volumes_on_other_swarm_nodes_are_taken_from_their_node():
    mine = {"jupyterhub-ext.managed": "true", "jupyterhub-ext.owner-id": "1"}
    hub_engine = {
        "jh-alice-home": (5, mine),  # a stale namesake on the manager: not alice's volume
        "jh-bob-home": (7, {}),
    }
    where = {"jh-alice-home": "node2", "jh-carol-home": "node3"}
    by_node = {"node2": {"jh-alice-home": (9000, mine), "jh-other": (1, {})}, "node3": {}}
    merged = usage.merge_node_sizes(hub_engine, where, by_node)
    # alice's size from her node; carol's node has no such volume: no size at all;
    # volumes not placed elsewhere keep the hub engine's measurement; the node's
    # other volumes are not added
    assert merged == {"jh-alice-home": (9000, mine), "jh-bob-home": (7, {})}
    # a node that was not measured: its volumes have no size (never the manager's)
    assert usage.merge_node_sizes(hub_engine, where, {}) == {"jh-bob-home": (7, {})}


def test_snapshot_totals_and_stopped_users_holding_disk():
    snap = Snapshot(
        servers=[
            ServerUsage("alice", "", memory_bytes=100, memory_limit_bytes=1000, cpu_percent=5.0),
            ServerUsage("bob", "gpu", memory_bytes=50, gpu_devices=["0"], cpu_percent=1.5),
        ],
        user_volumes={
            "alice": {"home": 10},
            "carol": {"home": 600, "cache": 500},
            "dan": {"home": 5},
        },
        running_users={"alice", "bob"},
        host_memory_bytes=4000,
    )
    out = snap.as_json(large_volume_bytes=1000)
    t = out["totals"]
    assert (t["servers"], t["memory_bytes"], t["memory_limit_bytes"]) == (2, 150, 1000)
    assert (t["gpu_devices"], t["cpu_percent"], t["host_memory_bytes"]) == (1, 6.5, 4000)
    assert t["volume_bytes"] == 10  # running users only; carol is in the second table
    assert out["stopped_with_large_volumes"] == [
        {"user": "carol", "total_bytes": 1100, "volumes": {"home": 600, "cache": 500}}
    ]
    json.dumps(out)  # JSON-ready


def test_audit_results_are_counted_with_bounded_labels():
    def value(name, labels):
        return metrics.REGISTRY.get_sample_value(name, labels) or 0.0

    before = value("jupyterhub_ext_actions_total", {"action": "broadcast", "result": "failed"})
    ok_before = value("jupyterhub_ext_broadcast_deliveries_total", {"result": "ok"})
    metrics.observe_audit("broadcast", "3/5 delivered", {"seconds": 1.2})
    assert value("jupyterhub_ext_actions_total", {"action": "broadcast", "result": "failed"}) == (
        before + 1
    )
    assert value("jupyterhub_ext_broadcast_deliveries_total", {"result": "ok"}) == ok_before + 3
    # an action we do not count, and a free-text result, never make new label values
    metrics.observe_audit("spawn-grants", "whatever the user typed", {})
    metrics.observe_audit("reset-volumes", "<script>", {})
    assert value("jupyterhub_ext_actions_total", {"action": "reset", "result": "other"}) >= 1
    metrics.count_refused_spawn("free text from somewhere")
    assert value("jupyterhub_ext_spawns_refused_total", {"reason": "other"}) >= 1
    samples = generate_latest(metrics.REGISTRY).decode()
    assert "free text" not in samples and "<script>" not in samples


def test_collector_reads_only_the_cached_snapshot(monkeypatch):
    snap = Snapshot(
        servers=[ServerUsage("alice", "", memory_bytes=123, cpu_seconds=4.5, gpu_devices=["1"])],
        user_volumes={"alice": {"home": 77}},
        scanned_at=1.0,
        scan_seconds=0.01,
    )
    monkeypatch.setattr(usage, "snapshot", lambda: snap)
    reg = CollectorRegistry()
    reg.register(metrics.UsageCollector())
    get = reg.get_sample_value
    assert get("jupyterhub_ext_server_memory_bytes", {"user": "alice", "server": ""}) == 123
    assert get("jupyterhub_ext_server_cpu_seconds_total", {"user": "alice", "server": ""}) == 4.5
    assert get("jupyterhub_ext_server_gpu_devices", {"user": "alice", "server": ""}) == 1
    assert get("jupyterhub_ext_user_volume_bytes", {"user": "alice", "volume": "home"}) == 77
    assert get("jupyterhub_ext_running_servers") == 1


def test_dashboard_uses_only_metrics_we_export():
    text = (ROOT / "deploy" / "grafana" / "jupyterhub-ext-usage.json").read_text()
    used = set(re.findall(r"jupyterhub_ext_[a-z_]+", text))
    exported = set(
        re.findall(r'PREFIX \+ "([a-z_]+)"', (ROOT / "jupyterhub_ext/usage/metrics.py").read_text())
    )
    names = set()
    for n in exported:
        base = "jupyterhub_ext_" + n
        names |= {base, base + "_total", base + "_bucket", base + "_count", base + "_sum"}
    assert used and used <= names, used - names


def test_culling_is_counted():
    def value(labels):
        return metrics.REGISTRY.get_sample_value("jupyterhub_ext_actions_total", labels) or 0.0

    culled = value({"action": "cull", "result": "ok"})
    warned = value({"action": "cull-warning", "result": "failed"})
    kept = value({"action": "keep-running", "result": "refused"})
    metrics.observe_audit("cull-server", "ok", {"idle_seconds": 70, "timeout": 60})
    metrics.observe_audit("cull-warning", "failed", {})
    metrics.observe_audit("keep-running", "refused", {"status": 409})
    assert value({"action": "cull", "result": "ok"}) == culled + 1
    assert value({"action": "cull-warning", "result": "failed"}) == warned + 1
    assert value({"action": "keep-running", "result": "refused"}) == kept + 1

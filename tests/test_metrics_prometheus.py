"""Our metrics on /hub/metrics, scraped by a real Prometheus (Debian's ``prometheus``).

Prometheus scrapes the hub with a token that has only ``read:metrics``; the
test asks Prometheus's HTTP API (PromQL), not a parser of ours, for the
values: per-server memory of two real servers, a home volume's size, a
refused spawn and a restart counted with its duration.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from hubctl import HubError, free_port, run_in, wait_for

pytestmark = pytest.mark.docker

PROMETHEUS = shutil.which("prometheus")
DASHBOARD = (
    Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "jupyterhub-ext-usage.json"
)


@pytest.fixture
def prometheus(tmp_path):
    """Start Prometheus scraping ``target`` (host:port) with ``token``; yields its base URL."""
    if PROMETHEUS is None:
        pytest.skip("Debian's prometheus is not installed (scripts/setup.sh installs it)")
    procs = []

    def start(target: str, token: str) -> str:
        port = free_port()
        (tmp_path / "token").write_text(token)
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text(
            f"""
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: jupyterhub
    metrics_path: /hub/metrics
    authorization:
      credentials_file: {tmp_path / "token"}
    static_configs:
      - targets: ["{target}"]
"""
        )
        log = open(tmp_path / "prometheus.log", "wb")
        proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={cfg}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        procs.append((proc, log))
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _ready(url), timeout=60, what="prometheus ready")
        return url

    yield start
    for proc, log in procs:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/-/ready", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def query(url: str, promql: str) -> dict[tuple, float]:
    """PromQL instant query -> {(label, value) pairs without __name__: value}."""
    r = requests.get(f"{url}/api/v1/query", params={"query": promql}, timeout=10)
    r.raise_for_status()
    body = r.json()
    assert body["status"] == "success", body
    out = {}
    for item in body["data"]["result"]:
        labels = tuple(sorted((k, v) for k, v in item["metric"].items() if k != "__name__"))
        out[labels] = float(item["value"][1])
    return out


def wait_query(url: str, promql: str, check, timeout: float = 90) -> dict[tuple, float]:
    found: dict = {}

    def ok() -> bool:
        nonlocal found
        found = query(url, promql)
        return bool(check(found))

    try:
        wait_for(ok, timeout=timeout, interval=1, what=promql)
    except Exception as e:
        raise AssertionError(f"{promql}: last answer {found}") from e
    return found


def test_prometheus_scrapes_our_metrics_from_the_hub(make_hub, prometheus):
    hub = make_hub(
        """
c.UsageConfig.scan_interval = 1
c.UsageConfig.volume_scan_interval = 10
c.Spawner.apply_user_options = {"sock_group": "docker_sock_group"}
"""
    )
    hub.spawn("alice")
    hub.spawn("bob")
    code, out = run_in(
        hub.container("alice"), "head -c 6000000 /dev/urandom > /home/jovyan/blob && sync"
    )
    assert code == 0, out
    # a spawn refused by us: an option that would choose Docker access
    hub.create_user("mallory")
    r = hub.api("POST", "/users/mallory/server", json={"sock_group": "staff"})
    assert r.status_code >= 400, r.text

    # the scrape token can read metrics and nothing else
    hub.create_user("admin")
    token = hub.token_for("admin", scopes=["read:metrics"])
    assert requests.get(f"{hub.url}/hub/metrics", timeout=10).status_code == 403
    prom = prometheus(f"127.0.0.1:{hub.port}", token)

    mem = wait_query(
        prom,
        "jupyterhub_ext_server_memory_bytes",
        lambda f: {dict(k)["user"] for k, v in f.items() if v > 0} >= {"alice", "bob"},
    )
    assert {dict(k)["user"] for k in mem} == {"alice", "bob"}
    # the default server: Prometheus drops an empty label value
    assert all(dict(k).get("server", "") == "" for k in mem)
    assert all(10e6 < v < 4e9 for v in mem.values()), mem  # a Python server: MBs, not 0
    # JupyterHub's own series come through the same endpoint
    assert query(prom, "jupyterhub_running_servers")
    cpu = query(prom, "jupyterhub_ext_server_cpu_seconds_total")
    assert len(cpu) == 2 and all(v > 0 for v in cpu.values()), cpu
    gpus = query(prom, "jupyterhub_ext_server_gpu_devices")
    assert sorted(gpus.values()) == [0.0, 0.0]

    vol = wait_query(
        prom,
        'jupyterhub_ext_user_volume_bytes{user="alice",volume="home"}',
        lambda f: f and next(iter(f.values())) >= 6_000_000,
    )
    assert len(vol) == 1
    refused = query(prom, "jupyterhub_ext_spawns_refused_total")
    assert {dict(k)["reason"]: v for k, v in refused.items() if v} == {"forbidden-option": 1}

    # an action: a restart is counted with its result and duration
    r = hub.api("POST", "/users/bob/restart-server")
    if r.status_code not in (200, 202):
        raise HubError(f"restart: {r.status_code} {r.text}")
    hub.wait_ready("bob")
    wait_query(
        prom,
        'jupyterhub_ext_actions_total{action="restart",result="ok"}',
        lambda f: f and next(iter(f.values())) == 1,
    )
    durations = query(prom, 'jupyterhub_ext_action_duration_seconds_count{action="restart"}')
    assert list(durations.values()) == [1.0]

    # every query of the Grafana dashboard is valid PromQL and finds data
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        found = False
        for target in panel["targets"]:
            expr = target["expr"]
            r = requests.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=10)
            assert r.status_code == 200 and r.json()["status"] == "success", (expr, r.text)
            found = found or bool(r.json()["data"]["result"])
        # (no GPUs here; percentiles need two samples of a rate window)
        if panel["title"] not in ("GPU devices per server", "Action duration p95"):
            assert found, f"no data for panel {panel['title']!r}"

    # a stopped server's series go away with it (bounded cardinality)
    hub.stop_server("bob")
    wait_query(
        prom,
        "jupyterhub_ext_server_memory_bytes",
        lambda f: {dict(k)["user"] for k in f} == {"alice"},
        timeout=30,
    )

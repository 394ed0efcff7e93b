"""The servers page API and the usage scan's cost, with N running servers.

N servers are more than this machine can run as JupyterLab containers, so each
is a stand-in: an ExtDockerSpawner whose start() serves HTTP from the hub's
own process and points at one of a few real ``sleep`` containers. The scan
does the real work for every server (one ``docker stats`` each, through the
shared pool) and ``docker system df`` for every user's volume names.

Two hubs, same N:

- ``idle``: the scan runs once at start, then sleeps (interval 1 h);
- ``scanning``: scans back to back (interval 1 s, volume scan every 10 s).

For each: p50 / p99 of ``GET /hub/api/`` (the event loop's responsiveness),
and on the scanning hub p50 / p99 of ``GET /hub/api/usage/servers``.
Targets: usage API p99 < 200 ms; ``/hub/api/`` p99 while scanning within
10 ms of idle.

    python bench/usage.py [--servers 100] [--seconds 20]
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
import time
from pathlib import Path

import docker
import requests
from common import Sampler, percentiles

from hubctl import Hub, build_images, cleanup_prefix, docker_host

STAND_IN = '''
import asyncio
from jupyterhub_ext.spawner import ExtDockerSpawner
from jupyterhub.utils import random_port

SLEEPERS = {sleepers!r}


class StandInSpawner(ExtDockerSpawner):
    """Serves HTTP in the hub process; its container is a shared sleeper."""

    _standin = None

    async def start(self):
        port = random_port()

        async def answer(reader, writer):
            await reader.read(1024)
            writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n"
                         b"Connection: close\\r\\n\\r\\nok")
            await writer.drain()
            writer.close()

        self._standin = await asyncio.start_server(answer, "127.0.0.1", port)
        self.object_id = SLEEPERS[self.user.id % len(SLEEPERS)]
        return "127.0.0.1", port

    async def poll(self):
        return None if self._standin is not None else 0

    async def stop(self, now=False):
        if self._standin is not None:
            self._standin.close()
            self._standin = None


c.JupyterHub.spawner_class = StandInSpawner
c.JupyterHub.concurrent_spawn_limit = 0
c.JupyterHub.active_server_limit = 0
'''


def run_hub(
    workdir: Path, image: str, prefix: str, sleepers: list[str], n: int, scan: float, secs: float
) -> dict:
    config = STAND_IN.format(sleepers=sleepers) + (
        f"c.UsageConfig.scan_interval = {scan}\nc.UsageConfig.volume_scan_interval = 10\n"
    )
    hub = Hub(workdir, image=image, prefix=prefix, config=config)
    hub.start(timeout=120)
    try:
        names = [f"u{i:03d}" for i in range(n)]
        for name in names:
            hub.create_user(name)
            r = hub.api("POST", f"/users/{name}/server")
            assert r.status_code in (201, 202), r.text + hub.log_tail(40)
        for name in names:
            hub.wait_ready(name)
        hub.create_user("admin")
        token = hub.token_for("admin")
        auth = {"Authorization": f"token {token}"}
        usage_url = f"{hub.url}/hub/api/usage/servers"

        def full_scan() -> bool:
            body = requests.get(usage_url, headers=auth, timeout=30).json()
            measured = [s for s in body["servers"] if s["memory_bytes"] is not None]
            return len(measured) == n

        deadline = time.monotonic() + 180
        while scan < 60 and not full_scan():
            assert time.monotonic() < deadline, "no full scan in 180 s"
            time.sleep(1)
        out = {}
        # the event loop's responsiveness alone, then the usage API alone
        with Sampler(f"{hub.url}/hub/api/") as api:
            time.sleep(secs)
        out["api"] = percentiles(api.latencies)
        if scan < 60:
            with Sampler(usage_url, headers=auth, interval=0.05) as usage:
                time.sleep(secs)
            out["usage"] = percentiles(usage.latencies)
        body = requests.get(usage_url, headers=auth, timeout=30).json()
        out["scan_seconds"] = body["scan_seconds"]
        out["rows"] = len(body["servers"])
        return out
    finally:
        hub.stop()
        cleanup_prefix(prefix)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--servers", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=20)
    args = ap.parse_args()
    url = docker_host()
    if url is None:
        raise SystemExit("no Docker engine")
    os.environ["DOCKER_HOST"] = url
    image = build_images()[0]
    client = docker.from_env(version="auto")
    prefix = f"jhext-bench-usage-{secrets.token_hex(2)}"
    sleepers = []
    try:
        for i in range(4):
            c = client.containers.run(
                image,
                ["sleep", "3600"],
                entrypoint=[],
                name=f"{prefix}-sleeper{i}",
                detach=True,
                remove=True,
                network_mode="none",
            )
            sleepers.append(c.id)
        with tempfile.TemporaryDirectory() as tmp:
            idle = run_hub(
                Path(tmp) / "idle", image, prefix + "-a", sleepers, args.servers, 3600, args.seconds
            )
            busy = run_hub(
                Path(tmp) / "busy", image, prefix + "-b", sleepers, args.servers, 1, args.seconds
            )
    finally:
        for cid in sleepers:
            try:
                client.containers.get(cid).remove(force=True)
            except docker.errors.NotFound:
                pass
    n = args.servers
    print(f"{n} running servers (stand-ins); one scan took {busy['scan_seconds']:.2f} s")
    print(f"{'request':<42}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}{'n':>6}")
    rows = [
        ("GET /hub/api/ (scan idle)", idle["api"]),
        ("GET /hub/api/ (scanning back to back)", busy["api"]),
        (f"GET /hub/api/usage/servers ({busy['rows']} rows)", busy["usage"]),
    ]
    for label, f in rows:
        print(f"{label:<42}{f['p50']:8.1f}{f['p99']:8.1f}{f['max']:8.1f}{f['n']:6d}")
    usage_p99 = busy["usage"]["p99"]
    extra = busy["api"]["p99"] - idle["api"]["p99"]
    print(f"{'PASS' if usage_p99 < 200 else 'MISS'}: usage API p99 {usage_p99:.1f} ms (< 200)")
    print(
        f"{'PASS' if extra <= 10 else 'MISS'}: /hub/api/ p99 while scanning "
        f"{extra:+.1f} ms vs idle (target within 10 ms)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

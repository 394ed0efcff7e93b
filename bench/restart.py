"""Benchmark: self-service restart vs stop + start through the REST API.

Runs a real hub (tests/hubctl.py) on the local Docker engine and measures,
in the same run and alternating, from the request until the hub reports the
server ready:

- ``restart``: ``POST /hub/api/users/{name}/restart-server`` (then polling
  the server model if it answered 202);
- ``stop+start``: ``DELETE /hub/api/users/{name}/server``, wait until gone,
  ``POST /hub/api/users/{name}/server``, wait until ready.

Usage::

    PYTHONPATH=. python bench/restart.py [--reps 5] [--json out.json]

Prints the median, min and max of each in seconds.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from hubctl import Hub, HubError, build_images, cleanup_prefix, docker_host  # noqa: E402

POLL = 0.05


def wait(hub: Hub, pred, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(POLL)
    raise HubError(f"timed out:\n{hub.log_tail()}")


def ready(hub: Hub, name: str) -> bool:
    s = hub.server(name)
    return bool(s and s.get("ready"))


def restart_once(hub: Hub, name: str) -> float:
    tic = time.perf_counter()
    r = hub.api("POST", f"/users/{name}/restart-server", timeout=300)
    if r.status_code not in (200, 202):
        raise HubError(f"restart: {r.status_code} {r.text}")
    wait(hub, lambda: ready(hub, name))
    return time.perf_counter() - tic


def stop_start_once(hub: Hub, name: str) -> float:
    tic = time.perf_counter()
    r = hub.api("DELETE", f"/users/{name}/server", timeout=300)
    if r.status_code not in (202, 204):
        raise HubError(f"stop: {r.status_code} {r.text}")
    wait(hub, lambda: hub.server(name) is None)
    r = hub.api("POST", f"/users/{name}/server", timeout=300)
    if r.status_code not in (201, 202):
        raise HubError(f"start: {r.status_code} {r.text}")
    wait(hub, lambda: ready(hub, name))
    return time.perf_counter() - tic


def summary(xs: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(xs), 2),
        "min": round(min(xs), 2),
        "max": round(max(xs), 2),
        "n": len(xs),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5, help="repetitions of each (alternating)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    if docker_host() is None:
        print("no Docker engine answers; set DOCKER_HOST", file=sys.stderr)
        return 2
    lab, _plain = build_images()
    prefix = f"jhext-bench-{secrets.token_hex(3)}"
    with tempfile.TemporaryDirectory() as tmp:
        # the restart request waits for the new server, as stop+start's POST does
        hub = Hub(
            Path(tmp),
            image=lab,
            prefix=prefix,
            config='c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 10}\n',
        )
        hub.start()
        try:
            hub.spawn("bench")
            times: dict[str, list[float]] = {"restart": [], "stop+start": []}
            for i in range(args.reps):
                # alternate the order so load drifts hit both alike
                order = ("restart", "stop+start") if i % 2 == 0 else ("stop+start", "restart")
                for kind in order:
                    fn = restart_once if kind == "restart" else stop_start_once
                    times[kind].append(fn(hub, "bench"))
                    print(f"rep {i + 1} {kind:10} {times[kind][-1]:.2f}s", flush=True)
        finally:
            hub.stop()
            cleanup_prefix(prefix)
    result = {k: summary(v) for k, v in times.items()}
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"raw": times, "summary": result}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

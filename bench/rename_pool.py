"""Big renames do not starve the hub: listing and spawn latency while two homes are copied.

The shared Docker pool is set to 2 threads (``docker_pool_size = 2``). Two
users with homes of ``--size-mb`` each are renamed at the same moment; while
both copies run, a volume listing (``GET /hub/api/users/{name}/manage-volumes``)
and a spawn of a third user are timed and compared with the same calls on the
idle hub, measured in the same run.

    python bench/rename_pool.py [--size-mb 1024]

The test ``tests/test_rename_boundaries.py`` runs the same ``measure``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

CONFIG = "c.ExtDockerSpawner.docker_pool_size = 2\n"

# How much slower than on the idle hub a call may be while the copies run.
# The copies share the disk and the 2 cores with the spawn; a starved pool
# instead makes each call wait for a whole copy (many seconds).
LISTING_SLACK_S = 2.0
SPAWN_FACTOR, SPAWN_SLACK_S = 2.0, 5.0


def fill_home(hub: Any, user: dict, size_mb: int) -> None:
    """A home volume as the spawner makes it (owner labels), holding ``size_mb`` MB."""
    import sqlite3

    import docker

    # the REST API does not show user ids; the owner label needs it
    with sqlite3.connect(hub.workdir / "jupyterhub.sqlite") as db:
        (uid,) = db.execute("SELECT id FROM users WHERE name = ?", (user["name"],)).fetchone()
    client = docker.from_env(version="auto")
    name = f"{hub.prefix}-{user['name']}-home"
    client.volumes.create(
        name,
        labels={
            "jupyterhub-ext.managed": "true",
            "jupyterhub-ext.volume-key": "home",
            "jupyterhub-ext.scope": "user",
            "jupyterhub-ext.owner-id": str(uid),
            "jupyterhub-ext.owner-name": user["name"],
        },
    )
    client.containers.run(
        hub.image,
        entrypoint=["sh", "-c", f"dd if=/dev/zero of=/v/big bs=1M count={size_mb} status=none"],
        user="0:0",
        network_mode="none",
        volumes={name: {"bind": "/v"}},
        remove=True,
    )


def _timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _listing(hub: Any, name: str, token: str) -> None:
    """The user's own volume listing, with her own token (as the page does)."""
    r = requests.get(
        f"{hub.url}/hub/api/users/{name}/manage-volumes",
        headers={"Authorization": f"token {token}"},
        timeout=300,
    )
    r.raise_for_status()


def _median_listing(hub: Any, token: str) -> float:
    return statistics.median(_timed(lambda: _listing(hub, "s1", token)) for _ in range(3))


def _spawn_and_stop(hub: Any, name: str) -> float:
    took = _timed(lambda: hub.spawn(name))
    hub.stop_server(name)
    return took


def _jobs(hub: Any, jobs: dict[str, str]) -> dict[str, dict]:
    return {
        new: hub.api("GET", f"/users/{new}/rename", params={"id": key}).json()
        for new, key in jobs.items()
    }


def _copying(job: dict) -> bool:
    return job["state"] == "copying" and job["progress"].get("phase") in ("copying", "verifying")


def measure(hub: Any, size_mb: int) -> dict[str, Any]:
    """Figures for one run on a started hub made with ``CONFIG``; renames r1, r2."""
    users = [hub.create_user(n) for n in ("r1", "r2", "s1")]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda u: fill_home(hub, u, size_mb), users[:2]))
    _spawn_and_stop(hub, "s1")  # warm-up: creates s1's volume
    token = hub.token_for("s1")
    idle = {
        "listing_s": _median_listing(hub, token),
        "spawn_s": _spawn_and_stop(hub, "s1"),
    }

    jobs = {}
    for old in ("r1", "r2"):
        r = hub.api("PATCH", f"/users/{old}/rename", json={"new_name": f"{old}x"})
        r.raise_for_status()
        jobs[f"{old}x"] = r.json()["id"]
    deadline = time.monotonic() + 120
    while not all(_copying(j) for j in _jobs(hub, jobs).values()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"renames never copied together: {_jobs(hub, jobs)}")
        time.sleep(0.1)
    busy: dict[str, Any] = {"listing_s": _median_listing(hub, token)}
    busy["copying_after_listing"] = sum(_copying(j) for j in _jobs(hub, jobs).values())
    busy["spawn_s"] = _timed(lambda: hub.spawn("s1"))
    busy["copying_after_spawn"] = sum(_copying(j) for j in _jobs(hub, jobs).values())
    hub.stop_server("s1")

    t0 = time.monotonic()
    while not all(j["state"] == "done" for j in _jobs(hub, jobs).values()):
        if time.monotonic() - t0 > 900:
            raise RuntimeError(f"renames did not finish: {_jobs(hub, jobs)}")
        time.sleep(0.5)
    final = _jobs(hub, jobs)
    return {
        "size_mb": size_mb,
        "idle": idle,
        "busy": busy,
        "bytes": {n: sum(m["bytes"] or 0 for m in j["plan"]["moves"]) for n, j in final.items()},
        "rename_total_s": time.monotonic() - t0,
    }


def verdicts(fig: dict[str, Any]) -> list[tuple[bool, str]]:
    idle, busy = fig["idle"], fig["busy"]
    listing_limit = idle["listing_s"] + LISTING_SLACK_S
    spawn_limit = SPAWN_FACTOR * idle["spawn_s"] + SPAWN_SLACK_S
    return [
        (
            busy["listing_s"] <= listing_limit,
            f"volume listing {busy['listing_s']:.3f} s while copying "
            f"(idle {idle['listing_s']:.3f} s; limit {listing_limit:.2f} s)",
        ),
        (
            busy["spawn_s"] <= spawn_limit,
            f"spawn {busy['spawn_s']:.2f} s while copying "
            f"(idle {idle['spawn_s']:.2f} s; limit {spawn_limit:.2f} s)",
        ),
    ]


def main() -> None:
    from hubctl import Hub, build_images, cleanup_prefix

    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=1024)
    args = ap.parse_args()
    image, _ = build_images()
    with tempfile.TemporaryDirectory() as tmp:
        prefix = f"jhext-bench-{int(time.time()) % 100000}"
        hub = Hub(Path(tmp) / "hub", config=CONFIG, image=image, prefix=prefix)
        try:
            hub.start()
            fig = measure(hub, args.size_mb)
        finally:
            hub.stop()
            cleanup_prefix(prefix)
    print(json.dumps(fig, indent=1))
    for ok, what in verdicts(fig):
        print(f"{'PASS' if ok else 'MISS'}: {what}")


if __name__ == "__main__":
    import common  # noqa: F401  (puts tests/ on sys.path for hubctl)

    main()

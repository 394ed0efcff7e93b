"""Spawns on the three-node Swarm bed against one Docker engine, same machine, same run.

Two real hubs run side by side with the same image, home volume set and hub
settings: ExtDockerSpawner on the private engine (the baseline) and
ExtSwarmSpawner on the bed of ``scripts/swarm-testbed.sh`` (tests/swarmbed.py:
reused when up, else brought up and torn down again). Each repetition times,
for both hubs in alternating order, one spawn and 3 concurrent spawns through
the REST API, request to every server ready; then stops them (on Swarm also
waiting for the containers to be gone from the nodes, as a stop on one engine
does). Users are warmed first (volumes made, each Swarm user pinned to its
node).

Each spawn is also split at the engine's own timestamps: request to object
created (container / service), created to container started (on Swarm: the
scheduler, the node's agent and the node's engine), started to ready (the
single-user server boots, the hub notices).

    python bench/swarm_spawn.py            # 5 repetitions
    python bench/swarm_spawn.py --quick    # 1 repetition (CI smoke)
"""

from __future__ import annotations

import argparse
import datetime
import os
import secrets
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
from common import TABLE_HEAD, Comparison, Figure

from hubctl import Hub, HubError, build_images, cleanup_prefix, docker_host
from jupyterhub_ext.engine.labels import LABEL_HELPER
from swarmbed import BedUnavailable, SwarmBed, open_bed

TARGET = 1.3
PHASES = ("request to created", "created to started", "started to ready")
SINGLE_USERS = ["one"]
CONCURRENT_USERS = ["c0", "c1", "c2"]


def parse_ts(text: str) -> float:
    """Docker's RFC 3339 timestamp (nanoseconds, Z) as epoch seconds."""
    head, _, frac = text.rstrip("Z").partition(".")
    t = datetime.datetime.fromisoformat(head).replace(tzinfo=datetime.UTC)
    return t.timestamp() + float(f"0.{frac or 0}")


class Timer:
    """One hub under test: spawns users and reads when each object was made and started."""

    def __init__(self, hub: Hub, label: str, bed: SwarmBed | None = None) -> None:
        self.hub = hub
        self.label = label
        self.bed = bed
        self.api = docker.APIClient(base_url=bed.manager if bed else docker_host(), version="auto")

    def marks(self, user: str) -> tuple[float, float]:
        """(object created, container started) as epoch seconds, for a running server."""
        name = f"{self.hub.prefix}-{user}"
        if self.bed is None:
            c = self.api.inspect_container(name)
            return parse_ts(c["Created"]), parse_ts(c["State"]["StartedAt"])
        svc = self.api.inspect_service(name)
        tasks = self.api.tasks(filters={"service": name})
        task = next(t for t in tasks if t["Status"]["State"] == "running")
        node = self.bed.by_id(task["NodeID"])
        with docker.APIClient(base_url=node.host, version="auto") as api:
            c = api.inspect_container(task["Status"]["ContainerStatus"]["ContainerID"])
        return parse_ts(svc["CreatedAt"]), parse_ts(c["State"]["StartedAt"])

    def spawn(self, users: list[str]) -> tuple[float, dict[str, list[float]]]:
        """Start ``users`` at once; (seconds until all ready, phase -> seconds per server)."""
        ready: dict[str, float] = {}

        def one(user: str) -> None:
            r = self.hub.api("POST", f"/users/{user}/server", timeout=300)
            if r.status_code not in (201, 202):
                raise HubError(f"spawn {user}: {r.status_code} {r.text}")
            if r.status_code == 202:
                self.hub.wait_ready(user, timeout=300)
            ready[user] = time.time()

        for u in users:
            self.hub.create_user(u)
        t0 = time.time()
        with ThreadPoolExecutor(len(users)) as pool:
            list(pool.map(one, users))
        elapsed = max(ready.values()) - t0
        phases: dict[str, list[float]] = {p: [] for p in PHASES}
        for u in users:
            created, started = self.marks(u)
            for p, dt in zip(
                PHASES, (created - t0, started - created, ready[u] - started), strict=True
            ):
                phases[p].append(dt)
        with ThreadPoolExecutor(len(users)) as pool:
            list(pool.map(self.hub.stop_server, users))
        self.wait_gone()
        return elapsed, phases

    def wait_gone(self, timeout: float = 60) -> None:
        """On Swarm a stop returns once the service is removed, while its container
        still shuts down on its node: wait for that, so no round overlaps the
        last one's teardown (on one engine the stop already waited for it)."""
        if self.bed is None:
            return
        deadline = time.monotonic() + timeout
        for node in self.bed.nodes:
            with docker.APIClient(base_url=node.host, version="auto") as api:
                while self.servers_on(api):
                    if time.monotonic() > deadline:
                        raise HubError(f"containers of {self.hub.prefix} still on {node.name}")
                    time.sleep(0.1)

    def servers_on(self, api: docker.APIClient) -> list[dict]:
        """This hub's server containers on one node. The exited task containers of
        the hub's node-call jobs (volume checks at start) also carry the hub's
        prefix and stay until a later job reaps them: they are not servers."""
        found = api.containers(all=True, filters={"name": self.hub.prefix})
        return [c for c in found if LABEL_HELPER not in (c.get("Labels") or {})]


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def check_nodes(bed: SwarmBed) -> None:
    """All three nodes ready and active, or BedUnavailable (the bed is shared:
    another test may have drained or paused a node)."""
    with docker.APIClient(base_url=bed.manager, version="auto") as api:
        for node in api.nodes():
            name = node["Description"]["Hostname"]
            state = node["Status"]["State"], node["Spec"]["Availability"]
            if state != ("ready", "active"):
                raise BedUnavailable(f"node {name} is {'/'.join(state)} (in use by a test?)")


def measure(reps: int) -> tuple[list[Comparison], dict, str]:
    """Rows, phase samples {(label, row): {phase: [s]}}, and a note on the conditions."""
    if docker_host() is None:
        raise SystemExit("no Docker engine")
    lab, _ = build_images()
    prefix = f"jhext-bench-sw-{secrets.token_hex(3)}"
    rows = [("1 spawn", SINGLE_USERS), ("3 concurrent spawns", CONCURRENT_USERS)]
    figs = {
        (who, row): Figure(f"{who} {row}", "s") for who in ("swarm", "single") for row, _ in rows
    }
    phases: dict = {key: {p: [] for p in PHASES} for key in figs}
    with open_bed(lab) as bed, tempfile.TemporaryDirectory() as tmp:
        check_nodes(bed)
        single = Hub(Path(tmp) / "single", image=lab, prefix=f"{prefix}-e")
        swarm = Hub(Path(tmp) / "swarm", image=lab, prefix=f"{prefix}-s", config=bed.hub_config())
        timers = [Timer(single, "single"), Timer(swarm, "swarm", bed)]
        load_before, started = loadavg(), datetime.datetime.now(datetime.UTC)
        try:
            single.start()
            swarm.start()
            for t in timers:  # first starts: volumes made, Swarm users pinned to a node
                t.spawn(SINGLE_USERS + CONCURRENT_USERS)
            for rep in range(reps):
                # alternate which goes first so drift hits both alike
                order = timers if rep % 2 == 0 else timers[::-1]
                for row, users in rows:
                    for t in order:
                        elapsed, split = t.spawn(users)
                        figs[(t.label, row)].samples.append(elapsed)
                        for p, values in split.items():
                            phases[(t.label, row)][p] += values
        finally:
            single.stop()
            swarm.stop()
            for t in timers:
                t.api.close()
            cleanup_prefix(prefix)
            bed.cleanup(prefix)
        note = (
            f"started {started:%Y-%m-%d %H:%M} UTC; "
            f"{reps} interleaved repetition(s) after a warm-up round; load average "
            f"(1/5/15 min) {load_before} before, {loadavg()} after; "
            f"bed {'brought up for this run' if bed.started_here else 'already up'}"
        )
    out = [
        Comparison(
            f"{row}: Swarm (3 nodes) vs one engine",
            figs[("swarm", row)],
            figs[("single", row)],
            TARGET,
        )
        for row, _ in rows
    ]
    return out, phases, note


def phase_table(phases: dict) -> str:
    lines = [
        "| spawn | " + " | ".join(PHASES) + " |",
        "|---" * (len(PHASES) + 1) + "|",
    ]
    for (who, row), split in sorted(phases.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        cells = [f"{statistics.median(split[p]):.3f}" for p in PHASES]
        lines.append(f"| {row}, {who} (n={len(split[PHASES[0]])}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def section(quick: bool) -> str:
    head = (
        "## Spawns on a three-node Swarm vs one Docker engine\n\n"
        "ExtSwarmSpawner on the three-node bed (`scripts/swarm-testbed.sh`: three "
        "dockerd in network namespaces of this machine) against ExtDockerSpawner on "
        "one engine; same machine, same image, same hub settings, interleaved. Wall "
        "time from the REST request to every server ready.\n\n"
    )
    try:
        rows, phases, note = measure(1 if quick else 5)
    except BedUnavailable as e:
        return head + f"Swarm test bed unavailable, not measured: {e}"
    table = "\n".join(c.markdown_row() for c in rows)
    return (
        head
        + f"{TABLE_HEAD}\n{table}\n\n"
        + f"Median seconds per server, split at the engines' timestamps ({note}):\n\n"
        + phase_table(phases)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    print(section(args.quick))


if __name__ == "__main__":
    main()

"""GPU placement: what choosing free GPUs adds to a spawn, on a host with many servers.

    python bench/gpu_placement.py [--servers 50] [--devices 8] [--rounds 30]

Against the Docker engine in DOCKER_HOST (else the project's private engine
socket), ``--servers`` containers are created (never started: created ones
count as holding their GPUs) with the labels the spawner writes, spread over
``--devices`` GPUs. Each round is the spawner's decision (profile_spawner.placement):
one ``docker ps -a`` filtered by our label, the live containers' GPU labels
counted, the least-loaded free device picked. Nothing is pulled; the
containers are removed at the end.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import time
from pathlib import Path

from jupyterhub_ext.engine.labels import LABEL_GPU_DEVICES  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.gpu_detect import engine_client, local_image, stats  # noqa: E402
from jupyterhub_ext.engine.labels import LABEL_MANAGED  # noqa: E402
from jupyterhub_ext.profiles import rules as P  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--servers", type=int, default=50)
    ap.add_argument("--devices", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    client = engine_client()
    image = local_image(client)
    devices = [f"GPU-bench-{i}" for i in range(args.devices)]
    prefix = f"jhext-bench-place-{secrets.token_hex(2)}"
    made = []
    try:
        for i in range(args.servers):
            c = client.create_container(
                image,
                command=["true"],
                name=f"{prefix}-{i}",
                labels={
                    LABEL_MANAGED: "true",
                    LABEL_GPU_DEVICES: devices[i % len(devices)],
                },
                host_config=client.create_host_config(network_mode="none"),
            )
            made.append(c["Id"])
        samples = []
        picked = None
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            found = client.containers(all=True, filters={"label": LABEL_MANAGED})
            load = P.device_load(P.live_labels(found, f"{prefix}-new"))
            picked = P.pick_devices(devices, load, 1, per_device=args.servers)
            samples.append((time.perf_counter() - t0) * 1000)
    finally:
        for cid in made:
            client.remove_container(cid, force=True)
    s = stats(samples)
    print(f"{'what':<34}{'n':>4}{'median ms':>11}{'min':>8}{'max':>8}")
    print(
        f"{'placement decision':<34}{s['n']:>4}{s['median_ms']:>11.1f}"
        f"{s['min_ms']:>8.1f}{s['max_ms']:>8.1f}"
    )
    print(
        f"({args.servers} live containers on {args.devices} GPUs; picked {picked}; "
        f"p90 {statistics.quantiles(samples, n=10)[-1]:.1f} ms)"
    )


if __name__ == "__main__":
    main()

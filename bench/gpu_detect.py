"""GPU auto-detection cost: the engine's report vs a probe container, in one run.

    python bench/gpu_detect.py [--rounds 15] [--probe-image IMAGE] [--json]

Measured against the Docker engine in DOCKER_HOST (else the project's private
engine socket, else /var/run/docker.sock), with the code the spawner uses:

- ``engine report``: ``gpu.info_check`` - one ``docker info`` call (what
  ``gpu_mode = "auto"`` does, at most once per ``gpu_detect_interval``);
- ``engine report, cached``: the detector's answer within the interval (what
  every other spawn pays);
- ``probe container``: ``gpu.probe_check`` - create, start with every GPU
  requested, wait, remove (``gpu_probe_image``). On a host without GPUs the
  engine refuses the start, so this is the probe's *failure* path;
- ``container run``: create, start, wait, remove of ``true`` in the same image
  without GPUs: the least a *successful* probe costs, before ``nvidia-smi``
  itself runs.

Nothing is pulled: the probe image must already be on the engine (by default
the first local ``jupyterhub-ext/*`` image). Engine events during the report
rounds are counted (container creates by anyone on the engine, and pulls).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import docker  # noqa: E402

from jupyterhub_ext import gpu  # noqa: E402
from jupyterhub_ext.engine import dockerpool  # noqa: E402

SOCKETS = ("unix:///run/jupyterhub-ext-docker/docker.sock", "unix:///var/run/docker.sock")


def engine_client() -> docker.APIClient:
    candidates = [os.environ["DOCKER_HOST"]] if os.environ.get("DOCKER_HOST") else []
    candidates += [s for s in SOCKETS if s not in candidates]
    for url in candidates:
        try:
            client = docker.APIClient(base_url=url, version="auto", timeout=120)
            client.ping()
            return client
        except Exception:
            continue
    sys.exit(f"no Docker engine answers at {', '.join(candidates)}")


def local_image(client: docker.APIClient) -> str:
    tags = [t for img in client.images() for t in (img.get("RepoTags") or [])]
    tags = [t for t in tags if t != "<none>:<none>"]
    ours = sorted(t for t in tags if t.startswith("jupyterhub-ext/"))
    if ours or tags:
        return (ours or sorted(tags))[0]
    sys.exit("no local image to probe with (nothing is pulled): pass --probe-image")


def timed(fn: Callable[[], object], rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def container_run(client: docker.APIClient, image: str, prefix: str) -> None:
    c = client.create_container(
        image,
        command=["true"],
        name=f"{prefix}-{secrets.token_hex(3)}",
        host_config=client.create_host_config(network_mode="none"),
    )
    try:
        client.start(c["Id"])
        client.wait(c["Id"], timeout=60)
    finally:
        client.remove_container(c["Id"], force=True)


def cached_lookups(client: docker.APIClient, rounds: int) -> list[float]:
    detector = gpu.GpuDetector()
    key = gpu.engine_key(client)

    async def go() -> list[float]:
        await detector.report(key, lambda: gpu.info_check(client), 300, dockerpool.run)
        out = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            await detector.report(key, lambda: gpu.info_check(client), 300, dockerpool.run)
            out.append((time.perf_counter() - t0) * 1000)
        return out

    return asyncio.run(go())


def stats(samples: list[float]) -> dict[str, float]:
    q = statistics.quantiles(samples, n=4) if len(samples) > 1 else [samples[0]] * 3
    return {
        "n": len(samples),
        "median_ms": statistics.median(samples),
        "min_ms": min(samples),
        "max_ms": max(samples),
        "iqr_ms": q[2] - q[0],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=15, help="rounds per method (default 15)")
    ap.add_argument("--probe-image", help="local image for the probe (never pulled)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args()

    client = engine_client()
    image = args.probe_image or local_image(client)
    try:
        client.inspect_image(image)
    except docker.errors.ImageNotFound:
        sys.exit(f"probe image {image} is not on the engine (nothing is pulled)")
    prefix = f"jhext-bench-gpu-{secrets.token_hex(2)}"

    since = time.time()
    report = timed(lambda: gpu.info_check(client), args.rounds)
    until = time.time()
    time.sleep(0.05)
    events = list(client.events(since=f"{since:.6f}", until=f"{until:.6f}", decode=True))
    created = [e for e in events if e.get("Type") == "container" and e.get("Action") == "create"]
    pulls = [e for e in events if e.get("Type") == "image" and e.get("Action") == "pull"]

    cached = cached_lookups(client, args.rounds)
    probe_results: list[gpu.EngineGpuReport] = []
    probe = timed(
        lambda: probe_results.append(
            gpu.probe_check(client, image, ["true"], timeout=60, name_prefix=prefix)
        ),
        args.rounds,
    )
    run = timed(lambda: container_run(client, image, prefix), args.rounds)

    verdict = gpu.info_check(client)
    rows = {
        "engine report": stats(report),
        "engine report, cached": stats(cached),
        "probe container": stats(probe),
        "container run (true)": stats(run),
    }
    result = {
        "engine": gpu.engine_key(client),
        "engine_gpus": verdict.available,
        "engine_detail": verdict.detail,
        "probe_image": image,
        "probe_detail": probe_results[-1].detail if probe_results else "",
        # by anyone: on a shared engine other users' containers count too
        "container_creates_during_report_rounds": len(created),
        "pulls_during_report_rounds": len(pulls),
        "methods": rows,
        "probe_vs_report_median": rows["probe container"]["median_ms"]
        / rows["engine report"]["median_ms"],
    }
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"engine {result['engine']}: GPUs {verdict.available} - {verdict.detail}")
    print(f"probe image {image}: {result['probe_detail']}")
    print(f"{'method':<24}{'n':>4}{'median ms':>12}{'min':>10}{'max':>10}{'IQR':>10}")
    for name, s in rows.items():
        print(
            f"{name:<24}{s['n']:>4}{s['median_ms']:>12.3f}{s['min_ms']:>10.3f}"
            f"{s['max_ms']:>10.3f}{s['iqr_ms']:>10.3f}"
        )
    print(
        f"probe container / engine report (median): {result['probe_vs_report_median']:.0f}x; "
        f"engine events during the report rounds: {len(created)} container creates "
        f"(by anyone), {len(pulls)} pulls"
    )


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Benchmark: the rename's volume copy next to ``cp -a`` of the same data on the host.

Builds one tree (a big file, many small files, hard links, symlinks) in a host
directory and in a Docker volume, then times, in the same run:

- ``cp -a`` of the tree on the host (what an admin would do by hand),
- the rename's copy: ``jupyterhub_ext.rename.volcopy.copy_volume`` (helper container
  start, ``cp -a`` volume to volume, ``sync``, progress polling, removal),
- the rename's check: ``jupyterhub_ext.rename.volcopy.verify_copy`` (checksums,
  owners, modes, times, links of both trees).

Prints median and spread (min-max) of each over ``--repeat`` runs and the
throughput in MB/s. Everything it creates is named ``jhext-bench-*`` and
removed at the end.

    DOCKER_HOST=unix:///run/jupyterhub-ext-docker/docker.sock \\
      PYTHONPATH=. python bench/rename_copy.py --size-mb 200 --repeat 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jupyterhub_ext.engine import (  # noqa: E402
    calls,  # noqa: E402
    dockerpool,  # noqa: E402
)
from jupyterhub_ext.rename import volcopy  # noqa: E402


def make_tree(root: Path, size_mb: int, small_files: int) -> int:
    """The benchmark tree; returns its byte count (files only)."""
    root.mkdir(parents=True)
    total = 0
    with open(root / "big.bin", "wb") as f:
        for _ in range(size_mb):
            f.write(os.urandom(1 << 20))
    total += size_mb << 20
    for i in range(small_files):
        d = root / "small" / f"d{i // 100:03d}"
        d.mkdir(parents=True, exist_ok=True)
        data = os.urandom(4096)
        (d / f"f{i:05d}.txt").write_bytes(data)
        total += len(data)
    os.link(root / "big.bin", root / "big.hardlink")
    os.symlink("big.bin", root / "big.link")
    return total


def fs_of(path: str) -> str:
    out = subprocess.run(["df", "-T", path], capture_output=True, text=True).stdout.splitlines()
    return " ".join(out[-1].split()[:2]) if len(out) > 1 else "?"


def summary(name: str, seconds: list[float], nbytes: int) -> str:
    med = statistics.median(seconds)
    return (
        f"{name:<34} median {med:7.2f} s  spread {min(seconds):6.2f}-{max(seconds):6.2f} s  "
        f"{nbytes / 1e6 / med:8.1f} MB/s (median)"
    )


def host_copy(src: Path, dst: Path) -> float:
    """Seconds for ``cp -a`` plus ``sync`` on the host (blocking on purpose: it is timed)."""
    t = time.perf_counter()
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)
    subprocess.run(["sync", "-f", str(dst)], check=True)
    elapsed = time.perf_counter() - t
    shutil.rmtree(dst)
    return elapsed


def default_image() -> str:
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_image.py")],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    return out.stdout.split()[-1]  # the plain single-user image


async def seed_volume(api: docker.APIClient, image: str, host_dir: Path, volume: str) -> None:
    api.create_volume(volume)
    result = await calls.run_helper(
        api,
        image=image,
        name=f"{volume}-seed",
        entrypoint=["/bin/sh", "-c"],
        command=[f"cp -a /seed/. {volcopy.DST}/"],
        mounts=[
            docker.types.Mount(target="/seed", source=str(host_dir), type="bind", read_only=True),
            docker.types.Mount(target=volcopy.DST, source=volume, type="volume", no_copy=True),
        ],
        labels={},
    )
    if result.exit_code != 0:
        raise SystemExit(f"seeding {volume} failed: {result.output}")


async def bench(args: argparse.Namespace) -> None:
    api = await dockerpool.get_client()  # negotiated in the pool, never on the loop
    image = args.image or default_image()
    tag = f"jhext-bench-{secrets.token_hex(3)}"
    work = Path(tempfile.mkdtemp(prefix=f"{tag}-", dir=args.host_dir))
    src_volume = f"{tag}-src"
    created: list[str] = []
    try:
        nbytes = make_tree(work / "src", args.size_mb, args.small_files)
        await seed_volume(api, image, work / "src", src_volume)
        created.append(src_volume)
        root_dir = api.info().get("DockerRootDir", "?")
        print(
            f"data: {nbytes / 1e6:.1f} MB in {args.small_files + 1} files, "
            "plus a hard link and a symlink"
        )
        print(f"host tree in {work} ({fs_of(str(work))}); engine data under {root_dir}")
        print(f"helper image {image}; {args.repeat} runs each, interleaved\n")

        host, copy, verify = [], [], []
        for i in range(args.repeat):
            host.append(host_copy(work / "src", work / f"dst{i}"))

            dest_volume = f"{tag}-dst{i}"
            api.create_volume(dest_volume)
            created.append(dest_volume)
            t = time.perf_counter()
            await volcopy.copy_volume(
                api,
                image=image,
                source=src_volume,
                dest=dest_volume,
                helper_name=f"{dest_volume}-copy",
                labels={},
            )
            copy.append(time.perf_counter() - t)
            t = time.perf_counter()
            await volcopy.verify_copy(
                api,
                image=image,
                source=src_volume,
                dest=dest_volume,
                helper_name=f"{dest_volume}-verify",
                labels={},
            )
            verify.append(time.perf_counter() - t)
            api.remove_volume(dest_volume)
            created.remove(dest_volume)

        print(summary("host cp -a (+ sync)", host, nbytes))
        print(summary("rename copy (helper container)", copy, nbytes))
        print(summary("rename check (treeverify, 2 trees)", verify, nbytes))
        ratio = statistics.median(copy) / statistics.median(host)
        print(f"\nrename copy takes {ratio:.2f}x the time of host cp -a (medians)")
    finally:
        for v in created:
            try:
                api.remove_volume(v, force=True)
            except docker.errors.APIError:
                pass
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=int, default=200, help="size of the big file (MB)")
    ap.add_argument("--small-files", type=int, default=2000, help="number of 4 KiB files")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--image", default="", help="helper image (default: the built plain image)")
    ap.add_argument("--host-dir", default=None, help="where the host copy runs (default: /tmp)")
    asyncio.run(bench(ap.parse_args()))


if __name__ == "__main__":
    main()

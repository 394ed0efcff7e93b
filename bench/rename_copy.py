#!/usr/bin/env python3
"""Benchmark: the rename's volume copy next to ``cp -a`` of the same data on the host.

Builds one tree (a few large files, many small files of 1-64 KiB, a hard link,
a symlink) in a host directory and in a Docker volume, then times, in the same
run and interleaved (host first in odd runs, ours first in even runs):

- ``cp -a`` of the tree on the host (what an admin would do by hand),
- the rename's copy: ``jupyterhub_ext.rename.volcopy.copy_volume`` (helper container
  start, ``cp -a`` volume to volume, ``sync``, progress polling, removal),
- the rename's check: ``jupyterhub_ext.rename.volcopy.verify_copy`` (checksums,
  owners, modes, times, links of both trees),
- the check's baseline: a helper with the same two volumes reading both trees
  once (``tar -cf - src dst | wc -c``), and an empty helper (``true``), the
  fixed cost of one helper container.

Prints median and spread (min-max) of each over ``--repeat`` runs and the
throughput in MB/s. Everything it creates is named ``jhext-bench-*`` and
removed at the end.

    DOCKER_HOST=unix:///run/jupyterhub-ext-docker/docker.sock \\
      PYTHONPATH=. python bench/rename_copy.py --size-mb 1024 --large-files 4 \\
      --small-files 20000 --repeat 5
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


def make_tree(root: Path, size_mb: int, small_files: int, large_files: int = 1) -> int:
    """The benchmark tree; returns its byte count (files only).

    ``large_files`` files share ``size_mb`` MB; ``small_files`` files of 1-64
    KiB (a home directory's sources, notebooks, dotfiles) sit in directories
    of 100; plus a hard link and a symlink.
    """
    root.mkdir(parents=True)
    total = 0
    each = max(1, size_mb // max(1, large_files))
    for n in range(max(1, large_files)):
        with open(root / ("big.bin" if n == 0 else f"big{n}.bin"), "wb") as f:
            for _ in range(each):
                f.write(os.urandom(1 << 20))
        total += each << 20
    for i in range(small_files):
        d = root / "small" / f"d{i // 100:03d}"
        d.mkdir(parents=True, exist_ok=True)
        data = os.urandom(1024 << (i % 7))  # 1, 2, 4 ... 64 KiB
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
    rate = f"{nbytes / 1e6 / med:8.1f} MB/s (median)" if nbytes else ""
    return (
        f"{name:<36} median {med:7.2f} s  spread {min(seconds):6.2f}-{max(seconds):6.2f} s  " + rate
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


async def timed_helper(api: docker.APIClient, image: str, name: str, script: str, vols) -> float:
    """Seconds for one helper container running ``script`` with volumes ``vols`` read-only."""
    mounts = [
        docker.types.Mount(target=t, source=v, type="volume", read_only=True, no_copy=True)
        for v, t in vols
    ]
    t = time.perf_counter()
    result = await calls.run_helper(
        api,
        image=image,
        name=name,
        entrypoint=["/bin/sh", "-c"],
        command=[script],
        mounts=mounts,
        labels={},
    )
    if result.exit_code != 0:
        raise SystemExit(f"{name} failed: {result.output}")
    return time.perf_counter() - t


async def one_round(api, image: str, src: str, dest: str) -> dict[str, float]:
    """Our copy, our check, and the check's baseline (both trees read once, same mounts)."""
    out: dict[str, float] = {}
    t = time.perf_counter()
    await volcopy.copy_volume(
        api, image=image, source=src, dest=dest, helper_name=f"{dest}-copy", labels={}
    )
    out["copy"] = time.perf_counter() - t
    t = time.perf_counter()
    await volcopy.verify_copy(
        api, image=image, source=src, dest=dest, helper_name=f"{dest}-verify", labels={}
    )
    out["verify"] = time.perf_counter() - t
    both = [(src, volcopy.SRC), (dest, volcopy.DST)]
    # tar into a pipe reads every byte (GNU tar skips reading when writing to /dev/null)
    read = f"tar -cf - {volcopy.SRC} {volcopy.DST} 2>/dev/null | wc -c"
    out["read"] = await timed_helper(api, image, f"{dest}-read", read, both)
    out["helper"] = await timed_helper(api, image, f"{dest}-true", "true", [])
    return out


async def bench(args: argparse.Namespace) -> None:
    api = await dockerpool.get_client()  # negotiated in the pool, never on the loop
    image = args.image or default_image()
    tag = f"jhext-bench-{secrets.token_hex(3)}"
    work = Path(tempfile.mkdtemp(prefix=f"{tag}-", dir=args.host_dir))
    src_volume = f"{tag}-src"
    created: list[str] = []
    try:
        nbytes = make_tree(work / "src", args.size_mb, args.small_files, args.large_files)
        await seed_volume(api, image, work / "src", src_volume)
        created.append(src_volume)
        root_dir = api.info().get("DockerRootDir", "?")
        print(
            f"data: {nbytes / 1e6:.1f} MB in {args.small_files + args.large_files} files "
            f"({args.large_files} large, {args.small_files} of 1-64 KiB), "
            "plus a hard link and a symlink"
        )
        print(f"host tree in {work} ({fs_of(str(work))}); engine data under {root_dir}")
        print(
            f"helper image {image}; {args.repeat} runs each, interleaved (host first in odd "
            "runs, ours first in even runs); warm page cache (the trees were just written)"
        )
        print(f"helper containers at cpu_shares {calls.HELPER_CPU_SHARES}")
        print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} before\n")

        times: dict[str, list[float]] = {"host": []}
        for i in range(args.repeat):
            dest_volume = f"{tag}-dst{i}"
            api.create_volume(dest_volume)
            created.append(dest_volume)
            if i % 2 == 0:
                times["host"].append(host_copy(work / "src", work / f"dst{i}"))
            for k, v in (await one_round(api, image, src_volume, dest_volume)).items():
                times.setdefault(k, []).append(v)
            if i % 2 == 1:
                times["host"].append(host_copy(work / "src", work / f"dst{i}"))
            api.remove_volume(dest_volume)
            created.remove(dest_volume)
            print(f"run {i + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()))

        print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} after\n")
        print(summary("host cp -a (+ sync)", times["host"], nbytes))
        print(summary("rename copy (helper container)", times["copy"], nbytes))
        print(summary("rename check (treeverify, 2 trees)", times["verify"], 2 * nbytes))
        print(summary("read both trees once (tar, helper)", times["read"], 2 * nbytes))
        print(summary("empty helper container (true)", times["helper"], 0))
        med = statistics.median
        ratio = med(times["copy"]) / med(times["host"])
        print(f"\nrename copy takes {ratio:.2f}x the time of host cp -a (medians)")
        ratio = med(times["verify"]) / med(times["read"])
        print(f"rename check takes {ratio:.2f}x the time of reading both trees once (medians)")
    finally:
        for v in created:
            try:
                api.remove_volume(v, force=True)
            except docker.errors.APIError:
                pass
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=int, default=200, help="size of the large files (MB)")
    ap.add_argument("--large-files", type=int, default=1, help="how many large files share it")
    ap.add_argument("--small-files", type=int, default=2000, help="number of 1-64 KiB files")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--image", default="", help="helper image (default: the built plain image)")
    ap.add_argument("--host-dir", default=None, help="where the host copy runs (default: /tmp)")
    ap.add_argument(
        "--helper-cpu-shares",
        type=int,
        default=calls.HELPER_CPU_SHARES,
        help="CPU weight of the helper containers (the product's: %(default)s; 1024 = the "
        "host copy's weight, to compare the machinery alone on a busy machine)",
    )
    args = ap.parse_args()
    calls.HELPER_CPU_SHARES = args.helper_cpu_shares
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()

"""Copy one Docker volume into another with a helper container, and prove the copy.

Short Docker calls go through the shared pool (``dockerpool.run``): the hub's
event loop never waits on the engine. The calls that last as long as a copy -
waiting for a helper to exit, ``du`` over a big tree for progress - run in
this module's own small pool (``LONG_POOL_SIZE`` threads), so big copies
never hold the threads that spawns, resets and listings need; more
concurrent copies than that only delay noticing an exit.

The helper runs the single-user image as root with no network and a read-only
root file system. The source is mounted read-only. ``cp -a`` keeps owners,
modes, timestamps, symlinks, extended attributes and hard links (within one
``cp`` run, which is why one volume is one ``cp``); ``sync -f`` puts the copy on
disk before anybody may remove the source. The check is a second helper that
runs :mod:`jupyterhub_ext.treeverify` over both trees.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
from docker.types import Mount

from . import dockerpool
from .volumes import LABEL_MANAGED, LABEL_PREFIX

LABEL_HELPER = LABEL_PREFIX + "helper"
LABEL_JOB = LABEL_PREFIX + "rename-job"

# relative CPU weight of copy/check helpers (Docker's default is 1024)
HELPER_CPU_SHARES = 128

SRC = "/jhext-rename/src"
DST = "/jhext-rename/dst"
POLL_SECONDS = 1.0

_VERIFY_SOURCE = (Path(__file__).with_name("treeverify.py")).read_text()


class CopyError(RuntimeError):
    """A copy or its check failed; the message says which volume and why."""


@dataclass
class HelperResult:
    exit_code: int
    output: str


LONG_POOL_SIZE = 4
_long_lock = threading.Lock()
_long_pool: ThreadPoolExecutor | None = None


def long_pool() -> ThreadPoolExecutor:
    """The bounded pool for calls that block as long as a copy runs (not the shared one)."""
    global _long_pool
    with _long_lock:
        if _long_pool is None:
            _long_pool = ThreadPoolExecutor(LONG_POOL_SIZE, thread_name_prefix="jhext-rename")
        return _long_pool


async def call(api: docker.APIClient, method: str, *args: Any, **kwargs: Any) -> Any:
    """One short docker-py APIClient call in the shared pool."""
    return await dockerpool.run(getattr(api, method), *args, **kwargs)


async def call_long(api: docker.APIClient, method: str, *args: Any, **kwargs: Any) -> Any:
    """A call that may block for minutes (``wait``, an exec of ``du``): own pool."""
    fn = getattr(api, method)
    return await asyncio.get_running_loop().run_in_executor(
        long_pool(), lambda: fn(*args, **kwargs)
    )


async def volume_or_none(api: docker.APIClient, name: str) -> dict | None:
    try:
        return await call(api, "inspect_volume", name)
    except docker.errors.NotFound:
        return None


async def container_or_none(api: docker.APIClient, name: str) -> dict | None:
    try:
        return await call(api, "inspect_container", name)
    except docker.errors.NotFound:
        return None


async def run_helper(
    api: docker.APIClient,
    *,
    image: str,
    name: str,
    entrypoint: list[str],
    command: list[str],
    mounts: list[Mount],
    labels: Mapping[str, str],
    while_running: Callable[[str], Awaitable[None]] | None = None,
    started: Callable[[str], Awaitable[None]] | None = None,
) -> HelperResult:
    """Run a root helper container to its end; always remove it afterwards.

    ``while_running(container_id)`` is awaited about once a second while it
    runs (progress); ``started(container_id)`` once, right after it starts.
    """
    old = await container_or_none(api, name)
    if old is not None:  # left over from an interrupted attempt
        await call(api, "remove_container", old["Id"], force=True)
    host_config = api.create_host_config(
        mounts=mounts,
        network_mode="none",
        read_only=True,
        security_opt=["no-new-privileges"],
        # a copy may take minutes: users' servers come first for the CPU
        cpu_shares=HELPER_CPU_SHARES,
    )
    created = await call(
        api,
        "create_container",
        image=image,
        name=name,
        entrypoint=entrypoint,
        command=command,
        user="0:0",
        working_dir="/",
        labels={LABEL_MANAGED: "true", **labels},
        host_config=host_config,
    )
    cid = created["Id"]
    try:
        await call(api, "start", cid)
        if started is not None:
            await started(cid)
        # Docker tells us the moment the helper exits (no polling delay on
        # short copies); meanwhile report progress once per POLL_SECONDS.
        exited = asyncio.ensure_future(call_long(api, "wait", cid))
        try:
            while True:
                done, _ = await asyncio.wait({exited}, timeout=POLL_SECONDS)
                if done:
                    break
                if while_running is not None:
                    await while_running(cid)
        finally:
            if not exited.done():
                exited.cancel()
        exit_code = int(exited.result()["StatusCode"])
        state = (await call(api, "inspect_container", cid))["State"]
        if state.get("OOMKilled"):
            raise CopyError(f"helper {name} ran out of memory")
        raw = await call(api, "logs", cid, stdout=True, stderr=True)
        return HelperResult(exit_code, raw.decode(errors="replace"))
    finally:
        try:
            await call(api, "remove_container", cid, force=True)
        except docker.errors.NotFound:
            pass


async def exec_output(api: docker.APIClient, container_id: str, cmd: list[str]) -> str | None:
    """Output of a command run in a running container, or None if it has gone."""
    try:
        ex = await call(api, "exec_create", container_id, cmd, user="0:0")
        out = await call_long(api, "exec_start", ex["Id"])
    except docker.errors.APIError:
        return None
    return out.decode(errors="replace")


def parse_du(text: str | None) -> int | None:
    """Bytes from ``du -sb`` output (first number), None if there is none."""
    if not text:
        return None
    first = text.strip().split(maxsplit=1)
    try:
        return int(first[0]) if first else None
    except ValueError:
        return None


async def copy_volume(
    api: docker.APIClient,
    *,
    image: str,
    source: str,
    dest: str,
    helper_name: str,
    labels: Mapping[str, str],
    progress: Callable[[int | None, int | None], None] | None = None,
    started: Callable[[str], Awaitable[None]] | None = None,
    hold_after_copy: bool = False,
) -> int:
    """Copy every byte and attribute of volume ``source`` into ``dest``.

    ``dest`` must exist and be empty. ``progress(total, copied)`` gets the
    source size (``du -sb``) and the bytes in the copy so far. Returns the
    source size. ``hold_after_copy`` (fault injection for tests only) keeps
    the helper alive after the copy so a test can kill it there.
    """
    script = f"du -sb {SRC} && cp -a {SRC}/. {DST}/ && sync -f {DST}/."
    if hold_after_copy:
        script += " && echo held && sleep 3600"
    total: list[int | None] = [None]

    async def poll(cid: str) -> None:
        if total[0] is None:
            logs = await call(api, "logs", cid, stdout=True, stderr=False)
            total[0] = parse_du(logs.decode(errors="replace"))
        copied = parse_du(await exec_output(api, cid, ["du", "-sb", DST]))
        if progress is not None:
            progress(total[0], copied)

    result = await run_helper(
        api,
        image=image,
        name=helper_name,
        entrypoint=["/bin/sh", "-c"],
        command=[script],
        mounts=[
            Mount(target=SRC, source=source, type="volume", read_only=True, no_copy=True),
            Mount(target=DST, source=dest, type="volume", no_copy=True),
        ],
        labels={LABEL_HELPER: "rename-copy", **labels},
        while_running=poll,
        started=started,
    )
    if result.exit_code != 0:
        raise CopyError(
            f"copying volume {source} to {dest} failed (exit {result.exit_code}): "
            f"{result.output.strip()[-500:]}"
        )
    size = parse_du(result.output) or 0
    if progress is not None:
        progress(size, size)
    return size


async def verify_copy(
    api: docker.APIClient,
    *,
    image: str,
    source: str,
    dest: str,
    helper_name: str,
    labels: Mapping[str, str],
) -> dict[str, Any]:
    """Compare both volumes entry by entry (checksums, owners, modes, times, links).

    Returns the treeverify summary; raises CopyError if they differ.
    """
    result = await run_helper(
        api,
        image=image,
        name=helper_name,
        entrypoint=["python3", "-c", _VERIFY_SOURCE],
        command=["compare", SRC, DST],
        mounts=[
            Mount(target=SRC, source=source, type="volume", read_only=True, no_copy=True),
            Mount(target=DST, source=dest, type="volume", read_only=True, no_copy=True),
        ],
        labels={LABEL_HELPER: "rename-verify", **labels},
    )
    try:
        summary = json.loads(result.output.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise CopyError(
            f"checking the copy of {source} failed (exit {result.exit_code}): "
            f"{result.output.strip()[-500:]}"
        ) from None
    if result.exit_code != 0 or not summary.get("identical"):
        raise CopyError(
            f"the copy of {source} in {dest} differs from the original "
            f"({summary.get('difference_count')} entries): "
            + "; ".join(summary.get("differences", [])[:5])
        )
    return summary


async def remove_helpers(api: docker.APIClient, job_key: str) -> int:
    """Remove every helper container of one rename job (running or not)."""
    found = await call(api, "containers", all=True, filters={"label": f"{LABEL_JOB}={job_key}"})
    for c in found:
        try:
            await call(api, "remove_container", c["Id"], force=True)
        except docker.errors.NotFound:
            pass
    return len(found)


async def wait_until_unused(api: docker.APIClient, volume: str, patience: float = 30) -> None:
    """Wait for containers that use a volume to disappear (helpers being removed)."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        users = await call(api, "containers", all=True, filters={"volume": volume})
        if not users:
            return
        await asyncio.sleep(0.5)

"""Calls to a Docker engine: short ones in the shared pool, long ones in their own.

Short calls (inspect, create, remove) go through :mod:`dockerpool`'s bounded
pool, so the hub's event loop never waits on the engine. Calls that last as
long as a helper's work (``wait`` for its exit, an exec of ``du``) run in a
small pool of their own (``LONG_POOL_SIZE`` threads), so big copies never hold
the threads that spawns, resets and listings need.

A helper container runs the single-user image as root with no network, a
read-only root file system, ``no-new-privileges`` and a low CPU weight; it is
always removed afterwards.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from jupyterhub_ext.engine import APIClient, Mount, dockerpool
from jupyterhub_ext.engine.errors import NotFound
from jupyterhub_ext.engine.labels import LABEL_MANAGED

# relative CPU weight of helpers (Docker's default is 1024)
HELPER_CPU_SHARES = 128
POLL_SECONDS = 1.0


class HelperError(RuntimeError):
    """A helper container could not do its work; the message says which and why."""


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


async def call(api: APIClient, method: str, *args: Any, **kwargs: Any) -> Any:
    """One short docker-py APIClient call in the shared pool."""
    return await dockerpool.run(getattr(api, method), *args, **kwargs)


async def call_long(api: APIClient, method: str, *args: Any, **kwargs: Any) -> Any:
    """A call that may block for minutes (``wait``, an exec of ``du``): own pool."""
    fn = getattr(api, method)
    return await asyncio.get_running_loop().run_in_executor(
        long_pool(), lambda: fn(*args, **kwargs)
    )


async def volume_or_none(api: APIClient, name: str) -> dict | None:
    try:
        return await call(api, "inspect_volume", name)
    except NotFound:
        return None


async def container_or_none(api: APIClient, name: str) -> dict | None:
    try:
        return await call(api, "inspect_container", name)
    except NotFound:
        return None


async def run_helper(
    api: APIClient,
    *,
    image: str,
    name: str,
    entrypoint: list[str],
    command: list[str],
    mounts: list[Mount],
    labels: Mapping[str, str],
    while_running: Callable[[str], Awaitable[None]] | None = None,
    started: Callable[[str], Awaitable[None]] | None = None,
    network_mode: str = "none",
) -> HelperResult:
    """Run a root helper container to its end; always remove it afterwards.

    ``while_running(container_id)`` is awaited about once a second while it
    runs (progress); ``started(container_id)`` once, right after it starts.
    Helpers have no network unless ``network_mode`` says otherwise (a copy
    between two Swarm nodes streams over the nodes' network).
    """
    old = await container_or_none(api, name)
    if old is not None:  # left over from an interrupted attempt
        await call(api, "remove_container", old["Id"], force=True)
    cid = await _create_helper(
        api,
        image=image,
        name=name,
        entrypoint=entrypoint,
        command=command,
        mounts=mounts,
        labels=labels,
        network_mode=network_mode,
    )
    try:
        await call(api, "start", cid)
        if started is not None:
            await started(cid)
        exit_code = await _wait_for_exit(api, cid, while_running)
        state = (await call(api, "inspect_container", cid))["State"]
        if state.get("OOMKilled"):
            raise HelperError(f"helper {name} ran out of memory")
        raw = await call(api, "logs", cid, stdout=True, stderr=True)
        return HelperResult(exit_code, raw.decode(errors="replace"))
    finally:
        try:
            await call(api, "remove_container", cid, force=True)
        except NotFound:
            pass


async def _create_helper(
    api: APIClient,
    *,
    image: str,
    name: str,
    entrypoint: list[str],
    command: list[str],
    mounts: list[Mount],
    labels: Mapping[str, str],
    network_mode: str = "none",
) -> str:
    """Create (not start) the helper container: root, no network, read-only; its id."""
    host_config = api.create_host_config(
        mounts=mounts,
        network_mode=network_mode,
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
    return created["Id"]


async def _wait_for_exit(
    api: APIClient, cid: str, while_running: Callable[[str], Awaitable[None]] | None
) -> int:
    """The helper's exit code, awaiting ``while_running`` about once a second meanwhile."""
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
    return int(exited.result()["StatusCode"])

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
runs :mod:`jupyterhub_ext.rename.treeverify` over both trees.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from jupyterhub_ext.engine import APIClient, Mount
from jupyterhub_ext.engine.calls import HelperError, call, call_long, run_helper
from jupyterhub_ext.engine.errors import APIError, NotFound
from jupyterhub_ext.engine.labels import LABEL_HELPER, LABEL_RENAME_JOB

SRC = "/jhext-rename/src"
DST = "/jhext-rename/dst"

# the progress poll waits this many times its own duration before the next
POLL_COST_RATIO = 9

VERIFY_SOURCE = (Path(__file__).with_name("treeverify.py")).read_text()


class CopyError(HelperError):
    """A copy or its check failed; the message says which volume and why."""


async def exec_output(api: APIClient, container_id: str, cmd: list[str]) -> str | None:
    """Output of a command run in a running container, or None if it has gone."""
    try:
        ex = await call(api, "exec_create", container_id, cmd, user="0:0")
        out = await call_long(api, "exec_start", ex["Id"])
    except APIError:
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


class ProgressPoll:
    """The copy's ``while_running``: source size from the helper's log, bytes copied so far.

    Called about once a second, it measures at most about a tenth of the
    copy's time: ``du`` walks the whole copy so far, and on a tree of many
    small files each walk (and its exec) competes with ``cp`` for the CPU.
    """

    def __init__(
        self, api: APIClient, progress: Callable[[int | None, int | None], None] | None
    ) -> None:
        self.api = api
        self.progress = progress
        self.total: int | None = None
        self.not_before = 0.0

    async def __call__(self, cid: str) -> None:
        if time.monotonic() < self.not_before:
            return
        began = time.monotonic()
        if self.total is None:
            logs = await call(self.api, "logs", cid, stdout=True, stderr=False)
            self.total = parse_du(logs.decode(errors="replace"))
        copied = parse_du(await exec_output(self.api, cid, ["du", "-sb", DST]))
        if self.progress is not None:
            self.progress(self.total, copied)
        self.not_before = time.monotonic() + POLL_COST_RATIO * (time.monotonic() - began)


async def copy_volume(
    api: APIClient,
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
        while_running=ProgressPoll(api, progress),
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
    api: APIClient,
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
        entrypoint=["python3", "-c", VERIFY_SOURCE],
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


async def remove_helpers(api: APIClient, job_key: str) -> int:
    """Remove every helper container of one rename job (running or not)."""
    found = await call(
        api, "containers", all=True, filters={"label": f"{LABEL_RENAME_JOB}={job_key}"}
    )
    for c in found:
        try:
            await call(api, "remove_container", c["Id"], force=True)
        except NotFound:
            pass
    return len(found)


async def wait_until_unused(api: APIClient, volume: str, patience: float = 30) -> None:
    """Wait for containers that use a volume to disappear (helpers being removed)."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        users = await call(api, "containers", all=True, filters={"volume": volume})
        if not users:
            return
        await asyncio.sleep(0.5)

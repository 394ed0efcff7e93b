"""Owner, group and mode of a freshly created volume, set by a short helper container.

Docker creates an empty named volume as ``root:root 755`` when the mount path
does not exist in the image, so nobody but root could write to a shared
volume mounted at, say, ``/srv/team``. Right after the spawner creates such
a volume, a helper (the single-user image, as root, no network, read-only
root file system, low CPU weight: :func:`jupyterhub_ext.engine.calls.run_helper`)
runs ``chown`` and ``chmod`` on the volume's root, within a deadline.
"""

from __future__ import annotations

import asyncio
import secrets

from jupyterhub_ext.engine import APIClient, Mount, calls
from jupyterhub_ext.engine.errors import APIError, explain
from jupyterhub_ext.engine.labels import LABEL_HELPER, LABEL_PERMS

TARGET = "/jhext-volume"
DEADLINE_SECONDS = 60.0


class PermissionsError(RuntimeError):
    """The helper could not set the volume's owner or mode; the message says why."""


def command(owner: str, group: str, mode: int) -> str:
    """The shell line the helper runs (owner/group empty: keep; mode < 0: keep)."""
    parts = []
    if owner or group:
        who = owner + (f":{group}" if group else "")
        parts.append(f"chown {who} {TARGET}")
    if mode >= 0:
        parts.append(f"chmod {mode:o} {TARGET}")
    return " && ".join(parts) or "true"


async def apply(
    api: APIClient,
    volume: str,
    *,
    image: str,
    owner: str,
    group: str,
    mode: int,
    deadline: float = DEADLINE_SECONDS,
) -> None:
    """Set the owner, group and mode of ``volume``'s root directory; raise on failure."""
    line = command(owner, group, mode)
    # a random suffix: two spawns creating the same shared volume at once
    # must not remove each other's helper (run_helper replaces a same-named one)
    name = f"jhext-volperms-{secrets.token_hex(6)}"
    try:
        res = await asyncio.wait_for(
            calls.run_helper(
                api,
                image=image,
                name=name,
                entrypoint=["/bin/sh", "-c"],
                command=[line],
                mounts=[Mount(TARGET, volume, type="volume")],
                labels={LABEL_HELPER: "true", LABEL_PERMS: volume},
            ),
            deadline,
        )
    except TimeoutError:
        raise PermissionsError(
            f"setting owner/mode of volume {volume} took longer than {deadline:g} s"
        ) from None
    except APIError as e:
        raise PermissionsError(
            f"could not run the helper that sets owner/mode of volume {volume}: {explain(e)}"
        ) from None
    if res.exit_code != 0:
        raise PermissionsError(
            f"'{line}' on volume {volume} failed ({res.exit_code}): {res.output.strip()[:300]}"
        )

"""Volume quotas: a soft and a hard size per volume-set entry, measured by the usage scan.

Docker's local volumes have no size limit, so a quota here is a measurement
(``docker system df`` in :mod:`jupyterhub_ext.usage.scan`, every
``volume_scan_interval``) and what follows from it:

- over the soft limit (or the hard one with ``on_hard_limit = "warn"``): a
  warning on the home page (``quota`` in the manage-volumes answer) and one
  notification in the user's JupyterLab, delivered like a broadcast to that
  user's servers alone, when the volume crosses the limit;
- over the hard limit with ``on_hard_limit = "refuse"``: the same, and the
  next start is refused with a message that says what to delete and how to
  reset.

Sizes can be up to one scan old; a reset forgets the volume's size at once so
the start after it is not refused.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from jupyterhub_ext.storage.volumes import VolumeSpec

log = logging.getLogger("jupyterhub_ext.usage.quota")

OK, SOFT, HARD = "ok", "soft", "hard"


def _human(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"  # pragma: no cover


def state(spec: VolumeSpec, size: int | None) -> str:
    """``ok``, ``soft`` or ``hard`` for a volume of ``size`` bytes (None: not measured)."""
    if size is None:
        return OK
    if spec.hard_limit is not None and size > spec.hard_limit:
        return HARD
    if spec.soft_limit is not None and size > spec.soft_limit:
        return SOFT
    return OK


def refuses(spec: VolumeSpec, size: int | None) -> bool:
    return state(spec, size) == HARD and spec.on_hard_limit == "refuse"


def message(spec: VolumeSpec, size: int, where: str) -> str:
    """What the user reads: how big, which limit, what to delete, how to reset."""
    st = state(spec, size)
    limit = spec.hard_limit if st == HARD else spec.soft_limit
    what = f"Your {spec.key} volume ({spec.mount}) holds {_human(size)}"
    if st == HARD and spec.on_hard_limit == "refuse":
        return (
            f"{what}, over its limit of {_human(limit or 0)}: your server cannot start "
            f"until it is smaller. Reset the {spec.key} volume with Manage Volumes on the "
            "home page (this deletes everything in it), or ask an administrator to raise "
            f"the limit for a while so you can start and delete {where}."
        )
    kind = "hard" if st == HARD else "soft"
    return (
        f"{what}, over its {kind} limit of {_human(limit or 0)}. "
        f"Please delete what you no longer need: {where}."
        + (
            " Over the hard limit the next start will be refused."
            if st == SOFT and spec.on_hard_limit == "refuse"
            else ""
        )
    )


def cleanup_hint(spec: VolumeSpec) -> str:
    return (
        f"large files under {spec.mount} (to find them, in a terminal: "
        f"du -sh {spec.mount}/* {spec.mount}/.[!.]* | sort -h)"
    )


def report(specs: Iterable[VolumeSpec], sizes: Mapping[str, int]) -> dict[str, dict[str, Any]]:
    """Quota state of each volume with a quota: key -> JSON-ready dict."""
    out = {}
    for spec in specs:
        if spec.soft_limit is None and spec.hard_limit is None:
            continue
        size = sizes.get(spec.key)
        st = state(spec, size)
        out[spec.key] = {
            "soft_limit": spec.soft_limit,
            "hard_limit": spec.hard_limit,
            "on_hard_limit": spec.on_hard_limit,
            "size": size,
            "state": st,
            "refuses_start": refuses(spec, size),
            "message": message(spec, size, cleanup_hint(spec)) if st != OK and size else "",
        }
    return out


def crossings(
    before: Mapping[tuple[str, str], str], now: Mapping[tuple[str, str], str]
) -> list[tuple[str, str, str]]:
    """(user, key, state) that got worse since the last scan: each is notified once."""
    rank = {OK: 0, SOFT: 1, HARD: 2}
    return [
        (user, key, st)
        for (user, key), st in sorted(now.items())
        if rank[st] > rank[before.get((user, key), OK)]
    ]

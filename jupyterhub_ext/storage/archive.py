"""Read-only union archive: several host directories shown as one tree.

The admin lists directories in priority order; for a path present in several
of them, the first directory's copy wins. This is an overlay filesystem with
only lower layers (no upper layer, so it cannot be written at all), created as
a Docker ``local`` volume::

    type=overlay  device=overlay  o=lowerdir=/first:/second:...

Overlayfs gives the first ``lowerdir`` the highest priority. The kernel refuses
an overlay with a single lower layer, so a one-directory "union" is a plain
bind volume instead (mounted read-only like every archive).

Docker keeps the options a volume was created with, so the volume name carries
a digest of the directory list: changing the list gives a new volume, and
running servers keep the old one until they restart.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from collections.abc import Iterable, Mapping
from typing import Any

# Overlay's option syntax: ':' separates layers, ',' separates options.
_FORBIDDEN = (":", ",", "\\", "\n", "\r", "\0", "${")
# The kernel reads mount options from a single page.
MAX_OPTION_LENGTH = 4000


class ArchiveError(ValueError):
    """An archive declaration that cannot work; the message says why."""


def parse_directories(raw: Any) -> tuple[str, ...]:
    """Validate the ``union`` list (priority order) and return normalized paths."""
    if isinstance(raw, str) or not isinstance(raw, Iterable):
        raise ArchiveError("'union' must be a list of host directories, highest priority first")
    dirs: list[str] = []
    for d in raw:
        if not isinstance(d, str) or not d:
            raise ArchiveError(f"'union' entries must be non-empty strings, got {d!r}")
        if not posixpath.isabs(d):
            raise ArchiveError(f"union directory {d!r} must be an absolute path")
        bad = [c for c in _FORBIDDEN if c in d]
        if bad:
            raise ArchiveError(
                f"union directory {d!r} contains {bad[0]!r}, which overlay mount options "
                "cannot carry; give the directory a path without it (a symlink works)"
            )
        norm = posixpath.normpath(d)
        if norm in dirs:
            raise ArchiveError(f"union directory {norm!r} is listed twice")
        dirs.append(norm)
    if not dirs:
        raise ArchiveError("'union' needs at least one directory")
    opts = driver_opts(dirs)
    if len(opts["o"]) > MAX_OPTION_LENGTH:
        raise ArchiveError(
            f"the union's {len(dirs)} directories make mount options of {len(opts['o'])} "
            f"characters; the kernel takes at most about {MAX_OPTION_LENGTH}: "
            "use shorter paths (e.g. symlinks in a short directory) or fewer directories"
        )
    return tuple(dirs)


def driver_opts(directories: Iterable[str]) -> dict[str, str]:
    """``local`` driver options of the union volume."""
    dirs = list(directories)
    if len(dirs) == 1:
        return {"type": "none", "o": "bind", "device": dirs[0]}
    return {"type": "overlay", "device": "overlay", "o": "lowerdir=" + ":".join(dirs)}


def digest(opts: Mapping[str, str]) -> str:
    """Short stable digest of a volume definition, appended to the volume name."""
    text = "\n".join(f"{k}={opts[k]}" for k in sorted(opts))
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def missing_directories(directories: Iterable[str]) -> list[str]:
    """The directories that do not exist (or are not directories) on this host."""
    return [d for d in directories if not os.path.isdir(d)]

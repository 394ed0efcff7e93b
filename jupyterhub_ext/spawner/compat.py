"""Keeping a DockerSpawner config working unchanged under ExtDockerSpawner.

Pure functions: how DockerSpawner merges ``extra_create_kwargs``, how our
volume set and DockerSpawner's ``volumes`` / ``read_only_volumes`` / ``mounts``
may collide, and where in a config a deprecated option was set. The page
docs/switching.md lists every DockerSpawner option and what changes.
"""

from __future__ import annotations

import copy
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jupyterhub_ext.storage.volumes import VolumeSetError, VolumeSpec

# sections whose values reach ExtDockerSpawner's traits, most specific first
SECTIONS = ("ExtDockerSpawner", "DockerSpawner", "Spawner")


def deep_merge(dest: Mapping[str, Any], src: Mapping[str, Any] | None) -> dict[str, Any]:
    """DockerSpawner's merge of ``extra_create_kwargs``: dicts merge, anything else replaces.

    A list given by the admin (``command``, ``entrypoint``) replaces ours as
    it does under DockerSpawner. Unlike DockerSpawner's, this one copies, so
    the admin's config objects are never changed by a spawn.
    """
    out = dict(dest)
    for key, value in (src or {}).items():
        old = out.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            out[key] = deep_merge(old, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass(frozen=True)
class DockerMount:
    """One mount from DockerSpawner's own options (after template rendering)."""

    source: str
    target: str
    option: str  # "volumes", "read_only_volumes" or "mounts"


def docker_spawner_mounts(
    volumes: Mapping[str, Any], read_only_volumes: Mapping[str, Any], mounts: Iterable[Any]
) -> list[DockerMount]:
    """Mounts of ``volumes`` / ``read_only_volumes`` (rendered: DockerSpawner's
    ``_volumes_to_binds`` form) and ``mounts`` (docker ``Mount`` objects or dicts)."""
    out = []
    for option, binds in (("volumes", volumes), ("read_only_volumes", read_only_volumes)):
        for src, spec in binds.items():
            target = spec["bind"] if isinstance(spec, Mapping) else spec
            out.append(DockerMount(str(src), str(target), option))
    for m in mounts:
        src = m.get("Source") or m.get("source") or ""
        target = m.get("Target") or m.get("target") or ""
        out.append(DockerMount(str(src), str(target), "mounts"))
    return out


def _norm(path: str) -> str:
    return posixpath.normpath(path) if path else path


def covers(outer: str, inner: str) -> bool:
    """``outer`` is ``inner`` or one of its parent directories."""
    outer, inner = _norm(outer), _norm(inner)
    return outer == inner or inner.startswith(outer.rstrip("/") + "/")


@dataclass(frozen=True)
class Conflict:
    spec: VolumeSpec
    mount: DockerMount
    why: str  # "same mount point", "same volume", "covers"

    def describe(self) -> str:
        m = self.mount
        what = {
            "same mount point": f"both mount at {m.target!r} (Docker: duplicate mount point)",
            "same volume": f"volume {m.source!r} would be mounted twice",
            "covers": f"{m.target!r} holds volume_set's {self.spec.mount!r}",
        }[self.why]
        return (
            f"{m.option} mounts {m.source!r} at {m.target!r} and volume_set[{self.spec.key!r}] "
            f"mounts {self.spec.name!r} at {self.spec.mount!r}: {what}"
        )


def conflicts(
    specs: Iterable[VolumeSpec], names: Mapping[str, str], theirs: Iterable[DockerMount]
) -> list[Conflict]:
    """Pairs of (volume-set entry, DockerSpawner mount) that cannot both be mounted as meant."""
    found = []
    theirs = list(theirs)
    for spec in specs:
        for m in theirs:
            if _norm(m.target) == _norm(spec.mount):
                found.append(Conflict(spec, m, "same mount point"))
            elif m.source == names.get(spec.key, spec.name):
                found.append(Conflict(spec, m, "same volume"))
            elif covers(m.target, spec.mount):
                found.append(Conflict(spec, m, "covers"))
    return found


def stepping_aside(found: Iterable[Conflict]) -> set[str]:
    """Keys of the default volume set that give way to DockerSpawner's own mounts."""
    return {c.spec.key for c in found}


def blocking(found: Iterable[Conflict]) -> list[Conflict]:
    """Conflicts an explicit volume set cannot live with (a parent mount is fine)."""
    return [c for c in found if c.why != "covers"]


def fix_hint(c: Conflict) -> str:
    """The one-line change that resolves a conflict: the mount declared in the set."""
    entry = {"name": c.mount.source, "mount": c.mount.target}
    return (
        f"remove it from c.DockerSpawner.{c.mount.option} and declare it in the set instead, "
        f"e.g. c.ExtDockerSpawner.volume_set = {{{c.spec.key!r}: {entry!r}}}"
    )


def conflict_error(found: list[Conflict]) -> VolumeSetError:
    first = found[0]
    return VolumeSetError(f"{first.describe()}. To fix: {fix_hint(first)}")


def config_mounts(volumes: Any, read_only_volumes: Any, mounts: Any) -> list[DockerMount]:
    """Like docker_spawner_mounts, from config values (templates not rendered)."""

    def norm(binds: Any) -> dict[str, Any]:
        return dict(binds) if isinstance(binds, Mapping) else {}

    dict_mounts = [m for m in (mounts or ()) if isinstance(m, Mapping)]
    return docker_spawner_mounts(norm(volumes), norm(read_only_volumes), dict_mounts)


def section_of(config: Any, name: str, default: str) -> str:
    """The most specific config section where option ``name`` was set (for messages)."""
    for section in SECTIONS:
        if section in config and name in config[section]:
            return section
    return default

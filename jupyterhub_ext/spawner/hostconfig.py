"""Construction of the Docker objects a spawn needs, apart from the spawner's lifecycle.

Every feature (volume sets, GPUs, group grants, the admin's own
``extra_host_config``) contributes a host-config fragment; they are combined
here by one rule. DockerSpawner's deep merge lets a list replace a list, which
silently drops e.g. the admin's device requests when we add ours; here lists
are concatenated (duplicates dropped) and dicts merged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from jupyterhub_ext.engine import Mount
from jupyterhub_ext.engine.labels import (
    LABEL_MANAGED,
    LABEL_OWNER_CREATED,
    LABEL_OWNER_ID,
    LABEL_OWNER_NAME,
    LABEL_SERVER_NAME,
)
from jupyterhub_ext.storage.volumes import VolumeSpec


def merge_fragments(*fragments: Mapping[str, Any] | None) -> dict[str, Any]:
    """Combine host-config fragments: dicts merge, lists extend, scalars: last wins."""
    out: dict[str, Any] = {}
    for frag in fragments:
        if frag:
            _merge_into(out, frag)
    return out


def _merge_into(dest: dict[str, Any], src: Mapping[str, Any]) -> None:
    for key, value in src.items():
        old = dest.get(key)
        if isinstance(old, dict) and isinstance(value, Mapping):
            merged = dict(old)
            _merge_into(merged, value)
            dest[key] = merged
        elif isinstance(old, list) and isinstance(value, (list, tuple)):
            dest[key] = old + [v for v in value if v not in old]
        elif isinstance(value, Mapping):
            dest[key] = dict(value)
        elif isinstance(value, tuple):
            dest[key] = list(value)
        else:
            dest[key] = value


def normalize_binds(binds: Any) -> list[str]:
    """Docker accepts binds as a dict or a list of 'src:dst:mode'; merging needs one form."""
    if not binds:
        return []
    if isinstance(binds, Mapping):
        out = []
        for src, spec in binds.items():
            if isinstance(spec, Mapping):
                mode = spec.get("mode", "rw")
                if spec.get("propagation"):
                    mode = f"{mode},{spec['propagation']}"
                out.append(f"{src}:{spec['bind']}:{mode}")
            else:
                out.append(f"{src}:{spec}:rw")
        return out
    return list(binds)


def volume_mounts(specs: Iterable[VolumeSpec], names: Mapping[str, str]) -> list[Mount]:
    """Docker mounts for a volume set; ``names`` maps key -> rendered volume name."""
    return [
        Mount(target=s.mount, source=names[s.key], type="volume", read_only=s.read_only)
        for s in specs
    ]


def container_labels(
    owner_id: int | None, owner_name: str, server_name: str, owner_created: str = ""
) -> dict[str, str]:
    """Labels on every container we create: find a user's containers without their names,
    and check whose a container is before it is started or removed (ownership.py)."""
    labels = {
        LABEL_MANAGED: "true",
        LABEL_OWNER_ID: str(owner_id),
        LABEL_OWNER_NAME: owner_name,
        LABEL_SERVER_NAME: server_name,
    }
    if owner_created:
        labels[LABEL_OWNER_CREATED] = owner_created
    return labels


def named_volume_sources(binds: Mapping[str, Any] | None) -> list[str]:
    """Docker volume names among DockerSpawner's ``volume_binds`` (host paths excluded)."""
    return [src for src in (binds or {}) if src and not str(src).startswith("/")]


def anonymous_volumes(mounts: Iterable[Mapping[str, Any]] | None) -> list[str]:
    """Names of the anonymous volumes among a container's ``Mounts`` (Docker names
    them with 64 hex digits; every volume we or the admin name has another name)."""
    return [
        m["Name"]
        for m in mounts or []
        if m.get("Type") == "volume"
        and len(m.get("Name") or "") == 64
        and all(ch in "0123456789abcdef" for ch in m["Name"])
    ]
